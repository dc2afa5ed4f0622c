"""The MISP feed, mounted at ``/federation/misp-feed/`` (``minga.taxii.feed_views``)."""

from django.urls import path

from minga.taxii import feed_views

app_name = "misp_feed"

urlpatterns = [
    path("manifest.json", feed_views.manifest, name="manifest"),
    path("hashes.csv", feed_views.hashes, name="hashes"),
    path("<uuid:event_uuid>.json", feed_views.event, name="event"),
]
