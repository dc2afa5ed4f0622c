"""Seeding constituencies from the registries' data files: the operator loads LACNIC's and
ARIN's statistics or an RPSL dump, Minga proposes an owner for each network and AS number of a
participating state, and the coordinator accepts or rejects the proposals."""

from __future__ import annotations

import gzip
import io
import shutil
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from minga.core.choices import Role
from minga.core.models import AuditEntry, User
from minga.directory import registries, resolution, services
from minga.directory.choices import OrganisationKind, ProposalBasis, ProposalStatus
from minga.directory.models import (
    ConstituencyASN,
    ConstituencyNetwork,
    ConstituencyProposal,
    MemberState,
)

DATA = Path(__file__).parent / "data"
LACNIC = DATA / "delegated-lacnic-extended-sample"
ARIN = DATA / "delegated-arin-extended-sample"
RPSL = DATA / "ripe-style-sample.db"


def _national_csirt(make_org, short_name: str, code: str):
    org = make_org(short_name)
    services.update_profile(
        None, org, kind=OrganisationKind.NATIONAL_CSIRT, state=MemberState.objects.get(code=code), sectors=[]
    )
    return org


@pytest.fixture
def network(make_org):
    """CERTuy and CERT.br, the national CSIRTs of Uruguay and Brazil; ORT, a university whose
    24/7 contact writes from ort.edu.uy; ANTEL, whose constituency holds the domain antel.net.uy.
    Argentina has no national CSIRT in Minga; Mexico has two."""
    certuy = _national_csirt(make_org, "certuy", "UY")
    certbr = _national_csirt(make_org, "certbr", "BR")
    _national_csirt(make_org, "mx-one", "MX")
    _national_csirt(make_org, "mx-two", "MX")
    ort = make_org("ort-uy")
    services.save_contact(None, ort, role="duty", name="SOC", email="soc@ort.edu.uy")
    antel = make_org("antel")
    services.add_constituency(None, antel, ["antel.net.uy"])
    return {"certuy": certuy, "certbr": certbr, "ort": ort, "antel": antel}


def _proposals() -> dict[str, ConstituencyProposal]:
    return {p.value: p for p in ConstituencyProposal.objects.select_related("organisation")}


# --- parsing ---------------------------------------------------------------------------------


def test_delegated_statistics_are_read_with_each_bad_line_named():
    report = registries.Report()
    got = list(registries.parse_delegated([LACNIC], report))
    values = [(r.kind, r.value, r.country) for r in got]
    # 8,192 addresses are one /19; 768 (not a power of two) are a /23 and a /24.
    assert ("network", "200.160.0.0/19", "BR") in values
    assert [v for k, v, c in values if c == "AR"] == ["181.0.0.0/23", "181.0.2.0/24"]
    assert ("network", "2801:80::/32", "BR") in values  # IPv6: the value is the prefix length
    assert [v for k, v, c in values if k == "asn" and c == "BR"] == ["28000", "28001", "28002", "64512"]
    assert got[0].holder == "nicbr-0001" and got[0].registry == "lacnic" and got[0].line == 6
    assert report.skipped == {"header": 4, "comment": 1, "not_delegated": 2}
    assert [(p.line, p.field) for p in report.problems] == [
        (16, "start"),  # 999.1.2.0
        (17, "type"),  # ipv5
        (18, "record"),  # too few fields
        (19, "value"),  # "lots"
        (20, "start"),  # IPv6 host bits set
        (21, "status"),  # unknown status
        (22, "cc"),  # B1
    ]
    assert "999.1.2.0" in report.problems[0].reason
    assert str(report.problems[2]).startswith("line 18, record: expected registry|cc|type")
    assert report.lines == 23


def test_gzip_files_are_read_transparently_whatever_their_name(tmp_path):
    packed = tmp_path / "delegated-latest"  # no .gz suffix: told by the first bytes
    packed.write_bytes(gzip.compress(LACNIC.read_bytes()))
    plain, zipped = registries.Report(), registries.Report()
    assert list(registries.parse_delegated([LACNIC], plain)) == list(
        registries.parse_delegated([packed], zipped)
    )
    assert zipped.problem_count == plain.problem_count == 7


