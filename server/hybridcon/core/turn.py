"""TURN credentials that expire, in the scheme coturn calls its REST API (``use-auth-secret``).

hybridcon and coturn share one secret and nothing else: no user database, no call
between them. For each participant hybridcon mints

* ``username = "<expiry>:<id>"``, the expiry in Unix seconds, and
* ``credential = base64(HMAC-SHA1(secret, username))``,

and coturn, configured with ``use-auth-secret`` and the same ``static-auth-secret``,
recomputes the credential from the username it is sent and refuses it once the
expiry has passed (draft-uberti-behave-turn-rest-00, section 2.2). A leaked credential
is therefore good for one person until its expiry, and every person's allocations
count against coturn's ``user-quota`` under their own id.

Pure: the time is passed in, the secret is bytes; reading the secret file is the
drivers' part.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

TURN_SCHEMES = ("turn:", "turns:")


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    """One person's TURN username and credential, good until ``expires_at``."""

    username: str
    credential: str
    expires_at: datetime


def turn_credentials(secret: bytes, user: str, now: datetime, ttl: timedelta) -> TurnCredentials:
    """Mint TURN credentials for ``user`` that coturn accepts until ``now + ttl``.

    Args:
        secret: coturn's ``static-auth-secret``, as bytes.
        user: who the credentials are for (a pseudonym: coturn logs it).
        now: the current time (aware).
        ttl: how long the credentials stay good.

    Returns:
        The username ``"<expiry>:<user>"``, its credential and the expiry.

    Raises:
        ValueError: an empty secret or user, a naive ``now``, or a ttl under a second.
    """
    if not secret:
        raise ValueError("the TURN secret is empty")
    if not user:
        raise ValueError("TURN credentials need a user id")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if ttl < timedelta(seconds=1):
        raise ValueError("TURN credentials must live at least a second")
    expiry = int((now + ttl).timestamp())
    username = f"{expiry}:{user}"
    digest = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return TurnCredentials(
        username=username,
        credential=base64.b64encode(digest).decode("ascii"),
        expires_at=datetime.fromtimestamp(expiry, UTC),
    )


def credentials_valid(secret: bytes, username: str, credential: str, now: datetime) -> bool:
    """Whether coturn would take ``username`` / ``credential`` at ``now`` (its check, for
    tests and for operators comparing secrets): the HMAC matches and the expiry has not
    passed."""
    stamp, sep, _user = username.partition(":")
    if not sep or not stamp.isdigit():
        return False
    expected = base64.b64encode(
        hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    ).decode("ascii")
    return hmac.compare_digest(expected, credential) and int(stamp) >= int(now.timestamp())


def ice_servers(
    configured: Sequence[dict[str, Any]],
    turn_urls: Sequence[str],
    credentials: TurnCredentials | None,
) -> list[dict[str, Any]]:
    """The ICE servers for one peer: the configured ones, then the TURN URLs with that
    peer's own credentials (RTCIceServer dictionaries: ``urls``, ``username``,
    ``credential``).

    Args:
        configured: STUN (or static TURN) servers from the settings, as dictionaries.
        turn_urls: ``turn:`` / ``turns:`` URLs of a coturn with ``use-auth-secret``.
        credentials: the peer's minted credentials; None leaves the TURN URLs out (no
            secret configured).
    """
    servers = [
        {key: value for key, value in server.items() if value is not None} for server in configured
    ]
    if turn_urls and credentials is not None:
        servers.append(
            {
                "urls": list(turn_urls),
                "username": credentials.username,
                "credential": credentials.credential,
            }
        )
    return servers
