"""The loaded programme, kept in the database for the report and for other nodes."""

from __future__ import annotations

import orjson

from hybridcon.core.programme import Programme
from hybridcon.store.db import Conn


async def save_programme(conn: Conn, programme: Programme, source: str) -> None:
    """Replace the stored copy of this event's programme with ``programme`` (one transaction)."""
    event_id = programme.event.id
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO programme_documents (event_id, document, source, loaded_at)
               VALUES ($1, $2::jsonb, $3, now())
               ON CONFLICT (event_id) DO UPDATE
               SET document = EXCLUDED.document, source = EXCLUDED.source, loaded_at = now()""",
            event_id,
            orjson.dumps(programme.public()).decode(),
            source,
        )
        await conn.execute("DELETE FROM stages WHERE event_id = $1", event_id)
        await conn.execute("DELETE FROM sessions WHERE event_id = $1", event_id)
        await conn.executemany(
            "INSERT INTO stages (id, event_id, title, kind, theme) VALUES ($1, $2, $3, $4, $5)",
            [(s.id, event_id, s.title, s.kind.value, s.theme) for s in programme.stages],
        )
        await conn.executemany(
            """INSERT INTO sessions (id, event_id, title, kind, stage, theme, online,
                                     starts_at, ends_at, location, capacity)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
            [
                (
                    s.id,
                    event_id,
                    s.title,
                    s.kind.value,
                    s.stage,
                    s.theme,
                    s.online.value,
                    s.starts_at,
                    s.ends_at,
                    s.location,
                    s.capacity,
                )
                for s in programme.sessions
            ],
        )
