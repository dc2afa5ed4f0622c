"""Assistance requests for the demo network: an emergency request to preserve logs, sent by the
Southern Cybercrime Police Unit (Uruguay) to Peru's national CSIRT, acknowledged and in
progress; an information request from CSIRT Andina to CERT Caribe, answered; and an urgent
request from CERT Caribe to Mexico's national CSIRT that no one has acknowledged yet, so the
deadline clocks and the SLA view have something to show. Fictional like the rest of the demo;
loading again changes nothing."""

from __future__ import annotations

import contextlib
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from minga.assistance import services
from minga.assistance.choices import Outcome, Priority, RequestKind
from minga.assistance.models import AssistanceRequest
from minga.core.models import Organisation, User
from minga.directory.models import MemberState

LEGAL_BASIS = "Budapest Convention on Cybercrime, art. 29 and 35 (demo)"


def _send(actor: User, organisation: Organisation, state: str, **fields: Any) -> AssistanceRequest | None:
    target = MemberState.objects.filter(code=state).first()
    if target is None or services.designated_organisation(target) is None:
        return None
    request = services.create_request(actor, organisation, requested_state=target, **fields)
    # Refused when the state's 24/7 desk is not confirmed in the demo directory: the draft stays.
    with contextlib.suppress(ValidationError):
        services.submit(actor, request)
    return request


@transaction.atomic
def load() -> None:
    if AssistanceRequest.objects.filter(subject__endswith="(demo)").exists():
        return
    orgs = {o.short_name: o for o in Organisation.objects.filter(short_name__startswith="demo-")}
    users = {u.username: u for u in User.objects.filter(username__startswith="demo-")}
    police, andina, caribe = (
        orgs.get(n) for n in ("demo-police-sur", "demo-csirt-andina", "demo-cert-caribe")
    )
    liaison, analyst, responder = (users.get(n) for n in ("demo-liaison", "demo-analyst", "demo-caribe"))
    if None in (police, andina, caribe, liaison, analyst, responder):
        return  # the core and directory demos are not there
    assert police and andina and caribe and liaison and analyst and responder

    preserve = _send(
        liaison,
        police,
        "PE",
        kind=RequestKind.PRESERVATION,
        priority=Priority.EMERGENCY,
        subject="Preserve the logs of a ransomware command server (demo)",
        description=(
            "Demo data: fictional. Please preserve for 90 days the connection logs of 198.18.0.40 "
            "(a documentation range) between 1 and 3 December, pending a formal request."
        ),
        legal_basis=LEGAL_BASIS,
        legal_reference="UY-CYB-2026-0042 (demo)",
    )
    if preserve is not None and preserve.status == "submitted":
        services.acknowledge(analyst, preserve)
        services.start(analyst, preserve)
        services.post_message(analyst, preserve, "Our hosting provider confirms the logs are preserved.")

    info = _send(
        analyst,
        andina,
        "JM",
        kind=RequestKind.INFORMATION,
        priority=Priority.ROUTINE,
        subject="Who registered a phishing domain targeting our banks? (demo)",
        description="Demo data: fictional. The domain is login-banco.jm.demo.example.",
    )
    if info is not None and info.status == "submitted":
        services.acknowledge(responder, info)
        services.answer(
            responder, info, Outcome.FULFILLED, "The registrant data is in the attached note (demo)."
        )

    _send(
        responder,
        caribe,
        "MX",
        kind=RequestKind.INCIDENT_RESPONSE,
        priority=Priority.URGENT,
        subject="Help triaging an intrusion at a power-grid operator (demo)",
        description="Demo data: fictional. Indicators overlap with a campaign reported in Mexico.",
    )
