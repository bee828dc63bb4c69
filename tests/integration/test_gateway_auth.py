"""The WebSocket door: first-frame auth, the per-person cap, revocation and bad frames."""

from __future__ import annotations

import asyncio
import re

import jwt
import pytest
from aiohttp import WSMsgType

from hybridcon.core.tokens import Role
from support import WsClient, bearer, issue, services_of


async def connect(client, token: str):
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "auth", "token": token})
    msg = await ws.receive_json(timeout=5)
    assert msg["type"] == "auth.ok", msg
    return ws, msg


async def closed_with(ws, timeout: float = 5.0) -> tuple[int, str]:
    """Read until the server closes; return its close code and reason."""
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type is WSMsgType.CLOSE:
            return msg.data, (msg.extra or "")
        if msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
            return ws.close_code, ""


async def test_auth_ok_carries_the_user_and_a_session_id(client):
    token = issue(client, Role.MODERATOR, scopes=("stage:plenary",), name="Mo")
    ws, msg = await connect(client, token)
    assert msg["user"]["role"] == "moderator"
    assert msg["user"]["name"] == "Mo"
    assert msg["user"]["scopes"] == ["stage:plenary"]
    assert len(msg["session_id"]) == 32
    await ws.send_json({"id": 1, "type": "ping"})
    reply = await ws.receive_json(timeout=5)
    assert reply["id"] == 1 and reply["type"] == "result" and "ts" in reply["data"]
    await ws.close()


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        ('{"type": "auth", "token": "not-a-jwt"}', "malformed"),
        ('{"type": "hello"}', "auth message"),
        ("{not json", "not JSON"),
        ('{"type": "auth"}', "no token"),
    ],
)
async def test_a_bad_first_frame_closes_4001(client, first, reason):
    ws = await client.ws_connect("/ws")
    await ws.send_str(first)
    code, message = await closed_with(ws)
    assert code == 4001
    assert reason in message


