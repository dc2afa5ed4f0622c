"""Where a feed's files come from besides uploads: an HTTP(S) URL pulled on a schedule, and a
watched directory under the node's feed inbox. Only the reading lives here; the services record
what came of it (a run, the feed's pull state, the audit entry).

A pull asks conditionally (``If-None-Match`` with the last ETag, ``If-Modified-Since`` with the
last ``Last-Modified``), connects and reads with a timeout, stops at a size cap, follows a few
redirects, and connects only to the public addresses its host resolves to (unless the node
allows private ones): the address checked is the address connected to.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import orjson
from django.conf import settings
from django.utils.translation import gettext as _

MAX_REDIRECTS = 5
BLOCK = 1 << 20
USER_AGENT = "Minga feed pipeline"
TEMPORARY_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")


T = TypeVar("T")
TAXII_MEDIA_TYPE = "application/taxii+json;version=2.1"
TAXII_PAGE = 1000  # objects asked for per page
TAXII_MAX_PAGES = 10_000


class PullError(Exception):
    """A pull that failed, with the reason the feed records."""


@dataclass
class Pulled:
    status: int  # 200, or 304 when the source has nothing new
    path: Path | None = None  # the body, kept in a temporary file
    etag: str = ""
    last_modified: str = ""
    url: str = ""  # where the body came from, after redirects
    size: int = 0
    cursor: str = ""  # TAXII: the date added of the last object received
    objects: int = 0  # TAXII: how many objects the bundle holds


def _addresses(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise PullError(
            _("The host %(host)s cannot be resolved: %(error)s") % {"host": host, "error": exc}
        ) from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not settings.MINGA_PIPELINE_PULL_PRIVATE:
        for address in addresses:
            if not ipaddress.ip_address(address.split("%")[0]).is_global:
                raise PullError(
                    _(
                        "The host %(host)s is %(address)s, not a public address; the node's operator may "
                        "allow private ones (MINGA_PIPELINE_PULL_PRIVATE)."
                    )
                    % {"host": host, "address": address}
                )
    return addresses


class _Pinned(http.client.HTTPConnection):
    """A connection to an address already checked, whatever the host name resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def check_url(url: str) -> str:
    """A message saying why ``url`` cannot be a feed's source, or ''."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port out of range)
    except ValueError:
        return _("This is not a URL.")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return _("A feed's URL starts with http:// or https:// and names a host.")
    if parts.username or parts.password:
        return _("Credentials in the URL would be kept in clear: the node does not take them.")
    return ""


def _get(
    url: str,
    headers: dict[str, str],
    deadline: float,
    on_answer: Callable[[http.client.HTTPResponse, str], T],
) -> T:
    """GET ``url`` (following redirects, each hop checked) and hand the answer to
    ``on_answer``; raises ``PullError``."""
    timeout = float(settings.MINGA_PIPELINE_PULL_TIMEOUT)
    for _hop in range(MAX_REDIRECTS + 1):
        problem = check_url(url)
        if problem:
            raise PullError(problem)
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = _addresses(host, port)[0]
        kind = _PinnedTLS if parts.scheme == "https" else _Pinned
        connection = kind(host, port, address, timeout)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        try:
            connection.request("GET", target, headers={"User-Agent": USER_AGENT, **headers})
            response = connection.getresponse()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location", ""))
                continue
            return on_answer(response, url)
        except (OSError, http.client.HTTPException) as exc:
            raise PullError(
                _("%(url)s: %(error)s") % {"url": url[:200], "error": str(exc)[:300] or type(exc).__name__}
            ) from None
        finally:
            connection.close()
    raise PullError(_("More than %(n)s redirects.") % {"n": MAX_REDIRECTS})


def _refused(response: http.client.HTTPResponse, url: str) -> PullError:
    return PullError(
        _("%(url)s answered %(status)s %(reason)s.")
        % {"url": url[:200], "status": response.status, "reason": response.reason[:100]}
    )


def pull(url: str, etag: str, last_modified: str, folder: Path) -> Pulled:
    """Fetch ``url`` into a temporary file of ``folder``, unless it has not changed since the
    answer that had ``etag`` and ``last_modified`` (status 304); raises ``PullError``."""
    deadline = time.monotonic() + 10 * float(settings.MINGA_PIPELINE_PULL_TIMEOUT)
    headers = {"Accept-Encoding": "identity"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified

    def answer(response: http.client.HTTPResponse, where: str) -> Pulled:
        if response.status == 304:
            return Pulled(304, etag=etag, last_modified=last_modified, url=where)
        if response.status != 200:
            raise _refused(response, where)
        return _keep(response, folder, deadline, where)

    return _get(url, headers, deadline, answer)


def _keep(response: http.client.HTTPResponse, folder: Path, deadline: float, url: str) -> Pulled:
    limit = settings.MINGA_PIPELINE_PULL_MAX_BYTES
    declared = response.getheader("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PullError(
            _("The body is %(size)s bytes, more than the %(limit)s this node takes.")
            % {"size": declared, "limit": limit}
        )
    path = folder / f".pull-{os.getpid()}-{time.monotonic_ns()}.part"
    size = 0
    try:
        with path.open("wb") as out:
            while block := response.read(BLOCK):
                size += len(block)
                if size > limit:
                    raise PullError(
                        _("The body is larger than the %(limit)s bytes this node takes.") % {"limit": limit}
                    )
                if time.monotonic() > deadline:
                    raise PullError(_("The transfer took too long."))
                out.write(block)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Pulled(
        200,
        path=path,
        etag=(response.getheader("ETag") or "")[:300],
        last_modified=(response.getheader("Last-Modified") or "")[:100],
        url=url,
        size=size,
    )


def taxii_pull(url: str, token: str, added_after: str, folder: Path) -> Pulled:
    """The objects a TAXII 2.1 collection (``url``, the collection's own URL) added after
    ``added_after``, every page of them, written as one STIX bundle into a temporary file of
    ``folder``; status 304 when there is none. The cursor to ask from next time is the server's
    ``X-TAXII-Date-Added-Last``. Raises ``PullError``."""
    deadline = time.monotonic() + 10 * float(settings.MINGA_PIPELINE_PULL_TIMEOUT)
    limit = settings.MINGA_PIPELINE_PULL_MAX_BYTES
    headers = {"Accept": TAXII_MEDIA_TYPE, "Accept-Encoding": "identity"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    objects_url = url.rstrip("/") + "/objects/"
    path = folder / f".taxii-{os.getpid()}-{time.monotonic_ns()}.part"
    pulled = Pulled(200, path=path, url=url, cursor=added_after)
    after, next_key = added_after, ""
    try:
        with path.open("wb") as out:
            out.write(b'{"type":"bundle","id":"bundle--%s","objects":[' % str(uuid.uuid4()).encode())
            for _page in range(TAXII_MAX_PAGES):
                query = {"limit": str(TAXII_PAGE)}
                if next_key:
                    query["next"] = next_key
                elif after:
                    query["added_after"] = after
                envelope, last = _get(
                    f"{objects_url}?{urlencode(query)}",
                    headers,
                    deadline,
                    lambda response, where: _envelope(response, where, limit - pulled.size, pulled),
                )
                for obj in envelope.get("objects") or []:
                    out.write((b"," if pulled.objects else b"") + orjson.dumps(obj))
                    pulled.objects += 1
                pulled.cursor = last or pulled.cursor
                if envelope.get("more") is not True:
                    break
                next_key = str(envelope.get("next") or "")
                if not next_key:  # paging by date added when the server names no next page
                    if not last or last == after:
                        break
                    after = last
            out.write(b"]}")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if not pulled.objects:
        path.unlink(missing_ok=True)
        return Pulled(304, url=url, cursor=pulled.cursor)
    return pulled


def _envelope(
    response: http.client.HTTPResponse, url: str, room: int, pulled: Pulled
) -> tuple[dict[str, Any], str]:
    if response.status in (401, 403):
        raise PullError(
            _("%(url)s refused the feed's credentials (%(status)s): set the feed's token.")
            % {"url": url[:200], "status": response.status}
        )
    if response.status != 200:
        raise _refused(response, url)
    body = response.read(room + 1)
    if len(body) > room:
        raise PullError(
            _("The collection's objects are larger than the %(limit)s bytes this node takes.")
            % {"limit": settings.MINGA_PIPELINE_PULL_MAX_BYTES}
        )
    pulled.size += len(body)
    try:
        envelope = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise PullError(
            _("%(url)s answered no TAXII envelope: %(error)s") % {"url": url[:200], "error": str(exc)[:200]}
        ) from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("objects", []), list):
        raise PullError(_("%(url)s answered no TAXII envelope.") % {"url": url[:200]})
    return envelope, (response.getheader("X-TAXII-Date-Added-Last") or "")[:100]


def pieces(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            yield block


# --- watched directories ---------------------------------------------------------------------------


def inbox() -> Path:
    return Path(settings.MINGA_PIPELINE_INBOX)


def check_directory(name: str) -> str:
    """A message saying why ``name`` cannot be a watched folder under the inbox, or ''."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        return _("Name a folder under the node's feed inbox, e.g. shadowserver/scan (no leading /).")
    parts = name.strip("/").split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return _("The folder's name has no empty, '.', '..' or hidden parts.")
    if parts[-1] in ("done", "failed", "processing"):
        return _("done, failed and processing are the folders the watch moves files into.")
    return ""


def watched_folder(name: str) -> Path:
    """The folder a feed watches, created if need be; raises ``PullError`` if it leads outside
    the inbox (a symbolic link)."""
    root = inbox().resolve()
    folder = (root / name.strip("/")).resolve()
    if folder != root and root not in folder.parents:
        raise PullError(_("The folder %(name)s leads outside the node's feed inbox.") % {"name": name})
    for sub in ("", "processing", "done", "failed"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    return folder


def settled_files(folder: Path, settle_seconds: float, now: float) -> list[Path]:
    """The files of ``folder`` done being written: regular files (not links), not hidden nor
    named as partial downloads, unchanged (nor moved) for ``settle_seconds``; oldest first."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.name.endswith(TEMPORARY_SUFFIXES):
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            stat = entry.stat(follow_symlinks=False)
            # A file moved in keeps its mtime: its ctime says when it arrived.
            changed = max(stat.st_mtime, stat.st_ctime)
            if now - changed >= settle_seconds:
                found.append((changed, entry.name))
    return [folder / name for _mtime, name in sorted(found)]
