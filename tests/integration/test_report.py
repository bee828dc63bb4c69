"""``hybridcon report`` on a synthetic day with known truth (issue 10).

The day is written straight into the log; the CLI runs as a subprocess against the same
database. Every figure the report gives per unit is compared with :func:`synthetic.truth`,
the definitions evaluated naively on the same events.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from browser import Browser, find_chromium
from hybridcon.app import load_programme
from hybridcon.core.csvcells import safe_cell
from hybridcon.core.engagement import actor_hash
from hybridcon.core.invites import parse_registrations
from hybridcon.core.report.units import units
from hybridcon.core.tokens import Role
from hybridcon.store import invites
from hybridcon.store.keyfile import load_or_create_secret
from support import eventually
from synthetic import (
    FROZEN,
    INTERRUPT,
    POLL_ID,
    concurrency_truth,
    make_day,
    poll_truth,
    retention_truth,
    touched,
    truth,
    write_day,
)

HYBRIDCON = [sys.executable, "-m", "hybridcon.cli"]
ARTIFACTS = Path(
    os.environ.get("HYBRIDCON_TEST_ARTIFACTS", Path(__file__).parents[2] / ".artifacts")
)


def run_cli(settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HYBRIDCON_DATA_DIR": str(settings.data_dir),
        "HYBRIDCON_DATABASE_URL": settings.database_url,
        "HYBRIDCON_PROGRAMME": str(settings.programme),
    }
    return subprocess.run(
        [*HYBRIDCON, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stderr
    return result


async def write(settings, day) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await write_day(conn, day)
    finally:
        await conn.close()


def pdf_pages(pdf: Path, where: Path) -> list[Path]:
    """Render each page of ``pdf`` to PNG with pdftoppm (fails if it cannot open the PDF)."""
    done = subprocess.run(
        ["pdftoppm", "-r", "50", "-png", str(pdf), str(where / "page")],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return sorted(where.glob("page*.png"))


def artifacts() -> Path:
    """Where screenshots are kept for people to look at (``.artifacts/`` by default)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def rows(report: dict, table: str) -> dict[str, dict]:
    return {r["unit"]: r for r in report["tables"][table]["rows"]}


def as_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@pytest.fixture
def day():
    return make_day(1200, onsite=150, unknown=0)


