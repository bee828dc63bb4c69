"""Health, readiness, metrics, the programme, request ids and error bodies over real HTTP."""

from __future__ import annotations

from urllib.parse import urlsplit

from support import services_of


async def test_healthz_answers_while_the_process_lives(client):
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}


async def test_readyz_reports_postgres_and_goes_503_when_draining(client):
    resp = await client.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert body["checks"] == {"node": "ok", "postgres": "ok"}

    services_of(client).draining = True
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["checks"]["node"] == "draining"


async def test_readyz_goes_503_when_the_database_is_gone(client, pg_admin_dsn, database_url):
    import asyncpg

    # Terminate the app's connections and forbid new ones: the database "goes away".
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(pg_admin_dsn)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["checks"]["postgres"].startswith("unavailable")
        # The process itself is fine.
        assert (await client.get("/healthz")).status == 200
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    resp = await client.get("/readyz")
    assert resp.status == 200


async def test_metrics_are_prometheus_text_and_count_requests(client):
    await client.get("/api/v1/programme")
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    text = await resp.text()
    assert "# TYPE hybridcon_http_requests_total counter" in text
    assert (
        'hybridcon_http_requests_total{method="GET",route="/api/v1/programme",status="200"} 1.0'
        in text
    )


async def test_programme_is_served_with_local_times(client):
    resp = await client.get("/api/v1/programme")
    assert resp.status == 200
    body = await resp.json()
    assert body["event"]["id"] == "swc2022"
    assert body["event"]["date"] == "2022-05-05"
    stages = {s["id"]: s for s in body["stages"]}
    assert "plenary" in stages and stages["radio"]["kind"] == "radio"
    opening = next(s for s in body["sessions"] if s["kind"] == "plenary")
    assert opening["starts_at"].startswith("2022-05-05T") and opening["starts_at"].endswith(
        "+02:00"
    )
    assert opening["stage"] == "plenary"


async def test_programme_is_stored_in_the_database(client):
    pool = services_of(client).db()
    stages = await pool.fetchval("SELECT count(*) FROM stages")
    sessions = await pool.fetchval("SELECT count(*) FROM sessions")
    programme = services_of(client).programme
    assert stages == len(programme.stages)
    assert sessions == len(programme.sessions)


async def test_unknown_path_and_method_get_json_errors_with_a_request_id(client):
    resp = await client.get("/api/v1/nothing-here")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    assert len(resp.headers["X-Request-Id"]) == 32

    resp = await client.put("/api/v1/programme")
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "invalid"


async def test_a_caller_supplied_request_id_is_echoed(client):
    resp = await client.get("/api/v1/programme", headers={"X-Request-Id": "trace-abcdef123"})
    assert resp.headers["X-Request-Id"] == "trace-abcdef123"
