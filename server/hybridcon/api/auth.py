"""Bearer-token authentication for HTTP handlers."""

from __future__ import annotations

from aiohttp import web

from hybridcon.core.tokens import Claims, Role
from hybridcon.errors import Forbidden, TokenError, Unauthorized
from hybridcon.services import SERVICES


def bearer_claims(request: web.Request) -> Claims:
    """The verified claims of the request's ``Authorization: Bearer`` token.

    Raises:
        Unauthorized: no bearer token, or one that does not verify.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("this endpoint needs an 'Authorization: Bearer <token>' header")
    try:
        return request.app[SERVICES].auth().verify(token.strip())
    except TokenError:
        raise
    except ValueError:
        raise Unauthorized("token is malformed") from None


def _article(word: str) -> str:
    # Every role name starts with its sound's letter ("an organiser", "a viewer").
    return "an" if word[:1] in "aeiou" else "a"


def require_role(request: web.Request, *roles: Role) -> Claims:
    """The request's claims, if the token has one of ``roles``.

    Raises:
        Unauthorized: no valid token.
        Forbidden: a valid token with another role.
    """
    claims = bearer_claims(request)
    if claims.role not in roles:
        names = " or ".join(r.value for r in roles)
        raise Forbidden(f"this needs {_article(names)} {names} token; yours is {claims.role.value}")
    return claims
