from django.urls import include, path

from minga.urls import handler400, handler403, handler404, handler500  # noqa: F401
from tests.sharedapp import views

urlpatterns = [
    path("test-shared/", views.document_list),
    path("test-shared/<uuid:uuid>/", views.document_detail),
    path("", include("minga.urls")),
]
