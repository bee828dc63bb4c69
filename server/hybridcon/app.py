"""The aiohttp application: its parts, started and stopped in order through ``cleanup_ctx``.

Start: database (embedded or configured; migrations under a lock; the programme
stored), then keys and revocations, then the gateway, then the livestreams (which push
through the gateway's node and add to its snapshots), then the room provider of the
zoom-style sessions. Stop, in reverse: the rooms' peer connections end, sockets close
with 1012 (reconnect elsewhere), revocation listening stops, the pool closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import structlog
from aiohttp import web

from hybridcon.access import AccessControl
from hybridcon.api import routes
from hybridcon.api.bodies import MAX_BODY_BYTES
from hybridcon.api.middleware import request_context
from hybridcon.api.rooms import ROOM_MEDIA, RoomMedia
from hybridcon.api.whip import STREAMS
from hybridcon.bus.local import LocalBus
from hybridcon.bus.redis import RedisBus
from hybridcon.clock import Clock, system_clock
from hybridcon.core.admission import parse_networks
from hybridcon.core.programme import Programme, parse_programme
from hybridcon.core.ratelimit import KeyedLimiter
from hybridcon.errors import ConfigError
from hybridcon.media.ice import server_ice_servers
from hybridcon.metrics import Metrics
from hybridcon.periodic import Periodic
from hybridcon.realtime import gateway
from hybridcon.realtime.networking import Networking
from hybridcon.realtime.sessions import Sessions
from hybridcon.realtime.viewers import NODES_KEY
from hybridcon.rooms.providers import make_provider
from hybridcon.services import SERVICES, Services
from hybridcon.settings import Settings
from hybridcon.store import embedded
from hybridcon.store.engagement import EngagementWriter
from hybridcon.store.keyfile import (
    load_or_create_keyset,
    load_or_create_secret,
    load_or_create_text_secret,
)
from hybridcon.store.migrate import migrate
from hybridcon.store.programme import save_programme
from hybridcon.store.revocations import RevocationMirror
from hybridcon.streams.records import LocalRecords, RedisRecords
from hybridcon.streams.stages import Streams

log = structlog.get_logger(__name__)

# Nodes that may share one data directory (its embedded PostgreSQL, keys and spool folder).
MAX_NODES_PER_DATA_DIR = 8

# How often a node on the embedded PostgreSQL checks that its server still runs.
PG_CHECK_SECONDS = 2.0

# How often a node looks at the keyset file for a rotation or retirement done elsewhere.
KEYSET_CHECK_SECONDS = 10.0


def load_programme(path: Path) -> Programme:
    """Read and validate the programme file.

    Raises:
        ConfigError: the file is missing or wrong (the message says where).
    """
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read programme {path}: {exc.strerror or exc}") from None
    return parse_programme(text, source=str(path))


async def database_dsn(settings: Settings) -> str:
    """The configured database, or the embedded one (started if needed)."""
    if settings.database_url:
        return settings.database_url
    return await embedded.start(settings.embedded_pgdata)


async def open_pool(settings: Settings, dsn: str) -> asyncpg.Pool:
    """Apply migrations, then open the pool."""
    conn = await asyncpg.connect(dsn)
    try:
        applied = await migrate(conn)
    finally:
        await conn.close()
    if applied:
        log.info("migrations_applied", versions=applied)
    pool = await asyncpg.create_pool(
        dsn, min_size=settings.db_pool_min, max_size=settings.db_pool_max
    )
    assert pool is not None
    return pool


def create_app(settings: Settings, *, clock: Clock = system_clock) -> web.Application:
    """Build the application. Nothing is started until it runs.

    Raises:
        ConfigError: the programme file is missing or invalid.
    """
    programme = load_programme(settings.programme)
    services = Services(
        settings=settings,
        clock=clock,
        metrics=Metrics(),
        programme=programme,
        redeem_limiter=KeyedLimiter(
            rate=settings.invite_redeem_rate / 60, capacity=settings.invite_redeem_rate
        ),
        # A whole hall scans the QR code within a few minutes, from one venue address.
        hall_limiter=KeyedLimiter(rate=settings.hall_join_rate, capacity=settings.hall_join_burst),
        hall_guess_limiter=KeyedLimiter(
            rate=settings.invite_redeem_rate / 60, capacity=settings.invite_redeem_rate
        ),
        proxies=parse_networks(settings.reverse_proxies),
        bus=(
            RedisBus(settings.redis_url, history=settings.topic_history)
            if settings.redis_url
            else LocalBus(history=settings.topic_history, journal=settings.topic_journal_path)
        ),
    )
    app = web.Application(middlewares=[request_context], client_max_size=MAX_BODY_BYTES)
    app[SERVICES] = services

    async def supervise_embedded() -> None:
        # A killed embedded PostgreSQL is started again; the pool, the revocation
        # listener and the engagement writer reconnect by themselves.
        if await embedded.ensure_running(settings.embedded_pgdata):
            log.warning("embedded_postgres_restarted", pgdata=str(settings.embedded_pgdata))

    async def database(app: web.Application) -> AsyncIterator[None]:
        dsn = await database_dsn(settings)
        services.pool = await open_pool(settings, dsn)
        async with services.pool.acquire() as conn:
            await save_programme(conn, programme, str(settings.programme))
        mirror = RevocationMirror(
            connect=lambda: asyncpg.connect(dsn),
            pool=services.pool,
            clock=clock,
            resync_seconds=settings.revocation_resync_seconds,
        )
        await mirror.start()
        services.revocations = mirror
        writer = EngagementWriter(
            pool=services.pool,
            spool_path=settings.spool_path,
            on_count=lambda name, n: services.metrics.engagement_events.labels(name).inc(n),
            # Nodes of one event may share a data directory on one machine, each with a
            # spool of its own; without a bus between them they would split the event.
            spool_slots=MAX_NODES_PER_DATA_DIR if settings.redis_url else 1,
            max_spool_bytes=settings.engagement_spool_max_bytes,
            busy_hint=(
                "is another node running on this data directory? Several nodes need "
                "HYBRIDCON_REDIS_URL set on each"
                if not settings.redis_url
                else f"at most {MAX_NODES_PER_DATA_DIR} nodes share one data directory"
            ),
        )
        writer.start()
        services.engagement = writer
        watch = Periodic()
        if not settings.database_url:
            watch.every(PG_CHECK_SECONDS, supervise_embedded, "embedded-postgres")
        yield
        await watch.stop()
        # The gateway has closed its sockets by now (on_shutdown): their last events are
        # in the buffer. Flush them (to the spool if PostgreSQL is away), then close.
        await writer.stop()
        await mirror.stop()
        await asyncio.wait_for(services.pool.close(), timeout=10)

    async def keys(app: web.Application) -> AsyncIterator[None]:
        keyset = await asyncio.to_thread(load_or_create_keyset, settings.keys_path, clock())
        services.invite_secret = await asyncio.to_thread(
            load_or_create_secret, settings.invite_secret_path
        )
        services.actor_key = await asyncio.to_thread(
            load_or_create_secret, settings.engagement_key_path
        )
        if settings.turn_urls:
            services.turn_secret = await asyncio.to_thread(
                load_or_create_text_secret, settings.turn_secret_path
            )
        assert services.revocations is not None
        services.access = access = AccessControl(
            settings=settings,
            keyset=keyset,
            keys_path=settings.keys_path,
            revoked=services.revocations,
            clock=clock,
            metrics=services.metrics,
        )

        async def check_keys() -> None:
            if await asyncio.to_thread(access.refresh_if_changed):
                log.info("keyset_reloaded", active_kid=access.keyset.active_kid)

        watch = Periodic()
        watch.every(KEYSET_CHECK_SECONDS, check_keys, "keyset-watch")
        yield
        await watch.stop()

    async def bus(app: web.Application) -> AsyncIterator[None]:
        await services.bus.start()
        yield
        await services.bus.stop()

    async def livestreams(app: web.Application) -> AsyncIterator[None]:
        secret = await asyncio.to_thread(load_or_create_secret, settings.hls_secret_path)
        gw = app[gateway.GATEWAY]
        node = gw.node
        # Several nodes: which holds each stage, in Redis, leased by the node lease the
        # viewer counts keep (NODES_KEY). One node: nothing shared.
        records = (
            RedisRecords(node.redis, node.signals.node_id, NODES_KEY)
            if node.redis is not None
            else LocalRecords()
        )
        streams = Streams(services, node, secret, records)
        app[STREAMS] = streams
        gw.snapshot_hooks.append(streams.snapshot)
        gw.load_hooks.append(streams.load)
        if services.revocations is not None:
            services.revocations.on_revoked.append(streams.revoked)
        await streams.start()
        yield
        await streams.stop()

    async def room_media(app: web.Application) -> AsyncIterator[None]:
        # The zoom-style sessions' media. /readyz does not wait for the provider: builtin
        # has nothing to connect to, and with Janus down the sessions answer clear errors
        # while the rest of the node (livestreams, chat) serves on.
        provider = await asyncio.to_thread(
            make_provider,
            settings,
            ice_servers=server_ice_servers(settings, services.turn_secret, clock),
        )
        media = RoomMedia(provider=provider)
        provider.listen(media.on_event)
        app[ROOM_MEDIA] = media
        await provider.start()
        # The session rules drive the provider (ensure, mute, unpublish, remove, destroy)
        # and hear its reports (attach_provider listens); they are also the gate every
        # media route asks before negotiating.
        sessions = app[gateway.GATEWAY].capability(Sessions)
        sessions.attach_provider(provider)
        media.gate = sessions
        # The networking tables and pairings are rooms of the same provider: the lounge
        # ends a person's media when they stand up, and gates the network media routes.
        networking = app[gateway.GATEWAY].capability(Networking)
        networking.attach_provider(provider)
        media.network = networking
        yield
        await provider.stop()

    async def freeze_start_up(app: web.Application) -> None:
        # After every part has started (on_startup runs the cleanup contexts first): what
        # start-up built lives as long as the node, so full collections need not walk it.
        app[gateway.GATEWAY].heap.started()

    app.cleanup_ctx.append(database)
    app.cleanup_ctx.append(keys)
    app.cleanup_ctx.append(bus)
    routes.setup(app)
    gateway.setup(app)
    app.cleanup_ctx.append(livestreams)
    app.cleanup_ctx.append(room_media)
    app.on_startup.append(freeze_start_up)
    return app