async def test_every_figure_equals_the_truth(settings, tmp_path, day):
    await write(settings, day)
    out = tmp_path / "rapport"
    ok(run_cli(settings, "report", "--out", str(out), "--format", "json,csv", "--k", "1"))
    report = json.loads((out / "report.json").read_text())
    programme = load_programme(settings.programme)
    start = datetime.fromisoformat(report["range"]["from"])
    end = datetime.fromisoformat(report["range"]["to"])
    all_units = units(programme, start, end)
    expected = truth(day, all_units)

    got = {**rows(report, "reach"), **rows(report, "items"), **rows(report, "online_workshops")}
    assert set(got) == {u.id for u in all_units}
    checked = 0
    for unit in all_units:
        want, have = expected[unit.id], got[unit.id]
        for key in (
            "reached",
            "online",
            "onsite",
            "peak",
            "attentive_minutes",
            "median_minutes",
            "stayed",
            "took_part",
        ):
            assert have[key] == want[key], (unit.id, key, have[key], want[key])
        assert as_time(have["peak_at"]) == want["peak_at"], unit.id
        checked += want["reached"] > 0
    assert checked >= 15  # the day, the streamed stages, their items and themes
    assert expected["day"]["onsite"] > 0 and expected["stage:impact"]["reached"] > 100

    # R11: retention of a streamed item, minute by minute; R8: a stage's curve.
    theme = next(u for u in all_units if u.id == "item:thema-impact")
    want_retention = retention_truth(day, theme)
    got_retention = {
        r["minute"]: r["people"]
        for r in report["tables"]["retention"]["rows"]
        if r["unit"] == theme.id
    }
    assert got_retention == want_retention and len(want_retention) > 30
    want_curve = concurrency_truth(day, "stage:plenary")
    got_curve = {
        as_time(r["minute"]): r["present"]
        for r in report["tables"]["concurrency"]["rows"]
        if r["unit"] == "stage:plenary"
    }
    assert got_curve == want_curve

    chat = rows(report, "chat")
    for unit_id, want in expected.items():
        if want["chat_lines"]:
            assert chat[unit_id]["chat_lines"] == want["chat_lines"], unit_id
            assert chat[unit_id]["chatters"] == want["chatters"], unit_id
    watch = rows(report, "watch_time")["day"]
    bins = [0] * 5
    for minutes in expected["day"]["watch"]:
        bins[
            0
            if minutes < 5
            else 1
            if minutes < 15
            else 2
            if minutes < 30
            else 3
            if minutes < 60
            else 4
        ] += 1
    assert [
        watch[k] for k in ("min_1_4", "min_5_14", "min_15_29", "min_30_59", "min_60_plus")
    ] == bins

    (poll,) = report["tables"]["polls"]["rows"]
    want_poll = poll_truth(day)
    assert poll["poll_id"] == POLL_ID
    for key, value in want_poll.items():
        assert poll[key] == value, key
    assert poll["participation"] == round(
        want_poll["voters_online"] / want_poll["attentive_at_open"], 4
    )
    results = report["tables"]["poll_results"]["rows"]
    assert sum(r["people"] for r in results) == len(day.ballots)

    hall = {r["topic"]: r["votes"] for r in report["tables"]["hall_votes"]["rows"]}
    assert hall == {"stage:plenary": want_poll["voters_hall"]}
    checkins = {r["topic"]: r["people"] for r in report["tables"]["checkins"]["rows"]}
    want_checkins: dict[str, set] = {}
    for e in day.events:
        if e.kind == "checkin":
            want_checkins.setdefault(e.topic, set()).add(e.actor)
    assert checkins == {t: len(a) for t, a in want_checkins.items()}

    incidents = {(r["kind"], r["unit"]): r for r in report["tables"]["incidents"]["rows"]}
    assert set(incidents) == {("interrupted", "stage:impact"), ("frozen", "stage:impact")}
    inter = incidents["interrupted", "stage:impact"]
    assert (as_time(inter["start"]), as_time(inter["end"])) == INTERRUPT
    assert inter["touched"] == touched(day, "stage:impact", *INTERRUPT)
    frozen = incidents["frozen", "stage:impact"]
    assert (as_time(frozen["start"]), as_time(frozen["end"])) == FROZEN
    assert frozen["touched"] == touched(day, "stage:impact", *FROZEN) > 0

    top = report["tables"]["top_questions"]["rows"]
    assert [q["upvoters"] for q in top] == [15, 12, 9, 6, 3, 0]
    shown = {q["question_id"]: q["text"] for q in top}
    for qid, _topic, text, state in day.questions:  # dismissed questions never show their text
        assert shown[qid] == (text if state == "approved" else None)
    moderation = {
        (r["unit"], r["action"]): r["count"] for r in report["tables"]["moderation"]["rows"]
    }
    assert moderation[("stage:impact", "delete")] == 2 and moderation[("day", "timeout")] == 1

    # The CSV of a table holds the same rows; text cells are defused.
    with (out / "top_questions.csv").open(encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert any(r["text"].startswith("'=HYPERLINK") for r in table)
    assert {r["text"] for r in table if r["text"]} == {
        safe_cell(t) for _q, _t, t, s in day.questions if s == "approved"
    }


async def test_small_cells_are_suppressed(settings, tmp_path, day):
    await write(settings, day)
    out = tmp_path / "rapport"
    ok(run_cli(settings, "report", "--out", str(out), "--format", "json,csv"))
    report = json.loads((out / "report.json").read_text())
    assert report["k"] == 5
    programme = load_programme(settings.programme)
    all_units = units(
        programme,
        datetime.fromisoformat(report["range"]["from"]),
        datetime.fromisoformat(report["range"]["to"]),
    )
    expected = truth(day, all_units)
    got = {**rows(report, "reach"), **rows(report, "items"), **rows(report, "online_workshops")}
    small = 0
    for unit in all_units:
        if unit.id == "day":
            continue
        want, have = expected[unit.id], got[unit.id]
        for key in ("reached", "stayed", "took_part"):
            if 0 < want[key] < 5:
                small += 1
                assert have[key] is None and key in have["suppressed"], (unit.id, key)
            else:
                assert have[key] == want[key], (unit.id, key)
        if 0 < want["online"] < 5 or 0 < want["onsite"] < 5:  # both parts go (R19)
            small += 1
            assert have["online"] is None and have["onsite"] is None, unit.id
        if 0 < want["reached"] < 5:
            assert have["attentive_minutes"] is None
    assert small > 0  # the day has small cells: the rule was exercised
    assert got["item:online-1"]["reached"] is None
    # In CSV a hidden cell is empty and named in the row's `suppressed` column.
    with (out / "online_workshops.csv").open(encoding="utf-8") as f:
        hidden = [r for r in csv.DictReader(f) if r["suppressed"]]
    assert hidden and all(r[k] == "" for r in hidden for k in r["suppressed"].split())


@pytest.mark.slow
async def test_html_and_pdf_are_readable_and_self_contained(settings, tmp_path, day):
    chromium = find_chromium()
    assert chromium, "Chromium is needed (make system-deps installs it)"
    assert shutil.which("pdftoppm"), "pdftoppm is needed (make system-deps installs poppler-utils)"
    await write(settings, day)
    out = tmp_path / "rapport"
    ok(run_cli(settings, "report", "--out", str(out), "--chromium", chromium))
    assert {p.name for p in out.iterdir()} >= {
        "report.html",
        "report.json",
        "report.pdf",
        "reach.csv",
    }
    html = (out / "report.html").read_text()
    assert 'lang="nl"' in html and "Bereik" in html and "<svg" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html

    artifacts()
    async with Browser.launch() as browser:
        page = await browser.new_page(out.joinpath("report.html").as_uri())
        resources = await page.evaluate("performance.getEntriesByType('resource').length")
        assert resources == 0
        height = await page.evaluate("document.documentElement.scrollHeight")
        assert height > 1000
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1200, "height": 2400, "deviceScaleFactor": 1, "mobile": False},
        )
        shot = await page.send("Page.captureScreenshot", {"format": "png"})
        assert page.console == []
    screenshot = ARTIFACTS / "report.png"
    screenshot.write_bytes(base64.b64decode(shot["data"]))
    assert screenshot.stat().st_size > 10_000

    rendered = pdf_pages(out / "report.pdf", tmp_path)
    assert len(rendered) >= 2
    shutil.copy(rendered[0], ARTIFACTS / "report-pdf-page1.png")

    english = tmp_path / "report-en"
    ok(run_cli(settings, "report", "--out", str(english), "--format", "html", "--lang", "en"))
    assert "Reach and attention" in (english / "report.html").read_text()


