"""Access tokens: roles, scopes, claims; issuing and verifying Ed25519-signed JWTs.

Pure: the caller passes the keyset, the time and the set of revoked ``jti`` values.
Verification pins the algorithm to EdDSA, requires ``exp``, ``aud``, ``iss`` (and the
other claims hybridcon relies on), and checks time claims against the ``now`` it is
given, not the wall clock, so tests run with a fake clock (PyJWT's own time checks
are switched off for that reason and done here, with an explicit leeway).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Container, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt
import orjson

from hybridcon.core.durations import describe_duration
from hybridcon.core.keys import ALGORITHM, Keyset
from hybridcon.errors import Invalid, Revoked, TokenError

REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "nbf", "jti", "role")
MAX_NAME_LENGTH = 80
_ID = r"[a-z0-9][a-z0-9_-]{0,63}"
_SCOPE_RE = re.compile(rf"^(?:\*|(?:stage|session|hall):{_ID})$")
_SUB_RE = re.compile(r"^[A-Za-z0-9._:@-]{1,128}$")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")


class Role(StrEnum):
    """What a person is at the event; decides which actions are theirs."""

    VIEWER = "viewer"
    MODERATOR = "moderator"
    ORGANISER = "organiser"
    BROADCASTER = "broadcaster"
    SPEAKER = "speaker"
    # Types live captions for the stages its scopes cover (caption.send); nothing else.
    CAPTIONER = "captioner"


STAFF_ROLES = frozenset({Role.MODERATOR, Role.ORGANISER})

# What others see for a token without a name (chat, Q&A, sessions, networking).
UNNAMED = {Role.MODERATOR: "Moderator", Role.ORGANISER: "Organisatie", Role.SPEAKER: "Spreker"}


def parse_role(value: str) -> Role:
    """A role from its name.

    Raises:
        Invalid: the name is not one of the roles.
    """
    try:
        return Role(value)
    except ValueError:
        names = ", ".join(r.value for r in Role)
        raise Invalid(f"unknown role {value!r}; expected one of {names}") from None


def parse_scopes(values: Sequence[str]) -> tuple[str, ...]:
    """Validated, de-duplicated scopes in their given order.

    A scope is ``*`` (everything), ``stage:<id>``, ``session:<id>`` or ``hall:<id>``;
    ids are lower-case letters, digits, ``-`` and ``_``.

    Raises:
        Invalid: a scope is malformed.
    """
    seen: dict[str, None] = {}
    for value in values:
        if not isinstance(value, str) or not _SCOPE_RE.fullmatch(value):
            raise Invalid(
                f"invalid scope {value!r}; "
                "expected '*', 'stage:<id>', 'session:<id>' or 'hall:<id>'"
            )
        seen[value] = None
    return tuple(seen)


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified content of an access token."""

    sub: str
    role: Role
    scopes: tuple[str, ...]
    name: str
    jti: str
    iss: str
    aud: str
    iat: datetime
    nbf: datetime
    exp: datetime

    def covers(self, scope: str) -> bool:
        """Whether the token's scopes include ``scope`` (``*`` includes all; ``hall:x``,
        a phone in the room of stage ``x``, includes ``stage:x``)."""
        if "*" in self.scopes or scope in self.scopes:
            return True
        kind, _, ident = scope.partition(":")
        return kind == "stage" and f"hall:{ident}" in self.scopes

    def may_subscribe(self, topic: str) -> bool:
        """Whether this token may subscribe to ``topic``.

        ``event`` is open to every token; ``stage:x`` and ``session:x`` need that scope
        (or ``*``); ``mod:x`` needs a moderator or organiser role *and* the scope of ``x``
        (``mod:event``: the role alone, as ``event`` needs no scope); ``org`` (the live
        view) needs the organiser role.
        """
        if topic == "event":
            return True
        if topic == "org":
            return self.role is Role.ORGANISER
        kind, _, ident = topic.partition(":")
        if kind in {"stage", "session"}:
            return bool(ident) and self.covers(topic)
        if kind == "mod":
            # mod:<stage, session or event>, never mod:mod:...
            return (
                self.role in STAFF_ROLES
                and (ident == "event" or ident.partition(":")[0] in {"stage", "session"})
                and self.may_subscribe(ident)
            )
        return False

    @property
    def shown_name(self) -> str:
        """The name others see next to what this person says or does: the token's name,
        or for a token without one, what the person is (Dutch, the event's language)."""
        return self.name or UNNAMED.get(self.role, "Deelnemer")

    def to_user(self) -> dict[str, object]:
        """The public view of the person behind the token (``auth.ok``'s ``user``)."""
        return {"id": self.sub, "name": self.name, "role": self.role.value, "scopes": self.scopes}


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What to put in a new token. Validated by :func:`issue_token`."""

    role: Role
    scopes: tuple[str, ...]
    name: str = ""
    sub: str | None = None
    ttl: timedelta | None = None


def issue_token(
    keyset: Keyset,
    request: TokenRequest,
    *,
    issuer: str,
    audience: str,
    now: datetime,
    default_ttl: timedelta,
    max_ttl: timedelta,
) -> tuple[str, Claims]:
    """Sign a new access token with the keyset's active key.

    Args:
        keyset: holds the active signing key.
        request: role, scopes, display name, optional subject and lifetime.
        issuer, audience: the ``iss`` and ``aud`` claims.
        now: the issue time (``iat`` and ``nbf``).
        default_ttl, max_ttl: lifetime when none is asked for, and the ceiling.

    Returns:
        The compact JWT and its claims.

    Raises:
        Invalid: bad scopes, name, subject or lifetime.
    """
    ttl = request.ttl if request.ttl is not None else default_ttl
    if ttl <= timedelta(0):
        raise Invalid("token lifetime must be positive")
    if ttl > max_ttl:
        raise Invalid(
            f"token lifetime {describe_duration(ttl)} is longer than "
            f"the maximum {describe_duration(max_ttl)}"
        )
    name = request.name.strip()
    if len(name) > MAX_NAME_LENGTH:
        raise Invalid(f"name is longer than {MAX_NAME_LENGTH} characters")
    sub = request.sub if request.sub is not None else f"u:{uuid.uuid4().hex}"
    if not _SUB_RE.fullmatch(sub):
        raise Invalid("sub must be 1-128 letters, digits or . _ : @ -")
    scopes = parse_scopes(request.scopes)
    issued = now.replace(microsecond=0)
    claims = Claims(
        sub=sub,
        role=request.role,
        scopes=scopes,
        name=name,
        jti=uuid.uuid4().hex,
        iss=issuer,
        aud=audience,
        iat=issued,
        nbf=issued,
        exp=issued + ttl,
    )
    payload: dict[str, Any] = {
        "iss": claims.iss,
        "aud": claims.aud,
        "sub": claims.sub,
        "iat": int(claims.iat.timestamp()),
        "nbf": int(claims.nbf.timestamp()),
        "exp": int(claims.exp.timestamp()),
        "jti": claims.jti,
        "role": claims.role.value,
        "scopes": list(claims.scopes),
        "name": claims.name,
    }
    key = keyset.active
    token = jwt.encode(payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
    return token, claims


class UnknownKey(TokenError):
    """The token names a ``kid`` this keyset does not hold (perhaps newer than our copy)."""


def token_kid(token: str) -> str:
    """The ``kid`` in a token's header, after checking the header's algorithm.

    Raises:
        TokenError: not a JWT, an algorithm other than EdDSA, or no ``kid``.
    """
    # Read here rather than with jwt.get_unverified_header, which checks every character
    # of the whole token in Python and then parses the header again inside jwt.decode
    # (~20 µs of a WebSocket join's ~550; docs/benchmarks.md). jwt.decode still checks
    # the whole token, signature first.
    head, dot, _ = token.partition(".")
    if not dot or not _B64URL_RE.fullmatch(head):
        raise TokenError("token is malformed: not a signed JWT")
    try:
        header = orjson.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        raise TokenError("token is malformed: not a signed JWT") from None
    if not isinstance(header, dict):
        raise TokenError("token is malformed: its header is not a JSON object")
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise TokenError(f"token algorithm {alg!r} is not accepted; expected {ALGORITHM}")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("token has no key id (kid) in its header")
    return kid


def verify_token(
    token: str,
    keyset: Keyset,
    *,
    issuer: str,
    audience: str,
    now: datetime,
    leeway: timedelta = timedelta(seconds=30),
    revoked: Container[str] = (),
) -> Claims:
    """Verify a token and return its claims.

    Args:
        token: the compact JWT.
        keyset: the keys that may have signed it (active and retired).
        issuer, audience: the only accepted ``iss`` and ``aud``.
        now: the time to check ``exp``, ``nbf`` and ``iat`` against.
        leeway: clock skew tolerated on those checks.
        revoked: ``jti`` values no longer honoured.

    Returns:
        The verified claims.

    Raises:
        UnknownKey: signed with a key this keyset does not hold.
        Revoked: the ``jti`` is in ``revoked``.
        TokenError: anything else wrong, with a message naming it.
    """
    if not isinstance(token, str) or not token:
        raise TokenError("no token given")
    kid = token_kid(token)
    public_key = keyset.verifying_key(kid)
    if public_key is None:
        raise UnknownKey(f"token was signed with an unknown key {kid!r}")
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=[ALGORITHM],
            audience=audience,
            issuer=issuer,
            options={
                "require": list(REQUIRED_CLAIMS),
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"token has no {exc.claim!r} claim") from None
    except jwt.InvalidAudienceError:
        raise TokenError(f"token audience is not {audience!r}") from None
    except jwt.InvalidIssuerError:
        raise TokenError(f"token issuer is not {issuer!r}") from None
    except jwt.InvalidSignatureError:
        raise TokenError("token signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise TokenError(f"token is invalid: {exc}") from None

    exp = _time_claim(payload, "exp")
    nbf = _time_claim(payload, "nbf")
    iat = _time_claim(payload, "iat")
    if now >= exp + leeway:
        raise TokenError(f"token expired at {exp.isoformat()}")
    if now + leeway < nbf:
        raise TokenError(f"token is not valid before {nbf.isoformat()}")
    if now + leeway < iat:
        raise TokenError("token was issued in the future")

    jti = payload["jti"]
    if not isinstance(jti, str) or not jti:
        raise TokenError("token jti must be a non-empty string")
    if jti in revoked:
        raise Revoked("token has been revoked")
    sub = payload["sub"]
    if not isinstance(sub, str) or not _SUB_RE.fullmatch(sub):
        raise TokenError("token sub is malformed")
    try:
        role = Role(payload["role"])
    except ValueError:
        raise TokenError(f"token role {payload['role']!r} is unknown") from None
    raw_scopes = payload.get("scopes", [])
    if not isinstance(raw_scopes, list):
        raise TokenError("token scopes must be a list")
    try:
        scopes = parse_scopes(raw_scopes)
    except Invalid as exc:
        raise TokenError(f"token has an {exc.message}") from None
    name = payload.get("name", "")
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH:
        raise TokenError("token name is malformed")
    # PyJWT checked that iss and aud are these: each connection keeps the caller's
    # strings (one copy per node), not copies of its own.
    return Claims(
        sub=sub,
        role=role,
        scopes=scopes,
        name=name,
        jti=jti,
        iss=issuer,
        aud=audience,
        iat=iat,
        nbf=nbf,
        exp=exp,
    )


def _time_claim(payload: dict[str, Any], claim: str) -> datetime:
    value = payload[claim]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(f"token {claim} must be a number of seconds")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise TokenError(f"token {claim} is out of range") from None
