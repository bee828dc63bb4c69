"""The pages over HTTP: shells with a CSP, static files without escapes, the OpenAPI
description generated from the route table, and the film room's recordings."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from hybridcon.api.routes import ROUTES
from hybridcon.core.tokens import Role
from support import bearer, issue, services_of

WEB = Path(__file__).resolve().parents[2] / "clients" / "web"
PAGES = [
    "/",
    "/stage/plenary",
    "/radio",
    "/films",
    "/moderate",
    "/organise",
    "/join",
    "/hall",
    "/session/online-1",
    "/network",
]
# The attendee page's own JavaScript and CSS, compressed, before any video library.
BUDGET_BYTES = 150 * 1024


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_is_html_with_a_csp_without_inline_scripts(client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "text/html"
    csp = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    text = await response.text()
    # No inline script or handler: the CSP would refuse it, so none must be needed.
    assert "<script>" not in text and " onclick=" not in text
    assert '<script type="module" src="/static/js/' in text


async def test_an_unknown_stage_page_is_404(client) -> None:
    response = await client.get("/stage/nowhere")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


@pytest.mark.parametrize("session", ["nowhere", "openingsshow"])
async def test_a_session_page_is_only_for_online_workshops(client, session: str) -> None:
    response = await client.get(f"/session/{session}")
    assert response.status == 404
    assert "online workshop" in (await response.json())["error"]["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../pyproject.toml",
        "/static/%2e%2e/%2e%2e/pyproject.toml",
        "/static/node_modules/hls.js/package.json",
        "/static/package.json",
        "/static/page.html",
        "/static/vendor/anything.js",
        "/static/js/nothing.js",
    ],
)
async def test_static_files_stay_inside_the_pages(client, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404


async def test_static_files_and_the_vendored_player(client) -> None:
    js = await client.get("/static/js/attendee.js")
    assert js.status == 200 and js.content_type == "text/javascript"
    assert js.headers["Cache-Control"] == "no-cache"
    hls = await client.get("/static/vendor/hls.mjs")
    assert hls.status == 200, "run `make web-deps` (npm ci in clients/web)"
    assert hls.content_type == "text/javascript"


def test_the_attendee_pages_own_code_is_within_its_budget() -> None:
    files = [
        WEB / "page.html",
        WEB / "messages.json",
        *WEB.glob("js/*.js"),
        *WEB.glob("css/*.css"),
    ]
    total = sum(len(gzip.compress(f.read_bytes())) for f in files)
    assert 10_000 < total <= BUDGET_BYTES


async def test_openapi_lists_every_route_of_the_table(client) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    doc = await response.json()
    assert doc["openapi"].startswith("3.1")
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert len(listed) == len(ROUTES)
    assert ("GET", "/static/{path}") in listed
    assert ("POST", "/whip/{stage}") in listed
    tokens = doc["paths"]["/api/v1/tokens"]["post"]
    assert tokens["security"] == [{"bearer": []}]
    assert tokens["x-hybridcon-auth"] == "organiser"
    whip = doc["paths"]["/whip/{stage}/{session}"]["patch"]
    assert [p["name"] for p in whip["parameters"]] == ["stage", "session"]


async def test_recordings_are_listed_for_the_tokens_stages_and_served_signed(client) -> None:
    settings = services_of(client).settings
    folder = settings.recordings_dir / "plenary"
    folder.mkdir(parents=True)
    (folder / "plenary-20220505T073000-0f8e5c2b.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + b"x" * 96)
    (folder / "plenary-20220505T140000-1a2b3c4d.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + b"y" * 10)
    (folder / "notes.txt").write_text("not a recording")
    other = settings.recordings_dir / "impact"
    other.mkdir()
    (other / "impact-20220505T093000-aaaaaaaa.mkv").write_bytes(b"z" * 10)

    assert (await client.get("/api/v1/recordings")).status == 401
    viewer = issue(client, Role.VIEWER, ("stage:plenary",))
    listed = await (await client.get("/api/v1/recordings", headers=bearer(viewer))).json()
    files = [r["file"] for r in listed["recordings"]]
    assert files == ["plenary-20220505T140000-1a2b3c4d.mkv", "plenary-20220505T073000-0f8e5c2b.mkv"]
    first = listed["recordings"][1]
    assert first["started_at"] == "2022-05-05T07:30:00+00:00" and first["bytes"] == 100

    url = first["url"].removeprefix(settings.base_url())
    got = await client.get(url, headers={"Range": "bytes=0-3"})
    assert got.status == 206 and await got.read() == b"\x1a\x45\xdf\xa3"
    # The link of one stage opens no other stage's files, and a tampered one nothing.
    token = url.split("/")[3]
    assert (
        await client.get(f"/recordings/impact/{token}/impact-20220505T093000-aaaaaaaa.mkv")
    ).status == 403
    expires, mac, md5 = token.split(".")
    tampered = f"{expires}.{mac[:-2]}AA.{md5}"
    assert (await client.get(url.replace(token, tampered))).status == 403
    assert (await client.get(f"/recordings/plenary/{token}/notes.txt")).status == 404


async def test_invites_import_and_export_for_organisers(client) -> None:
    organiser = bearer(issue(client, Role.ORGANISER))
    csv_text = "ticket_id,name,email\nT-1,Ann Peeters,ann@example.org\nT-2,Bart,\n"
    viewer = bearer(issue(client, Role.VIEWER))
    refused = await client.post(
        "/api/v1/invites/import", data=csv_text, headers={**viewer, "Content-Type": "text/csv"}
    )
    assert refused.status == 403
    made = await client.post(
        "/api/v1/invites/import", data=csv_text, headers={**organiser, "Content-Type": "text/csv"}
    )
    assert made.status == 200
    assert (await made.json())["created"] == 2
    again = await client.post(
        "/api/v1/invites/import", data=csv_text, headers={**organiser, "Content-Type": "text/csv"}
    )
    assert (await again.json()) | {"valid_until": ""} == {
        "created": 0,
        "existing": 2,
        "valid_until": "",
    }
    wrong = await client.post(
        "/api/v1/invites/import",
        data="name\nNo ticket\n",
        headers={**organiser, "Content-Type": "text/csv"},
    )
    assert wrong.status == 400
    assert (await wrong.json())["error"]["code"] == "invalid"

    exported = await client.get("/api/v1/invites/export", headers=organiser)
    assert exported.status == 200 and exported.content_type == "text/csv"
    rows = (await exported.text()).splitlines()
    assert rows[0] == "ticket_id,name,email,code,link,redeemed"
    ann = next(r for r in rows if r.startswith("T-1,")).split(",")
    base = services_of(client).settings.base_url()
    assert ann[4] == f"{base}/join#code={ann[3]}" and ann[5] == "no"
    redeemed = await client.post("/api/v1/invites/redeem", json={"code": ann[3]})
    assert redeemed.status == 200
    audit = await (await client.get("/api/v1/audit", headers=organiser)).json()
    actions = [e["action"] for e in audit["entries"]]
    assert "invites.import" in actions and "invites.export" in actions


async def test_a_large_ticketing_export_is_not_held_to_the_json_limit(client) -> None:
    organiser = bearer(issue(client, Role.ORGANISER))
    rows = "".join(f"T-{i},Persoon nummer {i},persoon{i}@example.org\n" for i in range(3000))
    body = "ticket_id,name,email\n" + rows
    assert len(body) > 64 * 1024
    made = await client.post(
        "/api/v1/invites/import", data=body, headers={**organiser, "Content-Type": "text/csv"}
    )
    assert made.status == 200
    assert (await made.json())["created"] == 3000


async def test_the_organisers_invite_export_is_safe_to_open_in_a_spreadsheet(client) -> None:
    """The dashboard's export is the CLI's: a formula from the ticketing export stays text."""
    organiser = bearer(issue(client, Role.ORGANISER))
    csv_text = 'ticket_id,name,email\nT-9,"=HYPERLINK(""http://x"",""klik"")",@SUM(1)\n'
    made = await client.post(
        "/api/v1/invites/import", data=csv_text, headers={**organiser, "Content-Type": "text/csv"}
    )
    assert made.status == 200, await made.text()
    exported = await (await client.get("/api/v1/invites/export", headers=organiser)).text()
    row = next(line for line in exported.splitlines() if line.startswith("T-9,"))
    assert ',"\'=HYPERLINK(""http://x"",""klik"")",\'@SUM(1),' in row


async def test_the_organisers_import_refuses_scopes_the_programme_does_not_have(client) -> None:
    """As the command line does: nothing is imported, and the line is named."""
    organiser = bearer(issue(client, Role.ORGANISER))
    csv_text = "ticket_id,name,scopes\nT-1,Ann,stage:plenary\nT-2,Bo,stage:nowhere\n"
    refused = await client.post(
        "/api/v1/invites/import", data=csv_text, headers={**organiser, "Content-Type": "text/csv"}
    )
    assert refused.status == 400
    message = (await refused.json())["error"]["message"]
    assert "line 3" in message and "nowhere" in message
    exported = await (await client.get("/api/v1/invites/export", headers=organiser)).text()
    assert "T-1," not in exported
