from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TaxiiConfig(AppConfig):
    name = "minga.taxii"
    label = "taxii"
    verbose_name = _("TAXII")

    def ready(self) -> None:
        from minga.taxii import tasks  # noqa: F401  (declares the periodic sync of peers)
