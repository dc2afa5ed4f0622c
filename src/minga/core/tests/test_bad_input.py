"""Invalid input never causes a server error.

Every operation of the REST API (read from the API's own OpenAPI document) and every page of
the core UI (read from ``minga.core.urls``) is sent malformed JSON, wrong types, unknown fields,
empty and oversized bodies, bodies of the wrong content type and garbage query strings. The API
answers each with a 4xx and a JSON body whose ``detail`` says what is wrong; a page may also
re-render its form with errors or redirect, but never answers 5xx.

Both sides are discovered at run time, so an endpoint added later is covered without touching
this file. One test per endpoint sends all the cases and lists every failing one, named by
method, URL and case.
"""

from __future__ import annotations

import io
import json
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote, urlencode, urljoin, urlsplit

import pyotp
import pytest
from django.conf import settings
from django.core.signals import got_request_exception
from django.http import HttpResponse
from django.template.base import Template
from django.test import Client, override_settings
from django.test.client import encode_multipart
from django.test.utils import _TestState
from django.urls import URLPattern, resolve, reverse
from django.urls.exceptions import Resolver404
from django.utils import timezone

from minga.api import api
from minga.core import services, totp, views
from minga.core import urls as core_urls
from minga.core.choices import Role
from minga.core.models import ApiToken, Membership, Organisation, User
from minga.directory import urls as directory_urls
from minga.incidents import urls as incidents_urls
from minga.intel import urls as intel_urls
from minga.pipeline import urls as pipeline_urls

HTTP_METHODS = ("get", "post", "put", "patch", "delete")
JSON = "application/json"
SMALL_LIMIT = 1024  # MINGA_MAX_REQUEST_BYTES while sending the oversized bodies

# --- the world every test starts from --------------------------------------------------------


@dataclass
class World:
    admin: User  # a node admin: the caller of every case
    headers: dict[str, str]  # a Bearer token of ``admin``
    org: Organisation  # an organisation other than the admin's own
    victim: User  # an analyst of ``org``: the user the UI cases act on
    membership: Membership  # ``victim`` in ``org``
    spare_token: ApiToken  # a token of ``admin`` that the cases may revoke (not the one in use)
    totp_admin: User  # a node admin with a second factor, for the 2FA forms


@pytest.fixture
def world(
    node_admin: User, hub: Organisation, make_org: Callable, make_user: Callable, bearer: Callable
) -> World:
    org = make_org("csirt-a")
    victim = make_user("victim", org)
    totp_admin = make_user("admin-2fa", hub, Role.NODE_ADMIN)
    secret = totp.new_secret()
    services.enable_totp(totp_admin, secret, pyotp.TOTP(secret).now())
    return World(
        admin=node_admin,
        headers=bearer(node_admin),
        org=org,
        victim=victim,
        membership=victim.memberships.get(organisation=org),
        spare_token=services.create_api_token(None, node_admin, name="spare").token,
        totp_admin=totp_admin,
    )


@pytest.fixture
def server_errors() -> Iterator[list[str]]:
    """Unhandled exceptions of the requests, summarised, so a failure names its cause."""
    seen: list[str] = []

    def record(sender: Any, request: Any = None, **kwargs: Any) -> None:
        exc = sys.exc_info()[1]
        frames = [f for f in traceback.extract_tb(sys.exc_info()[2]) if "/minga/" in f.filename]
        where = f" at {frames[-1].filename.split('/src/')[-1]}:{frames[-1].lineno}" if frames else ""
        seen.append(f"{type(exc).__name__}: {str(exc)[:200]}{where}")

    got_request_exception.connect(record, weak=False, dispatch_uid="test_bad_input")
    yield seen
    got_request_exception.disconnect(dispatch_uid="test_bad_input")


@pytest.fixture
def uninstrumented_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Render templates without the test runner's instrumentation, which copies the context of
    every template rendered (each <option> of a long select is one) for ``response.context``:
    nothing here reads it, and pages with long selects render about twice as fast."""
    original = getattr(getattr(_TestState, "saved_data", None), "template_render", None)
    if original is not None:
        monkeypatch.setattr(Template, "_render", original)


def _short(value: Any, limit: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > limit:
        return f"{text[:12]}…({len(text)} chars)"
    return text.encode("unicode_escape").decode()


def _server_error(response: HttpResponse, errors: list[str], before: int) -> str:
    causes = "; ".join(errors[before:]) or "no exception recorded"
    return f"answered {response.status_code} ({causes})"


# --- the API, as its OpenAPI document describes it ---------------------------------------------


def _api_operations() -> list[tuple[str, str]]:
    schema = api.get_openapi_schema()
    return [
        (method, path) for path, item in schema["paths"].items() for method in item if method in HTTP_METHODS
    ]


API_OPERATIONS = _api_operations()
API_IDS = [f"{method.upper()} {path}" for method, path in API_OPERATIONS]


def _openapi(world: World) -> dict[str, Any]:
    response = Client(raise_request_exception=False).get("/api/v1/openapi.json", headers=world.headers)
    assert response.status_code == 200, response.content[:500]
    return response.json()


def _deref(schema: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _variants(schema: dict[str, Any], doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a value may take: ``str | None`` is a string schema and a null one."""
    schema = _deref(schema, doc)
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        return [v for alternative in alternatives for v in _variants(alternative, doc)]
    if "allOf" in schema:
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            merged = {**_deref(part, doc), **merged}
        return [merged]
    return [schema]


