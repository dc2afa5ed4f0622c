"""An incident for the demo network: ransomware hitting a hospital network in Peru, reported by
CSIRT Andina, whose command servers sit in Jamaica and Brazil. The observables come from the
directory demo's constituencies, which hold only documentation and benchmarking ranges
(RFC 2544, 5737) and names under .example (RFC 2606). CERT Caribe acknowledged, Brazil's
national CSIRT was added and notified by e-mail (the console, unless the node sends mail), and a
task and a comment show the shared timeline. Fictional like the rest of the demo; loading again
changes nothing."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from minga.core.choices import TLP
from minga.core.models import Organisation, User
from minga.directory.models import ConstituencyNetwork, MemberState, Sector
from minga.incidents import services
from minga.incidents.choices import IncidentStatus
from minga.incidents.models import Incident

TITLE = "Ransomware in a hospital network, command servers abroad (demo)"


def _address_in(organisation: Organisation, offset: int) -> str | None:
    """An address inside the organisation's first IPv4 network (a demo range)."""
    cidr = (
        ConstituencyNetwork.objects.filter(organisation=organisation, version=4)
        .order_by("cidr")
        .values_list("cidr", flat=True)
        .first()
    )
    if cidr is None:
        return None
    network = ipaddress.ip_network(cidr)
    return str(network.network_address + offset)


@transaction.atomic
def load() -> None:
    if Incident.objects.filter(title=TITLE).exists():
        return
    orgs = {o.short_name: o for o in Organisation.objects.filter(short_name__startswith="demo-")}
    andina, caribe, brazil = (orgs.get(n) for n in ("demo-csirt-andina", "demo-cert-caribe", "demo-csirt-br"))
    analyst = User.objects.filter(username="demo-analyst").first()
    responder = User.objects.filter(username="demo-caribe").first()
    if andina is None or caribe is None or brazil is None or analyst is None:
        return  # the core and directory demos are not there
    addresses = [_address_in(o, n) for o, n in ((andina, 40), (caribe, 66), (brazil, 77))]
    if None in addresses:
        return
    incident = services.open_incident(
        analyst,
        andina,
        title=TITLE,
        description=(
            "Demo data: fictional. Patient-record servers of a public hospital are encrypted; the "
            "ransomware calls command servers hosted in Jamaica and Brazil."
        ),
        type="system-compromise",
        severity="critical",
        tlp=TLP.AMBER,
        pap="amber",
        affected_states=MemberState.objects.filter(code="PE"),
        affected_sectors=Sector.objects.filter(slug="health"),
        observables=[*(a for a in addresses if a), "update.jm.demo.example"],
    )
    services.change_status(analyst, incident, IncidentStatus.TRIAGE)
    services.propose_participants(analyst, incident)
    services.add_participant(analyst, incident, caribe)
    services.add_participant(analyst, incident, brazil)
    if responder is not None:
        services.acknowledge(responder, incident, caribe)
        services.comment(
            responder,
            incident,
            "Demo: the Jamaican address belongs to a hosting provider; we asked it to isolate the server.",
        )
    services.add_task(
        analyst,
        incident,
        title="Take the command server in Brazil offline and keep its logs (demo)",
        organisation=brazil,
        due_at=timezone.now() + timedelta(days=2),
    )
    services.change_status(analyst, incident, IncidentStatus.IN_PROGRESS)
    from minga.intel.models import StixObject

    indicator = (
        StixObject.objects.filter(is_latest=True, origin_organisation=andina, type="indicator")
        .order_by("stix_id")
        .values_list("stix_id", flat=True)
        .first()
    )
    if indicator is not None:
        services.link_object(analyst, incident, indicator)
