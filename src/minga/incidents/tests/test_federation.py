"""Incidents across two real nodes on the loopback: node A is this test process (its live
server, its database), where Peru's CSIRT coordinates; node B is a ``minga serve`` process with
its own database, where Chile's CSIRT works. The incident travels to B only, Chile's analyst
acknowledges and comments there (through B's REST API), and A shows it; Brazil's CSIRT (in both
nodes' directories) sees nothing on either node; a TLP:RED incident never reaches B."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.http import Http404
from django.utils import timezone

from minga.core import access
from minga.core import services as core_services
from minga.core.choices import TLP
from minga.core.models import AuditEntry, Organisation, User
from minga.directory.models import MemberState
from minga.incidents import federation as incident_federation
from minga.incidents import queries, services
from minga.incidents.choices import ParticipantStatus, TaskStatus
from minga.incidents.metrics import incident_metrics
from minga.incidents.models import Incident
from minga.incidents.tests.conftest import Network
from minga.intel import queries as intel_queries
from minga.intel.models import StixObject
from minga.taxii import federation
from minga.taxii.models import Peer
from minga.taxii.tests.nodes import Node

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("reference_data"),
]
ORGS = ("demo-csirt-pe", "demo-csirt-cl", "demo-csirt-br")

# Node B's people: an analyst of Chile's CSIRT and one of Brazil's, each with an API token.
B_SETUP = """
from minga.core import services as core
from minga.core.models import Organisation
result = {}
for name, short in (("carla", "demo-csirt-cl"), ("beto", "demo-csirt-br")):
    user = core.create_user(None, username=name, email=f"{name}@example.org",
                            password="correct horse battery staple 42",
                            organisation=Organisation.objects.get(short_name=short), role="analyst")
    result[name] = core.create_api_token(None, user, name="test").raw
"""

# What B holds of an incident, by uuid (None: nothing).
B_MIRROR = """
from minga.incidents.models import Incident, Notification
incident = Incident.objects.filter(uuid={uuid!r}).first()
result = incident and {{
    "reference": incident.reference, "title": incident.title, "tlp": incident.tlp,
    "status": incident.status, "coordinating_node": incident.coordinating_node,
    "states": sorted(incident.affected_states.values_list("code", flat=True)),
    "coordinator": incident.coordinating_organisation.short_name,
    "recipients": sorted(o.short_name for o in incident.recipient_organisations.all()),
    "participants": sorted((p.organisation.short_name, p.status) for p in incident.participants.all()),
    "tasks": [(t.title, t.organisation.short_name, t.status) for t in incident.tasks.order_by("pk")],
    "timeline": [[e.kind, e.organisation.short_name if e.organisation else "", e.text]
                 for e in incident.timeline.order_by("created_at", "pk")],
    "notified": sorted(Notification.objects.filter(incident=incident).values_list("organisation__short_name",
                                                                                  "channel", "event")),
}}
"""


@pytest.fixture
def node_b(tmp_path: Path) -> Iterator[Node]:
    node = Node("node-b", tmp_path)
    node.start(*ORGS)
    yield node
    node.stop()


def pair(live_server: Any, node_b: Node) -> Peer:
    """A registers B (hosting Chile's CSIRT); B registers A (hosting Peru's) with A's token."""
    new = federation.add_peer(None, name="node-b", url=node_b.api_root, hosts=["demo-csirt-cl"])
    token_for_a = node_b.minga(
        "peer",
        "add",
        "node-a",
        "--url",
        f"{live_server.url}/taxii2/api/",
        "--hosts",
        "demo-csirt-pe",
        "--token",
        new.token,
    ).stdout.strip()
    return federation.set_credential(None, new.peer, token_for_a)


def mirror(node: Node, incident: Incident) -> Any:
    return node.python(B_MIRROR.format(uuid=str(incident.uuid)))