def test_rpsl_dump_resolves_abuse_contacts_and_splits_ranges():
    report = registries.Report()
    got = {r.value: r for r in registries.parse_rpsl([RPSL], report)}
    # A continuation line completes the range; abuse-c names a role defined further down.
    assert got["164.73.0.0/16"].abuse_email == "abuse@ort.edu.uy"
    assert got["164.73.0.0/16"].line == 4 and got["164.73.0.0/16"].registry == "lacnic"
    # A range that is not one prefix becomes several.
    assert got["200.40.0.0/23"].abuse_email == got["200.40.2.0/24"].abuse_email == "abuse@noc.antel.net.uy"
    assert got["200.40.0.0/23"].country == "UY"  # "uy" in the dump
    # Through the organisation's abuse-c; the aut-num has no country but its organisation has.
    assert got["2801:1c::/32"].abuse_email == "cert@cert.br"
    assert got["28000"].kind == "asn" and got["28000"].country == "BR"
    assert got["28000"].holder == "ORG-NB1-LACNIC"
    assert got["190.64.0.0/24"].abuse_email == "incidentes@proveedor.com.ar"  # through mnt-irt
    assert [(p.line, p.field) for p in report.problems] == [(36, "inetnum"), (52, "attribute")]
    assert "reversed" in report.problems[0].reason
    assert report.skipped["other_object"] == 4


def test_rpsl_split_dump_finds_contacts_in_another_file(tmp_path):
    text = RPSL.read_text()
    resources, contacts = text.split("# Contacts come after")
    (tmp_path / "ripe.db.inetnum").write_text(resources)
    (tmp_path / "ripe.db.role.gz").write_bytes(gzip.compress(("#" + contacts).encode()))
    report = registries.Report()
    got = {r.value: r for r in registries.parse_rpsl(sorted(tmp_path.iterdir()), report)}
    assert got["164.73.0.0/16"].abuse_email == "abuse@ort.edu.uy"
    assert report.problems[0].file == "ripe.db.inetnum"
    assert str(report.problems[0]).startswith("ripe.db.inetnum, line 36, inetnum:")


