"""A demo feed for the demo network: "demo-scan-report", owned by the network's hub, with one
small run whose events route to demo organisations through their constituencies (benchmark and
documentation ranges only, RFC 2544 / RFC 5737 / RFC 3849), one unrouted event and two bad
lines kept as dead letters. Loading again changes nothing."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from django.utils import timezone

from minga.core.choices import TLP
from minga.core.models import Organisation
from minga.directory.models import ConstituencyNetwork
from minga.pipeline import services
from minga.pipeline.choices import RunSource
from minga.pipeline.models import Feed

FEED = "demo-scan-report"
CATEGORIES = ("scan", "bot", "open-resolver", "scan")


def lines() -> list[str]:
    """CSV lines: a few hosts in the first demo networks, one documentation address no one
    answers for, and two impossible lines."""
    start = (timezone.now() - timedelta(hours=6)).replace(minute=0, second=0, microsecond=0)
    networks = ConstituencyNetwork.objects.filter(
        organisation__short_name__startswith="demo-", cidr__contains="."
    ).order_by("organisation__short_name", "cidr")[:8]
    out = ["timestamp,ip,port,category"]
    n = 0
    for network in networks:
        block = ipaddress.ip_network(network.cidr)
        for offset, port in ((10, 22), (77, 445)):
            moment = start + timedelta(minutes=7 * n)
            out.append(
                f"{moment:%Y-%m-%dT%H:%M:%SZ},{block[offset]},{port},{CATEGORIES[n % len(CATEGORIES)]}"
            )
            n += 1
    out.append(f"{start:%Y-%m-%dT%H:%M:%SZ},203.0.113.250,23,scan")  # TEST-NET-3: nobody's
    out.append(f"{start:%Y-%m-%dT%H:%M:%SZ},300.1.2.3,23,scan")  # an impossible address
    out.append("yesterday,198.18.0.1,23,scan")  # an impossible time
    return out


def load() -> None:
    hub = Organisation.objects.filter(short_name="demo-hub").first()
    if hub is None or Feed.objects.filter(name=FEED).exists():
        return
    feed = services.register_feed(
        None,
        hub,
        name=FEED,
        description="Demo: a daily scanning report (fictional), routed to the teams it concerns.",
        mapping={"time": "timestamp", "source_ip": "ip", "source_port": "port", "classification": "category"},
        taxonomy_mapping={"scan": "scanner", "bot": "infected-system", "open-resolver": "ddos-amplifier"},
        classification_type="scanner",
        default_tlp=TLP.AMBER,
    )
    body = ("\n".join(lines()) + "\n").encode()
    run = services.start_run(None, feed, [body], "demo-scan-report.csv", source=RunSource.DEMO, queue=False)
    services.run_inline(run)
