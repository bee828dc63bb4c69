"""The ``hybridcon`` command: serve, migrate, tokens, keys, invites, report, purge, attendance.

The CLI and a server beside it share keys and data through the data directory and
the database, so a token from ``hybridcon token issue`` is accepted by that server.
Errors print one line naming the problem and exit 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import jwt
import structlog
from pydantic import ValidationError
from pydantic_settings import SettingsError

from hybridcon import __version__
from hybridcon.access import AccessControl
from hybridcon.app import database_dsn, load_programme, open_pool
from hybridcon.clock import system_clock
from hybridcon.core.csvcells import csv_document
from hybridcon.core.durations import parse_duration
from hybridcon.core.invites import check_programme_scopes, parse_registrations
from hybridcon.core.keys import Keyset
from hybridcon.core.programme import Online, Programme
from hybridcon.core.report import figures as report_figures
from hybridcon.core.tokens import Role, TokenRequest, parse_role, parse_scopes
from hybridcon.errors import HybridconError
from hybridcon.listener import raise_open_file_limit, serve
from hybridcon.logs import configure as configure_logs
from hybridcon.metrics import Metrics
from hybridcon.report import build as report_build
from hybridcon.report import files as report_files
from hybridcon.report.i18n import LANGS
from hybridcon.services import SERVICES
from hybridcon.settings import Settings
from hybridcon.store import attendance as attendance_store
from hybridcon.store import audit, invites, revocations
from hybridcon.store import purge as purge_store
from hybridcon.store import report as report_store
from hybridcon.store.keyfile import load_or_create_keyset, load_or_create_secret, update_keyset

log = structlog.get_logger(__name__)

CLI_ACTOR = "cli"
# The form of every jti hybridcon issues (core.tokens: uuid4().hex).
_JTI_RE = re.compile(r"[0-9a-f]{32}", re.ASCII)


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "config", None):
        overrides["programme"] = Path(args.config)
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None) is not None:
        overrides["port"] = args.port
    return Settings(**overrides)


def _access(settings: Settings) -> AccessControl:
    keyset = load_or_create_keyset(settings.keys_path, system_clock())
    return AccessControl(
        settings=settings,
        keyset=keyset,
        keys_path=settings.keys_path,
        revoked=(),
        clock=system_clock,
        metrics=Metrics(),
    )


@contextlib.asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    pool = await open_pool(settings, await database_dsn(settings))
    try:
        yield pool
    finally:
        await pool.close()


# --- serve -------------------------------------------------------------------------------


def _banner(
    settings: Settings, services_access: AccessControl, programme: Programme | None = None
) -> str:
    base = settings.base_url()
    lines = [
        f"hybridcon {__version__} is running at {base}",
        f"  programme   {base}/api/v1/programme",
        f"  health      {base}/healthz   ready {base}/readyz   metrics {base}/metrics",
        f"  websocket   {base.replace('http', 'ws', 1)}/ws  (first frame: auth with a token)",
        "",
        "Ready-made tokens for trying it out (12 hours; `hybridcon token issue` makes more):",
    ]
    tokens: dict[Role, str] = {}
    for role, name in (
        (Role.VIEWER, "Demo kijker"),
        (Role.MODERATOR, "Demo moderator"),
        (Role.ORGANISER, "Demo organisator"),
        (Role.BROADCASTER, "Demo regie"),
    ):
        token, _ = services_access.issue(
            TokenRequest(role=role, scopes=("*",), name=name, ttl=timedelta(hours=12)), via="cli"
        )
        tokens[role] = token
        lines.append(f"  {role.value:<11}  {token}")
    # The token rides in the fragment: browsers never send it, so no access log sees it,
    # and the page moves it to session storage and off the address bar at once.
    lines += [
        "",
        "Open in a browser, signed in (one link per role):",
        f"  attendee page    {base}/stage/plenary#token={tokens[Role.VIEWER]}",
        f"  moderator page   {base}/moderate#token={tokens[Role.MODERATOR]}",
        f"  organiser page   {base}/organise#token={tokens[Role.ORGANISER]}",
        f"  sign-in page     {base}/join  (with an invite code)",
    ]
    # The first online workshop of the programme, as its host and as a participant (the
    # viewer's `*` scope covers it); networking for anyone signed in.
    room = next(
        (s for s in (programme.sessions if programme else ()) if s.online is Online.ROOM), None
    )
    if room is not None:
        lines += [
            f"  workshop host    {base}/session/{room.id}#token={tokens[Role.MODERATOR]}",
            f"  workshop guest   {base}/session/{room.id}#token={tokens[Role.VIEWER]}",
        ]
    lines.append(f"  networking       {base}/network#token={tokens[Role.VIEWER]}")
    lines += [
        "",
        "For example:",
        f"  curl -H 'Authorization: Bearer <organiser token>' {base}/api/v1/revocations",
        f"  OBS 30+: Settings > Stream > WHIP, server {base}/whip/plenary,"
        " bearer token: the broadcaster token",
        "",
    ]
    return "\n".join(lines)


async def _serve(settings: Settings, demo_tokens: bool) -> None:
    serving = await serve(settings)
    settings, runner = serving.settings, serving.runner
    app = serving.app
    services = app[SERVICES]
    if demo_tokens:
        print(_banner(settings, services.auth(), services.programme), flush=True)
    else:
        print(f"hybridcon {__version__} is running at {settings.base_url()}", flush=True)
    received: list[signal.Signals] = []
    stop = asyncio.Event()

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    await stop.wait()
    log.info("shutdown_started", signal=received[0].name, grace_seconds=settings.shutdown_grace)
    # Drain: readiness answers 503 for a grace period so load balancers stop sending
    # new clients here, then sockets close with 1012 and the rest shuts down in order.
    services.draining = True
    await asyncio.sleep(settings.shutdown_grace)
    await runner.cleanup()
    log.info("shutdown_complete")


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    configure_logs(settings.log_level, settings.log_format)
    raise_open_file_limit()
    asyncio.run(_serve(settings, args.demo_tokens))
    return 0


# --- migrate -----------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def run() -> None:
        async with _database(settings):
            pass  # opening the pool applies the migrations

    asyncio.run(run())
    print("database schema is up to date")
    return 0


# --- tokens ------------------------------------------------------------------------------


def cmd_token_issue(args: argparse.Namespace) -> int:
    settings = _settings(args)
    scopes = parse_scopes(args.scope or ["*"])
    load_programme(settings.programme).check_scopes(scopes)
    access = _access(settings)
    request = TokenRequest(
        role=parse_role(args.role),
        scopes=scopes,
        name=args.name or "",
        sub=args.sub,
        ttl=parse_duration(args.ttl) if args.ttl else None,
    )
    if args.count < 1:
        raise HybridconError("--count must be at least 1")
    if args.sub and args.count > 1:
        print("note: --sub with --count gives N tokens for one person", file=sys.stderr)
    for _ in range(args.count):
        token, _claims = access.issue(request, via="cli")
        print(token)
    return 0


def _jti_of(text: str) -> tuple[str, bool]:
    """The ``jti`` that ``token revoke`` was given, and whether it came out of a whole token.

    hybridcon keeps no list of the tokens it issued (``token issue`` writes none), so it
    cannot tell a real ``jti`` from a made-up one; it can tell one of the form it issues
    (32 hex characters, from ``uuid4().hex``) from a typo, a name or a truncated paste.

    Raises:
        HybridconError: ``text`` is neither such a ``jti`` nor a token carrying one.
    """
    value = text.strip()
    if _JTI_RE.fullmatch(value):
        return value, False
    if value.count(".") == 2:
        try:
            claims = jwt.decode(value, options={"verify_signature": False})
        except jwt.PyJWTError:
            claims = {}
        jti = claims.get("jti") if isinstance(claims, dict) else None
        if isinstance(jti, str) and _JTI_RE.fullmatch(jti):
            return jti, True
    raise HybridconError(
        f"{text!r} is not a token id: a jti is 32 hex characters "
        "(give the jti or the whole token; nothing was revoked)"
    )


def cmd_token_revoke(args: argparse.Namespace) -> int:
    settings = _settings(args)
    jti, from_token = _jti_of(args.jti)

    async def run() -> bool:
        async with _database(settings) as pool, pool.acquire() as conn:
            created = await revocations.revoke(
                conn,
                jti=jti,
                expires_at=system_clock() + settings.token_max_ttl,
                reason=args.reason or "",
                revoked_by=CLI_ACTOR,
            )
            if created:
                await audit.record(
                    conn,
                    actor=CLI_ACTOR,
                    actor_role="operator",
                    action="token.revoke",
                    target=jti,
                    detail={"reason": args.reason or ""},
                )
            return created

    created = asyncio.run(run())
    if from_token:
        print(f"(the token's jti is {jti})", file=sys.stderr)
    print(f"revoked {jti}" if created else f"{jti} was already revoked")
    return 0


# --- keys --------------------------------------------------------------------------------


def _describe_keys(keyset: Keyset) -> None:
    for key in keyset.keys:
        state = (
            "active"
            if key.kid == keyset.active_kid
            else (f"retired {key.retired_at:%Y-%m-%d %H:%M}" if key.retired_at else "verifying")
        )
        print(f"{key.kid}  created {key.created_at:%Y-%m-%d %H:%M}  {state}")


def cmd_keys(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = settings.keys_path
    now = system_clock()
    if args.action == "list":
        keyset = load_or_create_keyset(path, now)
    elif args.action == "rotate":
        load_or_create_keyset(path, now)
        keyset = update_keyset(path, lambda ks: ks.rotated(now))
    else:
        if not args.kid:
            raise HybridconError("keys retire needs the key id (see `hybridcon keys list`)")
        keyset = update_keyset(path, lambda ks: ks.retired(args.kid, now))
    _describe_keys(keyset)
    return 0


# --- invites -----------------------------------------------------------------------------


def _invite_valid_until(programme: Programme, settings: Settings, explicit: str | None) -> datetime:
    if explicit:
        try:
            when = datetime.fromisoformat(explicit)
        except ValueError:
            raise HybridconError(
                f"--valid-until {explicit!r} is not a date or time (e.g. 2022-05-07T18:00+02:00)"
            ) from None
        return when if when.tzinfo else when.replace(tzinfo=programme.starts_at.tzinfo)
    return programme.ends_at + timedelta(days=settings.invite_valid_days)


def cmd_invites_import(args: argparse.Namespace) -> int:
    settings = _settings(args)
    programme = load_programme(settings.programme)
    path = Path(args.file)
    try:
        text = path.read_text("utf-8-sig")
    except OSError as exc:
        raise HybridconError(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise HybridconError(f"{path} is not UTF-8 text; export the CSV as UTF-8") from None
    registrations = parse_registrations(
        text,
        default_role=parse_role(args.role),
        default_scopes=parse_scopes(args.scope or ["*"]),
    )
    check_programme_scopes(registrations, programme)
    valid_until = _invite_valid_until(programme, settings, args.valid_until)
    if valid_until <= system_clock():
        # Invites nobody can redeem are worse than none: the import would succeed and
        # every attendee would get 409 on the day. Refuse before anything is written.
        where = (
            "--valid-until"
            if args.valid_until
            else "the programme's end plus HYBRIDCON_INVITE_VALID_DAYS"
        )
        raise HybridconError(
            f"these invites would expire at {valid_until:%Y-%m-%d %H:%M %Z} ({where}), "
            "which has passed; give --valid-until a later date (e.g. --valid-until "
            f"{system_clock() + timedelta(days=7):%Y-%m-%d}); nothing was imported"
        )
    secret = load_or_create_secret(settings.invite_secret_path)

    async def run() -> invites.ImportResult:
        async with _database(settings) as pool, pool.acquire() as conn:
            return await invites.import_registrations(
                conn, registrations, secret=secret, valid_until=valid_until
            )

    result = asyncio.run(run())
    print(
        f"{result.created} invites created, {result.existing} already present "
        f"(valid until {valid_until:%Y-%m-%d %H:%M %Z})"
    )
    return 0


def cmd_invites_export(args: argparse.Namespace) -> int:
    settings = _settings(args)
    base_url = args.base_url or settings.public_url
    if not base_url:
        # The links go out to attendees by e-mail: one pointing at this machine's
        # http://localhost:8080 (the default address) reaches nobody.
        raise HybridconError(
            "invites export needs the address attendees reach hybridcon at: set "
            "HYBRIDCON_PUBLIC_URL (as the server has it) or give --base-url"
        )
    base = base_url.rstrip("/")
    secret = load_or_create_secret(settings.invite_secret_path)

    async def run() -> list[invites.InviteLink]:
        async with _database(settings) as pool:
            links = await invites.export_links(pool, secret=secret)
            await audit.record(
                pool,
                actor=CLI_ACTOR,
                actor_role="operator",
                action="invites.export",
                detail={"count": len(links)},
            )
            return links

    links = asyncio.run(run())
    out = open(args.out, "w", newline="", encoding="utf-8") if args.out else sys.stdout  # noqa: SIM115
    try:
        out.write(invites.export_csv(links, base))
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


# --- report, purge, attendance (issue 10) ------------------------------------------------


def _progress() -> Callable[[str], None]:
    """A one-line progress display on a terminal (nothing when stderr is a file or pipe)."""
    if not sys.stderr.isatty():
        return lambda _step: None
    count = [0]

    def show(step: str) -> None:
        count[0] += 1
        done = count[0] * 20 // len(report_store.STEPS)
        bar = "#" * done + "." * (20 - done)
        print(f"\r[{bar}] {step:<40}", end="", file=sys.stderr, flush=True)

    return show


def _database_gone(exc: BaseException) -> HybridconError:
    return HybridconError(
        f"the database failed or went away ({type(exc).__name__}: {exc}); nothing was written"
    )


def cmd_report(args: argparse.Namespace) -> int:
    """``hybridcon report``: the post-conference report as HTML, CSV, JSON and PDF."""
    settings = _settings(args)
    programme = load_programme(settings.programme)
    tz = ZoneInfo(programme.event.timezone)
    formats = report_files.parse_formats(args.format)
    if args.lang not in LANGS:
        raise HybridconError(f"--lang must be one of {', '.join(LANGS)}")
    if args.k < 1:
        raise HybridconError("--k must be at least 1")
    delimiter = {"comma": ",", "semicolon": ";", ",": ",", ";": ";"}.get(args.csv_delimiter)
    if delimiter is None:
        raise HybridconError("--csv-delimiter must be ',' or ';'")
    start = report_build.parse_when(args.from_, tz, end=False) if args.from_ else None
    end = report_build.parse_when(args.to, tz, end=True) if args.to else None
    progress = _progress()

    async def run() -> report_figures.Figures:
        try:
            async with _database(settings) as pool:
                return await report_build.build(
                    pool, programme, start=start, end=end, k=args.k, progress=progress
                )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _database_gone(exc) from None

    try:
        figures = asyncio.run(run())
    finally:
        if sys.stderr.isatty():
            print(file=sys.stderr)
    written = report_files.write_report(
        Path(args.out),
        figures,
        formats=formats,
        title=programme.event.title,
        tz=tz,
        lang=args.lang,
        generated=system_clock(),
        delimiter=delimiter,
        pdf=lambda html, pdf: report_files.chromium_pdf(html, pdf, chromium=args.chromium),
    )
    print(f"report written to {Path(args.out).resolve()} ({len(written)} files)")
    for kind, n in sorted(figures.unknown_kinds.items()):
        print(f"note: {n} events of unknown kind {kind!r} were ignored", file=sys.stderr)
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    """``hybridcon purge --before DATE``: keep the days' aggregates, delete their raw rows."""
    settings = _settings(args)
    programme = load_programme(settings.programme)
    tz = ZoneInfo(programme.event.timezone)
    before = report_build.parse_when(args.before, tz, end=False)

    async def run() -> list[purge_store.KeptDay]:
        try:
            async with _database(settings) as pool:
                days = await purge_store.purge_before(pool, programme, before, tz)
                for day in days:
                    await audit.record(
                        pool,
                        actor=CLI_ACTOR,
                        actor_role="operator",
                        action="engagement.purge",
                        target=day.day.isoformat(),
                        detail={"rows": day.rows_purged},
                    )
                return days
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise _database_gone(exc) from None

    days = asyncio.run(run())
    if not days:
        print(f"nothing to purge: no whole day before {before:%Y-%m-%d %H:%M %Z} has raw rows")
    for day in days:
        print(f"{day.day}: kept the report's aggregates, deleted {day.rows_purged} raw rows")
    return 0


