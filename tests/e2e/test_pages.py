"""The browser pages in a real browser: Playwright (PyPI) driving Debian's Chromium.

The real application runs on 127.0.0.1 with a real PostgreSQL; the pages come from it as
a person gets them. An attendee signs in with the invite code from an invite link
(``/join#code=…``), chats, votes, asks and upvotes on the plenary stage; a moderator in
the console turns on first-message hold, approves the attendee's first line, deletes a
later one, opens a poll on two stages and sees hall and online votes apart; people's
text stays text. Another test stops the server under an attendee who is typing and
starts it again: the page says it lost the connection, reconnects by itself, and the
typed text is still there and goes out. The organiser dashboard makes a broadcaster
token with its WHIP URL.

Every page is checked with axe-core (from the npm registry, ``clients/web/node_modules``)
in Dutch and in English: no serious or critical violation. Screenshots at 360 px and
1280 px wide go to ``tests/artifacts/pages/`` (kept for people to look at).

Playwright never downloads a browser here: it launches ``/usr/bin/chromium``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hybridcon.app import create_app
from hybridcon.core.invites import Registration
from hybridcon.core.tokens import Role, TokenRequest
from hybridcon.services import SERVICES
from hybridcon.settings import Settings
from hybridcon.store import invites
from netns import Namespace
from support import eventually

playwright_api = pytest.importorskip("playwright.async_api")
async_playwright = playwright_api.async_playwright
expect = playwright_api.expect

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "clients" / "web" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = REPO / "tests" / "artifacts" / "pages"
# The fake camera and microphone for the publisher; autoplay with sound, as a person who
# pressed play would have it (the player keeps its controls for people).
FLAGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(150),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make system-deps)"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Node:
    """The application on a fixed port, so it can be stopped and started again there."""

    def __init__(self, settings: Settings, port: int, host: str = "127.0.0.1") -> None:
        self.settings = settings
        self.port = port
        self.host = host
        self.server: TestServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def app(self) -> web.Application:
        assert self.server is not None and self.server.app is not None
        return self.server.app

    async def start(self) -> None:
        self.server = TestServer(create_app(self.settings), host=self.host, port=self.port)
        await self.server.start_server()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None

    def token(self, role: Role, scopes: tuple[str, ...] = ("*",), name: str = "") -> str:
        token, _ = (
            self.app[SERVICES]
            .auth()
            .issue(TokenRequest(role=role, scopes=scopes, name=name), via="test")
        )
        return token

    async def invite(self, ticket: str, name: str) -> str:
        """A new invite for the plenary stage; its code."""
        services = self.app[SERVICES]
        async with services.db().acquire() as conn:
            await invites.import_registrations(
                conn,
                [
                    Registration(
                        line=2,
                        ticket_id=ticket,
                        name=name,
                        email=None,
                        role=Role.VIEWER,
                        scopes=("stage:plenary",),
                    )
                ],
                secret=services.invite_secret,
                valid_until=datetime.now(UTC) + timedelta(days=1),
            )
        links = await invites.export_links(services.db(), secret=services.invite_secret)
        return next(link.code for link in links if link.ticket_id == ticket)


@pytest.fixture
async def node(make_settings: Callable[..., Settings]) -> AsyncIterator[Node]:
    port = free_port()
    settings = make_settings(port=port, public_url=f"http://127.0.0.1:{port}")
    node = Node(settings, port)
    await node.start()
    yield node
    await node.stop()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def media_node(
    make_settings: Callable[..., Settings], test_namespace: Namespace
) -> AsyncIterator[Node]:
    """The application on the host's end of the test's namespace (``tests/netns.py``),
    gathering its ICE candidates there: Chromium, inside the namespace, cannot be kept
    to loopback, so WebRTC runs over that veth pair and nowhere else."""
    host, port = test_namespace.host_address, free_port()
    settings = make_settings(port=port, public_url=f"http://{host}:{port}", ice_addresses=(host,))
    node = Node(settings, port, host=host)
    await node.start()
    yield node
    await node.stop()


@pytest.fixture
async def media_browser(
    test_namespace: Namespace, media_node: Node, tmp_path: Path
) -> AsyncIterator[Any]:
    """Playwright's Chromium (Debian's) started inside the test's namespace.

    Playwright runs its executable with the DevTools pipe on fds 3 and 4, which ``ip
    netns exec`` passes on, so a two-line wrapper is the executable. The page's origin is
    not loopback there, so it is named a secure one (getUserMedia needs that).
    """
    wrapper = tmp_path / "chromium-in-namespace"
    command = " ".join(test_namespace.command(str(CHROMIUM)))
    wrapper.write_text(f'#!/bin/sh\nexec {command} "$@"\n')
    wrapper.chmod(0o755)
    flags = [*FLAGS, f"--unsafely-treat-insecure-origin-as-secure={media_node.url}"]
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(wrapper), args=flags)
        yield chromium
        await chromium.close()


async def new_page(browser: Any, width: int = 1280) -> Any:
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on(
        "console",
        lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.errors = errors  # checked at the end of each test
    return page


async def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical WCAG 2.x A/AA violations on the page as it is now."""
    # Evaluated over DevTools, which the page's CSP does not govern (an injected <script>
    # would be refused, as it should be).
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text("utf-8"))
    result = await page.evaluate(
        """async () => {
            const r = await axe.run(document, {runOnly: {type: 'tag',
                values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']}});
            return r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                .map(v => ({id: v.id, impact: v.impact, help: v.help,
                            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
        }"""
    )
    return list(result)


