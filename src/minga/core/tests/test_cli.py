"""The ``minga`` command, run as operators run it."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from minga.core import tokens
from minga.core.choices import Role
from minga.core.models import ApiToken, AuditEntry, Organisation, User

REPO = Path(__file__).resolve().parents[4]


def run_minga(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MINGA_", "DJANGO_"))}
    return subprocess.run(
        [sys.executable, "-m", "minga", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def test_help_lists_the_commands():
    result = run_minga("--help")
    assert result.returncode == 0
    for command in ("up", "serve", "worker", "check", "createadmin", "token", "audit", "manage"):
        assert f"  {command}" in result.stdout


def test_check_reports_in_plain_words(tmp_path):
    fresh = run_minga("check", env={"MINGA_VAR_DIR": str(tmp_path)})
    assert fresh.returncode == 0, fresh.stderr
    assert "database: sqlite3" in fresh.stdout and "migration(s) are pending" in fresh.stdout
    unreachable = run_minga(
        "check",
        env={
            "MINGA_VAR_DIR": str(tmp_path),
            "MINGA_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
        },
    )
    assert unreachable.returncode != 0
    assert "cannot be reached" in unreachable.stdout and "MINGA_DATABASE_URL" in unreachable.stdout
    bad_value = run_minga("check", env={"MINGA_VAR_DIR": str(tmp_path), "MINGA_LOGIN_FAILURE_LIMIT": "many"})
    assert bad_value.returncode == 2
    assert "MINGA_LOGIN_FAILURE_LIMIT must be a whole number" in bad_value.stderr


def test_createadmin_creates_the_organisation_and_a_node_admin(db, monkeypatch):
    monkeypatch.setenv("MINGA_ADMIN_PASSWORD", "a long and unusual passphrase")
    call_command(
        "createadmin",
        username="ana",
        email="ana@csirt.example",
        organisation="CSIRT Example",
        stdout=io.StringIO(),
    )
    user = User.objects.get(username="ana")
    assert user.check_password("a long and unusual passphrase")
    assert user.is_node_admin
    assert user.memberships.get().organisation == Organisation.objects.get(short_name="csirt-example")
    assert user.memberships.get().role == Role.NODE_ADMIN
    with pytest.raises(CommandError, match="already exists"):
        call_command("createadmin", username="ana", email="x@example.org", organisation="CSIRT Example")
    monkeypatch.delenv("MINGA_ADMIN_PASSWORD")
    with pytest.raises(CommandError, match="MINGA_ADMIN_PASSWORD"):
        call_command("createadmin", username="bo", email="bo@example.org", organisation="CSIRT Example")


def test_token_create_prints_only_the_token(make_org, make_user):
    make_user("ana", make_org())
    out = io.StringIO()
    call_command("token", "create", "--user", "ana", "--expires", "3", stdout=out)
    printed = out.getvalue().strip()
    assert "\n" not in printed and printed.startswith(tokens.TOKEN_PREFIX)
    token = ApiToken.objects.get(key_hash=tokens.hash_token(printed))
    assert 2 < (token.expires_at - token.created_at).days + 1 <= 3
    assert AuditEntry.objects.filter(action="token.create").exists()
    with pytest.raises(CommandError, match="between 1 and"):
        call_command("token", "create", "--user", "ana", "--expires", "0")
    with pytest.raises(CommandError, match="No user"):
        call_command("token", "create", "--user", "nobody")


def test_commands_explain_an_unmigrated_database(tmp_path):
    result = run_minga("token", "create", "--user", "ana", env={"MINGA_VAR_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "minga manage migrate" in result.stderr and "Traceback" not in result.stderr
    assert "usage: minga token" in run_minga("token", "--help", env={"MINGA_VAR_DIR": str(tmp_path)}).stdout


def test_manage_passes_through_to_django(tmp_path):
    result = run_minga("manage", "showmigrations", "core", env={"MINGA_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0
    assert "0001_initial" in result.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.worker
def test_up_runs_web_and_worker_and_stops_both_on_ctrl_c(tmp_path):
    port = _free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MINGA_", "DJANGO_"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "minga", "up", "--demo", "--bind", f"127.0.0.1:{port}"],
        env={**base, "MINGA_VAR_DIR": str(tmp_path), "MINGA_WEB_WORKERS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "the node did not come up"
                time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=5) as response:
            assert b"Minga" in response.read()
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert f"http://localhost:{port}/" in output
    assert "Demo admin login: demo-admin / demo-" in output
    assert "Minga stopped." in output
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
