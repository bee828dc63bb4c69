"""The online workshop page (/session/{id}) and the networking page (/network) in Chromium.

The real application on 127.0.0.1 with a real PostgreSQL, pages as people get them, and
Debian's Chromium driven by Playwright (the fixtures and ``check_page`` of
``test_pages.py``: axe-core in Dutch and English, reflow at 1280, 360 and 320 px, and
screenshots under ``tests/artifacts/pages/``).

Without media: a host and three participants go from the lobby to the end of a workshop
(the lobby's reasons to wait, opening, hands and the floor, breakout groups and back, a
removal that sticks, the end). Networking: six people sit at a table over the WebSocket
(from Python: faster than six more browsers, and the page is the seventh, which is
refused in words); the page then sits elsewhere, and the roulette pairs it with someone
it reports.

With Chromium's fake camera and microphone: a workshop (the floor, a host's mute, a
breakout group), and networking (two people at a table see each other, then the
roulette pairs them and they see each other in the pairing's room).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from test_pages import CHROMIUM, Node, check_page, expect, free_port, new_page
from test_pages import browser as browser  # fixtures, used by name
from test_pages import media_browser as media_browser
from test_pages import media_node as media_node
from test_pages import node as node

from hybridcon.core.tokens import Role
from hybridcon.services import SERVICES
from hybridcon.settings import Settings
from support import eventually

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make system-deps)"),
]

SESSION = "online-1"


@pytest.fixture
async def small_node(make_settings: Callable[..., Settings]) -> Any:
    """The application with rooms of three places (a host and two participants)."""
    port = free_port()
    settings = make_settings(
        port=port, public_url=f"http://127.0.0.1:{port}", room_max_participants=3
    )
    node = Node(settings, port)
    await node.start()
    yield node
    await node.stop()


def person(node: Node, name: str, role: Role = Role.VIEWER) -> str:
    return node.token(role, (f"session:{SESSION}",), name=name)


async def test_a_workshop_from_the_lobby_to_the_end(small_node: Node, browser: Any) -> None:
    node = small_node
    url = f"{node.url}/session/{SESSION}"
    host = await new_page(browser)
    ann = await new_page(browser, width=360)
    bart = await new_page(browser)
    cas = await new_page(browser)
    sockets: list[str] = []
    host.on("websocket", lambda ws: sockets.append(ws.url))

    await host.goto(f"{url}#token={person(node, 'Hanne Host', Role.MODERATOR)}")
    await expect(host).to_have_url(url)
    await expect(host.locator("#ws-place")).to_have_text(
        "Je bent in de workshop, als begeleider. "
        "De deelnemers komen binnen zodra een begeleider de workshop opent."
    )
    await expect(host.get_by_role("heading", name="Workshop leiden")).to_be_visible()

    # In the room, the page reports attentive presence as a stage's player does (R6).
    async def heartbeat_logged() -> bool:
        row = (
            await node.app[SERVICES]
            .db()
            .fetchrow(
                "SELECT data FROM engagement_events WHERE kind = 'heartbeat' AND topic = $1",
                f"session:{SESSION}",
            )
        )
        return row is not None and json.loads(row["data"])["visible"] is True

    await eventually(heartbeat_logged, timeout=10, what="the workshop page's heartbeat")
    # On the rooms' own path, which a proxy sends to the node that runs the rooms.
    assert [urlsplit(u).path for u in sockets] == ["/rooms/ws"], sockets

    # Two participants wait before the opening, in the order they came.
    await ann.goto(f"{url}#token={person(node, 'Ann Peeters')}")
    await expect(ann.locator("#ws-place")).to_contain_text("nog niet geopend; je bent nummer 1")
    await bart.goto(f"{url}#token={person(node, 'Bart Claes')}")
    await expect(bart.locator("#ws-place")).to_contain_text("nog niet geopend; je bent nummer 2")
    await expect(host.locator("#ws-lobby li")).to_have_text(
        [re_name("Ann Peeters"), re_name("Bart Claes")]
    )
    # The camera can be tried in the lobby (Chromium's fake camera).
    await ann.get_by_role("button", name="Camera en microfoon testen").click()
    await expect(ann.get_by_label("Camera", exact=True)).to_be_visible()
    await check_page(ann, "workshop-lobby")

    # Opening lets the queue in while there is room (3 places: the host, Ann, Bart).
    await host.get_by_role("button", name="Workshop openen").click()
    await expect(ann.locator("#ws-place")).to_have_text("Je bent in de workshop.")
    await expect(bart.locator("#ws-place")).to_have_text("Je bent in de workshop.")
    await expect(host.locator("#ws-people li")).to_have_count(3)

    # A third participant finds the workshop full, and is told so.
    cas_token = person(node, "Cas Maes")
    await cas.goto(f"{url}#token={cas_token}")
    await expect(cas.locator("#ws-place")).to_contain_text("De workshop is volzet (3 plaatsen)")

    # Ann raises her hand; the host sees it and gives her the floor.
    await ann.get_by_role("button", name="Hand opsteken").click()
    await expect(ann.locator("#ws-status")).to_have_text("Je hand is opgestoken (nummer 1).")
    hand = host.locator("#ws-hands li", has_text="Ann Peeters")
    await expect(hand).to_be_visible()
    await hand.get_by_role("button", name="Woord geven: Ann Peeters").click()
    await expect(ann.locator("#ws-status")).to_have_text(
        "Je hebt het woord: je kunt je camera en microfoon delen."
    )
    await expect(host.locator("#ws-hands li")).to_have_text(["Geen handen op."])
    await expect(
        host.locator("#ws-people li[data-person]", has_text="Ann Peeters")
    ).to_contain_text("heeft het woord")
    await expect(ann.get_by_role("button", name="Hand opsteken")).to_be_hidden()

    # The spotlight on Ann, as everyone sees it; then off.
    await host.get_by_role("button", name="In de kijker zetten: Ann Peeters").click()
    ann_row = bart.locator("#ws-people li", has_text="Ann Peeters")
    await expect(ann_row).to_contain_text("In de kijker")
    await host.get_by_role("button", name="Uit de kijker halen: Ann Peeters").click()
    await expect(ann_row).not_to_contain_text("In de kijker")

    # Chat on the session's topic, through the stage's chat view.
    await bart.get_by_label("Je bericht").fill("Goeiemiddag allemaal")
    await bart.get_by_label("Je bericht").press("Enter")
    await expect(host.locator(".chat-log li", has_text="Goeiemiddag allemaal")).to_be_visible()

    # Two random breakout groups with a timer, then back.
    await host.get_by_label("Aantal groepen").fill("2")
    await host.get_by_label("Minuten (leeg: geen timer)").fill("5")
    await host.get_by_role("button", name="Groepen starten").click()
    await expect(host.locator("#ws-note")).to_have_text("2 groepen zijn gestart.")
    await expect(ann.locator("#ws-place")).to_have_text(re_group())
    await expect(bart.locator("#ws-place")).to_have_text(re_group())
    groups = {await p.locator("#ws-place").text_content() for p in (ann, bart)}
    assert groups == {"Je zit in groep 1.", "Je zit in groep 2."}
    await expect(host.locator(".group-line")).to_have_text("Er lopen 2 groepen.")
    await expect(ann.locator(".group-timer")).to_have_text(
        re.compile(r"^Nog [45]:[0-5][0-9] in de groepen$")
    )
    await host.get_by_role("button", name="Iedereen terughalen").click()
    await expect(ann.locator("#ws-place")).to_have_text("Je bent in de workshop.")
    await expect(bart.locator("#ws-status")).to_have_text("Iedereen is terug in de hoofdzaal.")

    # By hand: Ann to a group of her own, Bart stays in the main room.
    await host.get_by_label("Aantal groepen").fill("1")
    await host.get_by_label("Zelf indelen (anders willekeurig)").check()
    await host.get_by_label("Groep voor Ann Peeters").select_option(label="Groep 1")
    await host.get_by_label("Groep voor Bart Claes").select_option(label="Hoofdzaal")
    await host.get_by_role("button", name="Groepen starten").click()
    await expect(ann.locator("#ws-place")).to_have_text("Je zit in groep 1.")
    await expect(bart.locator("#ws-place")).to_have_text("Je bent in de workshop.")
    await expect(bart.locator(".group-line")).to_have_text("Er loopt 1 groep.")
    await host.get_by_role("button", name="Iedereen terughalen").click()
    await expect(ann.locator("#ws-place")).to_have_text("Je bent in de workshop.")

    await check_page(host, "workshop-host")
    await check_page(ann, "workshop-participant")

    # The host removes Bart (asked twice): he is told, and cannot come back.
    row = host.locator("#ws-people li", has_text="Bart Claes")
    await row.get_by_role("button", name="Verwijderen: Bart Claes").click()
    await expect(host.locator("#ws-note")).to_contain_text(
        "Druk nog eens om Bart Claes te verwijderen"
    )
    await row.get_by_role("button", name="Zeker verwijderen: Bart Claes").click()
    removed = (
        "Een begeleider heeft je uit deze workshop verwijderd. Je kunt niet opnieuw binnengaan."
    )
    await expect(bart.locator("#ws-place")).to_have_text(removed)
    await bart.reload()
    await expect(bart.locator("#ws-place")).to_have_text(removed)
    await expect(bart.get_by_role("button", name="Binnengaan")).to_have_count(0)

    # A place freed: Cas now waits for a host, who lets him in.
    await expect(cas.locator("#ws-place")).to_contain_text("Een begeleider laat je zo binnen")
    await host.get_by_role("button", name="Binnenlaten: Cas Maes").click()
    await expect(cas.locator("#ws-place")).to_have_text("Je bent in de workshop.")

    # Cas opens the workshop in a second tab: it offers to move there, and the first tab
    # then says he takes part elsewhere.
    cas_tab = await new_page(browser)
    await cas_tab.goto(f"{url}#token={cas_token}")
    elsewhere = "Je neemt al deel in een ander venster of op een ander toestel."
    await expect(cas_tab.locator("#ws-place")).to_have_text(elsewhere)
    await cas_tab.get_by_role("button", name="Hier verder deelnemen").click()
    await expect(cas_tab.locator("#ws-place")).to_have_text("Je bent in de workshop.")
    await expect(cas.locator("#ws-place")).to_have_text(elsewhere)

    # The end, for everyone.
    await host.get_by_role("button", name="Workshop beëindigen voor iedereen").click()
    await host.get_by_role("button", name="Zeker beëindigen voor iedereen").click()
    ended = "De workshop is afgelopen. Bedankt om deel te nemen!"
    for page in (ann, cas_tab, host):
        await expect(page.locator("#ws-place")).to_have_text(ended)
    for page in (host, ann, bart, cas, cas_tab):
        assert page.errors == []


def re_name(name: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(name)} ")


def re_group() -> re.Pattern[str]:
    return re.compile(r"^Je zit in groep [12]\.$")


class Socket:
    """One person on the WebSocket, from Python."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def request(self, type_: str, **fields: Any) -> dict[str, Any]:
        rid = next(self.ids)
        await self.ws.send_json({"id": rid, "type": type_, **fields})
        while True:
            msg = json.loads((await self.ws.receive()).data)
            if msg.get("id") == rid:
                return dict(msg)


