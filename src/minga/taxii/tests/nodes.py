"""Other Minga nodes for the federation tests: each a real ``minga serve`` process on the
loopback, with its own SQLite database, secret key and MINGA_NODE_ID, set up and inspected
through its own ``minga`` command and Python in its own process (never through this process's
database)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[4]
PRELUDE = """
import json, django
django.setup()
result = None
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Node:
    def __init__(self, name: str, root: Path, database_url: str = "") -> None:
        self.name = name
        self.var = root / name
        self.var.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.api_root = f"{self.url}/taxii2/api/"
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("MINGA_") and key != "DJANGO_SETTINGS_MODULE"
        }
        self.env = {
            **environment,
            "DJANGO_SETTINGS_MODULE": "minga.settings",
            "PYTHONPATH": str(REPO / "src"),
            "MINGA_VAR_DIR": str(self.var),
            "MINGA_NODE_ID": name,
            "MINGA_NODE_NAME": f"Test node {name}",
            "MINGA_SECRET_KEY": f"federation-test-secret-of-{name}",
            "MINGA_LISTEN": f"127.0.0.1:{port}",
            "MINGA_WEB_WORKERS": "1",
            "MINGA_PUBLIC_URL": self.url,
            "MINGA_LOG_LEVEL": "WARNING",
        }
        if database_url:  # else SQLite under the node's var folder
            self.env["MINGA_DATABASE_URL"] = database_url
        self.server: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None

    def minga(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "minga", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"minga {' '.join(args)} on {self.name} failed:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def python(self, code: str) -> Any:
        """Run ``code`` in the node's own Django; it may set ``result`` (JSON-serialisable)."""
        script = PRELUDE + textwrap.dedent(code) + "\nprint('\\n' + json.dumps(result, default=str))\n"
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise AssertionError(f"Python on {self.name} failed:\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def start(self, *organisations: str) -> Node:
        self.minga("manage", "migrate", "--noinput", "-v", "0")
        if organisations:
            self.python(
                f"""
                from minga.core.models import Organisation
                for short in {list(organisations)!r}:
                    Organisation.objects.get_or_create(
                        short_name=short, defaults={{"name": f"Organisation {{short}}"}}
                    )
                """
            )
        self.server = subprocess.Popen(
            [sys.executable, "-m", "minga", "serve"],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"node {self.name} did not start")

    def start_worker(self) -> None:
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "minga", "worker", "--interval", "0.5"],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        for process in (self.server, self.worker):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=20)
        self.server = self.worker = None

    def share(self, organisation: str, *objects: dict[str, Any], tlp: str = "green") -> None:
        """``organisation`` shares ``objects`` on this node (imported by its operator)."""
        bundle = json.dumps(
            {"type": "bundle", "id": "bundle--5d2a57f4-4b0e-4b8a-8a32-8c0d2f1b3c4d", "objects": objects}
        )
        self.python(
            f"""
            import io
            from minga.core.models import Organisation
            from minga.intel import services
            owner = Organisation.objects.get(short_name={organisation!r})
            result = services.import_bundle(None, owner, io.BytesIO({bundle.encode()!r}), {tlp!r}).accepted
            """
        )

    def objects(self) -> list[dict[str, Any]]:
        """Every stored version: id, origin organisation, TLP, recipients, provenance."""
        return self.python(
            """
            from minga.intel.models import StixObject
            result = [
                {
                    "id": o.stix_id, "origin": o.origin_organisation.short_name, "tlp": o.tlp,
                    "recipients": sorted(r.short_name for r in o.recipient_organisations.all()),
                    "origin_node": o.origin_node, "received_from": o.received_from, "raw": o.raw,
                }
                for o in StixObject.objects.select_related("origin_organisation").order_by("pk")
            ]
            """
        )


def link(node: Node, other: Node, *, node_hosts: str, other_hosts: str) -> None:
    """The handshake two operators do: each registers the other and hands over a token."""
    token_for_other = node.minga(
        "peer", "add", other.name, "--url", other.api_root, "--hosts", other_hosts
    ).stdout
    token_for_node = other.minga(
        "peer",
        "add",
        node.name,
        "--url",
        node.api_root,
        "--hosts",
        node_hosts,
        "--token",
        token_for_other.strip(),
    ).stdout
    node.minga("peer", "set-token", other.name, token_for_node.strip())
