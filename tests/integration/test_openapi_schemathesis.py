"""schemathesis against ``/api/v1/openapi.json`` of a real ``hybridcon serve`` (port 0,
its own embedded PostgreSQL): generated requests to every operation, with and without an
organiser's token. Checks: no 5xx, and every error is the documented JSON contract
``{"error": {"code", "message"}}``. A short budget here (``SCHEMATHESIS_EXAMPLES``, 8
per operation by default); docs/reliability.md says what it found."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from hybridcon.settings import Settings
from serve_process import Server, cli_token, serve_env

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "8"))


@pytest.fixture(scope="module")
def node() -> Iterator[tuple[int, str]]:
    """A node of this module's own: its port and an organiser's token."""
    base = Path(tempfile.mkdtemp(prefix="hybridcon-node-"))
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=base / "var",
        programme=REPO / "config" / "sociaalwerkconferentie-2022.toml",
        ice_addresses=("lo",),
    )
    env = serve_env(settings, HYBRIDCON_DATABASE_URL="", HYBRIDCON_LOG_LEVEL="warning")
    server = Server(settings, "--port", "0", env=env)
    try:
        port = server.port()
        yield port, cli_token(env, "--role", "organiser")
    finally:
        server.stop()
        pid_file = settings.embedded_pgdata / "postmaster.pid"
        if pid_file.exists():  # stopped with the node; make sure before removing it
            server.wait()
        shutil.rmtree(base, ignore_errors=True)


def error_contract(response: Any) -> None:
    """A 4xx or 5xx answer is ``{"error": {"code": str, "message": str}}`` (JSON)."""
    if response.status_code < 400:
        return
    kind = response.headers.get("Content-Type", response.headers.get("content-type", ""))
    kind = kind[0] if isinstance(kind, list) else kind
    assert kind.startswith("application/json"), (
        f"{response.status_code} answered as {kind!r}: {response.content[:200]!r}"
    )
    body = json.loads(response.content)
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), body
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), body


def test_the_http_api_keeps_its_contract(node: tuple[int, str]) -> None:
    port, token = node
    api = schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/api/v1/openapi.json")
    failures: list[str] = []
    operations = 0
    statuses: Counter[int] = Counter()
    for result in api.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            for headers in ({}, {"Authorization": f"Bearer {token}"}):
                response = case.call(headers=headers, timeout=30)
                statuses[response.status_code] += 1
                assert response.status_code < 500, (
                    f"{response.status_code}: {response.content[:300]!r}"
                )
                error_contract(response)

        try:
            run()
        except AssertionError as exc:
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    print(f"schemathesis: {operations} operations, {sum(statuses.values())} requests", statuses)
    assert operations > 20, f"only {operations} operations in the description"
    assert len(statuses) > 3, f"hardly anything was reached: {statuses}"
    assert not failures, "\n".join(failures)
