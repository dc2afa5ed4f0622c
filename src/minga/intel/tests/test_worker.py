"""An uploaded bundle is imported by a real ``minga worker`` process, progress on its page."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from minga.core.choices import TLP
from minga.core.tests.test_worker import wait_for, worker  # noqa: F401  (the fixture)
from minga.intel.choices import ImportStatus
from minga.intel.models import ImportJob, StixObject
from minga.intel.tests.bundles import bundle, indicator, sighting

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_upload_is_imported_by_the_worker(make_org, make_user, worker) -> None:  # noqa: F811
    team, partner = make_org("csirt-gt"), make_org("csirt-hn")
    analyst = make_user("gt-analyst", team)
    target = indicator("203.0.113.77")
    objects = [target, sighting(target["id"], 4)] + [indicator(f"198.51.100.{n}") for n in range(1, 200)]
    client = Client()
    client.force_login(analyst)
    response = client.post(
        "/intel/imports/",
        {
            "file": SimpleUploadedFile("feed.json", json.dumps(bundle(*objects)).encode()),
            "organisation": team.pk,
            "tlp": TLP.AMBER,
            "recipients": [partner.pk],
        },
    )
    assert response.status_code == 302
    job = ImportJob.objects.get()
    worker()
    wait_for(lambda: ImportJob.objects.get(pk=job.pk).status in (ImportStatus.DONE, ImportStatus.FAILED))
    job.refresh_from_db()
    assert (job.status, job.accepted, job.rejected, job.percent) == (ImportStatus.DONE, 201, 0, 100)
    assert StixObject.objects.filter(origin_organisation=team, tlp=TLP.AMBER).count() == 201
    assert "Done" in client.get(response["Location"]).content.decode()
