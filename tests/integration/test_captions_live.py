"""Live captions over real sockets: who may send them, who gets them, and the WebVTT of
a recording made from them."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from hybridcon.core.tokens import Role
from support import WsClient, bearer, issue, services_of


async def test_captions_reach_the_stage_and_are_kept_for_the_recording(client):
    captioner = await WsClient.connect(
        client, issue(client, Role.CAPTIONER, ("stage:plenary",), name="Cas")
    )
    viewer = await WsClient.connect(client, issue(client, Role.VIEWER, ("stage:plenary",)))
    first = await viewer.ok("subscribe", topic="stage:plenary")
    assert first["snapshot"]["captions"] == []

    sent = await captioner.ok("caption.send", topic="stage:plenary", text=" Welkom\nallemaal ")
    pushed = await viewer.push("caption")
    assert pushed["cue_id"] == sent["cue_id"] and pushed["text"] == "Welkom allemaal"
    assert pushed["topic"] == "stage:plenary" and isinstance(pushed["seq"], int)

    # A late joiner sees the current line in the snapshot.
    late = await WsClient.connect(client, issue(client, Role.VIEWER, ("stage:plenary",)))
    snap = await late.ok("subscribe", topic="stage:plenary")
    assert [c["text"] for c in snap["snapshot"]["captions"]] == ["Welkom allemaal"]

    # Only captioners and staff send captions, only on stages their scopes cover.
    refused = await viewer.request("caption.send", topic="stage:plenary", text="Hallo")
    assert refused["type"] == "error" and refused["code"] == "forbidden"
    other = await captioner.request("caption.send", topic="stage:impact", text="Hallo")
    assert other["code"] == "forbidden"
    empty = await captioner.request("caption.send", topic="stage:plenary", text="  ")
    assert empty["code"] == "invalid"
    staff = await WsClient.connect(client, issue(client, Role.MODERATOR))
    not_a_stage = await staff.request("caption.send", topic="event", text="Hallo")
    assert not_a_stage["code"] == "invalid"
    await staff.ok("caption.send", topic="stage:plenary", text="Tweede <zin>")

    # A recording around that time lists its captions; they come as WebVTT.
    settings = services_of(client).settings
    folder = settings.recordings_dir / "plenary"
    folder.mkdir(parents=True)
    started = datetime.now(UTC) - timedelta(minutes=1)
    name = f"plenary-{started:%Y%m%dT%H%M%S}-0f8e5c2b"
    video = folder / f"{name}.mkv"
    video.write_bytes(b"\x1a\x45\xdf\xa3")
    ended = datetime.now(UTC) + timedelta(seconds=30)
    os.utime(video, (ended.timestamp(), ended.timestamp()))
    quiet = folder / "plenary-20220505T073000-aaaaaaaa.mkv"  # long before any cue
    quiet.write_bytes(b"\x1a\x45\xdf\xa3")
    os.utime(quiet, (started.timestamp() - 3600, started.timestamp() - 3600))

    listed = await (
        await client.get("/api/v1/recordings", headers=bearer(issue(client, Role.VIEWER)))
    ).json()
    by_file = {r["file"]: r for r in listed["recordings"]}
    assert by_file[quiet.name]["captions_url"] is None
    captions_url = by_file[video.name]["captions_url"]
    assert captions_url == by_file[video.name]["url"].removesuffix(".mkv") + ".vtt"
    vtt = await client.get(captions_url.removeprefix(settings.base_url()))
    assert vtt.status == 200 and vtt.content_type == "text/vtt"
    text = await vtt.text()
    assert text.startswith("WEBVTT\n\n")
    assert "Welkom allemaal" in text and "Tweede &lt;zin&gt;" in text
    assert " --> " in text
    for ws in (captioner, viewer, late, staff):
        await ws.close()