def cmd_attendance(args: argparse.Namespace) -> int:
    """``hybridcon attendance``: the identified attendance export (audited)."""
    settings = _settings(args)
    programme = load_programme(settings.programme)
    tz = ZoneInfo(programme.event.timezone)
    start = report_build.parse_when(args.from_ or programme.event.date.isoformat(), tz, end=False)
    end = report_build.parse_when(args.to or programme.event.date.isoformat(), tz, end=True)
    key = load_or_create_secret(settings.engagement_key_path)

    async def run() -> list[attendance_store.Attendance]:
        async with _database(settings) as pool:
            rows = await attendance_store.attendance(pool, key, start, end)
            await audit.record(
                pool,
                actor=CLI_ACTOR,
                actor_role="operator",
                action="attendance.export",
                detail={"count": len(rows), "from": start.isoformat(), "to": end.isoformat()},
            )
            return rows

    rows = asyncio.run(run())
    text = attendance_csv(rows)
    if args.out:
        Path(args.out).write_text(text, "utf-8")
    else:
        sys.stdout.write(text)
    return 0


def attendance_csv(rows: Sequence[attendance_store.Attendance]) -> str:
    """The attendance export as CSV, text cells defused against formula injection."""
    return csv_document(
        ("ticket_id", "name", "email", "attentive_minutes", "checkins"),
        ((r.ticket_id, r.name, r.email, r.attentive_minutes, r.checkins) for r in rows),
    )


