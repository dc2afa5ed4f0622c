from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CoreConfig(AppConfig):
    name = "minga.core"
    label = "core"
    verbose_name = _("Core")

    def ready(self) -> None:
        from minga.core import signals  # noqa: F401  (connects the login audit receivers)
