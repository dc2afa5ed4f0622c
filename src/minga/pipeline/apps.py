from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PipelineConfig(AppConfig):
    name = "minga.pipeline"
    label = "pipeline"
    verbose_name = _("Feed pipeline")

    def ready(self) -> None:
        from minga.pipeline import tasks  # noqa: F401  (declares the chunk task and periodic jobs)

    def load_demo(self) -> None:
        """Called by ``minga demo`` / ``minga up --demo`` after the directory's demo network."""
        from minga.pipeline import demo

        demo.load()
