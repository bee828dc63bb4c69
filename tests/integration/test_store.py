"""The store: migrations under concurrency, the append-only log, the embedded default."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from hybridcon.app import create_app
from hybridcon.services import SERVICES
from hybridcon.store.embedded import ensure_database, with_database
from hybridcon.store.migrate import available, migrate


async def test_concurrent_migrations_apply_each_file_once(pg_admin_dsn):
    name = f"mig_{uuid.uuid4().hex[:10]}"
    await ensure_database(pg_admin_dsn, name)
    dsn = with_database(pg_admin_dsn, name)
    conns = [await asyncpg.connect(dsn) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        versions = [m.version for m in available()]
        # Exactly one of the five applied everything; the others found nothing to do.
        assert sorted(results, key=len) == [[]] * 4 + [versions]
        rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == versions
    finally:
        for c in conns:
            await c.close()
        admin = await asyncpg.connect(pg_admin_dsn)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_engagement_events_are_append_only(database_url):
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO engagement_events (event_id, ts, kind, actor, topic) "
            "VALUES (gen_random_uuid(), now(), 'join', 'h', 't')"
        )
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE engagement_events SET kind = 'leave'")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM engagement_events")
        assert await conn.fetchval("SELECT count(*) FROM engagement_events") == 1
    finally:
        await conn.close()


@pytest.mark.slow
async def test_embedded_default_starts_and_a_second_start_reuses_the_data(make_settings, tmp_path):
    from aiohttp.test_utils import TestClient, TestServer

    settings = make_settings(database_url=None, data_dir=tmp_path / "embedded-var")

    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as c:
        assert (await c.get("/readyz")).status == 200
        assert (await c.get("/api/v1/programme")).status == 200
        jwks_first = await (await c.get("/.well-known/jwks.json")).json()
        pool = c.server.app[SERVICES].db()
        await pool.execute(
            "INSERT INTO audit_log (actor, actor_role, action) VALUES ('t', 'test', 'marker')"
        )
    assert (settings.data_dir / "postgres" / "PG_VERSION").exists()

    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as c:
        assert (await c.get("/readyz")).status == 200
        # Same keys, same database.
        assert await (await c.get("/.well-known/jwks.json")).json() == jwks_first
        pool = c.server.app[SERVICES].db()
        assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'marker'") == 1