def test_an_incident_travels_to_its_participants_node_and_their_answers_come_back(
    live_server: Any, node_b: Node, network: Network, settings: Any
) -> None:
    settings.MINGA_NODE_ID = "node-a"
    tokens = node_b.python(B_SETUP)
    peer_b = pair(live_server, node_b)

    # Peru's analyst, on A, opens an AMBER incident, adds Chile's CSIRT, asks it for a task.
    incident = services.open_incident(
        network.ana,
        network.pe,
        title="Ransomware at a hospital",
        type="c2-server",
        description="C2 at 198.18.4.7",
        severity="high",
        tlp=TLP.AMBER,
    )
    services.update_incident(
        network.ana, incident, affected_states=list(MemberState.objects.filter(code="CL"))
    )
    services.add_participant(network.ana, incident, network.cl)
    task = services.add_task(network.ana, incident, title="Preserve the C2's logs", organisation=network.cl)
    services.comment(network.ana, incident, "The C2 answers on port 443.")
    versions = StixObject.objects.filter(stix_id=incident_federation.stix_id(incident))
    assert versions.count() == 3  # one per change since a participant works on B
    stored = versions.order_by("-modified").first()
    assert stored is not None and stored.tlp == TLP.AMBER and stored.origin_organisation == network.pe
    assert [o.short_name for o in stored.recipient_organisations.all()] == ["demo-csirt-cl"]

    # The rule: only the node hosting a participant receives it.
    other = federation.add_peer(
        None, name="node-c", url="http://127.0.0.1:9/c/", hosts=["demo-csirt-br"]
    ).peer
    assert not access.may_distribute(stored, federation.peer_node(other))
    assert federation.distributable(peer_b).filter(pk=stored.pk).exists()

    # B pulls: its mirror holds the participants, TLP, task and timeline; Chile is told in-app, once.
    assert "pulled 3" in node_b.minga("sync", "node-a").stdout
    b = mirror(node_b, incident)
    assert (b["reference"], b["title"], b["tlp"], b["coordinating_node"], b["coordinator"]) == (
        incident.reference,
        "Ransomware at a hospital",
        "amber",
        "node-a",
        "demo-csirt-pe",
    )
    assert b["participants"] == [["demo-csirt-cl", "added"]] and b["states"] == ["CL"]
    assert b["recipients"] == ["demo-csirt-cl"]
    assert b["tasks"] == [["Preserve the C2's logs", "demo-csirt-cl", "open"]]
    assert ["comment", "demo-csirt-pe", "The C2 answers on port 443."] in b["timeline"]
    assert b["notified"] == [["demo-csirt-cl", "in_app", "participant_added"]]

    # Brazil's analyst on B: 404; Chile's analyst reads it, acknowledges, comments, does the task.
    base = f"{node_b.url}/api/v1/incidents/{incident.reference}"
    beto = {"Authorization": f"Bearer {tokens['beto']}"}
    carla = {"Authorization": f"Bearer {tokens['carla']}"}
    assert requests.get(base, headers=beto, timeout=30).status_code == 404
    listed = requests.get(f"{node_b.url}/api/v1/intel/objects", headers=beto, timeout=30)
    assert listed.status_code == 200 and stored.stix_id not in listed.text
    seen = requests.get(base, headers=carla, timeout=30)
    assert seen.status_code == 200 and seen.json()["title"] == "Ransomware at a hospital"
    assert seen.json()["coordinating_node"] == "node-a"
    # Its page on B says where it is coordinated, offers no coordinator's form, and is a 404
    # for Brazil's analyst.
    page = node_b.python(
        f"""
        from urllib.parse import urlsplit
        from django.test import Client
        from minga.core.models import User
        result = {{}}
        for name in ("carla", "beto"):
            client = Client(HTTP_HOST=urlsplit({node_b.url!r}).netloc)
            client.force_login(User.objects.get(username=name))
            answer = client.get("/incidents/{incident.reference}/")
            result[name] = [answer.status_code, answer.content.decode()]
        """
    )
    assert page["beto"][0] == 404
    assert page["carla"][0] == 200 and "Coordinated on node node-a" in page["carla"][1]
    assert f"/incidents/{incident.reference}/edit/" not in page["carla"][1]
    # On B the incident is coordinated elsewhere: no coordinator's change is made there.
    refused = requests.post(f"{base}/status", json={"status": "triage"}, headers=carla, timeout=30)
    assert refused.status_code in (400, 403)
    answer = requests.post(f"{base}/acknowledge", json={}, headers=carla, timeout=30)
    assert answer.status_code == 200, answer.text
    acknowledged_on_b = datetime.fromisoformat(answer.json()["acknowledged_at"])
    answer = requests.post(
        f"{base}/comments", json={"text": "Logs frozen on our side."}, headers=carla, timeout=30
    )
    assert answer.status_code == 201, answer.text
    b_task = next(t for t in seen.json()["tasks"] if t["title"] == "Preserve the C2's logs")
    answer = requests.post(
        f"{base}/tasks/{b_task['id']}/status", json={"status": "done"}, headers=carla, timeout=30
    )
    assert answer.status_code == 200, answer.text

    # A pulls the three updates and applies them as Chile's CSIRT, with B's time of acknowledgement.
    outcome = federation.sync(Peer.objects.get(pk=peer_b.pk))
    assert not outcome.error and outcome.pulled == 3
    assert not AuditEntry.objects.filter(action="incident.federation_refused").exists()
    participant = incident.participants.get(organisation=network.cl)
    assert participant.status == ParticipantStatus.ACKNOWLEDGED
    assert participant.acknowledged_at is not None
    assert abs(participant.acknowledged_at - acknowledged_on_b) < timedelta(milliseconds=1)
    assert (
        participant.time_to_acknowledge is not None and participant.time_to_acknowledge.total_seconds() >= 0
    )
    timeline = [
        (e.kind, e.organisation.short_name if e.organisation else "", e.text) for e in incident.timeline.all()
    ]
    assert ("comment", "demo-csirt-cl", "Logs frozen on our side.") in timeline
    task.refresh_from_db()
    assert task.status == TaskStatus.DONE
    # Peru is told in-app of Chile's acknowledgement, once.
    assert incident.notifications.filter(event="participant_acknowledged").count() == 1
    # A second sync brings nothing more; an update handed over again is not applied twice.
    again = federation.sync(Peer.objects.get(pk=peer_b.pk))
    assert again.pulled == 0
    updates = StixObject.objects.filter(type=incident_federation.UPDATE, received_from="node-b")
    assert updates.count() == 3
    for version in updates.select_related("origin_organisation"):
        incident_federation.receive_update(Peer.objects.get(pk=peer_b.pk), version)
    assert incident.timeline.filter(text="Logs frozen on our side.").count() == 1
    assert incident.timeline.filter(details__acknowledged="demo-csirt-cl").count() == 1
    assert incident.notifications.filter(event="participant_acknowledged").count() == 1
    assert not AuditEntry.objects.filter(action="incident.federation_refused").exists()

    # B pulls A's new versions: the merged state, without Chile's own answers written twice.
    node_b.minga("sync", "node-a")
    b = mirror(node_b, incident)
    assert b["participants"] == [["demo-csirt-cl", "acknowledged"]]
    assert b["tasks"] == [["Preserve the C2's logs", "demo-csirt-cl", "done"]]
    assert [e for e in b["timeline"] if e[0] == "comment"] == [
        ["comment", "demo-csirt-pe", "The C2 answers on port 443."],
        ["comment", "demo-csirt-cl", "Logs frozen on our side."],
    ]
    assert b["notified"].count(["demo-csirt-cl", "in_app", "participant_added"]) == 1

    # Brazil's analyst on A: nothing, through the services, the intel store and HTTP.
    with pytest.raises(Http404):
        queries.get_or_404(network.bruna, incident.reference)
    assert not intel_queries.visible(network.bruna).filter(stix_id=stored.stix_id).exists()
    bruna = core_services.create_api_token(None, network.bruna, name="test").raw
    answer = requests.get(
        f"{live_server.url}/api/v1/incidents/{incident.reference}",
        headers={"Authorization": f"Bearer {bruna}"},
        timeout=30,
    )
    assert answer.status_code == 404

    # Peru moves it to triage while B is down: A's push fails, the version waits, and A pushes
    # it when B is back (B applies it in its web server, receiving the envelope).
    node_b.stop()
    services.change_status(network.ana, incident, "triage")
    assert "cannot be reached" in federation.sync(Peer.objects.get(pk=peer_b.pk)).error
    node_b.start()
    Peer.objects.filter(pk=peer_b.pk).update(next_attempt_at=None)
    back = federation.sync(Peer.objects.get(pk=peer_b.pk))
    assert not back.error and back.pushed >= 1
    assert mirror(node_b, incident)["status"] == "triage"

    # Peru takes Chile out: B's mirror learns it, and Chile's analyst reads it no more there.
    services.remove_participant(network.ana, incident, network.cl, "Handled by the hospital")
    node_b.minga("sync", "node-a")
    b = mirror(node_b, incident)
    assert b["participants"] == [["demo-csirt-cl", "removed"]] and b["recipients"] == []
    assert requests.get(base, headers=carla, timeout=30).status_code == 404

    # A TLP:RED incident with Chile as participant never leaves A.
    red = services.open_incident(
        network.ana, network.pe, title="Named people only", type="malware-distribution", tlp=TLP.RED
    )
    services.add_participant(network.ana, red, network.cl)
    assert not StixObject.objects.filter(stix_id=incident_federation.stix_id(red)).exists()
    node_b.minga("sync", "node-a")
    assert mirror(node_b, red) is None


