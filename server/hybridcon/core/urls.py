"""Signed, expiring media URLs: a token in the path covers one stage's HLS folder.

``/hls/<stage>/<expires>.<hmac>.<md5>/index.m3u8``: the playlist's segment URIs are
relative, so they inherit the token and no playlist has to be rewritten per viewer.
``hmac`` (HMAC-SHA256 over the expiry and the folder, 128 bits) is what hybridcon
checks; ``md5`` is nginx's ``secure_link`` form (MD5 of ``"<expires><folder> <secret>"``)
so nginx or a CDN can check the same URL without calling back (``deploy/nginx``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime

from hybridcon.errors import Forbidden

_TOKEN = re.compile(r"^(\d{1,12})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{22})$")


def _b64(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def hls_folder(stage: str) -> str:
    """The folder a stage's HLS token covers."""
    return f"/hls/{stage}/"


def _hmac(secret: bytes, folder: str, expires: int) -> str:
    mac = hmac.new(secret, f"{expires}:{folder}".encode(), hashlib.sha256).digest()
    return _b64(mac[:16])


def _md5(secret: bytes, folder: str, expires: int) -> str:
    # nginx: secure_link_md5 "$secure_link_expires$folder <secret>"; the secret is the
    # same bytes rendered as URL-safe base64 text (see deploy/nginx/hybridcon.conf).
    text = f"{expires}{folder} {_b64(secret)}".encode()
    return _b64(hashlib.md5(text, usedforsecurity=False).digest())


def hls_token(secret: bytes, stage: str, expires: datetime) -> str:
    """The path token for ``stage`` valid until ``expires``."""
    folder = hls_folder(stage)
    stamp = int(expires.timestamp())
    return f"{stamp}.{_hmac(secret, folder, stamp)}.{_md5(secret, folder, stamp)}"


def hls_url(base: str, secret: bytes, stage: str, expires: datetime) -> str:
    """The signed playlist URL of ``stage``."""
    return f"{base}{hls_folder(stage)}{hls_token(secret, stage, expires)}/index.m3u8"


def check_hls_token(secret: bytes, stage: str, token: str, now: datetime) -> None:
    """Raise unless ``token`` is a valid, unexpired token for ``stage``.

    Raises:
        Forbidden: malformed, for another stage, tampered with, or expired.
    """
    match = _TOKEN.match(token)
    if match is None:
        raise Forbidden("the media link is malformed")
    stamp = int(match.group(1))
    expected = _hmac(secret, hls_folder(stage), stamp)
    if not hmac.compare_digest(expected, match.group(2)):
        raise Forbidden("the media link is not valid")
    if now.timestamp() >= stamp:
        raise Forbidden("the media link has expired; reload to get a new one")