def documented_auth_reasons() -> set[str]:
    """The close reasons protocol.md lists for a failed first frame."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text("utf-8")
    start = text.index("Every other failure closes it with 4001")
    paragraph = text[start : text.index("- **Lifetime**", start)]
    return set(re.findall(r"`([^`]+)`", paragraph))


@pytest.mark.parametrize("token", ["", None, 42])
async def test_an_empty_or_missing_token_closes_4001_as_the_docs_say(client, token):
    ws = await client.ws_connect("/ws")
    frame = {"type": "auth"} if token is None else {"type": "auth", "token": token}
    await ws.send_json(frame)
    code, message = await closed_with(ws)
    assert code == 4001
    assert message in documented_auth_reasons(), message


async def test_no_auth_frame_in_time_closes_4001(make_settings):
    from aiohttp.test_utils import TestClient, TestServer

    from hybridcon.app import create_app

    app = create_app(make_settings(auth_timeout=0.2))
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as quick:
        ws = await quick.ws_connect("/ws")
        code, message = await closed_with(ws)
        assert code == 4001
        assert "in time" in message


async def test_oldest_connection_of_a_person_gives_way_with_4008(client):
    sub = "u:shared-token-person"
    token = issue(client, Role.VIEWER, sub=sub)
    first, _ = await connect(client, token)
    second, _ = await connect(client, token)
    third, _ = await connect(client, token)  # cap is 2: the first must go
    code, message = await closed_with(first)
    assert code == 4008
    assert "too many connections" in message
    for ws in (second, third):
        await ws.send_json({"id": 5, "type": "ping"})
        assert (await ws.receive_json(timeout=5))["type"] == "result"
    # Another person is not affected by this person's cap.
    other, _ = await connect(client, issue(client, Role.VIEWER))
    await other.send_json({"id": 1, "type": "ping"})
    assert (await other.receive_json(timeout=5))["type"] == "result"
    for ws in (second, third, other):
        await ws.close()


async def test_revocation_closes_open_connections_with_4003(client):
    token = issue(client, Role.VIEWER)
    ws, _ = await connect(client, token)
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    resp = await client.post(
        "/api/v1/revocations", json={"jti": jti}, headers=bearer(issue(client, Role.ORGANISER))
    )
    assert resp.status == 201
    code, message = await closed_with(ws)
    assert code == 4003
    assert "revoked" in message
    # And it cannot come back.
    again = await client.ws_connect("/ws")
    await again.send_json({"type": "auth", "token": token})
    code, _ = await closed_with(again)
    assert code == 4003


async def test_bad_frames_after_auth_get_error_replies_and_the_connection_lives(client):
    ws, _ = await connect(client, issue(client))
    await ws.send_str("{nope")
    reply = await ws.receive_json(timeout=5)
    assert reply == {
        "id": None,
        "type": "error",
        "code": "invalid",
        "message": "frame is not valid JSON",
    }
    await ws.send_json({"id": 2, "type": "teleport"})
    reply = await ws.receive_json(timeout=5)
    assert reply["id"] == 2 and reply["code"] == "invalid" and "teleport" in reply["message"]
    await ws.send_json({"type": "ping"})
    assert "id" in (await ws.receive_json(timeout=5))["message"]
    await ws.send_json({"id": 3, "type": "ping", "extra": 1})
    reply = await ws.receive_json(timeout=5)
    assert reply["id"] == 3 and "extra" in reply["message"]
    await ws.send_bytes(b"\x00\x01")
    assert "binary" in (await ws.receive_json(timeout=5))["message"]
    await ws.send_json({"id": 4, "type": "ping"})
    assert (await ws.receive_json(timeout=5))["type"] == "result"
    await ws.close()


async def test_an_oversized_frame_closes_1009_and_the_server_is_unharmed(client):
    ws, _ = await connect(client, issue(client))
    await ws.send_str("x" * (65 * 1024))
    code, _ = await closed_with(ws)
    assert code == 1009
    other, _ = await connect(client, issue(client))
    await other.send_json({"id": 1, "type": "ping"})
    assert (await other.receive_json(timeout=5))["type"] == "result"
    await other.close()


async def test_shutdown_closes_sockets_with_1012_to_reconnect_elsewhere(make_settings):
    from aiohttp.test_utils import TestClient, TestServer

    from hybridcon.app import create_app

    app = create_app(make_settings())
    test_client = TestClient(TestServer(app, host="127.0.0.1", port=0))
    await test_client.start_server()
    try:
        ws, _ = await connect(test_client, issue(test_client))
        closing = asyncio.create_task(closed_with(ws))
        await test_client.server.close()
        code, message = await closing
        assert code == 1012
        assert message.startswith("draining")
        assert services_of(test_client).metrics.ws_connections._value.get() == 0
    finally:
        await test_client.close()


async def test_binary_frames_take_from_the_rate_limit_and_a_binary_flood_is_closed(client):
    """Every frame counts: binary frames used to get an `invalid` reply each, for ever."""
    ws, _ = await connect(client, issue(client))
    replies: list[dict] = []
    for _ in range(400):
        await ws.send_bytes(b"\x00" * 16)
    code, reason = None, ""
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type is WSMsgType.TEXT:
            replies.append(msg.json())
            continue
        code, reason = (msg.data, msg.extra or "") if msg.type is WSMsgType.CLOSE else (None, "")
        break
    assert code == 4008 and reason.startswith("flooding"), (code, reason)
    codes = {r["code"] for r in replies}
    assert codes == {"invalid", "rate_limited"}, codes
    assert len(replies) < 400


async def test_a_long_multibyte_token_error_is_cut_between_characters(client):
    """A close reason over 120 bytes is cut at a character boundary, so a strict client
    (``websockets`` checks the reason is UTF-8, RFC 6455 §8.1) reads 4001 and the reason
    instead of failing the connection with 1007."""
    import base64
    import json

    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed

    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    token = f"{b64({'alg': 'EdDSA', 'kid': 'x' + 'é' * 100, 'typ': 'JWT'})}.{b64({})}.AAAA"
    url = f"ws://127.0.0.1:{client.server.port}/ws"
    async with ws_connect(url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token}))
        with pytest.raises(ConnectionClosed) as caught:
            await asyncio.wait_for(ws.recv(), 5)
    received = caught.value.rcvd
    assert received is not None, "the server's close frame was not accepted"
    assert received.code == 4001
    assert received.reason.startswith("token was signed with an unknown key")
    assert 100 < len(received.reason.encode()) <= 120


async def test_sockets_waiting_to_sign_in_are_capped_per_address(make_settings):
    """Unauthenticated sockets hold a descriptor for up to auth_timeout each: from one
    address only so many wait at once; one more is closed 1013 saying why."""
    from aiohttp.test_utils import TestClient, TestServer

    from hybridcon.app import create_app

    settings = make_settings(ws_signing_in_per_address=3, reverse_proxies=[])
    async with TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0)) as client:
        waiting = [await client.ws_connect("/ws") for _ in range(3)]
        extra = await client.ws_connect("/ws")
        code, reason = await closed_with(extra)
        assert code == 1013
        assert "maximum of 3" in reason
        # One signs in: its place is free again.
        await waiting[0].send_json({"type": "auth", "token": issue(client)})
        assert (await waiting[0].receive_json(timeout=5))["type"] == "auth.ok"
        ws, _ = await connect(client, issue(client))
        await ws.close()
        for other in waiting:
            await other.close()


async def test_a_connection_follows_a_bounded_number_of_topics(make_settings):
    from aiohttp.test_utils import TestClient, TestServer

    from hybridcon.app import create_app

    async with TestClient(
        TestServer(create_app(make_settings(ws_max_topics=2)), host="127.0.0.1", port=0)
    ) as client:
        ws = await WsClient.connect(client, issue(client))
        await ws.ok("subscribe", topic="stage:plenary")
        await ws.ok("subscribe", topic="stage:impact")
        await ws.ok("subscribe", topic="stage:plenary")  # already followed: fine
        refused = await ws.request("subscribe", topic="stage:radio")
        assert refused["type"] == "error" and refused["code"] == "too_large", refused
        assert "2 topics" in refused["message"]
        await ws.ok("unsubscribe", topic="stage:impact")
        await ws.ok("subscribe", topic="stage:radio")
        await ws.close()
