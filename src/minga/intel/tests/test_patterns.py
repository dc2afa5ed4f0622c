"""The fast path for indicator patterns agrees with the OASIS pattern validator."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stix2patterns.validator import run_validator

from minga.intel import observables, stix


def _fast_verdict(pattern: str) -> bool | None:
    return stix._simple_pattern_verdict(pattern)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.from_regex(stix.SIMPLE_PATTERN, fullmatch=True))
def test_what_the_fast_path_accepts_the_oasis_validator_accepts(pattern: str) -> None:
    if "\x00" in pattern:
        return  # refused before any pattern is looked at
    verdict = _fast_verdict(pattern)
    if verdict is True:
        assert run_validator(pattern, stix_version="2.1") == [], pattern


@pytest.mark.parametrize(
    "pattern",
    [
        "[file:hashes.'SHA-256' = 'x']",
        "[file:hashes.MD5 = 'abc']",
        "[1a:value = 'x']",
        "[ipv4-addr:9value = 'x']",
        "[ipv4-addr:value.0 = 'x']",
        "[ipv4-addr:value = '1.2.3.4'",
        "[ipv4-addr:value = 'it's']",
    ],
)
def test_bad_patterns_are_refused(pattern: str) -> None:
    obj = {"pattern": pattern, "pattern_type": "stix"}
    with pytest.raises(stix.Invalid, match="not a valid STIX pattern"):
        stix.check_pattern(obj)


@pytest.mark.parametrize(
    ("pattern", "found"),
    [
        ("[ipv4-addr:value = '198.51.100.7']", {("ipv4-addr", "198.51.100.7")}),
        ("[file:hashes.'SHA-256' = '" + "AB" * 32 + "']", {("sha-256", "ab" * 32)}),
        ("[email-addr:value = 'it\\'s@Example.ORG']", {("email-addr", "it's@example.org")}),
        (
            "[domain-name:value = 'A.example' OR domain-name:value = 'b.EXAMPLE'] AND [url:value = 'x']",
            {("domain-name", "a.example"), ("domain-name", "b.example")},
        ),
        ("[ipv4-addr:value != '198.51.100.7']", set()),
    ],
)
def test_observables_of_patterns(pattern: str, found: set) -> None:
    assert run_validator(pattern, stix_version="2.1") == []
    assert set(observables.from_pattern(pattern)) == found