def _types(schema: dict[str, Any], doc: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for variant in _variants(schema, doc):
        kind = variant.get("type")
        if isinstance(kind, list):
            found.update(kind)
        elif kind:
            found.add(kind)
        elif "enum" in variant or "const" in variant:
            values = variant.get("enum", [variant.get("const")])
            found.update({str: "string", bool: "boolean", int: "integer"}.get(type(v), "any") for v in values)
        else:
            found.add("any")
    return found


def _example_string(schema: dict[str, Any], seed: str) -> str:
    formats = {
        "date-time": "2026-01-02T03:04:05Z",
        "date": "2026-01-02",
        "email": "someone@example.org",
        "uuid": "6f1c1a52-3c9e-4f7a-9d57-2b8e3c1d0a11",
        "uri": "https://example.org/",
    }
    if schema.get("format") in formats:
        return formats[schema["format"]]
    low, high = schema.get("minLength", 0), schema.get("maxLength", 40)
    for candidate in (seed, "abc123", "ABC", "a", "1"):
        value = (candidate * (low // len(candidate) + 1))[: max(low, min(len(candidate), high))]
        if "pattern" not in schema or re.search(schema["pattern"], value):
            return value
    return seed


def _example(schema: dict[str, Any], doc: dict[str, Any], seed: str = "bad-input") -> Any:
    """A valid value of ``schema``: the base of the cases that spoil one property at a time."""
    for variant in _variants(schema, doc):
        if "enum" in variant:
            return variant["enum"][0]
        if "const" in variant:
            return variant["const"]
        kind = variant.get("type")
        if kind == "string":
            return _example_string(variant, seed)
        if kind in ("integer", "number"):
            return max(variant.get("minimum", 1), min(30, variant.get("maximum", 30)))
        if kind == "boolean":
            return True
        if kind == "array":
            return [_example(variant.get("items", {}), doc, seed)] * variant.get("minItems", 0)
        if kind == "object":
            properties = variant.get("properties", {})
            return {
                name: _example(properties[name], doc, f"{seed}-{i}")
                for i, name in enumerate(variant.get("required", []))
            }
    return None


def _bad_values(schema: dict[str, Any], doc: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """(label, value, must be refused) for one property. A value that the schema allows (null for
    an optional property, a big number where no maximum is declared) need only not crash."""
    types = _types(schema, doc)
    if "any" in types:
        return []
    numeric = bool(types & {"integer", "number"})
    bad: list[tuple[str, Any, bool]] = []
    if "string" not in types:
        bad.append(("a string", "not-a-" + "-or-".join(sorted(types)), True))
    if not numeric:
        bad.append(("a number", 12345, True))
        bad.append(("NaN", float("nan"), True))
    if "string" in types or numeric:
        bad.append(("a boolean", True, "boolean" not in types))
    bad.append(("null", None, "null" not in types))
    if "object" not in types:
        bad.append(("an object", {"unexpected": "object"}, True))
    if "array" not in types:
        bad.append(("a list", ["a", 1], True))
    for variant in _variants(schema, doc):
        if variant.get("type") == "string":
            if "maxLength" in variant:
                bad.append(("too long", "x" * (variant["maxLength"] + 1), True))
            bad.append(("overlong (10000 chars)", "x" * 10000, "maxLength" in variant))
            if variant.get("minLength", 0) > 0:
                bad.append(("too short", "x" * (variant["minLength"] - 1), True))
            if "pattern" in variant:
                for candidate in ("spaces and $ymbols!", "ñ", "a\nb", ""):
                    if not re.search(variant["pattern"], candidate):
                        bad.append(("not matching its pattern", candidate, True))
                        break
            bad.append(("a null byte", "a\x00b", False))
        if "enum" in variant:
            bad.append(("not one of the choices", "not-a-choice", True))
        if variant.get("type") in ("integer", "number"):
            if "minimum" in variant:
                bad.append(("below the minimum", variant["minimum"] - 1, True))
            if "maximum" in variant:
                bad.append(("above the maximum", variant["maximum"] + 1, True))
            bad.append(("huge", 10**30, "maximum" in variant))
            bad.append(("negative", -1, variant.get("minimum", -1) >= 0))
            if variant.get("type") == "integer":
                bad.append(("a fraction", 1.5, True))
    return bad


def _bad_query_values(schema: dict[str, Any], doc: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    types = _types(schema, doc)
    bad: list[tuple[str, Any, bool]] = [("several values", ["1", "abc"], False), ("empty", "", False)]
    for variant in _variants(schema, doc):
        kind = variant.get("type")
        if kind in ("integer", "number"):
            bad += [("abc", "abc", "string" not in types), ("1e3", "1e3", kind == "integer")]
            bad.append(("-1", "-1", variant.get("minimum", -1) >= 0))
            bad.append(("huge", "9" * 30, "maximum" in variant))
            if "minimum" in variant:
                bad.append(("below the minimum", str(variant["minimum"] - 1), True))
            if "maximum" in variant:
                bad.append(("above the maximum", str(variant["maximum"] + 1), True))
            if kind == "integer":
                bad.append(("1.5", "1.5", True))
        elif kind == "boolean":
            bad.append(("maybe", "maybe", "string" not in types))
        elif kind == "string":
            if "maxLength" in variant:
                bad.append(("too long", "x" * (variant["maxLength"] + 1), True))
            bad.append(("overlong", "x" * 10000, "maxLength" in variant))
            bad.append(("a null byte", "a\x00b", False))
            bad.append(("markup", "<script>ñ😀'\"", False))
        if "enum" in variant:
            bad.append(("not a choice", "not-a-choice", True))
    return bad


def _incident(world: World) -> Any:
    """An incident of the admin's organisation, with the other organisation taking part and a
    task (the same each time)."""
    from minga.incidents import services as incidents
    from minga.incidents.models import Incident

    found = Incident.objects.filter(title="bad-input incident").first()
    if found is None:
        hub = world.admin.memberships.get().organisation
        found = incidents.open_incident(world.admin, hub, title="bad-input incident", type="ddos")
        incidents.add_participant(world.admin, found, world.org)
        incidents.add_task(world.admin, found, title="bad-input task", organisation=world.org)
    return found


# Existing values of path parameters, looked up afresh (a case may have renamed the object).
API_PATH_VALUES: dict[str, Callable[[World], Any]] = {
    "reference": lambda w: _incident(w).reference,
    "task_id": lambda w: _incident(w).tasks.get().pk,
    "short_name": lambda w: Organisation.objects.get(pk=w.org.pk).short_name,
    "token_id": lambda w: w.spare_token.pk,
    "code": lambda w: "BR",  # a member state (directory)
}
GARBAGE_PATH_VALUES = {
    "integer": ["abc", "-1", "0", "1.5", "9" * 30, "%00", "1%20OR%201=1"],
    "string": ["does-not-exist", "x" * 300, "%00", "%C3%B1%F0%9F%98%80", "%FF", "..", "a%20b%27%22"],
}


def _api_urls(path: str, op: dict[str, Any], doc: dict[str, Any], world: World) -> list[tuple[str, str]]:
    """(label, URL): the path with existing values first, then with one garbage value each."""
    names = re.findall(r"{(\w+)}", path)
    params = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "path"}
    kinds = {n: "integer" if "integer" in _types(params.get(n, {}), doc) else "string" for n in names}
    real = {
        n: quote(
            str(API_PATH_VALUES[n](world) if n in API_PATH_VALUES else (1 if kinds[n] == "integer" else "x"))
        )
        for n in names
    }

    def fill(values: dict[str, str]) -> str:
        url = path
        for name, value in values.items():
            url = url.replace("{" + name + "}", value)
        return url

    urls = [("existing", fill(real))]
    for name in names:
        urls += [(f"{name}={_short(g)}", fill({**real, name: g})) for g in GARBAGE_PATH_VALUES[kinds[name]]]
    return urls


@dataclass
class Case:
    label: str
    body: bytes | str = b""
    content_type: str = JSON
    must_refuse: bool = True  # a 4xx is required; otherwise any answer below 500 will do
    status: int | None = None  # the one status required, if any
    environ: dict[str, str] = field(default_factory=dict)  # WSGI variables to override
    max_bytes: int | None = None  # MINGA_MAX_REQUEST_BYTES for this case


def _request_schema(op: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any] | None:
    if "requestBody" not in op:
        return None
    content = op["requestBody"]["content"]
    return _deref(content[JSON if JSON in content else next(iter(content))]["schema"], doc)


def _base_body(op: dict[str, Any], doc: dict[str, Any]) -> str:
    """A valid body of the operation (empty if it takes none)."""
    schema = _request_schema(op, doc)
    return "" if schema is None else json.dumps(_example(schema, doc))


def _body_cases(schema: dict[str, Any], doc: dict[str, Any]) -> list[Case]:
    base = _example(schema, doc)
    encoded = json.dumps(base)
    cases = [
        Case("malformed JSON", '{"name":'),
        Case("JSON with a trailing comma", encoded[:-1] + ",}" if encoded.endswith("}") else encoded + ","),
        Case("a JSON array", json.dumps([base])),
        Case("an empty JSON array", "[]"),
        Case("a JSON string", '"text"'),
        Case("JSON null", "null"),
        Case("a JSON number", "42"),
        Case("an empty body", b""),
        Case("a body of whitespace", b"  \n "),
        Case("invalid UTF-8", b'{"name": "\xff\xfe"}'),
        Case("a UTF-16 body", encoded.encode("utf-16")),
        Case("deeply nested JSON", "[" * 100_000 + "]" * 100_000),
        Case("a 5000-digit number", '{"n": ' + "9" * 5000 + "}"),
        Case("an unknown field", json.dumps({**base, "unexpected_field": "x"})),
        Case("only unknown fields", json.dumps({"unexpected_field": "x"})),
        Case("form-encoded", urlencode(base), "application/x-www-form-urlencoded"),
        Case("multipart", encode_multipart("BoUnDaRy", base), "multipart/form-data; boundary=BoUnDaRy"),
        Case("JSON labelled text/plain", encoded, "text/plain"),
        Case("JSON without a content type", encoded, ""),
        Case("XML", "<organisation><name>x</name></organisation>", "application/xml"),
        Case(
            "a body over the size limit", encoded + " " * 2 * SMALL_LIMIT, status=413, max_bytes=SMALL_LIMIT
        ),
        Case("a non-numeric Content-Length", encoded, status=400, environ={"CONTENT_LENGTH": "abc"}),
        Case("a negative Content-Length", encoded, environ={"CONTENT_LENGTH": "-5"}),
    ]
    properties = schema.get("properties", {})
    for name, prop in properties.items():
        for label, value, must_refuse in _bad_values(prop, doc):
            cases.append(
                Case(f"{name} = {label}", json.dumps({**base, name: value}), must_refuse=must_refuse)
            )
    for name in schema.get("required", []):
        cases.append(Case(f"{name} missing", json.dumps({k: v for k, v in base.items() if k != name})))
    return cases


def _query_cases(op: dict[str, Any], doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], bool]]:
    declared = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}
    cases = [
        (f"?{name}={label}", {name: value}, must_refuse)
        for name, param in declared.items()
        for label, value, must_refuse in _bad_query_values(param.get("schema", {}), doc)
    ]
    # Parameters that list endpoints usually take: refused where declared, ignored elsewhere.
    for name in ("limit", "offset", "page"):
        if name not in declared:
            cases += [(f"?{name}=-1", {name: "-1"}, False), (f"?{name}=abc", {name: "abc"}, False)]
    cases.append(("unknown parameters", {"unexpected": "x" * 10000, "q": "a\x00b", "format": "xml"}, False))
    return cases


def _api_problem(
    response: HttpResponse, must_refuse: bool, errors: list[str], before: int, expected: int | None = None
) -> str | None:
    """What is wrong with an answer to bad input, or None."""
    status = response.status_code
    if status >= 500:
        return _server_error(response, errors, before)
    if expected is not None and status != expected:
        return f"answered {status}, expected {expected}"
    if status < 400:
        return f"answered {status}, expected a 4xx" if must_refuse else None
    content_type = response.get("Content-Type", "").split(";")[0]
    if content_type != JSON:
        return f"answered {status} with a {content_type or 'untyped'} body: {response.content[:100]!r}"
    try:
        body = json.loads(response.content)
    except ValueError:
        return f"answered {status} with invalid JSON: {response.content[:100]!r}"
    detail = body.get("detail") if isinstance(body, dict) else None
    if not isinstance(detail, str) or not detail.strip():
        return f"answered {status} without a 'detail' message: {response.content[:200]!r}"
    return None


@pytest.mark.parametrize(("method", "path"), API_OPERATIONS, ids=API_IDS)
def test_api_operation_answers_bad_input_with_4xx(
    method: str, path: str, world: World, server_errors: list[str]
) -> None:
    doc = _openapi(world)
    op = doc["paths"][path][method]
    client = Client(raise_request_exception=False)
    failures: list[str] = []
    schema = _request_schema(op, doc)
    base_body = _base_body(op, doc)

    def send(url: str, case: Case) -> None:
        before = len(server_errors)
        with override_settings(MINGA_MAX_REQUEST_BYTES=case.max_bytes or settings.MINGA_MAX_REQUEST_BYTES):
            response = client.generic(
                method.upper(),
                url,
                case.body,
                content_type=case.content_type,
                headers=world.headers,
                **case.environ,
            )
        problem = _api_problem(response, case.must_refuse, server_errors, before, case.status)
        if problem:
            failures.append(f"{method.upper()} {_short(url, 80)} [{case.label}]: {problem}")

    for path_label, url in _api_urls(path, op, doc, world):
        if path_label != "existing":
            # An unknown object: refused, whatever the body.
            send(url, Case(f"path {path_label}", base_body))
            if schema is not None:
                send(url, Case(f"path {path_label}, malformed JSON", '{"name":'))
            continue
        for label, params, must_refuse in _query_cases(op, doc):
            send(f"{url}?{urlencode(params, doseq=True)}", Case(label, base_body, must_refuse=must_refuse))
        if schema is not None:
            for case in _body_cases(schema, doc):
                send(url, case)
    assert not failures, f"{len(failures)} bad answers:\n" + "\n".join(failures)


@pytest.mark.parametrize(("method", "path"), API_OPERATIONS, ids=API_IDS)
def test_api_operation_refuses_anonymous_callers(
    method: str, path: str, world: World, server_errors: list[str]
) -> None:
    doc = _openapi(world)
    op = doc["paths"][path][method]
    if not op.get("security", doc.get("security")):
        pytest.skip("a public operation")
    url = _api_urls(path, op, doc, world)[0][1]
    body = _base_body(op, doc)
    failures = []
    for label, headers in [
        ("no credentials", {}),
        ("a garbage Bearer token", {"Authorization": "Bearer garbage"}),
        ("an overlong Bearer token", {"Authorization": "Bearer mng_" + "x" * 10000}),
        ("an empty Bearer token", {"Authorization": "Bearer "}),
        ("an unknown scheme", {"Authorization": "Token abc"}),
        ("Basic that is not base64", {"Authorization": "Basic %%%not-base64"}),
        ("Basic without a colon", {"Authorization": "Basic bm8tY29sb24="}),
        ("Basic with a non-UTF-8 password", {"Authorization": "Basic dXNlcjr//w=="}),
    ]:
        before = len(server_errors)
        response = Client(raise_request_exception=False).generic(
            method.upper(), url, body, content_type=JSON, headers=headers
        )
        problem = _api_problem(response, True, server_errors, before, expected=401)
        if problem:
            failures.append(f"{method.upper()} {url} [{label}]: {problem}")
    assert not failures, "\n".join(failures)


def test_openapi_document_lists_the_tested_operations(world: World) -> None:
    doc = _openapi(world)
    served = {(m, p) for p, item in doc["paths"].items() for m in item if m in HTTP_METHODS}
    assert served == set(API_OPERATIONS)


@pytest.mark.parametrize("path", sorted({p for _, p in API_OPERATIONS}))
def test_api_path_refuses_undeclared_methods(path: str, world: World, server_errors: list[str]) -> None:
    doc = _openapi(world)
    item = doc["paths"][path]
    url = _api_urls(path, next(iter(item.values())), doc, world)[0][1]
    failures, not_json = [], []
    for method in HTTP_METHODS:
        if method in item:
            continue
        before = len(server_errors)
        response = Client(raise_request_exception=False).generic(
            method.upper(), url, "{}", content_type=JSON, headers=world.headers
        )
        if response.status_code != 405:
            failures.append(f"{method.upper()} {url}: answered {response.status_code}, expected 405")
        elif problem := _api_problem(response, True, server_errors, before):
            not_json.append(f"{method.upper()} {url}: {problem}")
    assert not failures, "\n".join(failures)
    assert not not_json, "405 without a JSON body: " + "; ".join(not_json)


# --- the UI: every page and form of the core app ------------------------------------------------


@dataclass(frozen=True)
class UiRoute:
    """A URL pattern of an app's UI, with where the app is mounted."""

    namespace: str
    prefix: str
    pattern: URLPattern

    @property
    def name(self) -> str:
        return str(self.pattern.name)

    @property
    def route(self) -> str:
        return self.prefix + str(self.pattern.pattern)

    @property
    def converters(self) -> dict[str, Any]:
        return self.pattern.pattern.converters  # type: ignore[attr-defined]


UI_APPS = [
    ("core", "", core_urls),
    ("directory", "directory/", directory_urls),
    ("intel", "intel/", intel_urls),
    ("pipeline", "pipeline/", pipeline_urls),
    ("incidents", "incidents/", incidents_urls),
]
UI_PATTERNS = [
    UiRoute(namespace, prefix, p)
    for namespace, prefix, module in UI_APPS
    for p in module.urlpatterns
    if isinstance(p, URLPattern)
]


def _intel_object(world: World) -> str:
    """A TLP:CLEAR indicator in the intel store (the same one each time: a replay is a no-op)."""
    from minga.intel.services import import_bundle

    stix_id = "indicator--6f1d3a62-3c39-4b8e-9d0c-4d8c5b0e7a01"
    indicator = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": stix_id,
        "created": "2026-01-01T00:00:00Z",
        "modified": "2026-01-01T00:00:00Z",
        "pattern": "[ipv4-addr:value = '192.0.2.1']",
        "pattern_type": "stix",
        "valid_from": "2026-01-01T00:00:00Z",
    }
    body = json.dumps({"type": "bundle", "id": "bundle--" + stix_id[11:], "objects": [indicator]})
    hub = world.admin.memberships.get().organisation
    import_bundle(world.admin, hub, io.BytesIO(body.encode()), "clear")
    return stix_id


