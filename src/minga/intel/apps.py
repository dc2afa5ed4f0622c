from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IntelConfig(AppConfig):
    name = "minga.intel"
    label = "intel"
    verbose_name = _("Intelligence")

    def ready(self) -> None:
        from minga.intel import tasks  # noqa: F401  (declares the import task)

    def load_demo(self) -> None:
        """Called by ``minga demo`` / ``minga up --demo`` after the core demo network."""
        from minga.intel import demo

        demo.load()