async def connect(http: aiohttp.ClientSession, node: Node, name: str) -> Socket:
    ws = await http.ws_connect(f"{node.url}/ws")
    await ws.send_json({"type": "auth", "token": node.token(Role.VIEWER, ("*",), name=name)})
    assert json.loads((await ws.receive()).data)["type"] == "auth.ok"
    return Socket(ws)


async def test_networking_tables_and_roulette(node: Node, browser: Any) -> None:
    page = await new_page(browser)
    async with aiohttp.ClientSession() as http:
        # Six people sit at one table over the WebSocket; a seventh is refused.
        seated = [await connect(http, node, f"Gast {i}") for i in range(1, 8)]
        for i, sock in enumerate(seated[:6]):
            answer = await sock.request("network.join", **({"table": "t1"} if i else {}))
            assert answer["type"] == "result" and answer["data"]["table"] == "t1", answer
        refused = await seated[6].request("network.join", table="t1")
        assert refused["type"] == "error" and refused["code"] == "conflict", refused
        assert refused["message"].startswith("table t1 is full (6 people)")

        sockets: list[str] = []
        page.on("websocket", lambda ws: sockets.append(ws.url))
        await page.goto(f"{node.url}/network#token={node.token(Role.VIEWER, name='Dirk Wouters')}")
        await expect(page).to_have_url(f"{node.url}/network")
        # The full table says so, and offers no seat.
        t1 = page.locator('.net-tables li[data-table="t1"]')
        await expect(t1).to_have_text("Tafel t1 Volzet (6 van 6)")
        await expect(t1.get_by_role("button")).to_have_count(0)
        await page.get_by_role("button", name="Aanschuiven waar plaats is").click()
        await expect(page.locator("#net-status")).to_have_text("Je zit aan tafel t2.")
        assert [urlsplit(u).path for u in sockets] == ["/rooms/ws"], sockets
        await expect(page.locator("#my-table-h")).to_have_text("Jouw tafel: t2 (1 van 6)")
        # Sitting down starts the camera's preview, with a choice of devices.
        await expect(page.locator("#net-media")).to_contain_text("Wie aan je tafel zit")
        await expect(page.get_by_label("Camera", exact=True)).to_be_visible()

        # Someone sits down beside the page: it sees them arrive.
        eva = await connect(http, node, "Eva Jacobs")
        assert (await eva.request("network.join", table="t2"))["type"] == "result"
        await expect(page.locator("#net-place li", has_text="Eva Jacobs")).to_be_visible()
        await expect(page.locator('.net-tables li[data-table="t2"]')).to_have_text(
            "Tafel t2 2 van 6 plaatsen Hier zit je"
        )
        await check_page(page, "network-table")

        # Roulette: the page waits, Eva comes, they are paired; the page reports Eva.
        await page.get_by_role("button", name="Zoek een gesprekspartner").click()
        await expect(page.locator("#net-pair")).to_have_text(
            "Even wachten: we zoeken iemand voor je."
        )
        assert (await eva.request("network.roulette"))["type"] == "result"
        await expect(page.locator("#net-pair")).to_have_text("Je praat met Eva Jacobs.")
        await expect(page.locator(".pair-timer")).to_have_text(re_time_left())
        await check_page(page, "network-paired")
        await page.get_by_role("button", name="Eva Jacobs melden").click()
        await page.get_by_label("Waarom meld je Eva Jacobs? (mag leeg)").fill("Onbeleefd")
        await page.get_by_role("button", name="Melding versturen").click()
        await expect(page.locator("#net-status")).to_have_text(
            "Bedankt. De moderatoren hebben je melding over Eva Jacobs gekregen."
        )
        await expect(page.locator("#net-pair")).to_have_text(
            "Even wachten: we zoeken iemand voor je."
        )
        await page.get_by_role("button", name="Stoppen met de roulette").click()
        await expect(page.locator("#net-status")).to_have_text("Je bent vertrokken.")
        for sock in [*seated, eva]:
            await sock.ws.close()

    # The programme links each online workshop to its page.
    home = await new_page(browser)
    await home.goto(f"{node.url}/")
    workshop = home.locator("li.session", has_text="Online workshop 1")
    await expect(workshop.get_by_role("link", name="Naar de online workshop")).to_have_attribute(
        "href", "/session/online-1"
    )
    assert page.errors == [] and home.errors == []


