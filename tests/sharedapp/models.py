"""A concrete shared object, for testing the access policy the way every capability uses it."""

from django.db import models

from minga.core.models import SharedObject


class SharedDocument(SharedObject):
    title = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.title


class TaskRun(models.Model):
    """One row per task attempt, written by the test tasks so a test can count them."""

    key = models.CharField(max_length=100)
    attempt = models.PositiveIntegerField()
    outcome = models.CharField(max_length=20)

    def __str__(self) -> str:
        return f"{self.key} #{self.attempt}: {self.outcome}"
