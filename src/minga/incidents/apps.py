from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IncidentsConfig(AppConfig):
    name = "minga.incidents"
    label = "incidents"
    verbose_name = _("Incidents")

    def ready(self) -> None:
        from minga.incidents import (  # noqa: F401  (the outbox's periodic job; the federation receivers)
            federation,
            tasks,
        )

    def load_demo(self) -> None:
        """Called by ``minga demo`` / ``minga up --demo`` after the directory and intel demos."""
        from minga.incidents import demo

        demo.load()