async def test_purge_keeps_the_report_identical(settings, tmp_path, day):
    await write(settings, day)
    ok(
        run_cli(
            settings,
            "report",
            "--out",
            str(tmp_path / "before"),
            "--format",
            "json",
            "--from",
            "2022-05-05",
            "--to",
            "2022-05-05",
        )
    )
    result = ok(run_cli(settings, "purge", "--before", "2022-05-06"))
    assert "2022-05-05" in result.stdout
    conn = await asyncpg.connect(settings.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM engagement_events") == 0
        assert (
            await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'engagement.purge'")
            == 1
        )
    finally:
        await conn.close()
    ok(
        run_cli(
            settings,
            "report",
            "--out",
            str(tmp_path / "after"),
            "--format",
            "json",
            "--from",
            "2022-05-05",
            "--to",
            "2022-05-05",
        )
    )
    before = json.loads((tmp_path / "before" / "report.json").read_text())
    after = json.loads((tmp_path / "after" / "report.json").read_text())
    assert after["tables"] == before["tables"]
    assert after["events"] == before["events"] > 50_000
    # Without a range the report finds the kept day by itself.
    ok(run_cli(settings, "report", "--out", str(tmp_path / "again"), "--format", "json"))
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["tables"] == before["tables"]
    # A row logged later for the purged day is not purged again (its aggregates are kept
    # already, so deleting it would lose it for good).
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "INSERT INTO engagement_events (event_id, ts, kind)"
            " VALUES (gen_random_uuid(), '2022-05-05 10:00+00', 'join')"
        )
    finally:
        await conn.close()
    ok(run_cli(settings, "purge", "--before", "2022-05-06"))
    conn = await asyncpg.connect(settings.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM engagement_events") == 1
    finally:
        await conn.close()
    # Outside a purge the log stays append-only.
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "INSERT INTO engagement_events (event_id, ts, kind) VALUES (gen_random_uuid(), now(), 'join')"
        )
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM engagement_events")
    finally:
        await conn.close()


async def test_bad_input_gives_a_clear_message_and_no_directory(settings, tmp_path):
    out = tmp_path / "rapport"
    empty = run_cli(settings, "report", "--out", str(out), "--format", "json")
    assert empty.returncode == 2
    assert "engagement log is empty" in empty.stderr and "Traceback" not in empty.stderr
    assert not out.exists()

    day = make_day(60, onsite=10, unknown=25)
    await write(settings, day)
    nothing = run_cli(
        settings,
        "report",
        "--out",
        str(out),
        "--format",
        "json",
        "--from",
        "2023-01-01",
        "--to",
        "2023-01-02",
    )
    assert nothing.returncode == 2
    assert (
        "no engagement events between" in nothing.stderr and "the log runs from" in nothing.stderr
    )
    assert not out.exists()

    bad = run_cli(settings, "report", "--out", str(out), "--format", "html,docx")
    assert bad.returncode == 2 and "unknown format docx" in bad.stderr

    odd = ok(run_cli(settings, "report", "--out", str(out), "--format", "json"))
    assert "25 events of unknown kind 'teleport' were ignored" in odd.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["unknown_kinds"] == {"teleport": 25}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rapport")]