def _add_report_commands(sub: Any, common: Callable[[Any], Any]) -> None:
    rep = common(sub.add_parser("report", help="write the post-conference report"))
    rep.add_argument("--out", required=True, metavar="DIR", help="the report's directory")
    rep.add_argument("--format", default="html,csv,json,pdf", help="html,csv,json,pdf (any)")
    rep.add_argument("--lang", default="nl", help="nl (default) or en")
    rep.add_argument("--from", dest="from_", metavar="WHEN", help="ISO date or date and time")
    rep.add_argument("--to", metavar="WHEN", help="ISO date (inclusive) or date and time")
    rep.add_argument(
        "--k",
        type=int,
        default=report_figures.DEFAULT_K,
        help=f"hide cells of fewer people (default {report_figures.DEFAULT_K})",
    )
    rep.add_argument("--csv-delimiter", default=",", help="',' (default) or ';'")
    rep.add_argument("--chromium", default="chromium", help="the Chromium that prints the PDF")
    rep.set_defaults(func=cmd_report)
    pur = common(sub.add_parser("purge", help="delete raw engagement rows, keep aggregates"))
    pur.add_argument("--before", required=True, metavar="DATE", help="purge whole days before")
    pur.set_defaults(func=cmd_purge)
    att = common(sub.add_parser("attendance", help="identified attendance (CSV, audited)"))
    att.add_argument("--out", help="file to write (default: standard output)")
    att.add_argument("--from", dest="from_", metavar="WHEN", help="default: the event's day")
    att.add_argument("--to", metavar="WHEN", help="default: the event's day")
    att.set_defaults(func=cmd_attendance)


