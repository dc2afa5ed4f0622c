from django.urls import path

from minga.pipeline import views

app_name = "pipeline"

urlpatterns = [
    path("", views.event_list, name="event_list"),
    path("events.<str:fmt>", views.event_export, name="event_export"),
    path("feeds/", views.feed_list, name="feed_list"),
    path("digests/", views.digest_list, name="digest_list"),
    path("digests/<uuid:uuid>/<slug:action>/", views.digest_action, name="digest_action"),
    path("feeds/new/", views.feed_create, name="feed_create"),
    path("feeds/<slug:name>/", views.feed_detail, name="feed_detail"),
    path("feeds/<slug:name>/edit/", views.feed_edit, name="feed_edit"),
    path("runs/<uuid:uuid>/", views.run_detail, name="run_detail"),
    path("runs/<uuid:uuid>/reprocess/", views.run_reprocess, name="run_reprocess"),
    path("runs/<uuid:uuid>/rerun/", views.run_rerun, name="run_rerun"),
]
