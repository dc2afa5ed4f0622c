from django.urls import include, path

from tests.sharedapp import views

urlpatterns = [
    path("test-shared/", views.document_list),
    path("test-shared/<uuid:uuid>/", views.document_detail),
    path("", include("minga.urls")),
]