def _pipeline_run(world: World) -> Any:
    """A feed of the admin's organisation with one run (the same each time)."""
    from minga.pipeline import services as pipeline
    from minga.pipeline.models import Feed

    hub = world.admin.memberships.get().organisation
    feed = Feed.objects.filter(name="bad-input-feed").first() or pipeline.register_feed(
        None, hub, name="bad-input-feed", mapping={"source_ip": "ip"}
    )
    run = feed.runs.first() or pipeline.start_run(
        None, feed, [b"ip\n192.0.2.1\nnot-an-ip\n"], "f.csv", queue=False
    )
    pipeline.run_inline(run)
    return run


# Existing values of URL parameters, by the path segment before them (``users/<int:pk>/`` is a
# user), looked up afresh.
UI_PATH_VALUES: dict[str, Callable[[World], Any]] = {
    "incidents": lambda w: _incident(w).reference,
    "tasks": lambda w: _incident(w).tasks.get().pk,
    "organisations": lambda w: Organisation.objects.get(pk=w.org.pk).short_name,
    "memberships": lambda w: w.membership.pk,
    "users": lambda w: w.victim.pk,
    "tokens": lambda w: w.spare_token.pk,
    "states": lambda w: "BR",
    "objects": _intel_object,
    "feeds": lambda w: _pipeline_run(w).feed.name,
    "runs": lambda w: _pipeline_run(w).uuid,
}
GARBAGE_UI_PATH_VALUES = {
    "int": ["0", "9" * 30],
    "slug": ["does-not-exist", "x" * 300],
}

