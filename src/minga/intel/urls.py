from django.urls import path

from minga.intel import views

app_name = "intel"

urlpatterns = [
    path("", views.object_list, name="object_list"),
    path("export.json", views.export, name="export"),
    path("objects/<str:stix_id>/", views.object_detail, name="object_detail"),
    path("objects/<str:stix_id>/bundle.json", views.object_bundle, name="object_bundle"),
    path("imports/", views.imports, name="imports"),
    path("imports/<uuid:uuid>/", views.import_detail, name="import_detail"),
]
