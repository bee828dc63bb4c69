"""Access control for drivers: verify and issue tokens with the live keyset and revocations.

Wraps the pure rules of :mod:`hybridcon.core.tokens` with what a node has: the keyset
file (re-read when a token names a key we have not seen, e.g. after ``keys rotate``
on another machine), the revocation mirror and the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Container
from datetime import timedelta
from pathlib import Path

from hybridcon.clock import Clock
from hybridcon.core.keys import Keyset
from hybridcon.core.tokens import Claims, TokenRequest, UnknownKey, issue_token, verify_token
from hybridcon.errors import ConfigError, Revoked, TokenError
from hybridcon.metrics import Metrics
from hybridcon.settings import Settings
from hybridcon.store.keyfile import read_keyset

# Re-read the keyset file at most this often when tokens name unknown keys, so a
# stream of forged kids cannot turn into a stream of file reads.
KEYSET_RELOAD_INTERVAL = 2.0


class AccessControl:
    """Token verification and issuing for one node."""

    def __init__(
        self,
        *,
        settings: Settings,
        keyset: Keyset,
        keys_path: Path,
        revoked: Container[str],
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.keyset = keyset
        self._keys_path = keys_path
        self._revoked = revoked
        self._clock = clock
        self._metrics = metrics
        self._last_reload = 0.0
        self._mtime = self._stat()

    def _stat(self) -> float:
        try:
            return self._keys_path.stat().st_mtime
        except OSError:
            return 0.0

    def refresh_if_changed(self) -> bool:
        """Re-read the keyset file if it changed on disk (a rotate or retire elsewhere).

        Called periodically by the node, so a rotation starts signing with the new key
        and a retirement stops accepting the old one without a restart.
        """
        mtime = self._stat()
        if mtime == self._mtime:
            return False
        try:
            self.keyset = read_keyset(self._keys_path)
        except ConfigError:
            return False
        self._mtime = mtime
        return True

    def reload_keyset(self) -> bool:
        """Re-read the keyset file (rate-limited). Returns whether it was read."""
        now = time.monotonic()
        if now - self._last_reload < KEYSET_RELOAD_INTERVAL:
            return False
        self._last_reload = now
        try:
            self.keyset = read_keyset(self._keys_path)
        except ConfigError:
            return False
        return True

    def verify(self, token: str) -> Claims:
        """Verify a token now.

        Raises:
            Revoked: the token's ``jti`` is revoked.
            TokenError: anything else wrong with it.
        """
        try:
            try:
                return self._verify(token)
            except UnknownKey:
                if not self.reload_keyset():
                    raise
                return self._verify(token)
        except Revoked:
            self._metrics.token_rejections.labels(reason="revoked").inc()
            raise
        except UnknownKey:
            self._metrics.token_rejections.labels(reason="unknown_key").inc()
            raise
        except TokenError:
            self._metrics.token_rejections.labels(reason="invalid").inc()
            raise

    def _verify(self, token: str) -> Claims:
        s = self.settings
        return verify_token(
            token,
            self.keyset,
            issuer=s.token_issuer,
            audience=s.token_audience,
            now=self._clock(),
            leeway=s.token_leeway,
            revoked=self._revoked,
        )

    def issue(
        self, request: TokenRequest, *, via: str, max_ttl: timedelta | None = None
    ) -> tuple[str, Claims]:
        """Issue a token for ``request`` (``via`` labels the metric: cli, api, invite)."""
        s = self.settings
        token, claims = issue_token(
            self.keyset,
            request,
            issuer=s.token_issuer,
            audience=s.token_audience,
            now=self._clock(),
            default_ttl=s.token_ttl,
            max_ttl=max_ttl if max_ttl is not None else s.token_max_ttl,
        )
        self._metrics.tokens_issued.labels(role=claims.role.value, via=via).inc()
        return token, claims
