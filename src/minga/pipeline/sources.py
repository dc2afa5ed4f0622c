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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from django.conf import settings
from django.utils.translation import gettext as _

MAX_REDIRECTS = 5
BLOCK = 1 << 20
USER_AGENT = "Minga feed pipeline"
TEMPORARY_SUFFIXES = (".part", ".tmp", ".partial", ".crdownload")


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


def pull(url: str, etag: str, last_modified: str, folder: Path) -> Pulled:
    """Fetch ``url`` into a temporary file of ``folder``; raises ``PullError``."""
    timeout = float(settings.MINGA_PIPELINE_PULL_TIMEOUT)
    deadline = time.monotonic() + 10 * timeout
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
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        try:
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location", ""))
                connection.close()
                continue
            if response.status == 304:
                connection.close()
                return Pulled(304, etag=etag, last_modified=last_modified, url=url)
            if response.status != 200:
                raise PullError(
                    _("%(url)s answered %(status)s %(reason)s.")
                    % {"url": url[:200], "status": response.status, "reason": response.reason[:100]}
                )
            return _keep(response, folder, deadline, url)
        except (OSError, http.client.HTTPException) as exc:
            raise PullError(
                _("%(url)s: %(error)s") % {"url": url[:200], "error": str(exc)[:300] or type(exc).__name__}
            ) from None
        finally:
            connection.close()
    raise PullError(_("More than %(n)s redirects.") % {"n": MAX_REDIRECTS})


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