def test_an_update_from_a_node_that_does_not_host_its_sender_is_refused(
    live_server: Any,
    node_b: Node,
    make_org: Callable[..., Organisation],
    make_user: Callable[..., User],
    settings: Any,
) -> None:
    """B (hosting only Chile's CSIRT) sends an acknowledgement in Brazil's name: A refuses and
    audits it, and Brazil's participation is unchanged."""
    settings.MINGA_NODE_ID = "node-a"
    pe, cl, br = (make_org(short) for short in ORGS)
    ana = make_user("ana", pe)
    peer_b = pair(live_server, node_b)
    incident = services.open_incident(
        ana, pe, title="Forgery target", type="malware-distribution", tlp=TLP.AMBER
    )
    services.add_participant(ana, incident, cl)
    services.add_participant(ana, incident, br)
    node_b.python(
        f"""
        from django.utils import timezone
        from minga.core.models import Organisation
        from minga.intel import services
        from minga.intel.convert import timestamp
        br = Organisation.objects.get(short_name="demo-csirt-br")
        pe = Organisation.objects.get(short_name="demo-csirt-pe")
        now = timestamp(timezone.now())
        forged = {{"type": "x-minga-incident-update", "spec_version": "2.1",
                   "id": "x-minga-incident-update--6f1d3c1e-9a0b-4c5d-8e7f-0a1b2c3d4e5f",
                   "created": now, "modified": now, "name": "forged",
                   "incident_uuid": {str(incident.uuid)!r}, "organisation": "demo-csirt-br",
                   "action": "acknowledge", "at": None}}
        result = services.import_objects(None, br, [(0, forged)], "amber", [pe], fmt="stix").accepted
        """
    )
    outcome = federation.sync(Peer.objects.get(pk=peer_b.pk))
    assert not outcome.error
    refusal = AuditEntry.objects.get(action="incident.federation_refused")
    assert refusal.details["sender"] == "demo-csirt-br"
    assert "does not work on node node-b" in refusal.details["reason"]
    assert incident.participants.get(organisation=br).status == ParticipantStatus.ADDED

    # A GREEN incident travels marked AMBER for its participants: to B (Chile), not to a node
    # hosting only Brazil, which takes no part; its own TLP travels in the extension.
    green = services.open_incident(ana, pe, title="Green case", type="c2-server", tlp=TLP.GREEN)
    services.add_participant(ana, green, cl)
    carried = StixObject.objects.get(stix_id=incident_federation.stix_id(green))
    assert carried.tlp == TLP.AMBER
    assert [o.short_name for o in carried.recipient_organisations.all()] == ["demo-csirt-cl"]
    other = federation.add_peer(
        None, name="node-c", url="http://127.0.0.1:9/c/", hosts=["demo-csirt-br"]
    ).peer
    assert not access.may_distribute(carried, federation.peer_node(other))
    assert federation.distributable(Peer.objects.get(pk=peer_b.pk)).filter(pk=carried.pk).exists()
    assert '"tlp":"green"' in carried.raw.replace(" ", "")


def test_a_mirror_keeps_its_coordinators_reference_and_local_numbering_skips_it(
    make_org: Callable[..., Organisation], make_user: Callable[..., User]
) -> None:
    """A mirror holds the coordinating node's reference; this node's next incident of the year
    takes the next free number instead of failing on the taken one."""
    pe, cl = make_org("demo-csirt-pe"), make_org("demo-csirt-cl")
    carla = make_user("carla", cl)
    year = timezone.now().year
    Incident.objects.create(
        reference=f"MNG-{year}-000001",
        title="Mirrored",
        taxonomy="malicious-code",
        type="c2-server",
        origin_organisation=pe,
        coordinating_organisation=pe,
        tlp=TLP.AMBER,
        coordinating_node="node-a",
    )
    own = services.open_incident(carla, cl, title="Chile's own", type="c2-server")
    assert own.reference == f"MNG-{year}-000002"
    # Node-wide metrics count the incidents coordinated here: the mirror counts on its node.
    rows = incident_metrics(None, node_wide=True, min_group_size=1).rows
    assert sum(row.incidents for row in rows) == 1