def test_garbage_is_reported_not_raised(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(
        b"\xff\xfe\x00garbage|||\n\n+orphan continuation\n:\nlacnic|BR|asn|1|99999999|x|assigned\n"
        + "lacnic|BR|asn|\u00b2|1|x|assigned\nlacnic|BR|ipv4|1.1.1.0|1\u00b2|x|assigned\n".encode()
        + b"lacnic|BR|ipv4|1.1.1.0|"
        + b"9" * 5000
        + b"|x|assigned\n\naut-num: AS\xc2\xb2\n"
    )
    for parse in (registries.parse_delegated, registries.parse_rpsl):
        report = registries.Report()
        assert list(parse([junk], report)) == []
        assert report.problem_count >= 1


# --- proposing owners ------------------------------------------------------------------------


def test_delegated_load_proposes_national_csirts_and_skips_what_it_must(network, node_admin):
    report = registries.seed_proposals(node_admin, [LACNIC], "delegated")
    proposals = _proposals()
    assert proposals["200.160.0.0/19"].organisation == network["certbr"]
    assert proposals["200.160.0.0/19"].basis == ProposalBasis.NATIONAL_CSIRT
    assert proposals["164.73.0.0/16"].organisation == network["certuy"]
    # Argentina has no national CSIRT in Minga: listed without an owner, for the coordinator.
    assert proposals["181.0.0.0/23"].organisation is None
    assert proposals["181.0.0.0/23"].basis == ProposalBasis.NO_OWNER
    assert proposals["28001"].kind == "asn" and proposals["28001"].holder == "nicbr-0001"
    # Cuba does not take part; private ranges and AS numbers are refused with the reason.
    assert "152.206.0.0/16" not in proposals and "10.0.0.0/24" not in proposals and "64512" not in proposals
    assert report.skipped["not_member"] == 1
    assert report.skipped["duplicate"] == 1  # 164.73.0.0/16 twice in the file
    refused = {p.line: p.reason for p in report.problems if p.line in (14, 15)}
    assert "private" in refused[14] and "private use" in refused[15]
    assert report.proposed == len(proposals) == 8
    assert report.by_basis == {"national_csirt": 6, "no_owner": 2}
    entry = AuditEntry.objects.get(action="constituency_proposal.seed")
    assert entry.actor == node_admin
    assert entry.details["proposed"] == 8 and entry.details["problems"] == 9
    assert entry.details["files"] == [LACNIC.name] and entry.details["format"] == "delegated"


def test_rpsl_load_matches_abuse_mailbox_domains(network):
    registries.seed_proposals(None, [RPSL], "rpsl")
    proposals = _proposals()
    # A contact's e-mail domain, and a constituency domain covering the mailbox's subdomain.
    assert proposals["164.73.0.0/16"].organisation == network["ort"]
    assert proposals["164.73.0.0/16"].basis == ProposalBasis.ABUSE_DOMAIN
    assert proposals["164.73.0.0/16"].matched_domain == "ort.edu.uy"
    assert proposals["200.40.2.0/24"].organisation == network["antel"]
    assert proposals["200.40.2.0/24"].matched_domain == "antel.net.uy"
    # No organisation has cert.br: the national CSIRT.
    assert proposals["2801:1c::/32"].organisation == network["certbr"]
    assert proposals["2801:1c::/32"].abuse_email == "cert@cert.br"
    assert proposals["190.64.0.0/24"].organisation is None
    assert "152.206.0.0/16" not in proposals and "10.0.0.0/24" not in proposals


def test_a_state_with_two_national_csirts_gets_no_owner(network, tmp_path):
    path = tmp_path / "mx"
    path.write_text("lacnic|MX|ipv4|187.128.0.0|65536|20080101|allocated|mx-1\n")
    registries.seed_proposals(None, [path], "delegated")
    assert ConstituencyProposal.objects.get().organisation is None


def test_reloading_adds_nothing_and_known_resources_are_skipped(network):
    services.add_constituency(None, network["certbr"], ["200.160.0.0/19"])
    first = registries.seed_proposals(None, [LACNIC], "delegated")
    assert first.skipped["in_constituency"] == 1
    assert "200.160.0.0/19" not in _proposals()
    again = registries.seed_proposals(None, [LACNIC], "delegated")
    assert again.proposed == 0 and again.skipped["already_proposed"] == first.proposed
    # Another source proposing another owner for the same resource is a second proposal.
    registries.seed_proposals(None, [RPSL], "rpsl")
    assert ConstituencyProposal.objects.filter(value="164.73.0.0/16").count() == 2
    assert AuditEntry.objects.filter(action="constituency_proposal.seed").count() == 3


def test_arin_statistics_for_north_america(network, make_org, tmp_path):
    us = _national_csirt(make_org, "us-cert", "US")
    report = registries.seed_proposals(None, [ARIN], "delegated")
    proposals = _proposals()
    assert proposals["23.128.0.0/22"].organisation == us and proposals["23.128.0.0/22"].source == "arin"
    assert proposals["3356"].organisation == us
    assert proposals["24.36.0.0/20"].organisation is None  # Canada: no national CSIRT here
    assert report.skipped["not_delegated"] == 1


def test_only_node_admins_load(network, make_user):
    boss = make_user("boss", network["certuy"], Role.ORG_ADMIN)
    with pytest.raises(PermissionDenied):
        registries.seed_proposals(boss, [LACNIC], "delegated")
    with pytest.raises(ValidationError):
        registries.seed_proposals(None, [LACNIC], "csv")
    assert not ConstituencyProposal.objects.exists()


def test_a_corrupt_gzip_is_a_clear_error_and_nothing_is_written(network, tmp_path):
    broken = tmp_path / "delegated.gz"
    broken.write_bytes(gzip.compress(LACNIC.read_bytes())[:-30])
    with pytest.raises(ValidationError, match="could not be read"):
        registries.seed_proposals(None, [broken], "delegated")
    assert not ConstituencyProposal.objects.exists()
    assert not AuditEntry.objects.filter(action="constituency_proposal.seed").exists()


# --- deciding ----------------------------------------------------------------------------------


def test_accepting_adds_to_the_constituency_and_the_index_answers(network, node_admin):
    registries.seed_proposals(None, [LACNIC], "delegated")
    proposals = _proposals()
    chosen = [proposals["200.160.0.0/19"].pk, proposals["28000"].pk, proposals["164.73.0.0/16"].pk]
    services.decide_proposals(node_admin, chosen, "accept")
    assert set(
        ConstituencyNetwork.objects.filter(organisation=network["certbr"]).values_list("cidr", flat=True)
    ) == {"200.160.0.0/19"}
    assert ConstituencyASN.objects.get(organisation=network["certbr"]).asn == 28000
    assert resolution.current().resolve_ips(["200.160.1.1", "164.73.9.9"]) == [
        (network["certbr"].pk,),
        (network["certuy"].pk,),
    ]
    accepted = ConstituencyProposal.objects.filter(pk__in=chosen)
    assert {p.status for p in accepted} == {ProposalStatus.ACCEPTED}
    assert all(p.decided_by == node_admin and p.decided_at for p in accepted)
    entries = AuditEntry.objects.filter(action="constituency_proposal.accept")
    assert {e.organisation_label for e in entries} == {"certbr", "certuy"}
    assert AuditEntry.objects.filter(action="constituency.add").count() == 2 + 1  # + antel's domain


def test_accepting_for_another_organisation_and_ownerless_ones(network, node_admin, make_org):
    registries.seed_proposals(None, [LACNIC], "delegated")
    proposals = _proposals()
    ownerless = proposals["181.0.0.0/23"].pk
    with pytest.raises(ValidationError, match="names no organisation"):
        services.decide_proposals(node_admin, [ownerless, proposals["28001"].pk], "accept")
    assert ConstituencyProposal.objects.get(pk=proposals["28001"].pk).status == ProposalStatus.PENDING
    arnet = make_org("ar-net")
    services.decide_proposals(node_admin, [ownerless], "accept", arnet)
    done = ConstituencyProposal.objects.get(pk=ownerless)
    assert done.accepted_for == arnet and done.organisation is None
    assert ConstituencyNetwork.objects.filter(organisation=arnet, cidr="181.0.0.0/23").exists()
    entry = AuditEntry.objects.get(action="constituency_proposal.accept")
    assert entry.details["reassigned"] == 1
    with pytest.raises(ValidationError, match="accepted already"):
        services.decide_proposals(node_admin, [ownerless], "reject")


def test_rejecting_is_remembered_by_the_next_load(network, node_admin, make_user):
    registries.seed_proposals(None, [LACNIC], "delegated")
    pk = _proposals()["200.160.0.0/19"].pk
    boss = make_user("boss", network["certbr"], Role.ORG_ADMIN)
    with pytest.raises(PermissionDenied):
        services.decide_proposals(boss, [pk], "reject")
    services.decide_proposals(node_admin, [pk], "reject")
    assert ConstituencyProposal.objects.get(pk=pk).status == ProposalStatus.REJECTED
    assert AuditEntry.objects.get(action="constituency_proposal.reject").details["count"] == 1
    assert registries.seed_proposals(None, [LACNIC], "delegated").proposed == 0
    assert not ConstituencyNetwork.objects.filter(cidr="200.160.0.0/19").exists()
    with pytest.raises(ValidationError, match="does not exist"):
        services.decide_proposals(node_admin, [999_999], "reject")


def test_a_proposal_the_constituency_refuses_names_itself_and_nothing_changes(network, node_admin):
    # A demo organisation holds documentation ranges only: accepting a real range for it fails.
    registries.seed_proposals(None, [LACNIC], "delegated")
    proposals = _proposals()
    demo = ConstituencyProposal.objects.get(pk=proposals["200.160.0.0/19"].pk)
    demo.organisation.short_name = "demo-certbr"
    demo.organisation.save()
    chosen = [proposals["164.73.0.0/16"].pk, demo.pk]
    with pytest.raises(ValidationError) as caught:
        services.decide_proposals(node_admin, chosen, "accept")
    assert f"Proposal {demo.pk} (200.160.0.0/19)" in " ".join(caught.value.messages)
    assert not ConstituencyNetwork.objects.filter(cidr__in=["164.73.0.0/16", "200.160.0.0/19"]).exists()
    assert set(ConstituencyProposal.objects.filter(pk__in=chosen).values_list("status", flat=True)) == {
        "pending"
    }


# --- REST ------------------------------------------------------------------------------------


def test_rest_lists_filters_and_decides(network, node_admin, client, bearer):
    registries.seed_proposals(None, [LACNIC, ARIN], "delegated")
    headers = bearer(node_admin)
    page = client.get("/api/v1/directory/proposals?state=uy&limit=5", headers=headers).json()
    assert page["count"] == 1 and page["items"][0]["value"] == "164.73.0.0/16"
    assert page["items"][0]["organisation"] == "certuy" and page["items"][0]["basis"] == "national_csirt"
    br = client.get(
        "/api/v1/directory/proposals?organisation=certbr&limit=2&offset=1", headers=headers
    ).json()
    assert br["count"] == 5 and len(br["items"]) == 2
    ownerless = client.get("/api/v1/directory/proposals?unassigned=true", headers=headers).json()
    assert {i["country"] for i in ownerless["items"]} == {"AR", "CA", "US"}
    ids = [
        i["id"]
        for i in client.get("/api/v1/directory/proposals?organisation=certbr", headers=headers).json()[
            "items"
        ]
    ]
    answer = client.post(
        "/api/v1/directory/proposals/decide",
        {"ids": ids, "decision": "accept"},
        content_type="application/json",
        headers=headers,
    )
    assert answer.status_code == 200 and answer.json() == {"decision": "accept", "count": 5}
    assert resolution.current().resolve_asns([28002]) == [(network["certbr"].pk,)]
    accepted = client.get("/api/v1/directory/proposals?status=accepted", headers=headers).json()
    assert accepted["count"] == 5 and accepted["items"][0]["decided_by"] == "admin"
    assert accepted["items"][0]["accepted_for"] == "certbr"
    again = client.post(
        "/api/v1/directory/proposals/decide",
        {"ids": ids[:1], "decision": "reject"},
        content_type="application/json",
        headers=headers,
    )
    assert again.status_code == 400 and "accepted already" in again.content.decode()
    unknown = client.post(
        "/api/v1/directory/proposals/decide",
        {"ids": [ownerless["items"][0]["id"]], "decision": "accept", "organisation": "nobody"},
        content_type="application/json",
        headers=headers,
    )
    assert unknown.status_code == 400 and "nobody" in unknown.json()["detail"]
    extra = client.post(
        "/api/v1/directory/proposals/decide",
        {"ids": ids, "decision": "accept", "typo": 1},
        content_type="application/json",
        headers=headers,
    )
    assert extra.status_code == 422


def test_members_and_outsiders_cannot_read_or_decide_proposals(
    network, make_user, client, bearer, login_client
):
    registries.seed_proposals(None, [LACNIC], "delegated")
    pk = ConstituencyProposal.objects.first().pk
    member_admin = make_user("boss", network["certbr"], Role.ORG_ADMIN)
    analyst = make_user("ana", network["certuy"])
    outsider = User.objects.create_user("loner", password="x" * 20)
    for user in (member_admin, analyst, outsider):
        headers = bearer(user)
        listed = client.get("/api/v1/directory/proposals", headers=headers)
        assert listed.status_code == 403, user
        assert "164.73" not in listed.content.decode()
        decided = client.post(
            "/api/v1/directory/proposals/decide",
            {"ids": [pk], "decision": "accept"},
            content_type="application/json",
            headers=headers,
        )
        assert decided.status_code == 403
        browser = login_client(user)
        page = browser.get("/directory/proposals/")
        assert page.status_code == 403 and "164.73" not in page.content.decode()
        assert (
            browser.post("/directory/proposals/decide/", {"ids": [pk], "decision": "accept"}).status_code
            == 403
        )
        upload = SimpleUploadedFile("x", LACNIC.read_bytes())
        assert (
            browser.post("/directory/proposals/upload/", {"format": "delegated", "file": upload}).status_code
            == 403
        )
    assert client.get("/api/v1/directory/proposals").status_code == 401
    assert client.get("/directory/proposals/").status_code == 302  # to the sign-in page
    assert set(ConstituencyProposal.objects.values_list("status", flat=True)) == {"pending"}


# --- UI ----------------------------------------------------------------------------------------


def test_coordinator_uploads_reviews_and_decides_in_the_ui(network, node_admin, login_client):
    browser = login_client(node_admin)
    assert "/directory/proposals/" in browser.get("/directory/coordination/").content.decode()
    upload = SimpleUploadedFile("delegated-lacnic-extended-latest", LACNIC.read_bytes())
    page = browser.post("/directory/proposals/upload/", {"format": "delegated", "file": upload}, follow=True)
    text = page.content.decode()
    assert page.redirect_chain == [("/directory/proposals/", 302)]
    assert "8 proposed" in text and "line 16, start" in text and "country is not a participating" in text
    assert "8 proposed" not in browser.get("/directory/proposals/").content.decode()  # shown once
    entry = AuditEntry.objects.get(action="constituency_proposal.seed")
    assert entry.details["files"] == ["delegated-lacnic-extended-latest"] and entry.actor == node_admin

    listing = browser.get("/directory/proposals/?state=BR").content.decode()
    assert "200.160.0.0/19" in listing and "164.73.0.0/16" not in listing
    by_owner = browser.get("/directory/proposals/?owner=certuy").content.decode()
    assert "164.73.0.0/16" in by_owner and "Accept all 1 pending" in by_owner
    assert "181.0.0.0/23" in browser.get("/directory/proposals/?owner=-").content.decode()

    proposals = _proposals()
    done = browser.post(
        "/directory/proposals/decide/",
        {"ids": [proposals["28000"].pk, proposals["28001"].pk], "decision": "reject", "state": "BR"},
    )
    assert done.status_code == 302 and done["Location"].endswith("?status=pending&state=BR")
    assert ConstituencyProposal.objects.filter(status="rejected").count() == 2

    browser.post("/directory/proposals/decide/", {"all_for": "certbr", "decision": "accept"})
    assert set(
        ConstituencyNetwork.objects.filter(organisation=network["certbr"]).values_list("cidr", flat=True)
    ) == {
        "200.160.0.0/19",
        "2801:80::/32",
    }
    assert resolution.current().resolve_asns([28002, 28000]) == [(network["certbr"].pk,), ()]

    reassigned = browser.post(
        "/directory/proposals/decide/",
        {"ids": [proposals["181.0.0.0/23"].pk], "decision": "accept", "organisation": "antel"},
        follow=True,
    )
    assert reassigned.status_code == 200 and "1 proposals accepted" in reassigned.content.decode()
    assert ConstituencyNetwork.objects.filter(organisation=network["antel"], cidr="181.0.0.0/23").exists()
    refused = browser.post(
        "/directory/proposals/decide/",
        {"ids": [proposals["181.0.2.0/24"].pk], "decision": "accept"},
        follow=True,
    ).content.decode()
    assert "names no organisation" in refused
    assert (
        "No organisation is called"
        in browser.post(
            "/directory/proposals/decide/",
            {"ids": [proposals["181.0.2.0/24"].pk], "decision": "accept", "organisation": "nobody"},
            follow=True,
        ).content.decode()
    )


def test_an_upload_that_is_not_registry_data_is_reported(network, node_admin, login_client):
    browser = login_client(node_admin)
    upload = SimpleUploadedFile("photo.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)
    page = browser.post("/directory/proposals/upload/", {"format": "rpsl", "file": upload}, follow=True)
    assert page.status_code == 200 and "0 proposed" in page.content.decode()
    bomb = SimpleUploadedFile(
        "big.gz", gzip.compress(b"# nothing\n" * (registries.MAX_UPLOAD_TEXT_CHARS // 10 + 1))
    )
    page = browser.post("/directory/proposals/upload/", {"format": "delegated", "file": bomb}, follow=True)
    assert page.status_code == 200 and "command line" in page.content.decode()
    page = browser.post("/directory/proposals/upload/", {"format": "xml"}, follow=True)
    assert "Format:" in page.content.decode() and "File:" in page.content.decode()
    assert not ConstituencyProposal.objects.exists()


# --- CLI ---------------------------------------------------------------------------------------


def test_seed_command_reports_what_it_read(network, tmp_path):
    packed = tmp_path / "delegated-lacnic-extended-latest.gz"
    with gzip.open(packed, "wb") as out, LACNIC.open("rb") as source:
        shutil.copyfileobj(source, out)
    out = io.StringIO()
    call_command(
        "directory", "seed", str(packed), str(ARIN), "--format", "delegated", "--problems", "2", stdout=out
    )
    text = out.getvalue()
    assert "Read 32 lines" in text
    assert "Skipped 1: country is not a participating member state." in text
    assert "9 problem(s)" in text
    assert f"  {packed.name}, line 14, start: 10.0.0.0/24 is a private" in text
    assert "... and 7 more" in text
    assert "Proposed 12." in text and "National CSIRT of the state: 6" in text
    again = io.StringIO()
    call_command("directory", "seed", str(packed), str(ARIN), "--format", "delegated", stdout=again)
    assert "Proposed 0." in again.getvalue()
    with pytest.raises(CommandError, match="is not a file"):
        call_command("directory", "seed", str(tmp_path / "missing"), "--format", "rpsl")


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "-1", "9" * 30, "x" * 10000, "a\x00b", "<script>ñ😀'\"", ["1", "-1"]],
)
def test_review_forms_survive_garbage_with_proposals_present(network, node_admin, garbage):
    registries.seed_proposals(None, [LACNIC], "delegated")
    browser = Client(raise_request_exception=False)
    browser.force_login(node_admin)
    fields = ["ids", "decision", "organisation", "all_for", "status", "state", "owner", "page"]
    for url in ("/directory/proposals/decide/", "/directory/proposals/upload/"):
        assert browser.post(url, dict.fromkeys([*fields, "format", "file"], garbage)).status_code < 500
    assert browser.get("/directory/proposals/", dict.fromkeys(fields, garbage)).status_code in (200, 400)
    assert set(ConstituencyProposal.objects.values_list("status", flat=True)) == {"pending"}
