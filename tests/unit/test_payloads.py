"""Typed engagement payloads: one shape of ``data`` per kind, whoever logs it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hybridcon.core import payloads
from hybridcon.core.engagement import EngagementEvent, EventKind


def test_unset_fields_are_left_out_and_tuples_become_lists() -> None:
    assert payloads.Heartbeat(playing=True, visible=False).data() == {
        "playing": True,
        "visible": False,
    }
    assert payloads.Heartbeat(playing=False, visible=True, muted=True, quality="720p").data() == {
        "playing": False,
        "visible": True,
        "muted": True,
        "quality": "720p",
    }
    assert payloads.Leave().data() == {}
    assert payloads.Leave(seconds=0).data() == {"seconds": 0}
    opened = payloads.PollOpened(poll_id="p1", topics=("stage:a", "stage:b"))
    assert opened.data() == {"poll_id": "p1", "topics": ["stage:a", "stage:b"]}


def test_moderation_spreads_settings_and_keeps_only_the_hash() -> None:
    slow = payloads.ChatModerated(action="slowmode", settings={"slowmode": 5, "hold_first": False})
    assert slow.data() == {"action": "slowmode", "slowmode": 5, "hold_first": False}
    timeout = payloads.ChatModerated(
        action="timeout", user_id="hash", seconds=60, until="2022-05-05T10:00:00+00:00"
    )
    assert timeout.data() == {
        "action": "timeout",
        "user_id": "hash",
        "seconds": 60,
        "until": "2022-05-05T10:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (payloads.StreamStarted(state="live", was="scheduled"), EventKind.STREAM_STARTED),
        (payloads.StreamEnded(state="interrupted", was="live"), EventKind.STREAM_ENDED),
        (payloads.Reaction(emoji="👏"), EventKind.REACTION),
        (payloads.PollVote(poll_id="p", origin="hall:plenary", changed=False), EventKind.POLL_VOTE),
    ],
)
def test_each_payload_names_its_kind_and_survives_the_log_line(
    payload: payloads.Payload, kind: EventKind
) -> None:
    assert payload.kind is kind
    event = EngagementEvent.new(
        payload.kind, ts=datetime(2022, 5, 5, tzinfo=UTC), data=payload.data()
    )
    again = EngagementEvent.from_line(event.to_line())
    assert again.kind is kind and dict(again.data) == payload.data()