async def check_page(page: Any, name: str) -> None:
    """axe in Dutch and English, no sideways scrolling at 1280, 360 and 320 px, and
    screenshots (Dutch at 1280 and 360 px, English at the page's width) of the page as
    it is."""
    for lang in ("nl", "en"):
        if await page.evaluate("document.documentElement.lang") != lang:
            await page.locator("#lang").click()
            await expect(page.locator("html")).to_have_attribute("lang", lang)
        if lang == "en":  # the switch changed the page's words, not only its lang
            await expect(page.locator(".skip")).to_have_text("Skip to content")
            # Texts drawn by the page's code (not the static ones) follow the switch too.
            for live_text in ("#conn", "#event-tagline", ".viewers"):
                for dutch in ("Verbonden", "Aangemeld als", "kijker", "Moderatie", "Organisatie"):
                    await expect(page.locator(live_text, has_text=dutch)).to_have_count(0)
        violations = await axe_violations(page)
        assert violations == [], f"{name} ({lang}): {json.dumps(violations, indent=1)}"
        if lang == "en":  # the English page, to look at as well (the Dutch ones below)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / f"{name}-en.png"), full_page=True)
    await page.locator("#lang").click()  # back to Dutch
    await expect(page.locator("html")).to_have_attribute("lang", "nl")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width = page.viewport_size["width"]
    for w in (1280, 360, 320):
        await page.set_viewport_size({"width": w, "height": 900})
        # Reflow (WCAG 1.4.10): 320 px is 1280 px at 400 % zoom; nothing may need a
        # sideways scroll of the whole page.
        scroll_width = await page.evaluate("document.documentElement.scrollWidth")
        if scroll_width > w:
            wide = await page.evaluate(
                """(w) => [...document.querySelectorAll('body *')]
                    .filter((e) => e.getBoundingClientRect().right > w + 1)
                    .slice(0, 5).map((e) => e.tagName + '.' + e.className + '#' + e.id)""",
                w,
            )
            raise AssertionError(f"{name} is {scroll_width} px wide at {w} px: {wide}")
        if w != 320:
            await page.screenshot(path=str(ARTIFACTS / f"{name}-{w}.png"), full_page=True)
    await page.set_viewport_size({"width": width, "height": 900})


