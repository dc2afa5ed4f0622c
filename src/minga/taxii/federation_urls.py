"""Federation pages under ``/federation/`` (the TAXII endpoints are under ``/taxii2/``)."""

from django.urls import path

from minga.taxii import pages

app_name = "federation"

urlpatterns = [
    path("peers/", pages.peer_list, name="peers"),
    path("peers/<slug:name>/sync/", pages.peer_sync, name="peer_sync"),
    path("peers/<slug:name>/token/", pages.peer_token, name="peer_token"),
    path("peers/<slug:name>/remove/", pages.peer_remove, name="peer_remove"),
    path("retractions/", pages.retraction_list, name="retractions"),
    path("retract/", pages.retract, name="retract"),
]