async def test_the_database_going_away_during_the_run(settings, tmp_path):
    day = make_day(200, onsite=20)
    await write(settings, day)
    out = tmp_path / "rapport"
    env = {
        **os.environ,
        "HYBRIDCON_DATA_DIR": str(settings.data_dir),
        "HYBRIDCON_DATABASE_URL": settings.database_url,
        "HYBRIDCON_PROGRAMME": str(settings.programme),
    }
    admin = await asyncpg.connect(settings.database_url)
    try:
        # Hold the polls table, so the report stops mid-way (at its polls step) after it
        # has aggregated the audience: then end its backend, as a restart would.
        lock = admin.transaction()
        await lock.start()
        await admin.execute("LOCK TABLE polls IN ACCESS EXCLUSIVE MODE")
        proc = await asyncio.create_subprocess_exec(
            *HYBRIDCON,
            "report",
            "--out",
            str(out),
            "--format",
            "json,csv",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        waiting = "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        # pg_stat_activity is read once per transaction: watch from another connection.
        watcher = await asyncpg.connect(settings.database_url)
        try:
            await eventually(
                lambda: watcher.fetchval(waiting), timeout=60, what="the report waiting"
            )
            assert await watcher.fetchval(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
        finally:
            await watcher.close()
        await lock.rollback()
    finally:
        await admin.close()
    _stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    text = stderr.decode()
    assert proc.returncode == 2, text
    assert "database failed or went away" in text and "Traceback" not in text
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rapport")]


async def test_attendance_export_on_the_command_line(settings):
    key = load_or_create_secret(settings.engagement_key_path)
    conn = await asyncpg.connect(settings.database_url)
    try:
        regs = parse_registrations(
            "ticket_id,name,email\nT-1,=Bert,bert@example.org\n",
            default_role=Role.VIEWER,
            default_scopes=("*",),
        )
        await invites.import_registrations(
            conn, regs, secret=b"s" * 32, valid_until=datetime(2030, 1, 1, tzinfo=UTC)
        )
        invite_id = await conn.fetchval("SELECT id FROM invites")
        day = make_day(0, onsite=0)
        actor = actor_hash(key, f"i:{invite_id.hex}")
        for e in day.events:  # the staff member's minutes, now as an invited viewer's
            if e.kind == "heartbeat":
                e.actor, e.data = actor, {**e.data, "role": "viewer"}
        await write_day(conn, day)
    finally:
        await conn.close()
    minutes = len({e.ts.replace(second=0) for e in day.events if e.kind == "heartbeat"})
    result = ok(run_cli(settings, "attendance", "--from", "2022-05-05", "--to", "2022-05-05"))
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows == [
        {
            "ticket_id": "T-1",
            "name": "'=Bert",
            "email": "bert@example.org",
            "attentive_minutes": str(minutes),
            "checkins": "0",
        }
    ]
    conn = await asyncpg.connect(settings.database_url)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'attendance.export'")
            == 1
        )
    finally:
        await conn.close()


async def test_a_terminal_sees_a_progress_bar_and_a_pipe_does_not(settings, tmp_path, day):
    await write(settings, day)
    env = {
        **os.environ,
        "HYBRIDCON_DATA_DIR": str(settings.data_dir),
        "HYBRIDCON_DATABASE_URL": settings.database_url,
        "HYBRIDCON_PROGRAMME": str(settings.programme),
    }
    # stderr on a pseudo-terminal, as a person running the command sees it.
    controller, terminal = os.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            *HYBRIDCON,
            "report",
            "--out",
            str(tmp_path / "tty"),
            "--format",
            "json",
            env=env,
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
        os.close(terminal)
        await asyncio.wait_for(proc.wait(), timeout=120)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child's end is closed and everything was read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
    assert proc.returncode == 0, shown.decode(errors="replace")
    frames = shown.decode().split("\r")
    bars = [f for f in frames if f.startswith("[")]
    # One redraw per step, the bar filling up, ending full at the last step.
    assert len(bars) == 8, frames
    assert bars[0].startswith("[##...") and "scanning the log" in bars[0]
    assert bars[-1].startswith("[" + "#" * 20 + "]") and "stream incidents" in bars[-1]
    assert [b.count("#") for b in bars] == sorted(b.count("#") for b in bars)
    # The same command with stderr to a pipe (a log, a cron job): no bar at all.
    piped = ok(run_cli(settings, "report", "--out", str(tmp_path / "pipe"), "--format", "json"))
    assert "[" not in piped.stderr and "\r" not in piped.stderr
