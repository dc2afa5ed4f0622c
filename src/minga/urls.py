from django.urls import include, path

from minga.api import api
from minga.core import views as core_views
from minga.directory import views as directory_views

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("api/v1/", api.urls),
    path("i18n/", include("django.conf.urls.i18n")),
    path("directory/", include("minga.directory.urls")),
    path("intel/", include("minga.intel.urls")),
    path("incidents/", include("minga.incidents.urls")),
    path("assistance/", include("minga.assistance.urls")),
    path("pipeline/", include("minga.pipeline.urls")),
    path("taxii2/", include("minga.taxii.urls")),
    path("federation/misp-feed/", include("minga.taxii.feed_urls")),
    path("federation/", include("minga.taxii.federation_urls")),
    path(".well-known/security.txt", directory_views.well_known_security_txt, name="security_txt"),
    path("", include("minga.core.urls")),
]

handler400 = "minga.core.views.bad_request"
handler403 = "minga.core.views.permission_denied"
handler404 = "minga.core.views.page_not_found"
handler500 = "minga.core.views.server_error"
