"""The formats beside CSV and JSON lines: IntelMQ events, STIX 2.1 bundles, MISP feeds. Each
record becomes an event or a dead letter with its field and reason; the rest of the run goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minga.core.choices import TLP
from minga.intel import stix
from minga.pipeline import services
from minga.pipeline.choices import RunStatus
from minga.pipeline.models import DeadLetter, Event, EventRecipient
from minga.pipeline.tests.helpers import constituency, ingest

pytestmark = pytest.mark.django_db


def _letters(run):
    return {d.line: (d.field, d.reason) for d in DeadLetter.objects.filter(run=run)}


# --- IntelMQ ----------------------------------------------------------------------------------

INTELMQ_LINES = [
    {
        "feed.name": "Shadowserver Drone",
        "time.source": "2026-01-10T10:00:00+00:00",
        "time.observation": "2026-01-10T11:00:00+00:00",
        "source.ip": "192.0.2.10",
        "source.port": 4444,
        "source.asn": 64500,
        "source.geolocation.cc": "at",
        "destination.ip": "198.51.100.1",
        "destination.port": 80,
        "destination.fqdn": "C2.Example.NET",
        "classification.taxonomy": "malicious-code",
        "classification.type": "infected-system",
        "raw": "aWdub3JlZA==",
    },
    {  # no time.source: the observation time; hierarchical output; IntelMQ's own "blacklist" type
        "time": {"observation": "2026-01-10T12:00:00Z"},
        "source": {"fqdn": "bad.example.org", "url": "http://bad.example.org/x"},
        "classification": {"taxonomy": "other", "type": "blacklist"},
    },
    {  # a taxonomy that does not hold the type
        "source.ip": "192.0.2.11",
        "classification.taxonomy": "vulnerable",
        "classification.type": "phishing",
    },
    {"source.ip": "192.0.2.300", "classification.type": "scanner"},  # impossible IP
    {"source.ip": "192.0.2.12", "classification.type": "not-a-type"},
]


def _intelmq_feed(owner, **fields):
    return services.register_feed(
        None, owner, name="intelmq-out", format="intelmq", classification_type="undetermined", **fields
    )


@pytest.mark.parametrize("as_array", [False, True])
def test_intelmq_events_one_a_line_or_an_array(make_org, as_array):
    team = constituency(make_org("demo-a"), "192.0.2.0/24")
    feed = _intelmq_feed(make_org("hub"))
    if as_array:
        text = "[\n" + ",\n".join(json.dumps(e, indent=1) for e in INTELMQ_LINES) + "\n]\n"
    else:
        text = "\n".join(json.dumps(e) for e in INTELMQ_LINES) + "\nnot json\n"
    run = ingest(feed, text, chunk_lines=2)
    assert run.status == RunStatus.DONE
    assert bool(run.lines_path) is as_array
    invalid = 4 if not as_array else 3
    assert (run.read, run.parsed, run.invalid, run.routed, run.unrouted) == (
        len(INTELMQ_LINES) + (0 if as_array else 1),
        2,
        invalid,
        1,
        1,
    )
    first = Event.objects.get(line=1)
    assert first.time.isoformat() == "2026-01-10T10:00:00+00:00"
    assert (first.source_ip, first.source_port, first.source_asn, first.source_country) == (
        "192.0.2.10",
        4444,
        64500,
        "AT",
    )
    assert (first.destination_ip, first.destination_port, first.destination_fqdn) == (
        "198.51.100.1",
        80,
        "c2.example.net",
    )
    assert (first.classification_taxonomy, first.classification_type) == ("malicious-code", "infected-system")
    assert list(EventRecipient.objects.filter(event=first).values_list("organisation", flat=True)) == [
        team.pk
    ]
    second = Event.objects.get(line=2)
    assert second.time.isoformat() == "2026-01-10T12:00:00+00:00"
    assert (second.source_fqdn, second.source_url) == ("bad.example.org", "http://bad.example.org/x")
    assert (second.classification_taxonomy, second.classification_type) == ("other", "other")
    letters = _letters(run)
    assert letters[3][0] == "classification_taxonomy" and "RSIT puts it under fraud" in letters[3][1]
    assert letters[4][0] == "source_ip" and "not an IP address" in letters[4][1]
    assert letters[5][0] == "classification_type" and "not an RSIT type" in letters[5][1]
    if not as_array:
        assert "Not valid JSON" in letters[6][1]


def test_an_intelmq_array_cut_short_keeps_the_events_before_the_cut(make_org):
    feed = _intelmq_feed(make_org("hub"))
    text = json.dumps(INTELMQ_LINES[:2])[:-40]
    run = ingest(feed, text)
    assert run.status == RunStatus.DONE and run.parsed == 1
    assert "not valid JSON after record 1" in run.message


def test_an_intelmq_array_of_garbage_fails_the_run_with_the_reason(make_org):
    run = ingest(_intelmq_feed(make_org("hub")), "[{]")
    assert run.status == RunStatus.FAILED and "not valid JSON" in run.message
    assert Event.objects.count() == 0


# --- STIX 2.1 ---------------------------------------------------------------------------------


def _indicator(n: int, pattern: str, **extra):
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
        "created": "2026-01-09T00:00:00.000Z",
        "modified": "2026-01-09T00:00:00.000Z",
        "valid_from": "2026-01-10T08:00:00Z",
        "pattern_type": "stix",
        "pattern": pattern,
        **extra,
    }


def _bundle(*objects) -> str:
    document = {"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000", "objects": objects}
    return json.dumps(document, indent=2)


def test_a_stix_bundle_indicators_and_observables_become_events(make_org):
    team = constituency(make_org("demo-a"), "192.0.2.0/24", "bank.example")
    feed = services.register_feed(
        None,
        make_org("hub"),
        name="stix-feed",
        format="stix",
        classification_type="c2-server",
        taxonomy_mapping={"malicious-activity": "malware-distribution"},
        default_tlp=TLP.AMBER,
    )
    bundle = _bundle(
        {"type": "identity", "spec_version": "2.1", "id": "identity--00000000-0000-4000-8000-000000000001"},
        _indicator(1, "[ipv4-addr:value = '192.0.2.7']", indicator_types=["malicious-activity"]),
        _indicator(2, "[ipv4-addr:value = '192.0.2.8'] OR [domain-name:value = 'Login.Bank.Example']"),
        _indicator(3, "[url:value = 'http://evil.example/a\\'b']"),
        _indicator(4, "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']"),
        _indicator(5, "[ipv4-addr:value = '192.0.2.9' AND ipv4-addr:value = '192.0.2.10']"),
        _indicator(6, "[ipv4-addr:value = "),
        _indicator(7, "alert tcp any any", pattern_type="snort"),
        _indicator(
            8, "[ipv4-addr:value = '192.0.2.11']", object_marking_refs=[stix.TLP2_MARKING_IDS[TLP.RED]]
        ),
        {
            "type": "ipv6-addr",
            "spec_version": "2.1",
            "id": "ipv6-addr--00000000-0000-4000-8000-000000000001",
            "value": "2001:DB8::5",
        },
        {
            "type": "email-addr",
            "spec_version": "2.1",
            "id": "email-addr--00000000-0000-4000-8000-000000000001",
            "value": "ceo@bank.example",
        },
        {
            "type": "file",
            "spec_version": "2.1",
            "id": "file--00000000-0000-4000-8000-000000000001",
            "name": "x",
        },
        {
            "type": "relationship",
            "spec_version": "2.1",
            "id": "relationship--00000000-0000-4000-8000-000000000001",
        },
    )
    run = ingest(feed, bundle, chunk_lines=4, name="bundle.json")
    assert run.status == RunStatus.DONE, run.message
    assert "identity 1" in run.message and "relationship 1" in run.message
    # 11 candidates; the OR pattern is two records: 12 records, 6 events, 6 dead letters
    assert (run.read, run.parsed, run.invalid) == (12, 6, 6)
    events = {e.line: e for e in Event.objects.all()}
    assert events[1].source_ip == "192.0.2.7" and events[1].classification_type == "malware-distribution"
    assert events[1].time.isoformat() == "2026-01-10T08:00:00+00:00"
    assert events[2].source_ip == "192.0.2.8" and events[2].classification_type == "c2-server"
    assert events[3].source_fqdn == "login.bank.example"
    assert events[4].source_url == "http://evil.example/a'b" and events[4].source_fqdn == "evil.example"
    assert events[10].source_ip == "2001:db8::5"
    assert events[11].source_fqdn == "bank.example"
    assert {e.tlp for e in events.values()} == {TLP.AMBER}
    letters = _letters(run)
    assert letters[5][0] == "pattern" and "compares file:hashes.MD5" in letters[5][1]
    assert letters[6][0] == "pattern" and "equality comparisons joined by OR" in letters[6][1]
    assert letters[7][0] == "pattern" and "not a valid STIX pattern" in letters[7][1]
    assert letters[8][0] == "pattern_type" and "snort" in letters[8][1]
    assert letters[9][0] == "object_marking_refs" and "TLP:RED" in letters[9][1]
    assert letters[12][0] == "type" and "file" in letters[12][1]
    raw = json.loads(DeadLetter.objects.get(run=run, line=9).raw)
    assert raw["id"].endswith("000000000008")
    routed = set(EventRecipient.objects.values_list("event__line", flat=True))
    assert routed == {1, 2, 3, 11} and set(EventRecipient.objects.values_list("organisation", flat=True)) == {
        team.pk
    }


def test_what_is_not_a_stix_bundle_fails_the_run_with_the_reason(make_org):
    feed = services.register_feed(None, make_org("hub"), name="stix-feed", format="stix")
    for text, reason in (
        ('{"type": "report", "objects": []}', "not a STIX bundle"),
        ("[1, 2]", "not a STIX bundle"),
        ("\x89PNG garbage", "not valid JSON"),
        ('{"hello": 1}', "not a STIX bundle"),
    ):
        run = ingest(feed, text)
        assert run.status == RunStatus.FAILED and reason in run.message, run.message
    for text in (
        '{"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000"}',
        '{"objects": []}',
    ):
        run = ingest(feed, text)
        assert run.status == RunStatus.DONE and "nothing that could be an event" in run.message
    late = ingest(feed, '{"objects": [{"type": "domain-name", "value": "x.example"}], "type": "bundle"}')
    assert (late.status, late.parsed) == (RunStatus.DONE, 1)
    assert Event.objects.count() == 1


def test_dead_letters_of_a_bundle_are_read_again_after_the_mapping_is_fixed(make_org):
    feed = services.register_feed(None, make_org("hub"), name="stix-feed", format="stix")
    run = ingest(feed, _bundle(_indicator(1, "[ipv4-addr:value = '192.0.2.7']", indicator_types=["bot"])))
    assert (run.parsed, run.invalid) == (1, 0)  # an unknown indicator type: the feed's default type
    tlp_run = ingest(
        feed,
        _bundle(
            _indicator(
                2,
                "[ipv4-addr:value = '192.0.2.8']",
                object_marking_refs=[stix.TLP2_MARKING_IDS["amber+strict"]],
            )
        ),
    )
    assert tlp_run.invalid == 1
    services.change_feed(None, feed, default_tlp=TLP.AMBER_STRICT)
    result = services.reprocess_dead_letters(None, tlp_run)
    assert result["stored"] == 1 and Event.objects.filter(run=tlp_run, source_ip="192.0.2.8").exists()


# --- MISP -------------------------------------------------------------------------------------


def _misp_event(**extra):
    return {
        "Event": {
            "uuid": "5f6c1b1a-0000-4000-8000-000000000001",
            "info": "Phishing wave",
            "date": "2026-01-09",
            "timestamp": "1768032000",
            "distribution": "1",
            "Tag": [{"name": "tlp:green"}],
            "Attribute": [
                {
                    "type": "ip-dst",
                    "value": "192.0.2.20",
                    "category": "Network activity",
                    "timestamp": "1768039200",
                },
                {
                    "type": "domain|ip",
                    "value": "mail.bank.example|198.51.100.9",
                    "category": "Network activity",
                    "Tag": [{"name": 'rsit:fraud="phishing"'}],
                },
                {"type": "ip-src|port", "value": "192.0.2.21|8080", "category": "Network activity"},
                {"type": "url", "value": "https://phish.example/login", "category": "Payload delivery"},
                {"type": "email-src", "value": "boss@bank.example", "category": "Payload delivery"},
                {"type": "AS", "value": "AS64501", "category": "Network activity"},
                {"type": "md5", "value": "d41d8cd98f00b204e9800998ecf8427e", "category": "Payload delivery"},
                {"type": "ip-dst", "value": "not-an-ip", "category": "Network activity"},
                {"type": "ip-dst", "value": "192.0.2.22", "deleted": True},
                {"type": "ip-dst", "value": "192.0.2.23", "Tag": [{"name": "tlp:red"}]},
            ],
            "Object": [
                {"name": "domain-ip", "Attribute": [{"type": "hostname", "value": "www.bank.example"}]},
            ],
            **extra,
        }
    }


def test_a_misp_event_attributes_become_events(make_org):
    team = constituency(make_org("demo-a"), "192.0.2.0/24", "bank.example", "64501")
    feed = services.register_feed(
        None,
        make_org("hub"),
        name="misp-feed",
        format="misp",
        default_tlp=TLP.GREEN,
        classification_type="malware-distribution",
        taxonomy_mapping={"network activity": "c2-server"},
    )
    run = ingest(feed, json.dumps(_misp_event(), indent=2), chunk_lines=4, name="event.json")
    assert run.status == RunStatus.DONE, run.message
    assert (run.read, run.parsed, run.invalid) == (11, 7, 4)
    events = {e.line: e for e in Event.objects.all()}
    assert events[1].source_ip == "192.0.2.20" and events[1].classification_type == "c2-server"
    assert events[1].time.isoformat() == "2026-01-10T10:00:00+00:00"
    assert (events[2].source_fqdn, events[2].source_ip, events[2].classification_type) == (
        "mail.bank.example",
        "198.51.100.9",
        "phishing",
    )
    assert events[2].time.isoformat() == "2026-01-10T08:00:00+00:00"  # the event's timestamp
    assert (events[3].source_ip, events[3].source_port) == ("192.0.2.21", 8080)
    assert events[4].source_url == "https://phish.example/login"
    assert events[4].classification_type == "malware-distribution"  # "Payload delivery" is not mapped
    assert events[5].source_fqdn == "bank.example"
    assert events[6].source_asn == 64501
    assert events[11].source_fqdn == "www.bank.example"
    letters = _letters(run)
    assert letters[7][0] == "type" and "md5" in letters[7][1]
    assert letters[8][0] == "source_ip"
    assert letters[9][0] == "deleted"
    assert letters[10][0] == "Tag" and "TLP:RED" in letters[10][1]
    assert set(EventRecipient.objects.values_list("organisation", flat=True)) == {team.pk}
    assert Event.objects.filter(is_routed=True).count() == 6  # all but the phishing URL's host


def test_a_misp_list_of_events_and_what_is_not_misp(make_org):
    feed = services.register_feed(None, make_org("hub"), name="misp-feed", format="misp", default_tlp="amber")
    first, second = _misp_event(), _misp_event(uuid="5f6c1b1a-0000-4000-8000-000000000002", Attribute=[])
    second["Event"]["Object"] = []
    run = ingest(feed, json.dumps([first, second, "x"]))
    assert run.status == RunStatus.DONE and run.read == 11
    assert "events without attributes 1" in run.message and "not a MISP event 1" in run.message
    run = ingest(feed, json.dumps({"response": [first]}))
    # TLP:RED still refused under a TLP:AMBER feed; the rest are the first run's events again
    assert (run.read, run.parsed, run.invalid, run.duplicates) == (11, 7, 4, 7)
    bad = ingest(feed, '{"hello": 1}')
    assert bad.status == RunStatus.FAILED and "not a MISP event" in bad.message


def test_a_document_feed_kept_file_and_lines_file_go_with_the_feed(make_org):
    feed = services.register_feed(None, make_org("hub"), name="misp-feed", format="misp")
    run = ingest(feed, json.dumps(_misp_event()))
    raw, lines = Path(run.path), Path(run.lines_path)
    assert raw.is_file() and lines.is_file() and lines.suffix == ".lines"
    rerun = services.rerun(None, run, queue=False)
    assert Path(rerun.lines_path).is_file()
    services.delete_feed(None, feed)
    assert not raw.exists() and not lines.exists()


def test_odd_documents_give_dead_letters_not_crashes(make_org):
    feed = services.register_feed(None, make_org("hub"), name="misp-feed", format="misp")
    odd = {"Event": {"info": "odd", "Attribute": 5, "Object": [{"name": "x", "Attribute": [1, "two"]}, 7]}}
    run = ingest(feed, json.dumps([odd, {"Event": {"Attribute": [3, {"type": "ip-dst", "value": 4}]}}]))
    assert run.status == RunStatus.DONE, run.message
    assert (run.read, run.parsed, run.invalid) == (4, 0, 4)
    reasons = {reason for _field, reason in _letters(run).values()}
    assert "Not a MISP attribute with its event." in reasons
    assert any("4 is not an IP address" in r for r in reasons)
    stix_feed = services.register_feed(None, make_org("other"), name="stix-feed", format="stix")
    deep = '{"type": "ipv4-addr", "value": "192.0.2.1", "x": ' + '{"a": ' * 3000 + "1" + "}" * 3001
    big = {"type": "ipv4-addr", "value": "192.0.2.10", "x_big": 2**70}
    text = _bundle({"type": "ipv4-addr", "value": "192.0.2.9"}, "DEEP", 5, big).replace('"DEEP"', deep)
    run = ingest(stix_feed, text)
    # The JSON reader stops at a number past 64 bits: what came before it is read, and said.
    assert run.status == RunStatus.DONE and "integer overflow" in run.message, run.message
    assert "The 3 records before it are read." in run.message
    assert list(Event.objects.filter(run=run).values_list("source_ip", flat=True)) == ["192.0.2.9"]
    letters = _letters(run)
    assert set(letters) == {2, 3} and "not a JSON object" in letters[3][1]
    assert "cannot be read" in letters[2][1] or "Not valid JSON" in letters[2][1]


def test_intelmq_events_naming_only_urls_are_not_taken_for_duplicates(make_org):
    feed = _intelmq_feed(make_org("hub"))
    assert "source_url" in feed.dedup_fields and "source_fqdn" in feed.dedup_fields
    lines = [
        {
            "time.source": "2026-01-10T10:00:00Z",
            "source.url": f"http://phish{n}.example/",
            "classification.type": "phishing",
        }
        for n in range(3)
    ]
    run = ingest(feed, "\n".join(json.dumps(line) for line in lines) + "\n" + json.dumps(lines[0]))
    assert (run.read, run.parsed, run.duplicates) == (4, 4, 1)
    assert Event.objects.filter(run=run).count() == 3