GARBAGE_KINDS: dict[str, Any] = {
    "empty strings": "",
    "wrong type": "abc",
    "negative number": "-1",
    "huge number": "9" * 30,
    "invalid date": "2026-13-45",
    "far-future date": "9999-12-31",
    "ancient date": "0001-01-01",
    "overlong": "x" * 10000,
    "null byte": "a\x00b",
    "markup and emoji": "<script>alert(1)</script>ñ😀'\"",
    "several values": ["1", "-1"],
}
# The second signed-in actor and the catch-all field set get fewer kinds of garbage.
SECOND_ACTOR_KINDS = ("wrong type", "overlong")
CATCH_ALL_KINDS = ("wrong type", "overlong", "null byte", "several values")

GET_CASES: list[tuple[str, dict[str, Any]]] = [
    ("page=abc", {"page": "abc"}),
    ("page=-1", {"page": "-1"}),
    ("page=huge", {"page": "9" * 30}),
    ("q=overlong", {"q": "x" * 10000}),
    ("q=markup", {"q": "<script>ñ😀%_'\""}),
    ("q=null byte", {"q": "a\x00b"}),
    ("since=2026-13-45", {"since": "2026-13-45", "until": "abc"}),
    ("until=9999-12-31", {"until": "9999-12-31"}),
    ("since=9999-12-31", {"since": "9999-12-31"}),
    ("since=0001-01-01", {"since": "0001-01-01", "until": "0001-01-01"}),
    ("status=garbage", {"status": "not-a-status"}),
    ("status=null byte", {"status": "a\x00b"}),
    ("next=elsewhere", {"next": "https://evil.example/"}),
    ("next=abc", {"next": "abc"}),
    ("several values", {"page": ["1", "abc"], "q": ["a", "b"]}),
]


