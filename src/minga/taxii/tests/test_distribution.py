"""The distribution rule (what may leave this node for a peer): the queryset filter and the
object check agree with each other and with the rule as docs/federation.md states it, over
random stores and peers (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from minga.core import access
from minga.core.choices import TLP
from minga.core.models import Organisation
from minga.intel.models import StixObject

NODES = ("", "node-p", "node-q")  # blank: shared on this node


def allowed_by_definition(obj: StixObject, recipients: set[int], peer: access.PeerNode) -> bool:
    """docs/federation.md's table, written out plainly and independently of the code."""
    if peer.node_id in (obj.origin_node, obj.received_from):
        return False  # never back where it came from
    if obj.tlp == TLP.CLEAR:
        return True
    if obj.tlp == TLP.GREEN:
        return peer.is_member_node
    concerned = bool(({obj.origin_organisation_id} | recipients) & peer.hosted_organisation_ids)
    if obj.tlp == TLP.AMBER:
        return concerned
    if obj.tlp == TLP.AMBER_STRICT:
        return concerned and obj.origin_node == "" and obj.received_from == ""
    return False  # RED, or anything unknown


store = st.fixed_dictionaries(
    {
        "objects": st.lists(
            st.tuples(
                st.sampled_from(TLP.values),
                st.integers(0, 3),  # origin organisation
                st.sets(st.integers(0, 3), max_size=3),  # recipient organisations
                st.sampled_from(NODES),  # origin node
                st.sampled_from(NODES),  # received from
            ),
            min_size=1,
            max_size=8,
        ),
        "peers": st.lists(
            st.tuples(
                st.sampled_from(("node-p", "node-q", "node-r")), st.sets(st.integers(0, 3)), st.booleans()
            ),
            min_size=1,
            max_size=3,
        ),
    }
)


class DistributionRuleProperties(TestCase):
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(store)
    def test_filter_and_check_agree_with_the_definition(self, spec: dict) -> None:
        orgs = [Organisation.objects.create(name=f"O{i}", short_name=f"o{i}") for i in range(4)]
        when = datetime(2026, 1, 1, tzinfo=UTC)
        rows: list[tuple[StixObject, set[int]]] = []
        for n, (tlp, origin, recipients, origin_node, received_from) in enumerate(spec["objects"]):
            obj = StixObject.objects.create(
                stix_id=f"indicator--00000000-0000-4000-8000-{n:012d}",
                type="indicator",
                modified=when,
                date_added=when,
                raw="{}",
                tlp=tlp,
                origin_organisation=orgs[origin],
                origin_node=origin_node,
                received_from=received_from,
            )
            obj.recipient_organisations.set(orgs[i] for i in recipients)
            rows.append((obj, {orgs[i].pk for i in recipients}))
        for node_id, hosted, member in spec["peers"]:
            peer = access.PeerNode(node_id, frozenset(orgs[i].pk for i in hosted), member)
            by_filter = set(
                StixObject.objects.filter(access.distribution_filter(StixObject, peer)).values_list(
                    "pk", flat=True
                )
            )
            by_check = {obj.pk for obj, _r in rows if access.may_distribute(obj, peer)}
            by_definition = {
                obj.pk for obj, recipients in rows if allowed_by_definition(obj, recipients, peer)
            }
            assert by_filter == by_definition, (peer, by_filter, by_definition)
            assert by_check == by_definition, (peer, by_check, by_definition)
            # The filter never repeats a row, whatever the number of hosted recipients.
            assert StixObject.objects.filter(access.distribution_filter(StixObject, peer)).count() == len(
                by_filter
            )
