"""The open connections of this node, by person and by token id."""

from __future__ import annotations

from collections.abc import Iterator

from hybridcon.core.connections import to_evict
from hybridcon.realtime.connection import Connection


class ConnectionRegistry:
    """Where the node finds a person's connections (cap) and a token's (revocation)."""

    def __init__(self, max_per_person: int) -> None:
        self.max_per_person = max_per_person
        self._by_sub: dict[str, list[Connection]] = {}

    def __len__(self) -> int:
        return sum(len(conns) for conns in self._by_sub.values())

    def __iter__(self) -> Iterator[Connection]:
        for conns in list(self._by_sub.values()):
            yield from list(conns)

    def add(self, conn: Connection) -> list[Connection]:
        """Register ``conn``; return the person's older connections over the cap."""
        conns = self._by_sub.setdefault(conn.claims.sub, [])
        conns.append(conn)
        evicted = to_evict(conns, self.max_per_person)
        for old in evicted:
            conns.remove(old)
        return evicted

    def remove(self, conn: Connection) -> None:
        """Forget ``conn`` (idempotent)."""
        conns = self._by_sub.get(conn.claims.sub)
        if conns and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._by_sub[conn.claims.sub]

    def find(self, conn_id: str) -> Connection | None:
        """The open connection with this id, if any (a rare look-up: a scan)."""
        return next((c for c in self if c.id == conn_id), None)

    def with_jti(self, jti: str) -> list[Connection]:
        """The connections authenticated with token ``jti``."""
        return [c for c in self if c.claims.jti == jti]
