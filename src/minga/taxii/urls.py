from django.urls import path, re_path

from minga.taxii import views

app_name = "taxii"

urlpatterns = [
    path("", views.discovery, name="discovery"),
    path("api/", views.api_root, name="api_root"),
    path("api/status/<str:status_id>/", views.status, name="status"),
    path("api/collections/", views.collections, name="collections"),
    path("api/collections/<str:collection_id>/", views.collection, name="collection"),
    path("api/collections/<str:collection_id>/objects/", views.objects, name="objects"),
    path("api/collections/<str:collection_id>/manifest/", views.manifest, name="manifest"),
    path(
        "api/collections/<str:collection_id>/objects/<str:object_id>/",
        views.object_detail,
        name="object",
    ),
    path(
        "api/collections/<str:collection_id>/objects/<str:object_id>/versions/",
        views.versions,
        name="versions",
    ),
    re_path(r"^(?P<rest>.*)$", views.not_found),
]
