"""Who reads an incident, over random sequences of participant changes (hypothesis): the
queryset filter and the object check agree with the rule written out plainly: the TLP, the
reporter, the coordinator, and the participants added and not removed."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from minga.core import access
from minga.core import services as core
from minga.core.choices import TLP, Role
from minga.incidents import queries, services
from minga.incidents.choices import ParticipantStatus

ORGS = 4  # org 0 reports; each org has one analyst
operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "acknowledge", "decline", "coordinate"]), st.integers(1, ORGS - 1)
    ),
    max_size=8,
)


def readers_by_rule(incident, tlp: str) -> set[int]:
    """Indexes of the organisations whose analyst may read, by the rule in operators.md."""
    if tlp in (TLP.CLEAR, TLP.GREEN):
        return set(range(ORGS))
    if tlp == TLP.RED:
        return {0}  # the author, org 0's analyst, is the one named person
    reading = {
        p.organisation.short_name
        for p in incident.participants.select_related("organisation")
        if p.status
        in (
            ParticipantStatus.ADDED,
            ParticipantStatus.NOTIFIED,
            ParticipantStatus.ACKNOWLEDGED,
            ParticipantStatus.DECLINED,
        )
    }
    reading |= {incident.origin_organisation.short_name, incident.coordinating_organisation.short_name}
    return {int(name.removeprefix("p")) for name in reading}


class IncidentReaders(TestCase):
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from([TLP.GREEN, TLP.AMBER, TLP.AMBER_STRICT, TLP.RED]), operations)
    def test_readers_follow_the_participants(self, tlp: str, ops: list[tuple[str, int]]) -> None:
        orgs = [core.create_organisation(None, name=f"P{i}", short_name=f"p{i}") for i in range(ORGS)]
        users = [
            core.create_user(
                None,
                username=f"a{i}",
                email=f"a{i}@example.org",
                password="correct horse battery staple 42",
                organisation=orgs[i],
                role=Role.ANALYST,
            )
            for i in range(ORGS)
        ]
        incident = services.open_incident(users[0], orgs[0], title="t", type="ddos", tlp=tlp)
        for op, i in ops:
            try:
                if op == "add":
                    services.add_participant(users[0], incident, orgs[i])
                elif op == "remove":
                    services.remove_participant(users[0], incident, orgs[i], "r")
                elif op == "acknowledge":
                    services.acknowledge(users[i], incident)
                elif op == "decline":
                    services.decline(users[i], incident, "not ours")
                else:
                    services.update_incident(users[0], incident, coordinating_organisation=orgs[i])
            except (ValidationError, PermissionDenied):
                pass  # refused: nothing changed
            incident.refresh_from_db()
        expected = readers_by_rule(incident, tlp)
        for i, user in enumerate(users):
            fresh = type(user).objects.get(pk=user.pk)
            by_filter = queries.visible(fresh).filter(pk=incident.pk).exists()
            by_check = access.can_read(fresh, incident)
            assert by_filter == by_check == (i in expected), (tlp, ops, i, expected)
