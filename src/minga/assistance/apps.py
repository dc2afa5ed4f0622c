from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AssistanceConfig(AppConfig):
    name = "minga.assistance"
    label = "assistance"
    verbose_name = _("Mutual assistance")

    def ready(self) -> None:
        from minga.assistance import tasks  # noqa: F401  (declares the escalation's periodic job)

    def load_demo(self) -> None:
        """Called by ``minga demo`` / ``minga up --demo`` after the directory demo."""
        from minga.assistance import demo

        demo.load()