@dataclass
class HarvestedForm:
    method: str
    action: str
    hidden: dict[str, str]
    fields: set[str]


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[HarvestedForm] = []
        self._form: HarvestedForm | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            action = a.get("hx-post") or a.get("action") or ""
            self._form = HarvestedForm((a.get("method") or "get").lower(), action, {}, set())
            self.forms.append(self._form)
        elif self._form is not None and tag in ("input", "select", "textarea", "button") and a.get("name"):
            name = a["name"]
            if name == "csrfmiddlewaretoken":
                return
            if (tag == "input" and a.get("type", "").lower() == "hidden") or tag == "button":
                self._form.hidden[name] = a.get("value", "")
            else:
                self._form.fields.add(name)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None


@dataclass
class Harvest:
    post_forms: dict[str, list[HarvestedForm]]  # view name -> the forms that post to it
    post_fields: set[str]  # every field name of every form
    get_fields: dict[str, set[str]]  # view name -> the fields of its search and filter forms


_HARVEST: list[Harvest] = []


def _ui_path_values(pattern: UiRoute, world: World) -> dict[str, Any]:
    route = pattern.route
    values = {}
    for name, converter in pattern.converters.items():
        before = re.search(r"([\w-]+)/<[^>]*\b" + name + ">", route)
        segment = before.group(1) if before else ""
        lookup = UI_PATH_VALUES.get(segment)
        fallback = 1 if type(converter).__name__ == "IntConverter" else "x"
        values[name] = lookup(world) if lookup else fallback
    return values