def re_time_left() -> re.Pattern[str]:
    return re.compile(r"^Nog [23]:[0-5][0-9]$")


# Every RTCPeerConnection the page makes, kept where the test can ask for its statistics
# (injected over DevTools before the page's own modules run; the page is unchanged).
KEEP_PEERS = """(() => {
  const Native = window.RTCPeerConnection;
  window.__peers = [];
  window.RTCPeerConnection = class extends Native {
    constructor(...args) { super(...args); window.__peers.push(this); }
  };
})();"""

# What arrives from one participant's feed: the connection whose tracks play in that
# participant's tile, from getStats().
FEED_STATS = """async (participant) => {
  const video = document.querySelector(`li.tile[data-participant="${participant}"] video`);
  if (!video || !video.srcObject) return null;
  const ids = new Set(video.srcObject.getTracks().map((t) => t.id));
  for (const pc of window.__peers) {
    if (pc.connectionState === "closed") continue;
    if (!pc.getReceivers().some((r) => r.track && ids.has(r.track.id))) continue;
    const out = {frames: 0, audioBytes: 0, audioPackets: 0};
    (await pc.getStats()).forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      if (s.kind === "video") out.frames = s.framesDecoded || 0;
      else { out.audioBytes = s.bytesReceived || 0; out.audioPackets = s.packetsReceived || 0; }
    });
    return out;
  }
  return null;
}"""


