from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TaxiiConfig(AppConfig):
    name = "minga.taxii"
    label = "taxii"
    verbose_name = _("TAXII")