def _ui_url(pattern: UiRoute, values: dict[str, Any]) -> str:
    route = pattern.route
    for name, value in values.items():
        route = re.sub(r"<(?:\w+:)?" + name + ">", quote(str(value)), route)
    return "/" + route


def _ui_urls(pattern: UiRoute, world: World) -> list[tuple[str, str]]:
    real = _ui_path_values(pattern, world)
    urls = [("existing", _ui_url(pattern, real))]
    for name, converter in pattern.converters.items():
        kind = "int" if type(converter).__name__ == "IntConverter" else "slug"
        urls += [
            (f"{name}={_short(g)}", _ui_url(pattern, {**real, name: g})) for g in GARBAGE_UI_PATH_VALUES[kind]
        ]
    return urls


def _signed_in(user: User) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def _second_factor_pending(world: World) -> Client:
    """Anonymous, half-way through signing in: the password was right, the TOTP code is asked."""
    client = Client(raise_request_exception=False)
    session = client.session
    session[views.PENDING_LOGIN] = {
        "user": world.totp_admin.pk,
        "backend": settings.AUTHENTICATION_BACKENDS[-1],
        "since": timezone.now().isoformat(),
        "tries": 0,
    }
    session.save()
    return client


def _harvest(world: World) -> Harvest:
    """The forms of every page, read from the pages themselves. The same for every test (the
    world is), so read once."""
    if _HARVEST:
        return _HARVEST[0]
    harvest = Harvest({}, set(), {})
    for pattern in UI_PATTERNS:
        url = _ui_urls(pattern, world)[0][1]
        for make in (
            lambda: _signed_in(world.admin),
            lambda: _signed_in(world.totp_admin),
            lambda: _second_factor_pending(world),
        ):
            response = make().get(url)
            if response.status_code != 200 or not response.get("Content-Type", "").startswith("text/html"):
                continue  # a download (a PDF, a bundle) has no forms to harvest
            parser = _FormParser()
            parser.feed(response.content.decode())
            for form in parser.forms:
                target = urlsplit(urljoin(url, form.action)).path
                try:
                    view_name = resolve(target).view_name
                except Resolver404:
                    continue
                if form.method == "get":
                    harvest.get_fields.setdefault(view_name, set()).update(form.fields)
                    continue
                known = harvest.post_forms.setdefault(view_name, [])
                if not any(f.hidden == form.hidden and f.fields == form.fields for f in known):
                    known.append(form)
                harvest.post_fields.update(form.fields | set(form.hidden))
    _HARVEST.append(harvest)
    return harvest


