"""Seed the OAS member states and the sectors the network names."""

import json
from pathlib import Path

from django.db import migrations
from django.utils import translation

DATA = Path(__file__).resolve().parent.parent / "data" / "oas_states.json"


def seed(apps, schema_editor):
    from minga.directory.choices import BUILTIN_SECTORS

    MemberState = apps.get_model("directory", "MemberState")
    Sector = apps.get_model("directory", "Sector")
    for row in json.loads(DATA.read_text(encoding="utf-8"))["states"]:
        MemberState.objects.update_or_create(
            code=row["code"],
            defaults={
                "participating": row["participating"],
                "languages": row["languages"],
                "time_zones": row["time_zones"],
            },
        )
    with translation.override("en"):
        for slug, name in BUILTIN_SECTORS:
            Sector.objects.update_or_create(slug=slug, defaults={"name": str(name), "builtin": True})


class Migration(migrations.Migration):
    dependencies = [("directory", "0001_initial")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
