"""The stream state machine and signed media URLs, with a fake clock."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from hybridcon.core.streams import StreamEvent, StreamState, next_state
from hybridcon.core.urls import check_hls_token, hls_token, hls_url
from hybridcon.errors import Forbidden

T0 = datetime(2022, 5, 5, 9, 30, tzinfo=UTC)
SECRET = b"s" * 32


@pytest.mark.parametrize(
    ("state", "event", "after", "kind"),
    [
        (StreamState.SCHEDULED, StreamEvent.STARTED, StreamState.LIVE, "stream_started"),
        (StreamState.LIVE, StreamEvent.DROPPED, StreamState.INTERRUPTED, "stream_ended"),
        (StreamState.INTERRUPTED, StreamEvent.STARTED, StreamState.LIVE, "stream_started"),
        (StreamState.LIVE, StreamEvent.STOPPED, StreamState.ENDED, "stream_ended"),
        (StreamState.INTERRUPTED, StreamEvent.STOPPED, StreamState.ENDED, None),
        (StreamState.ENDED, StreamEvent.STARTED, StreamState.LIVE, "stream_started"),
        (StreamState.LIVE, StreamEvent.STARTED, StreamState.LIVE, None),
    ],
)
def test_transitions(state, event, after, kind) -> None:
    transition = next_state(state, event, T0)
    assert transition is not None
    assert transition.after is after
    assert transition.engagement_kind == kind


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (StreamState.SCHEDULED, StreamEvent.DROPPED),
        (StreamState.SCHEDULED, StreamEvent.STOPPED),
        (StreamState.ENDED, StreamEvent.DROPPED),
        (StreamState.INTERRUPTED, StreamEvent.DROPPED),
    ],
)
def test_events_that_change_nothing(state, event) -> None:
    assert next_state(state, event, T0) is None


def test_a_signed_hls_url_verifies_until_it_expires() -> None:
    url = hls_url("https://live.example.org", SECRET, "plenary", T0 + timedelta(hours=1))
    assert url.startswith("https://live.example.org/hls/plenary/")
    assert url.endswith("/index.m3u8")
    token = url.split("/")[-2]
    check_hls_token(SECRET, "plenary", token, T0)
    with pytest.raises(Forbidden, match="expired"):
        check_hls_token(SECRET, "plenary", token, T0 + timedelta(hours=1))
    with pytest.raises(Forbidden, match="not valid"):
        check_hls_token(SECRET, "radio", token, T0)  # another stage's folder
    with pytest.raises(Forbidden, match="not valid"):
        check_hls_token(b"t" * 32, "plenary", token, T0)
    stamp, mac, md5 = token.split(".")
    later = str(int(stamp) + 3600)
    with pytest.raises(Forbidden, match="not valid"):
        check_hls_token(SECRET, "plenary", f"{later}.{mac}.{md5}", T0)
    with pytest.raises(Forbidden, match="malformed"):
        check_hls_token(SECRET, "plenary", "nonsense", T0)


def test_the_md5_part_is_what_nginx_secure_link_computes() -> None:
    expires = T0 + timedelta(hours=2)
    token = hls_token(SECRET, "impact", expires)
    stamp, _, md5 = token.split(".")
    # nginx: secure_link_md5 "$secure_link_expires/hls/$stage/ <secret as base64url>";
    # the result is compared as base64url without padding.
    secret_text = base64.urlsafe_b64encode(SECRET).rstrip(b"=").decode()
    raw = hashlib.md5(f"{stamp}/hls/impact/ {secret_text}".encode()).digest()
    assert md5 == base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