async def test_attend_moderate_and_organise(node: Node, browser: Any) -> None:
    code = await node.invite("T-100", "Ann Peeters")
    moderator = await new_page(browser)
    attendee = await new_page(browser, width=360)

    # The moderator console, signed in from the fragment, which leaves the address bar.
    mod_token = node.token(Role.MODERATOR, name="Mia Moderator")
    await moderator.goto(f"{node.url}/moderate#token={mod_token}")
    await expect(moderator).to_have_url(f"{node.url}/moderate")
    await expect(moderator.locator("#conn")).to_have_text("Verbonden")
    await moderator.get_by_label("Eerste berichten eerst goedkeuren").check()
    await expect(moderator.locator("#mod-status")).to_have_text("Instelling bewaard.")

    # The attendee: a wrong code first, then the invite link's code.
    await attendee.goto(f"{node.url}/join")
    await attendee.get_by_label("Je code").fill("AAAA-BBBB-CCCC-DDDD")
    await attendee.get_by_role("button", name="Aanmelden").click()
    await expect(attendee.locator("#code-error")).to_contain_text("Deze code kennen we niet")
    await attendee.goto(f"{node.url}/join#code={code}")
    await expect(attendee).to_have_url(f"{node.url}/")
    await attendee.goto(f"{node.url}/stage/plenary")
    await expect(attendee.locator("#conn")).to_have_text("Verbonden")
    await expect(attendee.get_by_role("heading", name="Plenaire zaal", exact=True)).to_be_visible()
    await expect(attendee.locator("#stream-state")).to_have_text("Nog niet begonnen")

    # Chat: the first line is held, the moderator approves it with the keyboard.
    chat = attendee.get_by_label("Je bericht")
    await chat.fill("Goeiemorgen <img src=x onerror=alert(1)>")
    await chat.press("Enter")
    await expect(attendee.locator("#chat-note")).to_contain_text("wacht op een moderator")
    held = moderator.locator("#queue li", has_text="Goeiemorgen")
    await expect(held).to_contain_text("eerste bericht")
    await held.focus()
    await held.press("a")
    line = attendee.locator(".chat-log li", has_text="Goeiemorgen")
    await expect(line).to_contain_text("<img src=x onerror=alert(1)>")
    assert await attendee.locator(".chat-log img").count() == 0

    # A later line goes out at once; the moderator deletes it and it leaves the attendee's chat.
    await chat.fill("Dit is een tweede bericht")
    await chat.press("Enter")
    second = attendee.locator(".chat-log li", has_text="tweede bericht")
    await expect(second).to_be_visible()
    mod_line = moderator.locator(".stage-detail li", has_text="tweede bericht")
    await mod_line.get_by_role("button", name="Verwijderen").click()
    await expect(second).to_have_count(0)

    # A poll on two stages, opened from the console.
    await moderator.get_by_label("Vraag", exact=True).fill("Doet sociaal werk ertoe?")
    await moderator.get_by_label("Antwoorden (één per regel)").fill("Ja\nNee")
    await moderator.get_by_label("Plenaire zaal").check()
    await moderator.get_by_label("Livestream Impactgedreven handelen").check()
    await moderator.get_by_role("button", name="Nu openen").click()
    poll = attendee.locator("article.poll", has_text="Doet sociaal werk ertoe?")
    await poll.get_by_label("Ja").check()
    await poll.get_by_role("button", name="Stem").click()
    await expect(poll).to_contain_text("Je stem is geteld.")
    await expect(poll).to_contain_text("Ja: 1 (100%)")

    # A phone in the hall scans the QR link and votes too: the console shows hall and
    # online apart.
    org_token = node.token(Role.ORGANISER)
    async with aiohttp.ClientSession() as http:
        made = await http.post(
            f"{node.url}/api/v1/halls/plenary/links",
            headers={"Authorization": f"Bearer {org_token}"},
        )
        hall_link = (await made.json())["link"]
    assert hall_link.startswith(f"{node.url}/hall#code=")
    phone = await new_page(browser, width=360)
    await phone.goto(hall_link)
    await expect(phone).to_have_url(f"{node.url}/stage/plenary")
    phone_poll = phone.locator("article.poll", has_text="Doet sociaal werk ertoe?")
    await phone_poll.get_by_label("Nee").check()
    await phone_poll.get_by_role("button", name="Stem").click()
    await expect(phone_poll).to_contain_text("Je stem is geteld.")
    poll_id = await attendee.evaluate(
        "document.querySelector('article.poll h3').id.replace(/^poll-|-q$/g, '')"
    )
    split = moderator.locator(f'article.poll[data-poll="{poll_id}"] table')
    await expect(split.locator('tr[data-origin="hall:plenary"]')).to_contain_text(
        "Plenaire zaal — in de zaal"
    )
    await expect(split.locator('tr[data-origin="hall:plenary"] td').nth(2)).to_have_text("1")
    await expect(split.locator('tr[data-origin="stage:plenary"] td').nth(1)).to_have_text("1")
    await expect(poll).to_contain_text("Nee: 1 (50%)")

    # An open question: the moderator puts an answer on the wall, the audience sees it.
    await moderator.get_by_label("Vraag", exact=True).fill("Wat neem je mee?")
    await moderator.get_by_label("Soort").select_option("open")
    await moderator.get_by_label("Livestream Impactgedreven handelen").uncheck()
    await moderator.get_by_role("button", name="Nu openen").click()
    open_poll = attendee.locator("article.poll", has_text="Wat neem je mee?")
    await open_poll.get_by_label("Je antwoord").fill("Moed om samen te werken")
    await open_poll.get_by_role("button", name="Stem").click()
    await expect(open_poll).to_contain_text("Je stem is geteld.")
    answer = moderator.locator("article.poll", has_text="Wat neem je mee?").locator(
        "li", has_text="Moed om samen te werken"
    )
    await answer.get_by_role("button", name="Op de muur").click()
    await expect(open_poll.locator(".wall")).to_have_text("Moed om samen te werken")

    # Q&A: asked, approved in the console, upvoted by the attendee.
    await attendee.get_by_label("Je vraag aan de sprekers").fill(
        "Hoe werken we samen met huisartsen?"
    )
    await attendee.get_by_role("button", name="Stel je vraag").click()
    await expect(attendee.locator("#qa-note")).to_contain_text("wacht op een moderator")
    pending = moderator.locator("#queue li", has_text="huisartsen")
    await pending.get_by_role("button", name="Goedkeuren").click()
    question = attendee.locator(".question", has_text="huisartsen")
    upvote = question.get_by_role("button", name=re.compile("^Steun"))
    await expect(upvote).to_have_text("▲ Steun 0")
    await upvote.click()
    await expect(upvote).to_have_attribute("aria-pressed", "true")
    await expect(upvote).to_have_text("▲ Steun 1")
    await expect(moderator.locator(".stage-detail", has_text="huisartsen")).to_contain_text("▲ 1")

    await check_page(attendee, "attendee-stage")
    await check_page(moderator, "moderator")

    # The organiser: a broadcaster token with the WHIP URL to paste into OBS.
    organiser = await new_page(browser)
    await organiser.goto(f"{node.url}/organise#token={org_token}")
    await expect(organiser).to_have_url(f"{node.url}/organise")
    # The live view from this server (GET /api/v1/live): a row per stage, in figures.
    live_row = organiser.locator('table[data-live="stages"] tr[data-stage="plenary"]')
    await expect(live_row).to_contain_text("Plenaire zaal")
    await expect(live_row.locator("td").first).to_have_text(re.compile(r"^\d+$"))
    row = organiser.locator('table[data-table="broadcast"] tr[data-stage="impact"]')
    await expect(row).to_contain_text(f"{node.url}/whip/impact")
    await row.get_by_role(
        "button", name="Maak token voor Livestream Impactgedreven handelen"
    ).click()
    token_box = row.get_by_label("Regietoken voor Livestream Impactgedreven handelen", exact=True)
    bc_token = await token_box.input_value()
    claims = node.app[SERVICES].auth().verify(bc_token)
    assert claims.role is Role.BROADCASTER and claims.scopes == ("stage:impact",)

    # Invites: the ticketing export in, the links out; a link signs its person in.
    await organiser.get_by_label("CSV uit de ticketing").set_input_files(
        files=[
            {
                "name": "tickets.csv",
                "mimeType": "text/csv",
                "buffer": b"ticket_id;name;email\nT-1;Lies Janssens;lies@example.org\n"
                b"T-2;Omar El Amrani;\n",
            }
        ]
    )
    await organiser.get_by_role("button", name="Inlezen").click()
    await expect(organiser.locator("#inv-note")).to_have_text(
        "2 nieuwe uitnodigingen, 0 bestonden al."
    )
    async with organiser.expect_download() as download_info:
        await organiser.get_by_role("button", name="Links downloaden (CSV)").click()
    download = await download_info.value
    saved = await download.path()
    rows = (await asyncio.to_thread(Path(saved).read_text, "utf-8")).splitlines()
    lies = next(row for row in rows if row.startswith("T-1,"))
    link = lies.split(",")[4]
    assert link.startswith(f"{node.url}/join#code=")
    lies_page = await new_page(browser, width=360)
    await lies_page.goto(link)
    await expect(lies_page).to_have_url(f"{node.url}/")
    await expect(lies_page.locator("#conn")).to_have_text("Verbonden")

    # A check-in code for a walk: the phone that scans it is checked in there (the
    # report's check-ins per workshop and walk) and its programme page says so.
    await organiser.get_by_label("Plaats").select_option("session:wandeling-01")
    await organiser.get_by_role("button", name="Maak QR-code").click()
    walk_link = await organiser.get_by_label("Link achter de QR-code").input_value()
    # The QR code shows as an image (a data: URL of the server's SVG), not as its alt text.
    qr = organiser.locator("img.qr")
    await expect(qr).to_be_visible()
    assert await qr.evaluate("(img) => img.complete && img.naturalWidth > 0")
    assert walk_link.startswith(f"{node.url}/hall#code=")
    walker = await new_page(browser, width=360)
    await walker.goto(walk_link)
    await expect(walker).to_have_url(f"{node.url}/")
    walk_title = node.app[SERVICES].programme.session("wandeling-01").title
    await expect(walker.get_by_role("status").filter(has_text="ingecheckt")).to_have_text(
        f"Je bent ingecheckt bij {walk_title}. Dank je!"
    )
    await expect(organiser.locator("#hall-h ~ ul")).to_contain_text(f"Check-in: {walk_title}")
    await check_page(walker, "walk-checked-in")

    # The report of what happened so far, downloaded from the dashboard: the HTML page.
    async with organiser.expect_download() as report_info:
        await organiser.get_by_role("button", name="Rapport downloaden (HTML)").click()
    report_file = await (await report_info.value).path()
    report_html = await asyncio.to_thread(Path(report_file).read_text, "utf-8")
    assert report_html.startswith("<!doctype html>") or report_html.startswith("<!DOCTYPE html>")
    assert "Sociaalwerkconferentie" in report_html
    await expect(organiser.locator("#inv-note")).to_have_text("Het rapport is gedownload.")
    await check_page(organiser, "organiser")

    # The documented example answer (docs/protocol.md), served to the page, shows each
    # figure where it belongs. The example here has the documented keys, and the real
    # endpoint answers with the same ones (so neither copy can drift from the server).
    documented = set(re.findall(r'"(\w+)":', documented_live_example()))
    assert json_keys(LIVE_EXAMPLE) == documented
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{node.url}/api/v1/live", headers={"Authorization": f"Bearer {org_token}"}
        ) as resp,
    ):
        real = await resp.json()
    assert real.keys() == LIVE_EXAMPLE.keys() and real["stages"]
    assert json_keys(real) <= documented
    assert real["stages"][0].keys() == LIVE_EXAMPLE["stages"][0].keys()
    live_page = await new_page(browser)
    await live_page.route("**/api/v1/live", lambda route: route.fulfill(json=LIVE_EXAMPLE))
    await live_page.goto(f"{node.url}/organise#token={org_token}")
    plenary = live_page.locator('table[data-live="stages"] tr[data-stage="plenary"]')
    await expect(plenary).to_contain_text("Plenaire zaal")
    await expect(plenary.locator("td")).to_have_text(["412", "498", "83 %", "17"])
    await expect(live_page.locator('table[data-live="polls"]')).to_contain_text("51 %")
    await expect(live_page.locator("#live-h ~ div")).to_contain_text("bevroren beeld")
    await check_page(live_page, "organiser-live")

    home = await new_page(browser)
    await home.goto(f"{node.url}/")
    await expect(home.get_by_role("heading", name="Aanmelden")).to_be_visible()
    # The first render with the programme, from the start of navigation: within 1 s.
    rendered_ms = await home.evaluate(
        "performance.getEntriesByName('hybridcon:programme')[0].startTime"
    )
    assert rendered_ms < 1000, f"first render with the programme took {rendered_ms:.0f} ms"
    await check_page(home, "home-signed-out")

    for page in (attendee, moderator, organiser, home, phone, lies_page, walker, live_page):
        assert page.errors == []


