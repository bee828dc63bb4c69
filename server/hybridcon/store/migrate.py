"""Schema migrations: numbered SQL files applied once each, in order, under a lock.

``store/migrations/NNNN_name.sql`` files are applied in name order, each in its own
transaction, and recorded in ``schema_migrations``. A session-level advisory lock
makes it safe for several nodes (or a node and ``hybridcon migrate``) to start at once:
the first applies, the others wait and then find nothing left to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import asyncpg

# An arbitrary constant naming hybridcon's migration lock among advisory locks.
MIGRATION_LOCK_ID = 0x4859_4252_4944  # "HYBRID"


@dataclass(frozen=True, slots=True)
class Migration:
    """One SQL file."""

    version: str
    sql: str


def available() -> list[Migration]:
    """The migrations shipped with this version, in order."""
    folder = resources.files("hybridcon.store") / "migrations"
    files = sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".sql")),
        key=lambda entry: entry.name,
    )
    return [Migration(version=f.name.removesuffix(".sql"), sql=f.read_text("utf-8")) for f in files]


async def migrate(conn: asyncpg.Connection) -> list[str]:
    """Apply every migration not yet applied.

    Args:
        conn: a connection to the target database (not in a transaction).

    Returns:
        The versions applied by this call (empty when the schema was up to date).
    """
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied: list[str] = []
        for migration in available():
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", migration.version
                )
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