async def media_page(browser: Any, width: int = 1280) -> Any:
    page = await new_page(browser, width)
    await page.add_init_script(KEEP_PEERS)
    return page


async def feed(page: Any, participant: str) -> dict[str, int]:
    return dict(await page.evaluate(FEED_STATS, participant) or {})


async def test_a_workshop_with_camera_and_microphone(media_node: Node, media_browser: Any) -> None:
    """Three participants with Chromium's fake camera and microphone: the two with the
    floor see each other (frames decoded), the host mutes one (its sound stops arriving,
    its picture does not), and the one without the floor is refused by the server."""
    node, browser = media_node, media_browser
    url = f"{node.url}/session/{SESSION}"
    auth = node.app[SERVICES].auth()
    host = await media_page(browser)
    await host.goto(f"{url}#token={person(node, 'Hanne Host', Role.MODERATOR)}")
    await expect(host.get_by_role("heading", name="Workshop leiden")).to_be_visible()
    people: dict[str, tuple[Any, str]] = {}
    for name in ("Ann Peeters", "Bart Claes", "Cas Maes"):
        token = person(node, name)
        page = await media_page(browser)
        await page.goto(f"{url}#token={token}")
        await expect(page.locator("#ws-place")).to_contain_text("nog niet geopend")
        people[name] = (page, auth.verify(token).sub)
    (ann, ann_id), (bart, bart_id), (cas, _) = people.values()

    await host.get_by_role("button", name="Workshop openen").click()
    for page, _ in people.values():
        await expect(page.locator("#ws-place")).to_have_text("Je bent in de workshop.")
    for name in ("Ann Peeters", "Bart Claes"):
        await host.get_by_role("button", name=f"Woord geven: {name}").click()
        page = people[name][0]
        await expect(page.locator("#ws-status")).to_have_text(
            "Je hebt het woord: je kunt je camera en microfoon delen."
        )
        await page.get_by_role("button", name="Delen met de groep").click()
        await expect(page.locator("#ws-media-note")).to_have_text("De anderen zien en horen je nu.")

    # Each sees the other's picture (and the one without the floor sees both).
    for watcher, publisher in ((ann, bart_id), (bart, ann_id), (cas, ann_id), (cas, bart_id)):
        await expect(watcher.locator(f'li.tile[data-participant="{publisher}"]')).to_be_visible(
            timeout=15_000
        )

        async def decoding(watcher: Any = watcher, publisher: str = publisher) -> bool:
            return (await feed(watcher, publisher)).get("frames", 0) > 10

        await eventually(decoding, timeout=20, what=f"frames decoded from {publisher}")
    await expect(ann.locator(f'li.tile[data-participant="{bart_id}"] figcaption')).to_contain_text(
        "Bart Claes"
    )

    # The host mutes Ann: Bart stops receiving her sound, while her picture goes on.
    async def sound_arrives() -> bool:
        return (await feed(bart, ann_id)).get("audioPackets", 0) > 0

    await eventually(sound_arrives, timeout=10, what="Ann's sound at Bart")
    await host.get_by_role("button", name="Microfoon dempen: Ann Peeters").click()
    await expect(ann.locator("#ws-status")).to_have_text(
        "Een begeleider heeft je microfoon gedempt."
    )
    await expect(host.locator("#ws-people li", has_text="Ann Peeters")).to_contain_text(
        "microfoon gedempt"
    )

    async def silent_while_moving() -> bool:
        # Over a second: no more sound bytes from Ann, and more frames.
        before = await feed(bart, ann_id)
        await asyncio.sleep(1.0)  # the window the two samples span, not a wait for a state
        after = await feed(bart, ann_id)
        return after["audioBytes"] == before["audioBytes"] and after["frames"] > before["frames"]

    await eventually(silent_while_moving, timeout=15, what="Ann's sound stopped, picture on")

    # The host takes Bart's floor: his camera goes off, and the others' tile of him goes.
    await host.get_by_role("button", name="Woord afnemen: Bart Claes").click()
    await expect(bart.locator("#ws-status")).to_have_text(
        "Een begeleider heeft je het woord afgenomen; je camera en microfoon zijn uit."
    )
    await expect(bart.get_by_role("button", name="Camera en microfoon testen")).to_be_visible()
    # Nothing of his is sent any more: every connection that sent is closed.
    assert await bart.evaluate(
        "window.__peers.every((pc) => pc.connectionState === 'closed'"
        " || pc.getSenders().every((s) => !s.track))"
    )
    await expect(ann.locator(f'li.tile[data-participant="{bart_id}"]')).to_have_count(0)

    # Cas has no floor: the page tries, the server refuses, and the page says so.
    await cas.get_by_role("button", name="Delen met de groep").click()
    note = cas.locator("#ws-media-note")
    await expect(note).to_contain_text("De server weigert: je mag nu niet uitzenden.")
    await expect(note).to_contain_text("does not have the floor")
    await expect(cas.locator("#ws-media-hint")).to_contain_text("Je hebt het woord niet")

    # A breakout group of Ann and Cas: there everyone may publish. Ann's page publishes
    # again in the group's room by itself, Cas shares now, and each sees the other.
    await host.get_by_label("Aantal groepen").fill("1")
    await host.get_by_label("Zelf indelen (anders willekeurig)").check()
    await host.get_by_label("Groep voor Bart Claes").select_option(label="Hoofdzaal")
    await host.get_by_role("button", name="Groepen starten").click()
    await expect(cas.locator("#ws-place")).to_have_text("Je zit in groep 1.")
    await cas.get_by_role("button", name="Delen met de groep").click()
    await expect(cas.locator("#ws-media-note")).to_have_text("De anderen zien en horen je nu.")
    cas_id = people["Cas Maes"][1]
    for watcher, publisher in ((ann, cas_id), (cas, ann_id)):

        async def in_group(watcher: Any = watcher, publisher: str = publisher) -> bool:
            return (await feed(watcher, publisher)).get("frames", 0) > 10

        await eventually(in_group, timeout=20, what=f"frames from {publisher} in the group")
    # Bart, in the main room, sees nobody of the group.
    await expect(bart.locator("li.tile")).to_have_count(0)

    await check_page(ann, "workshop-media-participant")
    await check_page(host, "workshop-media-host")
    for page in (host, ann, bart, cas):
        assert page.errors == []


