"""The node's one webhook scheme: what a receiver checks, and where the node refuses to POST."""

from __future__ import annotations

from typing import Any

import pytest

from minga.core import webhooks


def test_a_signature_verifies_once_and_only_fresh() -> None:
    body = b'{"event": "x"}'
    signature = webhooks.sign("s3cret", 1_800_000_000, body)
    assert webhooks.verify("s3cret", signature, "1800000000", body, now=1_800_000_010)
    assert not webhooks.verify("s3cret", signature, "1800000000", body + b" ", now=1_800_000_010)
    assert not webhooks.verify("other", signature, "1800000000", body, now=1_800_000_010)
    assert not webhooks.verify("s3cret", signature, "1800000000", body, now=1_800_000_000 + 301)


@pytest.mark.parametrize(
    "url", ["https://10.1.2.3/hook", "https://169.254.169.254/latest/meta-data/", "https://[fd00::1]/hook"]
)
def test_the_node_never_posts_into_a_private_network(url: str, settings: Any) -> None:
    with pytest.raises(webhooks.DeliveryFailed, match="not a public address"):
        webhooks.post(url, "s3cret", b"{}", delivery="1", event="test")
    settings.MINGA_WEBHOOK_PRIVATE = True  # the operator may allow it: then it is only unreachable
    webhooks.check_destination(url)


def test_this_machine_and_public_hosts_pass_the_check() -> None:
    webhooks.check_destination("http://127.0.0.1:9/hook")
    webhooks.check_destination("https://8.8.8.8/hook")  # an address literal: no lookup needed
