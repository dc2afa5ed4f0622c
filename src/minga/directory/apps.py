from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DirectoryConfig(AppConfig):
    name = "minga.directory"
    label = "directory"
    verbose_name = _("Directory")

    def ready(self) -> None:
        from minga.directory import tasks  # noqa: F401  (declares the directory's periodic jobs)

    def load_demo(self) -> None:
        """Called by ``minga demo`` / ``minga up --demo`` after the core demo network."""
        from minga.directory import demo

        demo.load()