# --- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hybridcon", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hybridcon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", metavar="FILE", help="the programme file (TOML)")
        return p

    serve = common(sub.add_parser("serve", help="run the service"))
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8080)")
    serve.add_argument(
        "--demo-tokens",
        action="store_true",
        help="print ready-made viewer, moderator and organiser tokens",
    )
    serve.set_defaults(func=cmd_serve)

    common(sub.add_parser("migrate", help="apply database migrations")).set_defaults(
        func=cmd_migrate
    )

    token = sub.add_parser("token", help="issue or revoke access tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    issue = common(token_sub.add_parser("issue", help="print new tokens, one a line"))
    issue.add_argument("--role", required=True, help=", ".join(r.value for r in Role))
    issue.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help="stage:<id>, session:<id> or * (repeatable; default *)",
    )
    issue.add_argument("--name", help="display name")
    issue.add_argument("--ttl", metavar="DURATION", help="lifetime, e.g. 2h (default 12h)")
    issue.add_argument("--count", type=int, default=1, help="N tokens, each its own person")
    issue.add_argument("--sub", help="a fixed subject (person id) instead of a new one")
    issue.set_defaults(func=cmd_token_issue)
    revoke = common(token_sub.add_parser("revoke", help="revoke a token by its jti"))
    revoke.add_argument("jti")
    revoke.add_argument("--reason", help="why (kept in the audit log)")
    revoke.set_defaults(func=cmd_token_revoke)

    keys = common(sub.add_parser("keys", help="list, rotate or retire signing keys"))
    keys.add_argument("action", choices=["list", "rotate", "retire"])
    keys.add_argument("kid", nargs="?", help="the key to retire")
    keys.set_defaults(func=cmd_keys)

    inv = sub.add_parser("invites", help="import registrations, export invite links")
    inv_sub = inv.add_subparsers(dest="invites_command", required=True)
    imp = common(inv_sub.add_parser("import", help="turn a ticketing export into invites"))
    imp.add_argument("file", help="CSV with ticket_id, name, [email, role, scopes]")
    imp.add_argument("--role", default="viewer", help="role for rows without one")
    imp.add_argument("--scope", action="append", help="scopes for rows without any (default *)")
    imp.add_argument(
        "--valid-until",
        metavar="WHEN",
        help="ISO date/time the invites stay redeemable until "
        "(default: the event's end plus invite_valid_days)",
    )
    imp.set_defaults(func=cmd_invites_import)
    exp = common(inv_sub.add_parser("export", help="write every invite's code and link (CSV)"))
    exp.add_argument("--out", help="file to write (default: standard output)")
    exp.add_argument("--base-url", help="base of the links (default: the public URL)")
    exp.set_defaults(func=cmd_invites_export)
    _add_report_commands(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except HybridconError as exc:
        print(f"hybridcon: {exc.message}", file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"hybridcon: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        print(f"hybridcon: setting {where}: {first['msg']}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"hybridcon: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
