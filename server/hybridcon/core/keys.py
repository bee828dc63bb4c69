"""The signing keyset: one active Ed25519 key signs; older keys still verify.

Rotation adds a new active key and keeps the previous ones until they are retired
(after the longest token lifetime has passed, nothing they signed is still valid).
The keyset is stored as JSON by the store layer; this module only turns it into and
out of plain data. Key ids are RFC 7638 JWK thumbprints of the public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hybridcon.errors import ConfigError

ALGORITHM = "EdDSA"
FORMAT_VERSION = 1


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _public_x(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _b64url(raw)


def thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 thumbprint (SHA-256) of an OKP public key: its ``kid``."""
    members = {"crv": "Ed25519", "kty": "OKP", "x": _public_x(public_key)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return _b64url(hashlib.sha256(canonical).digest())


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One Ed25519 key with its id and history."""

    kid: str
    private_key: Ed25519PrivateKey
    created_at: datetime
    retired_at: datetime | None = None

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The verifying half."""
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        """The public JWK as published in ``/.well-known/jwks.json``."""
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": _public_x(self.public_key),
            "kid": self.kid,
            "use": "sig",
            "alg": ALGORITHM,
        }

    @classmethod
    def generate(cls, now: datetime) -> SigningKey:
        """A fresh random key created at ``now``."""
        private_key = Ed25519PrivateKey.generate()
        return cls(
            kid=thumbprint(private_key.public_key()), private_key=private_key, created_at=now
        )


@dataclass(frozen=True, slots=True)
class Keyset:
    """All known keys; ``active_kid`` names the one that signs."""

    keys: tuple[SigningKey, ...]
    active_kid: str

    def __post_init__(self) -> None:
        active = [k for k in self.keys if k.kid == self.active_kid]
        if not active:
            raise ConfigError(f"keyset's active key {self.active_kid!r} is not in the keyset")
        if active[0].retired_at is not None:
            raise ConfigError(f"keyset's active key {self.active_kid!r} is retired")

    @property
    def active(self) -> SigningKey:
        """The key new tokens are signed with."""
        return next(k for k in self.keys if k.kid == self.active_kid)

    def verifying_key(self, kid: str) -> Ed25519PublicKey | None:
        """The public key for ``kid`` if it is known and not retired."""
        for key in self.keys:
            if key.kid == kid and key.retired_at is None:
                return key.public_key
        return None

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWK Set of every key that still verifies."""
        return {"keys": [k.public_jwk() for k in self.keys if k.retired_at is None]}

    @classmethod
    def generate(cls, now: datetime) -> Keyset:
        """A keyset with one fresh active key."""
        key = SigningKey.generate(now)
        return cls(keys=(key,), active_kid=key.kid)

    def rotated(self, now: datetime) -> Keyset:
        """A new keyset whose active key is fresh; the old keys still verify."""
        key = SigningKey.generate(now)
        return Keyset(keys=(*self.keys, key), active_kid=key.kid)

    def retired(self, kid: str, now: datetime) -> Keyset:
        """A new keyset in which ``kid`` no longer verifies.

        Raises:
            ConfigError: ``kid`` is unknown or is the active key.
        """
        if kid == self.active_kid:
            raise ConfigError("the active key cannot be retired; rotate first")
        if not any(k.kid == kid for k in self.keys):
            raise ConfigError(f"no key {kid!r} in the keyset")
        keys = tuple(
            replace(k, retired_at=now) if k.kid == kid and k.retired_at is None else k
            for k in self.keys
        )
        return Keyset(keys=keys, active_kid=self.active_kid)

    def to_data(self) -> dict[str, Any]:
        """Plain data (with PEM private keys) for storage. Secret: store with mode 0600."""
        return {
            "version": FORMAT_VERSION,
            "active_kid": self.active_kid,
            "keys": [
                {
                    "kid": k.kid,
                    "created_at": k.created_at.isoformat(),
                    "retired_at": k.retired_at.isoformat() if k.retired_at else None,
                    "private_pem": k.private_key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ).decode("ascii"),
                }
                for k in self.keys
            ],
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Keyset:
        """The keyset stored by :meth:`to_data`.

        Raises:
            ConfigError: the data is not a keyset this version understands.
        """
        try:
            if data.get("version") != FORMAT_VERSION:
                raise ConfigError(f"keyset format version {data.get('version')!r} is not supported")
            keys = []
            for item in data["keys"]:
                private_key = serialization.load_pem_private_key(
                    item["private_pem"].encode("ascii"), password=None
                )
                if not isinstance(private_key, Ed25519PrivateKey):
                    raise ConfigError(f"key {item['kid']!r} is not an Ed25519 key")
                kid = thumbprint(private_key.public_key())
                if kid != item["kid"]:
                    raise ConfigError(f"key {item['kid']!r} does not match its thumbprint")
                retired = item.get("retired_at")
                keys.append(
                    SigningKey(
                        kid=kid,
                        private_key=private_key,
                        created_at=datetime.fromisoformat(item["created_at"]),
                        retired_at=datetime.fromisoformat(retired) if retired else None,
                    )
                )
            return cls(keys=tuple(keys), active_kid=data["active_kid"])
        except ConfigError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"keyset is malformed: {exc!r}") from None