def _post_cases(view_name: str, harvest: Harvest, kinds: tuple[str, ...]) -> list[tuple[str, Any]]:
    """(label, data): the page's own forms (hidden fields kept, so each branch of the view is
    reached) and, as a catch-all, every field of every form, filled with one kind of garbage at a
    time."""
    own = harvest.post_forms.get(view_name, [])
    field_sets = [(f"form {_short(f.hidden)}", f.hidden, f.fields, kinds) for f in own]
    field_sets.append(
        ("every field", {}, harvest.post_fields, tuple(k for k in kinds if k in CATCH_ALL_KINDS))
    )
    cases: list[tuple[str, Any]] = [("no data", {})]
    for label, hidden, fields, field_kinds in field_sets:
        if hidden:
            cases.append((f"{label}, hidden fields only", dict(hidden)))
        for kind in field_kinds:
            cases.append((f"{label}, {kind}", {**hidden, **dict.fromkeys(fields, GARBAGE_KINDS[kind])}))
    return cases


class Actor:
    """A caller of the UI whose client is reused until an answer changes its session (a sign-out,
    a rotated key, a counted wrong code): then the next request starts from a fresh one."""

    def __init__(
        self, name: str, make: Callable[[], Client], kinds: tuple[str, ...], get_cases: bool
    ) -> None:
        self.name, self.make, self.kinds, self.get_cases = name, make, kinds, get_cases
        self._client: Client | None = None

    def request(self, method: str, url: str, data: Any, **extra: Any) -> HttpResponse:
        client = self._client = self._client or self.make()
        response = (client.get if method == "GET" else client.post)(url, data, **extra)
        if settings.SESSION_COOKIE_NAME in response.cookies:
            self._client = None
        return response


