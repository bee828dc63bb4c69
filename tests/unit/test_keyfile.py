"""Key files on disk: created once under a lock, read as they are afterwards, so a
read-only mount (a Kubernetes Secret, a compose secret) can hold them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from hybridcon.errors import ConfigError
from hybridcon.store.keyfile import load_or_create_keyset, load_or_create_secret

NOW = datetime(2022, 5, 5, 8, 0, tzinfo=UTC)


def test_existing_key_files_are_read_without_writing_beside_them(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keyset = load_or_create_keyset(keys / "signing-keys.json", NOW)
    secret = load_or_create_secret(keys / "invite.secret")
    # Mounted elsewhere as they are (no lock files: a read-only mount has none).
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    for name in ("signing-keys.json", "invite.secret"):
        (mounted / name).write_bytes((keys / name).read_bytes())
    again = load_or_create_keyset(mounted / "signing-keys.json", NOW)
    assert again.active_kid == keyset.active_kid
    assert load_or_create_secret(mounted / "invite.secret") == secret
    assert sorted(p.name for p in mounted.iterdir()) == ["invite.secret", "signing-keys.json"]


def test_a_missing_key_file_is_created_once(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "engagement.key"
    first = load_or_create_secret(path)
    assert len(first) == 32 and load_or_create_secret(path) == first


def test_a_short_secret_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "short.secret"
    path.write_bytes(b"too short")
    with pytest.raises(ConfigError, match="shorter than 16 bytes"):
        load_or_create_secret(path)
