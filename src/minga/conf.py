"""Configuration from ``MINGA_*`` environment variables.

Every setting an operator may change is declared once in ``SETTINGS`` below: the table in
``docs/operators.md`` and ``minga check`` both read from it, so the documentation cannot drift
from the code.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    meaning: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "MINGA_VAR_DIR", "./var", "Folder for the SQLite database, the generated secret key and other state."
    ),
    Setting(
        "MINGA_DATABASE_URL",
        "sqlite:///<MINGA_VAR_DIR>/minga.sqlite3",
        "Database URL. SQLite (WAL mode) by default; "
        "`postgresql://user:password@host:5432/minga` for a large node.",
    ),
    Setting(
        "MINGA_SECRET_KEY",
        "generated into <MINGA_VAR_DIR>/secret_key",
        "Key for signing sessions and links. Share the same value across all web and worker processes.",
    ),
    Setting(
        "MINGA_ALLOWED_HOSTS",
        "localhost,127.0.0.1,[::1]",
        "Comma-separated host names this node answers to.",
    ),
    Setting(
        "MINGA_CSRF_TRUSTED_ORIGINS",
        "",
        "Comma-separated origins (`https://minga.example.org`) allowed to post forms when behind a proxy.",
    ),
    Setting("MINGA_NODE_NAME", "Minga node", "Name of this node, shown in the UI and the API."),
    Setting(
        "MINGA_NODE_ID",
        "minga-node",
        "This node's short, network-wide unique name (letters, digits, hyphens): the provenance "
        "that federation puts on what the node shares, and the name its peers register it under.",
    ),
    Setting(
        "MINGA_EMAIL_URL",
        "console:",
        "Outgoing e-mail: `smtp://user:password@host:587/?tls=True`, `smtp+ssl://...`, "
        "or `console:` to print mails.",
    ),
    Setting("MINGA_EMAIL_FROM", "minga@localhost", "Sender address of e-mail sent by the node."),
    Setting(
        "MINGA_TASK_BACKEND",
        "database",
        "Background task queue. `database`: a durable queue in the node's database (django-tasks).",
    ),
    Setting("MINGA_LISTEN", "127.0.0.1:8000", "Address `minga serve` and `minga up` bind to."),
    Setting("MINGA_WEB_WORKERS", "2", "Number of gunicorn worker processes started by `minga serve`."),
    Setting(
        "MINGA_TRUSTED_PROXIES",
        "127.0.0.1",
        "Comma-separated addresses of reverse proxies whose X-Forwarded-Proto and -For headers "
        "`minga serve` trusts (`*` for any: only when nothing else can reach the node).",
    ),
    Setting("MINGA_DEBUG", "false", "Django debug mode. Never enable on a node that holds real data."),
    Setting(
        "MINGA_SECURE_COOKIES",
        "false",
        "Send cookies only over HTTPS. Enable when the node is served over TLS.",
    ),
    Setting(
        "MINGA_LOGIN_FAILURE_LIMIT",
        "5",
        "Failed logins for one user name from one address before a lock-out.",
    ),
    Setting("MINGA_LOGIN_COOLOFF_MINUTES", "15", "How long a lock-out lasts."),
    Setting("MINGA_MAX_REQUEST_BYTES", "10485760", "Largest request body accepted; larger ones get 413."),
    Setting(
        "MINGA_TAXII_MAX_CONTENT_LENGTH",
        "104857600",
        "Largest envelope the TAXII server accepts in one POST (its API root's max_content_length); "
        "larger ones get 413. Applies under /taxii2/ instead of MINGA_MAX_REQUEST_BYTES.",
    ),
    Setting(
        "MINGA_EVIDENCE_MAX_BYTES",
        "536870912",
        "Largest evidence file the register stores (`minga evidence add`); uploads through the "
        "web and the API are held to MINGA_MAX_REQUEST_BYTES as well. Larger files are refused.",
    ),
    Setting("MINGA_TOKEN_DEFAULT_DAYS", "90", "Lifetime of a new API token when none is given."),
    Setting(
        "MINGA_TASK_MAX_ATTEMPTS", "5", "Attempts of a failing background task before it is kept as failed."
    ),
    Setting(
        "MINGA_PIPELINE_STALLED_SECONDS",
        "600",
        "Seconds after which a feed chunk whose worker stopped (killed, crashed) is queued again.",
    ),
    Setting(
        "MINGA_PIPELINE_INBOX",
        "<MINGA_VAR_DIR>/pipeline-inbox",
        "Folder under which feeds with a watched directory name their folders; nothing outside it is read.",
    ),
    Setting(
        "MINGA_PIPELINE_SETTLE_SECONDS",
        "10",
        "Seconds a file in a watched directory must stay unchanged before it is read (still being written).",
    ),
    Setting("MINGA_PIPELINE_PULL_TIMEOUT", "30", "Seconds to connect to a feed's URL and for each read."),
    Setting(
        "MINGA_PIPELINE_PULL_MAX_BYTES",
        "536870912",
        "Largest body a feed's URL may answer; a larger one is a failed pull, retried with backoff.",
    ),
    Setting(
        "MINGA_PIPELINE_PULL_PRIVATE",
        "false",
        "Allow feed URLs whose host is a private, loopback or link-local address (off: only public ones).",
    ),
    Setting("MINGA_LOG_LEVEL", "INFO", "Log level of the node's processes."),
    Setting(
        "MINGA_PUBLIC_URL",
        "http://localhost:8000",
        "The node's address as people reach it; used in links sent by e-mail.",
    ),
    Setting(
        "MINGA_NODE_ORGANISATION",
        "",
        "Short name of the organisation that runs this node: its contacts publish /.well-known/security.txt.",
    ),
    Setting(
        "MINGA_CONTACT_STALE_DAYS",
        "180",
        "Days after which a point of contact that was not confirmed counts as stale.",
    ),
    Setting(
        "MINGA_CONTACT_REMINDER_DAYS",
        "14",
        "Days between two confirmation requests that the daily schedule e-mails a stale contact.",
    ),
)

_DEFAULTS = {s.name: s.default for s in SETTINGS}


def env(name: str) -> str:
    """The value of a declared setting, or its default."""
    if name not in _DEFAULTS:
        raise KeyError(f"{name} is not a declared Minga setting")
    return os.environ.get(name, "").strip() or _DEFAULTS[name]


def env_bool(name: str) -> bool:
    return env(name).lower() in {"1", "true", "yes", "on"}


def env_int(name: str) -> int:
    value = env(name)
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, not {value!r}") from exc


def env_list(name: str) -> list[str]:
    return [item.strip() for item in env(name).split(",") if item.strip()]


def var_dir() -> Path:
    path = Path(env("MINGA_VAR_DIR")).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def secret_key() -> str:
    """The configured key, or one generated once and kept under the var folder.

    Web and worker processes start together, so the file is created with O_EXCL: whichever
    process loses the race reads the winner's key.
    """
    configured = os.environ.get("MINGA_SECRET_KEY", "").strip()
    if configured:
        return configured
    path = var_dir() / "secret_key"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


def database_url() -> str:
    configured = os.environ.get("MINGA_DATABASE_URL", "").strip()
    if configured:
        return configured
    return f"sqlite:///{var_dir() / 'minga.sqlite3'}"
