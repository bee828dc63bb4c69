"""Secrets on disk: the signing keyset and the invite secret.

Files are written atomically (temporary file, fsync, rename) with mode 0600, under an
exclusive ``flock`` so that a server and a CLI command creating them at the same
moment end up with one keyset, not two. A file that exists is read without the lock
(it is only ever replaced whole, by a rename), so key files on a read-only mount work:
in production the keyset file is a mounted secret shared by every node
(``HYBRIDCON_SIGNING_KEYS_FILE``); only rotating it needs a writable copy.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from hybridcon.core.keys import Keyset
from hybridcon.errors import ConfigError

INVITE_SECRET_BYTES = 32


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_keyset(path: Path) -> Keyset:
    """The keyset stored at ``path``.

    Raises:
        ConfigError: the file is missing, unreadable or not a keyset.
    """
    try:
        data = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no signing keyset at {path}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read signing keyset {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"signing keyset {path} is not a JSON object")
    return Keyset.from_data(data)


def load_or_create_keyset(path: Path, now: datetime) -> Keyset:
    """The keyset at ``path``, creating one with a fresh key if there is none."""
    if path.exists():
        return read_keyset(path)
    with _locked(path):
        if path.exists():
            return read_keyset(path)
        keyset = Keyset.generate(now)
        _write_atomic(path, json.dumps(keyset.to_data(), indent=2).encode())
        return keyset


def update_keyset(path: Path, change: Callable[[Keyset], Keyset]) -> Keyset:
    """Apply ``change`` to the stored keyset and store the result (rotate, retire)."""
    with _locked(path):
        keyset = change(read_keyset(path))
        _write_atomic(path, json.dumps(keyset.to_data(), indent=2).encode())
        return keyset


def load_or_create_secret(path: Path) -> bytes:
    """The secret at ``path`` (invite codes, actor hashes), created with random bytes if missing.

    Raises:
        ConfigError: the file exists but is too short to be a secret.
    """
    if path.exists():
        return _read_secret(path)
    with _locked(path):
        if path.exists():
            return _read_secret(path)
        secret = secrets.token_bytes(INVITE_SECRET_BYTES)
        _write_atomic(path, secret)
        return secret


def _read_secret(path: Path) -> bytes:
    secret = path.read_bytes()
    if len(secret) < 16:
        raise ConfigError(f"secret file {path} is shorter than 16 bytes")
    return secret


def load_or_create_text_secret(path: Path) -> bytes:
    """A secret kept as one line of text (shared with another program: coturn's
    ``static-auth-secret``), created with 43 random URL-safe characters if missing.

    Surrounding whitespace (the file's newline) is not part of the secret.

    Returns:
        The secret's UTF-8 bytes.

    Raises:
        ConfigError: the file exists but holds fewer than 16 characters.
    """
    if not path.exists():
        with _locked(path):
            if not path.exists():
                _write_atomic(path, (secrets.token_urlsafe(32) + "\n").encode())
    secret = path.read_bytes().strip()
    if len(secret) < 16:
        raise ConfigError(f"secret file {path} holds fewer than 16 characters")
    return secret
