"""Who may use a topic: the programme and the token's scopes and role decide."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hybridcon.core.tokens import STAFF_ROLES
from hybridcon.errors import Forbidden, NotFound

if TYPE_CHECKING:
    from hybridcon.realtime.connection import Connection
    from hybridcon.realtime.gateway import Gateway


def check_topic(gateway: Gateway, conn: Connection, topic: str) -> None:
    """Raise unless ``topic`` exists and the token may subscribe to it.

    Raises:
        NotFound: no such stage or session in the programme.
        Forbidden: the token's role or scopes do not cover it.
    """
    if not gateway.services.programme.has_topic(topic):
        raise NotFound(f"no topic {topic!r} in the programme")
    if not conn.claims.may_subscribe(topic):
        raise Forbidden(f"your token does not give access to {topic}")


def require_moderator(conn: Connection, topic: str) -> None:
    """Raise unless ``conn`` may moderate ``topic``.

    Raises:
        Forbidden: not a moderator or organiser, or without the topic's scope.
    """
    claims = conn.claims
    if claims.role not in STAFF_ROLES:
        raise Forbidden("only moderators and organisers may do this")
    if not claims.may_subscribe(f"mod:{topic}"):
        raise Forbidden(f"your token does not cover {topic}")
