"""Types shared by the repositories."""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

# A single connection, whether opened directly or borrowed from a pool.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
# Anything that runs a statement: a connection, or the pool (one statement, any connection).
Executor: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any] | asyncpg.Pool[Any]"


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means PostgreSQL is away (restarting, killed, unreachable) rather
    than a bug: a request that failed on it may be retried once the database is back.

    The connection errors of asyncpg (refused, reset, closed under a query, an
    administrator's shutdown, a pool that cannot hand out a connection in time) and the
    operating system's connection errors; not other ``OSError`` (a missing file is a bug).

    ``InternalClientError`` too: when the server dies in the middle of a statement, asyncpg
    can hand out a pooled connection whose protocol still waits for the end of that
    statement ("cannot switch to state 12; another operation (2) is in progress"). Seen
    by the fault suite (tests/faults) with a SIGKILL of the embedded PostgreSQL during a
    chat burst: it answered ``internal`` where a retry after the restart succeeds.
    """
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.exceptions.InternalClientError
        | asyncpg.exceptions.OperatorInterventionError
        | asyncpg.exceptions.ConnectionDoesNotExistError
        | ConnectionError
        | TimeoutError,
    )