async def test_the_page_survives_a_server_restart(node: Node, browser: Any) -> None:
    viewer = node.token(Role.VIEWER, ("stage:plenary",), name="Bert")
    page = await new_page(browser)
    await page.goto(f"{node.url}/stage/plenary#token={viewer}")
    await expect(page.locator("#conn")).to_have_text("Verbonden")
    chat = page.get_by_label("Je bericht")
    await chat.fill("Voor de herstart")
    await chat.press("Enter")
    await expect(page.locator(".chat-log li", has_text="Voor de herstart")).to_be_visible()

    await chat.fill("Half getypt tijdens de herstart")
    await node.stop()
    await expect(page.locator("#conn")).to_contain_text("Verbinding weg")
    # Sending while away keeps the text and says why.
    await chat.press("Enter")
    await expect(page.locator("#chat-note")).to_contain_text("Geen verbinding")
    await expect(chat).to_have_value("Half getypt tijdens de herstart")

    await node.start()
    await expect(page.locator("#conn")).to_have_text("Verbonden", timeout=20_000)
    await expect(chat).to_have_value("Half getypt tijdens de herstart")
    await chat.press("Enter")
    await expect(page.locator(".chat-log li", has_text="Half getypt")).to_be_visible()
    await expect(page.locator(".chat-log li", has_text="Voor de herstart")).to_be_visible()
    await expect(chat).to_have_value("")
    assert page.errors == []