async def test_networking_with_camera_and_microphone(media_node: Node, media_browser: Any) -> None:
    """Two people with Chromium's fake camera and microphone sit at a table and see each
    other (frames decoded); one leaves and the other's tile of them goes; the roulette
    pairs them and they see each other in the pairing's room (the one who kept sharing
    publishes there by itself, the other shares again)."""
    node, browser = media_node, media_browser
    auth = node.app[SERVICES].auth()
    people: dict[str, tuple[Any, str]] = {}
    for name in ("Ann Peeters", "Bart Claes"):
        token = node.token(Role.VIEWER, name=name)
        page = await media_page(browser)
        await page.goto(f"{node.url}/network#token={token}")
        await expect(page).to_have_url(f"{node.url}/network")
        people[name] = (page, auth.verify(token).sub)
    (ann, ann_id), (bart, bart_id) = people.values()

    # Both sit down at the same table; each gets a preview with a choice of devices, and
    # shares.
    for page in (ann, bart):
        await page.get_by_role("button", name="Aanschuiven waar plaats is").click()
        await expect(page.locator("#net-status")).to_have_text("Je zit aan tafel t1.")
        await expect(page.get_by_label("Camera", exact=True)).to_be_visible()
        await expect(page.get_by_label("Microfoon", exact=True)).to_be_visible()
    await expect(ann.locator("#my-table-h")).to_have_text("Jouw tafel: t1 (2 van 6)")
    for page in (ann, bart):
        await page.get_by_role("button", name="Camera en microfoon delen").click()
        await expect(page.locator("#net-media-note")).to_have_text(
            "De anderen zien en horen je nu."
        )

    async def sees(watcher: Any, publisher: str, what: str) -> None:
        await expect(watcher.locator(f'li.tile[data-participant="{publisher}"]')).to_be_visible(
            timeout=15_000
        )

        async def decoding() -> bool:
            return (await feed(watcher, publisher)).get("frames", 0) > 10

        await eventually(decoding, timeout=20, what=what)

    await sees(ann, bart_id, "Ann decodes Bart's frames at the table")
    await sees(bart, ann_id, "Bart decodes Ann's frames at the table")
    bart_tile = ann.locator(f'li.tile[data-participant="{bart_id}"]')
    await expect(bart_tile.locator("figcaption")).to_have_text("Bart Claes")
    await expect(bart_tile.locator("video")).to_have_attribute("aria-label", "Beeld van Bart Claes")

    # Her own microphone and camera, off and on again, from the keyboard.
    mic = ann.get_by_role("button", name="Microfoon aan")
    await mic.focus()
    await ann.keyboard.press("Enter")
    await expect(mic).to_have_attribute("aria-pressed", "false")
    assert await ann.evaluate(
        "window.__peers.some((pc) => pc.getSenders().some("
        "(s) => s.track && s.track.kind === 'audio' && !s.track.enabled))"
    )
    await ann.keyboard.press("Enter")
    await expect(mic).to_have_attribute("aria-pressed", "true")
    await check_page(ann, "network-table-video")

    # Bart leaves the table: Ann's tile of him goes, and his camera stops.
    await bart.get_by_role("button", name="Tafel verlaten").click()
    await expect(bart.locator("#net-status")).to_have_text("Je bent vertrokken.")
    await expect(bart_tile).to_have_count(0, timeout=15_000)

    async def bart_sends_nothing() -> bool:
        return bool(
            await bart.evaluate("window.__peers.every((pc) => pc.connectionState === 'closed')")
        )

    await eventually(bart_sends_nothing, timeout=10, what="every connection of Bart's closed")

    # The roulette: Ann (still sharing) waits, Bart comes and is paired with her. Her
    # page publishes in the pairing's room by itself; Bart shares again.
    await ann.get_by_role("button", name="Zoek een gesprekspartner").click()
    await expect(ann.locator("#net-pair")).to_have_text("Even wachten: we zoeken iemand voor je.")
    await bart.get_by_role("button", name="Zoek een gesprekspartner").click()
    await expect(bart.locator("#net-pair")).to_have_text("Je praat met Ann Peeters.")
    await expect(ann.locator("#net-pair")).to_have_text("Je praat met Bart Claes.")
    await expect(bart.locator("#net-media")).to_contain_text("Je gesprekspartner ziet en hoort je")
    await bart.get_by_role("button", name="Camera en microfoon delen").click()
    await expect(bart.locator("#net-media-note")).to_have_text("De anderen zien en horen je nu.")
    await sees(ann, bart_id, "Ann decodes Bart's frames in the pairing")
    await sees(bart, ann_id, "Bart decodes Ann's frames in the pairing")
    await check_page(bart, "network-pair-video")

    # Ann stops: the pairing ends, and Bart's tile of her goes.
    await ann.get_by_role("button", name="Stoppen met de roulette").click()
    await expect(bart.locator("#net-status")).to_have_text(
        "Je gesprekspartner is vertrokken. We zoeken iemand anders."
    )
    await expect(bart.locator(f'li.tile[data-participant="{ann_id}"]')).to_have_count(
        0, timeout=15_000
    )
    for page in (ann, bart):
        assert page.errors == []
