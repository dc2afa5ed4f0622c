"""STIX 2.0 input, upgraded to STIX 2.1 object by object as the bundle streams past, where that
can be done faithfully; otherwise refused with the reason.

Which objects are 2.0: STIX 2.1 (section 3.2, ``spec_version``) says an object without
``spec_version`` is a STIX 2.0 object, except cyber-observables, whose default is 2.1; the
OASIS library applies the same rule (``stix2.utils.detect_spec_version``). Minga applies it to
every bundle, so a 2.0 bundle (``spec_version: "2.0"`` on the bundle, none on its objects) and
stray 2.0 objects in a 2.1 bundle are treated alike. Neither ``stix2`` nor ``stix2-elevator``
(which converts STIX 1.x) converts 2.0 to 2.1, so the upgrade is here:

- every object gets ``spec_version: "2.1"``; ids are checked as for any 2.1 object (2.0 already
  required ``type--UUID``), timestamps and references likewise;
- ``indicator``: ``pattern_type: "stix"`` (2.0 had only STIX patterns); the pattern must also
  be valid in the 2.1 grammar, or the indicator is rejected by the usual check;
- ``malware``: ``is_family: true`` (2.1 requires the property; a 2.0 malware object names a kind
  of malware, which 2.1 calls a family) and ``malware_types`` from its 2.0 ``labels``;
- ``observed-data``: the 2.0 embedded ``objects`` become top-level 2.1 cyber-observables with
  their deterministic ids (computed by ``stix2``), references between them rewritten to those
  ids, and ``object_refs`` naming them. An embedded object with a property 2.1 does not have
  (``file.is_encrypted``…) or a reference to a key that is not there rejects the observed-data;
- every other 2.0 type (attack-pattern, campaign, course-of-action, identity, intrusion-set,
  report, threat-actor, tool, vulnerability, relationship, sighting, marking-definition, custom
  ``x-`` types) keeps its properties, which 2.1 still has (``labels`` is a common property);
- the bundle's own ``spec_version`` is not kept: Minga stores objects, not bundles.

Objects that name any other ``spec_version`` (``2.2``, ``1.0``…) are refused by the usual check.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.utils.translation import gettext as _

from minga.intel import stix
from minga.intel.convert import Rejected

MAX_EMBEDDED = 1000  # observables embedded in one 2.0 observed-data


def is_stix20(obj: Any) -> bool:
    """True for an object STIX calls 2.0: no spec_version (bar cyber-observables), or "2.0"."""
    if not isinstance(obj, dict):
        return False
    version = obj.get("spec_version")
    if version is None:
        type_name = obj.get("type")
        return isinstance(type_name, str) and not stix.is_sco(type_name)
    return version == "2.0"


def upgrading(items: Iterable[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    """The ``(index, object)`` pairs of a bundle with its 2.0 objects upgraded (an observed-data
    may bring its observables along, under the same index) or replaced by a ``Rejected``."""
    for index, obj in items:
        if not is_stix20(obj):
            yield index, obj
            continue
        try:
            for upgraded in upgrade(obj):
                yield index, upgraded
        except stix.Invalid as exc:
            stix_id = obj.get("id")
            yield index, Rejected(str(exc), stix_id if isinstance(stix_id, str) else "")


def upgrade(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """A 2.0 object as 2.1: the object last, preceded by the observables it now refers to."""
    new = {"type": obj.get("type"), "spec_version": "2.1"}
    new.update((k, v) for k, v in obj.items() if k not in ("type", "spec_version"))
    type_name = new["type"]
    if type_name == "indicator":
        new.setdefault("pattern_type", "stix")
    elif type_name == "malware":
        new.setdefault("is_family", True)
        labels = obj.get("labels")
        if isinstance(labels, list) and labels and "malware_types" not in new:
            new["malware_types"] = labels
    elif type_name == "observed-data" and "objects" in new:
        observables = _observables(new.pop("objects"))
        refs = list(dict.fromkeys(o["id"] for o in observables))
        new["object_refs"] = [*refs, *[r for r in new.get("object_refs") or [] if r not in refs]]
        return [*observables, new]
    return [new]


def _keys_referred(obj: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    for name, value in obj.items():
        if name.endswith("_ref") and isinstance(value, str):
            keys.append(value)
        elif name.endswith("_refs") and isinstance(value, list):
            keys.extend(v for v in value if isinstance(v, str))
    return keys


def _rewrite(obj: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in obj.items():
        if name.endswith("_ref") and isinstance(value, str):
            out[name] = ids[value]
        elif name.endswith("_refs") and isinstance(value, list):
            out[name] = [ids[v] for v in value]
        else:
            out[name] = value
    return out


def _observables(embedded: Any) -> list[dict[str, Any]]:
    """The 2.0 ``objects`` of an observed-data as 2.1 SCOs, referred objects first."""
    import stix2
    from stix2.exceptions import ExtraPropertiesError, STIXError

    if not isinstance(embedded, dict) or not embedded:
        raise stix.Invalid(_("observed-data has no observables (its 2.0 objects are empty)."))
    if len(embedded) > MAX_EMBEDDED:
        raise stix.Invalid(
            _("observed-data embeds more than %(n)d observables: split it.") % {"n": MAX_EMBEDDED}
        )
    for key, item in embedded.items():
        if not isinstance(item, dict):
            raise stix.Invalid(_("observed-data object %(key)s is not a JSON object.") % {"key": key})
        for ref in _keys_referred(item):
            if ref not in embedded:
                raise stix.Invalid(
                    _("observed-data object %(key)s refers to %(ref)s, which is not among its objects.")
                    % {"key": key, "ref": stix._clip(ref)}
                )
    ids: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    pending = dict(embedded)
    while pending:
        ready = [k for k, item in pending.items() if all(r in ids for r in _keys_referred(item))]
        if not ready:
            raise stix.Invalid(_("The observables of a 2.0 observed-data refer to each other in a loop."))
        for key in ready:
            item = _rewrite(pending.pop(key), ids)
            item.pop("spec_version", None)
            data = {"type": item.get("type"), "spec_version": "2.1", **item}
            try:
                try:
                    parsed = stix2.parse(data, version="2.1")
                except ExtraPropertiesError as exc:
                    if not all(p.startswith("x_") for p in exc.properties):
                        raise
                    parsed = stix2.parse(data, version="2.1", allow_custom=True)
            except (STIXError, ValueError, TypeError) as exc:
                raise stix.Invalid(
                    _("observed-data object %(key)s cannot be expressed in STIX 2.1: %(error)s")
                    % {"key": key, "error": stix._clip(str(exc), 200)}
                ) from None
            import orjson

            sco: dict[str, Any] = orjson.loads(parsed.serialize())
            ids[key] = sco["id"]
            out.append(sco)
    return out