def documented_live_example() -> str:
    """The example answer of ``GET /api/v1/live`` in docs/protocol.md."""
    text = (REPO / "docs" / "protocol.md").read_text("utf-8")
    section = text.split("### `GET /api/v1/live` (organiser)", 1)[1]
    return section.split("```json", 1)[1].split("```", 1)[0]


def json_keys(value: Any) -> set[str]:
    """Every object key anywhere in a JSON value."""
    if isinstance(value, dict):
        return set(value).union(*(json_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(json_keys(v) for v in value))
    return set()


LIVE_EXAMPLE = {
    "at": "2022-05-05T09:31:02+00:00",
    "window_seconds": 60,
    "stages": [
        {
            "stage": "plenary",
            "viewers": 412,
            "peak": 498,
            "peak_at": "2022-05-05T07:41:00+00:00",
            "attentive_share": 0.83,
            "chat_per_minute": 17,
        }
    ],
    "polls": [
        {
            "poll_id": "0" * 32,
            "question": "Doet sociaal werk ertoe?",
            "topics": ["stage:plenary"],
            "opened_at": "2022-05-05T09:20:00+00:00",
            "voters_online": 201,
            "voters_hall": 388,
            "attentive_at_open": 395,
            "participation": 0.509,
        }
    ],
    "backlog": {"held_lines": 3, "pending_questions": 12},
    "alerts": [{"stage": "impact", "problems": ["frozen"], "since": "2022-05-05T09:30:00+00:00"}],
}

# Evaluated in a page of the server's own origin (getUserMedia needs a secure origin;
# DevTools evaluation is not subject to the page's CSP). H.264 first, so HLS has video.
PUBLISH = """async ([token]) => {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: {width: 640, height: 360, frameRate: 30}, audio: true});
  const pc = new RTCPeerConnection();
  const video = pc.addTransceiver(stream.getVideoTracks()[0], {direction: "sendonly"});
  pc.addTransceiver(stream.getAudioTracks()[0], {direction: "sendonly"});
  const codecs = RTCRtpSender.getCapabilities("video").codecs;
  const h264 = codecs.filter((c) => c.mimeType === "video/H264"
    && /packetization-mode=1/.test(c.sdpFmtpLine || ""));
  if (h264.length) video.setCodecPreferences([...h264, ...codecs.filter((c) => !h264.includes(c))]);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange",
      () => pc.iceGatheringState === "complete" && resolve());
    setTimeout(resolve, 3000);
  });
  const response = await fetch("/whip/plenary", {method: "POST", body: pc.localDescription.sdp,
    headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token}});
  if (response.status !== 201) throw new Error("WHIP " + response.status);
  await pc.setRemoteDescription({type: "answer", sdp: await response.text()});
  window.publisher = {pc, stream, location: response.headers.get("Location"), token};
  return h264.length > 0;
}"""

STOP = """async () => {
  const p = window.publisher;
  const response = await fetch(p.location, {method: "DELETE",
    headers: {"Authorization": "Bearer " + p.token}});
  p.pc.close();
  p.stream.getTracks().forEach((t) => t.stop());
  return response.status;
}"""

FRAMES = "() => document.querySelector('video.video').getVideoPlaybackQuality().totalVideoFrames"


async def test_watching_a_live_stage(media_node: Node, media_browser: Any) -> None:
    """A viewer plays HLS and a moderator WHEP; frames decode; the state follows the
    publisher; heartbeats reach the engagement log while the viewer plays; captions
    reach the viewer; the film room has the recording with its captions.

    Chromium and hybridcon meet on the test namespace's veth pair (the autouse ICE guard
    fails the test if hybridcon's media goes anywhere else)."""
    node, browser = media_node, media_browser
    viewer_token = node.token(Role.VIEWER, ("stage:plenary",), name="Kijker")
    attendee = await new_page(browser, width=360)
    await attendee.goto(f"{node.url}/stage/plenary#token={viewer_token}")
    state = attendee.locator("#stream-state")
    await expect(state).to_have_text("Nog niet begonnen")
    moderator = await new_page(browser)
    await moderator.goto(f"{node.url}/stage/plenary#token={node.token(Role.MODERATOR)}")
    await expect(moderator.locator("#stream-state")).to_have_text("Nog niet begonnen")

    publisher = await new_page(browser)
    await publisher.goto(f"{node.url}/join")
    h264 = await publisher.evaluate(PUBLISH, [node.token(Role.BROADCASTER, ("stage:plenary",))])

    # The moderator starts on WHEP as soon as the stage is live; the viewer waits for the
    # first HLS segment.
    await expect(moderator.locator("#stream-state")).to_have_text("Live · lage vertraging")
    await expect(state).to_have_text("Live · gewone vertraging", timeout=20_000)
    await frames_decoded(moderator, 30, timeout=15)
    # Debian's Chromium offers H.264, which HLS needs for video (without it the HLS
    # stream carries audio only, docs/protocol.md): this test is about the video.
    assert h264, "this Chromium offers no H.264 encoder: HLS would carry audio only"
    await frames_decoded(attendee, 30, timeout=20)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await attendee.screenshot(path=str(ARTIFACTS / "attendee-live-360.png"), full_page=True)
    await moderator.screenshot(path=str(ARTIFACTS / "stage-live-whep-1280.png"))

    pool = node.app[SERVICES].db()

    async def heartbeats() -> int:
        return int(
            await pool.fetchval(
                "SELECT count(*) FROM engagement_events"
                " WHERE kind = 'heartbeat' AND topic = 'stage:plenary'"
                " AND (data->>'playing')::boolean"
            )
        )

    deadline = 15.0
    assert await attendee.evaluate("!document.querySelector('video.video').paused")
    # The page beats on 'playing'; the engagement writer stores in batches.
    await _eventually(heartbeats, deadline)

    # Live captions: typed in the moderator's page, seen under the attendee's player.
    await expect(attendee.locator("#captions")).to_be_hidden()  # nothing to read yet
    await moderator.get_by_label("Ondertiteling typen (Enter verstuurt)").fill(
        "Welkom in de plenaire zaal"
    )
    await moderator.get_by_label("Ondertiteling typen (Enter verstuurt)").press("Enter")
    await expect(attendee.locator("#captions")).to_have_text("Welkom in de plenaire zaal")
    await attendee.get_by_label("Tekstgrootte").select_option("large")
    await expect(attendee.locator("#captions")).to_have_attribute("data-size", "large")
    toggle = attendee.get_by_role("button", name="Ondertiteling", exact=True)
    await toggle.click()
    await expect(toggle).to_have_attribute("aria-pressed", "false")
    await expect(attendee.locator("#captions")).to_be_hidden()
    await toggle.click()
    await expect(attendee.locator("#captions")).to_be_visible()

    assert await publisher.evaluate(STOP) == 200
    await expect(state).to_have_text("Afgelopen")
    await expect(moderator.locator("#stream-state")).to_have_text("Afgelopen")
    await check_page(attendee, "attendee-live-ended")

    # The film room lists the finished recording, with the captions as a WebVTT track.
    await attendee.goto(f"{node.url}/films")
    film = attendee.locator(".recordings li").first
    await expect(film).to_contain_text("Plenaire zaal")
    track = film.locator("video track")
    await expect(track).to_have_attribute("src", re.compile(r"/recordings/plenary/.+\.vtt$"))
    vtt = await attendee.evaluate(
        "fetch(document.querySelector('.recordings track').src).then((r) => r.text())"
    )
    assert vtt.startswith("WEBVTT") and "Welkom in de plenaire zaal" in vtt
    await check_page(attendee, "films")
    for page in (attendee, moderator, publisher):
        assert page.errors == []


async def frames_decoded(page: Any, frames: int, timeout: float) -> None:
    """Wait until the page's player has decoded more than ``frames`` video frames."""

    # Polled from here: Playwright's wait_for_function evaluates a string inside the page,
    # which the page's CSP (rightly) refuses.
    async def enough() -> bool:
        return bool(await page.evaluate(FRAMES) > frames)

    await eventually(enough, timeout=timeout, what=f"{frames} frames decoded")


async def _eventually(count: Callable[[], Any], timeout: float) -> None:
    async def positive() -> bool:
        return bool(await count() > 0)

    await eventually(positive, timeout=timeout, what="a heartbeat in the engagement log")