@pytest.mark.parametrize("pattern", UI_PATTERNS, ids=[f"{p.namespace}:{p.name}" for p in UI_PATTERNS])
@pytest.mark.usefixtures("uninstrumented_templates")
def test_ui_page_survives_bad_input(pattern: UiRoute, world: World, server_errors: list[str]) -> None:
    harvest = _harvest(world)
    view_name = f"{pattern.namespace}:{pattern.name}"
    login_url = reverse("core:login")
    actors = [
        Actor("node admin", lambda: _signed_in(world.admin), tuple(GARBAGE_KINDS), get_cases=True),
        Actor(
            "node admin with 2FA", lambda: _signed_in(world.totp_admin), SECOND_ACTOR_KINDS, get_cases=False
        ),
        Actor(
            "anonymous, 2FA pending",
            lambda: _second_factor_pending(world),
            tuple(GARBAGE_KINDS),
            get_cases=True,
        ),
    ]
    failures: list[str] = []

    def send(actor: Actor, method: str, url: str, label: str, data: Any, **extra: Any) -> HttpResponse:
        before = len(server_errors)
        response = actor.request(method, url, data, **extra)
        if response.status_code >= 500:
            shown = url if method == "POST" or not data else f"{url}?{urlencode(data, doseq=True)}"
            failures.append(
                f"{method} {_short(shown, 80)} as {actor.name} [{label}]: "
                f"{_server_error(response, server_errors, before)}"
            )
        return response

    def pointless(response: HttpResponse) -> bool:
        """More cases are pointless when the method is not allowed, or when the page wants a
        signed-in user and sent the caller to the login page."""
        sent_to_login = response.status_code == 302 and response["Location"].startswith(login_url)
        return response.status_code == 405 or (sent_to_login and view_name != "core:login")

    get_fields = harvest.get_fields.get(view_name, set())
    for path_label, url in _ui_urls(pattern, world):
        real = path_label == "existing"
        for actor in actors:
            get_cases: list[tuple[str, Any]] = [("plain", {})]
            if real and actor.get_cases:
                get_cases += GET_CASES
                if get_fields:
                    get_cases += [
                        (f"every filter, {k}", dict.fromkeys(get_fields, GARBAGE_KINDS[k]))
                        for k in actor.kinds
                    ]
                get_cases.append(("htmx", {"page": "abc", "q": "x" * 10000}))
            for i, (label, query) in enumerate(get_cases):
                extra = {"HTTP_HX_REQUEST": "true"} if label == "htmx" else {}
                if pointless(send(actor, "GET", url, f"{path_label}, {label}", query, **extra)) and i == 0:
                    break

            post_cases = _post_cases(view_name, harvest, actor.kinds if real else ("wrong type",))
            if real:
                post_cases.append(("htmx, wrong type", dict.fromkeys(harvest.post_fields, "abc")))
            for i, (label, data) in enumerate(post_cases):
                extra = {"HTTP_HX_REQUEST": "true"} if label.startswith("htmx") else {}
                if pointless(send(actor, "POST", url, f"{path_label}, {label}", data, **extra)) and i == 0:
                    break
            else:
                if real:
                    with override_settings(MINGA_MAX_REQUEST_BYTES=SMALL_LIMIT):
                        response = send(
                            actor, "POST", url, "over the size limit", {"name": "x" * 2 * SMALL_LIMIT}
                        )
                    if response.status_code != 413:
                        failures.append(
                            f"POST {url} as {actor.name} [over the size limit]: "
                            f"answered {response.status_code}, expected 413"
                        )

    assert not failures, f"{len(failures)} server errors:\n" + "\n".join(failures)
