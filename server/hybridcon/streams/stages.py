"""The stages' livestreams on this node: publishers, viewers, HLS, recordings, state.

One :class:`StageStream` per streamed stage of the programme (kinds ``stream`` and
``radio``). A WHIP publisher feeds the stage's pass-through hub; the hub feeds the HLS
packager, the recorder, the health probe and capped WHEP viewers. The state machine of
:mod:`hybridcon.core.streams` decides ``scheduled -> live -> ended`` (and
``interrupted``); a stage goes live when the publisher's first playable media reaches
the hub, not when its offer is answered. Every change is pushed to the stage topic as
``stream.state`` with fresh signed URLs, so players switch on and off by themselves, and
logged as ``stream_started`` / ``stream_ended``. Health goes to ``mod:stage:<id>`` as
``stream.health`` every few seconds and to the log as ``stream_health``; Prometheus
series per stage are in :mod:`hybridcon.streams.metrics`.

Caps (one publisher per stage, ``whip_max_publishers`` and ``whep_max_viewers`` per
node) are taken before the first await of an offer's negotiation and given back if it
fails, so offers arriving together cannot pass a cap together.

On several nodes a stage has one publisher across them all: the node that takes a WHIP
offer claims the stage in the shared record (:mod:`hybridcon.streams.records`) before
answering, and another node's offer for it is refused (``conflict``). The holder writes
the stage's state there before each ``stream.state`` push; the other nodes show that
state and HLS link in their snapshots (read when a client subscribes, and kept from the
pushes they deliver), and send WHEP to the holder (:class:`Elsewhere`). On one node
nothing is shared and none of this changes anything.

The streams know nothing of the WebSocket gateway: they push through a small
:class:`Outlet` (the node's publishing side), and the app hooks their snapshot part
and their revocation handling where they belong.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import orjson
import structlog
from redis.exceptions import RedisError

from hybridcon.core import payloads
from hybridcon.core.programme import Stage, StageKind
from hybridcon.core.streams import StreamEvent, StreamState, next_state
from hybridcon.core.tokens import Claims
from hybridcon.core.urls import hls_url
from hybridcon.errors import Conflict, NotFound, Unavailable
from hybridcon.media.consumer import Consumer, first_playable
from hybridcon.media.hls import HlsPackager
from hybridcon.media.hub import StageHub
from hybridcon.media.ice import server_ice_servers
from hybridcon.media.packets import KINDS, Kind
from hybridcon.media.peers import Publisher, Viewer, accept_publisher, accept_viewer
from hybridcon.media.probe import Probe, ProbeState
from hybridcon.media.recorder import Recorder
from hybridcon.periodic import Periodic
from hybridcon.services import Services
from hybridcon.streams.metrics import StageMetrics
from hybridcon.streams.records import LocalRecords, StageRecord, StageRecords

log = structlog.get_logger(__name__)

LOSS_ALERT = 0.02  # more than 2 % of packets lost since the last health push

# How long a node waits for the shared record (Redis) before going on without it.
RECORD_TIMEOUT = 2.0

_STATE_PUSH = b'{"type":"stream.state"'


class Elsewhere(Exception):
    """Another node holds the stage's publisher (and its hub).

    Attributes:
        url: that node's own base URL, or "" when it has none of its own.
    """

    def __init__(self, stage_id: str, url: str) -> None:
        super().__init__(f"stage {stage_id} is published on another node")
        self.url = url


class Outlet(Protocol):
    """Where the streams push state, log engagement and run background work."""

    def publish(self, topic: str, kind: str, fields: Mapping[str, Any]) -> object:
        """A sequenced push to ``topic``."""

    def broadcast(self, topic: str, kind: str, fields: Mapping[str, Any]) -> None:
        """An unsequenced state push to ``topic``."""

    def broadcast_here(self, topic: str, kind: str, fields: Mapping[str, Any]) -> None:
        """An unsequenced state push to this node's subscribers only."""

    def engage(
        self, payload: payloads.Payload, topic: str | None, claims: Claims | None = None
    ) -> None:
        """Log an engagement event (the streams' are system events)."""

    def background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task kept until it ends."""

    def on_delivered(self, tap: Callable[[str, bytes], None]) -> None:
        """See every message this node delivers, as it delivers it."""


@dataclass
class StageStream:
    """One stage's stream on this node."""

    stage: Stage
    hub: StageHub
    metrics: StageMetrics
    state: StreamState = StreamState.SCHEDULED
    publisher: Publisher | None = None
    # The session id of a WHIP offer being answered: it holds the stage (and a place
    # under the node's cap) from before the first await until it is accepted or fails.
    reserved: str | None = None
    publisher_session: str | None = None
    publisher_etag: str | None = None
    viewers: dict[str, Viewer] = field(default_factory=dict)
    outputs: list[asyncio.Task[None]] = field(default_factory=list)
    probe: Probe | None = None
    loss_seen: tuple[int, int] = (0, 0)  # (packets, lost) at the last health push
    accepted_at: float = 0.0  # time.monotonic() when the current publisher was accepted
    media_at: float | None = None  # time.monotonic() of its first playable media (None: none yet)
    publisher_jti: str | None = None  # the token it published with (revocation ends it)
    # Whether this publisher session's live playlist has its first segment: until then
    # hls_url is withheld (a player loading it would get 404 and might give up).
    hls_ready: bool = False
    # Several nodes: the stage's record as this node last read it or saw it pushed (None:
    # none; the node's own state stands), shown while this node holds no publisher.
    shared: StageRecord | None = None
    # stream.state pushes of another node this node delivered (a read of the record that
    # one overtook is dropped: the push is newer).
    pushes_seen: int = 0
    # Whether this node held the stage's claim when it last had a publisher (it may
    # take the stage again while Redis is away).
    claimed: bool = False
    # Record writes and the pushes after them, in the order of the changes.
    announcing: asyncio.Lock = field(default_factory=asyncio.Lock)
    claim_lost: bool = False  # logged once while another node holds the claim
    release_pending: bool = False  # letting go failed (Redis away): tried again each second

    @property
    def holds(self) -> bool:
        """This node has the stage's publisher, or is answering an offer for it."""
        return self.publisher is not None or self.reserved is not None

    @property
    def audio_only(self) -> bool:
        """The radio: Opus in, AAC in HLS out, no video."""
        return self.stage.kind is StageKind.RADIO


class Streams:
    """Every streamed stage on this node."""

    pushes: ClassVar[Mapping[str, str]] = {
        "stream.state": "the stage's stream state changed (with fresh signed URLs)",
        "stream.health": "mod:stage:<id>: the ingest's health, every stream_health_seconds",
        "stream.alert": "mod:stage:<id>: the probe saw a problem start or end",
    }

    def __init__(
        self,
        services: Services,
        outlet: Outlet,
        hls_secret: bytes,
        records: StageRecords | None = None,
    ) -> None:
        self.services = services
        self.outlet = outlet
        self.hls_secret = hls_secret
        self.records: StageRecords = records if records is not None else LocalRecords()
        self.stages: dict[str, StageStream] = {
            stage.id: StageStream(
                stage=stage,
                hub=StageHub(stage.id),
                metrics=StageMetrics(services.metrics, stage.id),
            )
            for stage in services.programme.stages
            if stage.streamed
        }
        # WHEP offers being answered, held against the node's viewer cap.
        self._viewers_reserved = 0
        self._periodic = Periodic()
        # Record writes (and the pushes after them) under way: stop() waits for them.
        self._sharing: set[asyncio.Task[Any]] = set()
        if self.records.shared:
            outlet.on_delivered(self._delivered)

    def get(self, stage_id: str) -> StageStream:
        """A streamed stage.

        Raises:
            NotFound: no such stage, or it is not streamed.
        """
        stream = self.stages.get(stage_id)
        if stream is None:
            raise NotFound(f"no streamed stage {stage_id!r} in the programme")
        return stream

    @property
    def publishers(self) -> int:
        """Stages with a publisher, or a WHIP offer being answered, on this node."""
        return sum(
            1 for s in self.stages.values() if s.publisher is not None or s.reserved is not None
        )

    @property
    def viewers(self) -> int:
        """WHEP viewers, and WHEP offers being answered, on this node."""
        return sum(len(s.viewers) for s in self.stages.values()) + self._viewers_reserved

    # --- what clients are told ------------------------------------------------------------

    @staticmethod
    def shown(stream: StageStream) -> tuple[StreamState, bool]:
        """The stage's state and whether its HLS plays, as this node shows them: its own
        while it holds the publisher (or when nothing is shared), else the record's."""
        if stream.holds or stream.shared is None:
            return stream.state, stream.hls_ready
        return stream.shared.shown_state, stream.shared.hls

    def urls(self, stream: StageStream) -> dict[str, Any]:
        """``stream {state, hls_url, whep_url}`` for a stage topic's snapshot and pushes."""
        settings = self.services.settings
        base = settings.base_url()
        state, hls_ready = self.shown(stream)
        live = state is StreamState.LIVE
        expires = self.services.clock() + settings.hls_url_ttl
        return {
            "state": state.value,
            "hls_url": hls_url(base, self.hls_secret, stream.stage.id, expires)
            if live and hls_ready
            else None,
            "whep_url": f"{base}/whep/{stream.stage.id}"
            if live and not stream.audio_only
            else None,
            "audio_only": stream.audio_only,
        }

    def snapshot(self, topic: str, _claims: Claims) -> dict[str, Any]:
        """The ``stream`` part of a stage's subscribe snapshot (nothing for other topics);
        for ``mod:stage:<id>`` with the ingest's health."""
        moderated = topic.startswith("mod:")
        kind, _, ident = topic.removeprefix("mod:").partition(":")
        stream = self.stages.get(ident) if kind == "stage" else None
        if stream is None:
            return {}
        data = self.urls(stream)
        if moderated:
            data["health"] = self.health(stream, update=False)
        return {"stream": data}

    async def load(self, topic: str) -> None:
        """Before a stage topic's snapshot on several nodes: read the stage's record, unless
        this node holds its publisher (its own state is the truth then).

        The subscriber's node follows the topic before this read, and the holder writes
        the record before each push: a change is in the record read, or its push reaches
        this node afterwards (and the subscriber with it), or it reached this node during
        the read (and that push, newer, stands). Redis away: the last record stands.
        """
        kind, _, ident = topic.removeprefix("mod:").partition(":")
        stream = self.stages.get(ident) if kind == "stage" else None
        if stream is None or not self.records.shared or stream.holds:
            return
        seen = stream.pushes_seen
        try:
            record = await asyncio.wait_for(self.records.read(ident), RECORD_TIMEOUT)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("stage_record_not_read", stage=ident, error=str(exc))
            return
        if stream.pushes_seen == seen and not stream.holds and record is not None:
            # This node's own record (it let go, or is letting go): its own state stands.
            stream.shared = None if record.mine else record

    def _delivered(self, topic: str, payload: bytes) -> None:
        """A ``stream.state`` push this node delivers (several nodes): keep it as the
        stage's shared state, for snapshots while another node holds the stage."""
        if not payload.startswith(_STATE_PUSH) or not topic.startswith("stage:"):
            return
        stream = self.stages.get(topic.removeprefix("stage:"))
        if stream is None or stream.holds:
            return
        try:
            data = orjson.loads(payload)
            state = StreamState(data["state"])
        except (ValueError, KeyError):
            return
        before = stream.shared
        stream.shared = StageRecord(
            state=state,
            hls=data.get("hls_url") is not None,
            holder=before.holder if before is not None else "",
            url=before.url if before is not None else "",
            holder_alive=True,
        )
        stream.pushes_seen += 1

    def _event(self, stream: StageStream, event: StreamEvent) -> None:
        now = self.services.clock()
        transition = next_state(stream.state, event, now)
        if transition is None:
            return
        stream.state = transition.after
        stream.metrics.state(stream.state)
        if stream.state is StreamState.INTERRUPTED:
            stream.metrics.interruptions.inc()
        self._push_state(stream)
        topic = f"stage:{stream.stage.id}"
        kind = transition.engagement_kind
        if kind is not None:
            change = payloads.StreamStarted if kind == "stream_started" else payloads.StreamEnded
            self.outlet.engage(
                change(state=transition.after.value, was=transition.before.value), topic
            )
        log.info("stream_state", stage=stream.stage.id, state=stream.state.value)

    def _push_state(self, stream: StageStream) -> None:
        urls = self.urls(stream)  # signed once for both topics
        if not self.records.shared:
            self._publish_state(stream, urls)
            return
        # Several nodes: the record first, then the push (see :meth:`load`).
        self._share(self._announce(stream, urls, self._record(stream)))

    def _share(self, work: Coroutine[Any, Any, None]) -> None:
        task = self.outlet.background(work)
        self._sharing.add(task)
        task.add_done_callback(self._sharing.discard)

    def _publish_state(self, stream: StageStream, urls: Mapping[str, Any]) -> None:
        topic = f"stage:{stream.stage.id}"
        self.outlet.publish(topic, "stream.state", urls)
        self.outlet.publish(f"mod:{topic}", "stream.state", urls)

    def _record(self, stream: StageStream) -> dict[str, str]:
        return {
            "url": self.own_url(),
            "state": stream.state.value,
            "hls": "1" if stream.hls_ready else "0",
        }

    def own_url(self) -> str:
        """This node's own reachable URL, "" when it has none but the shared public one
        (``node_url`` unset, or the same as ``public_url``)."""
        settings = self.services.settings
        own = (settings.node_url or "").rstrip("/")
        return own if own and own != settings.base_url() else ""

    async def _announce(
        self, stream: StageStream, urls: Mapping[str, Any], record: Mapping[str, str]
    ) -> None:
        async with stream.announcing:
            await self._write_record(stream, record, hold=stream.holds)
            self._publish_state(stream, urls)

    async def _write_record(
        self, stream: StageStream, record: Mapping[str, str], *, hold: bool
    ) -> None:
        """Write this node's record of a stage it holds (or just let go); Redis away or
        slow: logged, and the stage goes on."""
        stage = stream.stage.id
        try:
            other = await asyncio.wait_for(
                self.records.write(stage, record, hold=hold), RECORD_TIMEOUT
            )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("stage_record_not_written", stage=stage, error=str(exc))
            stream.release_pending = not hold
            return
        stream.release_pending = False
        if other and hold and not stream.claim_lost:
            # Another node took the stage while this one could not renew (Redis away or
            # emptied): both publish now; the organisers pick one (docs/operations.md).
            log.warning("stage_claim_lost", stage=stage, holder=other[:8])
        stream.claim_lost = bool(other) and hold
        if other:
            stream.claimed = False  # another node holds it now

    async def renew(self) -> None:
        """Every second on several nodes: write the records of the stages this node holds
        again (a Redis that restarted empty has them back within a second), let go again
        where that failed, and look whether the holders of the stages shown live here
        are still alive (see :meth:`_check_holder`)."""
        for stream in self.stages.values():
            if stream.holds or stream.release_pending:
                async with stream.announcing:
                    await self._write_record(stream, self._record(stream), hold=stream.holds)
            elif stream.shared is not None and stream.shared.shown_state is StreamState.LIVE:
                await self._check_holder(stream)

    async def _check_holder(self, stream: StageStream) -> None:
        """A stage shown live here whose holder died (or let go without its push getting
        here): show the record's state, and push it to this node's own subscribers (each
        node to its own, unsequenced, as no holder is left to push it)."""
        seen = stream.pushes_seen
        try:
            record = await asyncio.wait_for(self.records.read(stream.stage.id), RECORD_TIMEOUT)
        except (RedisError, OSError, TimeoutError):
            return  # Redis away: the last state stands (logged by the bus)
        if record is None or stream.holds or stream.pushes_seen != seen:
            return
        before = self.shown(stream)
        stream.shared = None if record.mine else record
        if self.shown(stream) == before:
            return
        log.info("stream_holder_gone", stage=stream.stage.id, state=record.shown_state.value)
        urls = self.urls(stream)
        topic = f"stage:{stream.stage.id}"
        self.outlet.broadcast_here(topic, "stream.state", urls)
        self.outlet.broadcast_here(f"mod:{topic}", "stream.state", urls)

    def _segment_written(self, stream: StageStream) -> None:
        stream.metrics.segments.inc()
        if stream.hls_ready:
            return
        stream.hls_ready = True
        if stream.state is StreamState.LIVE:
            # The same state again, now with an hls_url that plays at once.
            self._push_state(stream)

    # --- publishers ------------------------------------------------------------------------

    async def publish(
        self, stage_id: str, offer: str, *, takeover: bool, jti: str | None = None
    ) -> tuple[str, str, str]:
        """Accept a WHIP offer for a stage.

        The stage does not go live here: it does when the publisher's first playable
        media reaches the hub (see :meth:`_first_media`), and a publisher that sends none
        within ``whip_first_media_seconds`` is closed (see :meth:`check_stalls`).

        Returns:
            ``(session_id, answer_sdp, etag)``.

        Raises:
            NotFound: not a streamed stage.
            Conflict: the stage has a publisher (and this is no take-over), or another
                offer for it is being answered (also for a take-over), or another node
                holds its publisher.
            Unavailable: the node takes no more publishers, or (several nodes) it cannot
                check now which node holds the stage.
        """
        stream = self.get(stage_id)
        if stream.reserved is not None or (stream.publisher is not None and not takeover):
            stream.metrics.refused("whip", "has_publisher")
            raise Conflict(f"stage {stage_id} already has a publisher")
        if (
            stream.publisher is None
            and self.publishers >= self.services.settings.whip_max_publishers
        ):
            stream.metrics.refused("whip", "full")
            raise Unavailable("this node takes no more publishers", retry_after=30)
        session = uuid.uuid4().hex
        # Held from here, before the first await, until the offer is accepted or fails.
        stream.reserved = session

        def closed() -> None:
            if stream.publisher_session == session:
                self.outlet.background(self._drop_publisher(stream, StreamEvent.DROPPED))

        try:
            await self._claim(stream)
            if stream.publisher is not None:
                await self._drop_publisher(stream, StreamEvent.DROPPED)
            publisher = await accept_publisher(
                offer,
                stream.hub,
                ice_servers=self.ice_servers(),
                ice_addresses=self.services.settings.ice_addresses,
                video_codecs=() if stream.audio_only else ("H264", "VP8"),
                on_closed=closed,
            )
        except BaseException:
            stream.reserved = None
            self._let_go(stream)  # a claim taken for this offer (several nodes)
            raise
        finally:
            stream.reserved = None
        stream.publisher = publisher
        stream.accepted_at = time.monotonic()
        stream.media_at = None
        stream.publisher_jti = jti
        stream.publisher_session = session
        stream.publisher_etag = f'"{uuid.uuid4().hex[:16]}"'
        stream.metrics.publisher_sessions.inc()
        self._start_outputs(stream, session)
        log.info("stream_publisher_accepted", stage=stage_id, session=session[:8])
        return session, publisher.answer_sdp, stream.publisher_etag

    async def _claim(self, stream: StageStream) -> None:
        """Take the stage across nodes (nothing to take on one node).

        Raises:
            Conflict: another live node holds the stage's publisher.
            Unavailable: Redis cannot be asked now, and this node did not hold the stage.
        """
        if not self.records.shared or stream.publisher is not None:
            return
        stage = stream.stage.id
        try:
            claim = await asyncio.wait_for(
                self.records.claim(stage, self.own_url()), RECORD_TIMEOUT
            )
        except (RedisError, OSError, TimeoutError) as exc:
            if stream.claimed:  # its own stage again (a publisher back after a drop)
                log.warning("stage_claim_not_checked", stage=stage, error=str(exc))
                return
            stream.metrics.refused("whip", "unchecked")
            raise Unavailable(
                f"cannot check now which node holds stage {stage}; try again", retry_after=5
            ) from None
        record = claim.record
        if not claim.taken:
            stream.shared = record
            stream.claimed = False
            stream.metrics.refused("whip", "elsewhere")
            live = record is not None and record.state is StreamState.LIVE
            where = "is live" if live else "has a publisher"
            raise Conflict(f"stage {stage} {where} on another node")
        stream.claimed = True
        stream.shared = None
        if record is not None and not record.mine and record.shown_state is not stream.state:
            # Go on from the stage's state as the nodes showed it (the last holder's).
            stream.state = record.shown_state
            stream.metrics.state(stream.state)

    async def end(self, stage_id: str) -> None:
        """End a stage's stream whatever its publisher does (an organiser's decision): an
        interrupted stage whose publisher will not come back, or one to take off the air."""
        stream = self.get(stage_id)
        if stream.publisher is not None:
            await self._drop_publisher(stream, StreamEvent.STOPPED)
            return
        if self.records.shared and not stream.holds:
            # Several nodes: the stage's publisher may be on another node (end it there),
            # or its last holder let go or died (this node takes the stage to end it).
            record = await self._read(stream)
            if record is not None and record.held_elsewhere:
                raise Elsewhere(stage_id, record.url)
            await self._claim(stream)
        self._event(stream, StreamEvent.STOPPED)
        self._let_go(stream)

    async def _read(self, stream: StageStream) -> StageRecord | None:
        """The stage's record (several nodes), kept as the shared state; None: none, or
        Redis away (logged)."""
        stage = stream.stage.id
        try:
            record = await asyncio.wait_for(self.records.read(stage), RECORD_TIMEOUT)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("stage_record_not_read", stage=stage, error=str(exc))
            return None
        if record is not None and not stream.holds and not record.mine:
            stream.shared = record
        return record

    def _let_go(self, stream: StageStream) -> None:
        """Let go of the stage's claim once this node holds no publisher for it (several
        nodes), after the record writes and pushes queued before."""
        if self.records.shared and not stream.holds:
            self._share(self._release(stream))

    async def _release(self, stream: StageStream) -> None:
        async with stream.announcing:
            if not stream.holds:
                await self._write_record(stream, self._record(stream), hold=False)

    def revoked(self, jti: str) -> None:
        """A revoked broadcaster token takes its publisher off the air (interrupted)."""
        for stream in self.stages.values():
            if stream.publisher is not None and stream.publisher_jti == jti:
                self.outlet.background(self._drop_publisher(stream, StreamEvent.DROPPED))

    async def stop_publishing(self, stage_id: str, session: str) -> None:
        """The publisher ended its session (WHIP DELETE): the stream has ended.

        Raises:
            NotFound: no such session on this stage.
        """
        stream = self.get(stage_id)
        if stream.publisher_session != session:
            raise NotFound("no such WHIP session")
        await self._drop_publisher(stream, StreamEvent.STOPPED)

    async def _drop_publisher(self, stream: StageStream, event: StreamEvent) -> None:
        publisher, stream.publisher = stream.publisher, None
        stream.publisher_session = stream.publisher_etag = None
        if publisher is not None:
            with contextlib.suppress(Exception):
                await publisher.close()
        await stream.hub.detach()
        outputs, stream.outputs = stream.outputs, []
        if outputs:
            # The outputs end by themselves when the hub says the ingest ended.
            await asyncio.wait(outputs, timeout=10)
        self._event(stream, event)
        self._let_go(stream)

    def _start_outputs(self, stream: StageStream, session: str) -> None:
        settings = self.services.settings
        hub = stream.hub
        # The previous run's live playlist ends with ENDLIST; a player loading it now
        # would stop. The archive keeps every run; the live playlist starts afresh.
        (settings.hls_dir / stream.stage.id / "index.m3u8").unlink(missing_ok=True)
        stream.hls_ready = False
        video = None if stream.audio_only else hub.consumer("video", name="hls")
        audio = hub.consumer("audio", name="hls")
        packager = HlsPackager(
            stream.stage.id,
            settings.hls_dir / stream.stage.id,
            video=video,
            audio=audio,
            segment_seconds=settings.hls_segment_seconds,
            clock=self.services.clock,
            resume=True,
            keyframe_request=hub.request_keyframe,
            on_segment=lambda _segment: self._segment_written(stream),
        )
        stamp = self.services.clock().strftime("%Y%m%dT%H%M%S")
        folder = settings.recordings_dir / stream.stage.id
        folder.mkdir(parents=True, exist_ok=True)
        recorder = Recorder(
            folder / f"{stream.stage.id}-{stamp}-{session[:8]}.mkv",
            video=None if stream.audio_only else hub.consumer("video", name="recorder"),
            audio=hub.consumer("audio", name="recorder"),
        )
        topic = f"mod:stage:{stream.stage.id}"

        def alert(state: ProbeState) -> None:
            self.outlet.publish(
                topic,
                "stream.alert",
                {"stage": stream.stage.id, "problems": state.problems(), **state.public()},
            )

        stream.probe = Probe(
            video=None if stream.audio_only else hub.consumer("video", name="probe"),
            audio=hub.consumer("audio", name="probe"),
            on_change=alert,
        )
        kinds: tuple[Kind, ...] = ("audio",) if stream.audio_only else KINDS
        watch = [hub.consumer(kind, name="first-media") for kind in kinds]
        for name, job in (
            ("first-media", self._first_media(stream, session, watch)),
            ("hls", packager.run()),
            ("recorder", recorder.run()),
            ("probe", stream.probe.run()),
        ):
            stream.outputs.append(
                asyncio.create_task(
                    self._guarded(stream, name, job), name=f"{name}-{stream.stage.id}"
                )
            )

    async def _first_media(
        self, stream: StageStream, session: str, consumers: list[Consumer]
    ) -> None:
        """Make the stage live when the first playable packet of ``session`` reaches the
        hub: any audio, or a video keyframe (a video consumer starts at one). Returns
        without a change when the ingest ends first."""
        arrived = await first_playable(consumers)
        if not arrived or stream.publisher_session != session:
            return
        stream.media_at = time.monotonic()
        log.info(
            "stream_first_media",
            stage=stream.stage.id,
            session=session[:8],
            seconds=round(stream.media_at - stream.accepted_at, 3),
        )
        self._event(stream, StreamEvent.STARTED)

    @staticmethod
    async def _guarded(stream: StageStream, name: str, job: Any) -> None:
        try:
            await job
        except Exception:
            log.exception("stream_output_failed", stage=stream.stage.id, output=name)

    # --- viewers ---------------------------------------------------------------------------

    async def view(self, stage_id: str, offer: str) -> tuple[str, str]:
        """Accept a WHEP offer.

        Returns:
            ``(session_id, answer_sdp)``.

        Raises:
            NotFound: not a streamed stage.
            Conflict: the stage is not live.
            Unavailable: the node's WHEP viewers are at the cap (watch over HLS instead).
            Elsewhere: another node holds the stage's publisher (several nodes).
        """
        stream = self.get(stage_id)
        if self.records.shared and not stream.holds:
            record = await self._read(stream)
            if record is not None and record.held_elsewhere and not stream.audio_only:
                # Its hub is on the node that holds the publisher.
                stream.metrics.refused("whep", "elsewhere")
                raise Elsewhere(stage_id, record.url)
        if stream.state is not StreamState.LIVE:
            stream.metrics.refused("whep", "not_live")
            raise Conflict(f"stage {stage_id} is not live")
        if stream.audio_only:
            stream.metrics.refused("whep", "audio_only")
            raise Conflict(f"stage {stage_id} is audio only; listen over HLS")
        if self.viewers >= self.services.settings.whep_max_viewers:
            stream.metrics.refused("whep", "full")
            raise Unavailable("low-latency viewing is full here; watch over HLS")
        session = uuid.uuid4().hex

        def closed() -> None:
            viewer = stream.viewers.pop(session, None)
            if viewer is not None:
                self.outlet.background(viewer.close())

        # Held from here, before the first await, until the offer is accepted or fails.
        self._viewers_reserved += 1
        try:
            viewer = await accept_viewer(
                offer,
                stream.hub,
                ice_servers=self.ice_servers(),
                ice_addresses=self.services.settings.ice_addresses,
                on_closed=closed,
            )
        finally:
            self._viewers_reserved -= 1
        stream.viewers[session] = viewer
        stream.metrics.viewer_sessions.inc()
        return session, viewer.answer_sdp

    async def stop_viewing(self, stage_id: str, session: str) -> None:
        """End a WHEP session.

        Raises:
            NotFound: no such session.
        """
        stream = self.get(stage_id)
        viewer = stream.viewers.pop(session, None)
        if viewer is None:
            raise NotFound("no such WHEP session")
        await viewer.close()

    def ice_servers(self) -> list[Any]:
        """The configured ICE servers as aiortc wants them (never a public default), and
        the TURN URLs with credentials minted for hybridcon when a secret is shared with
        coturn."""
        services = self.services
        return server_ice_servers(services.settings, services.turn_secret, services.clock)()

    # --- health ----------------------------------------------------------------------------

    def health(self, stream: StageStream, *, update: bool = True) -> dict[str, Any]:
        """The ingest's health for moderators and organisers: the hub's counters, what the
        probe sees, and the problems worth an alert (black, frozen, silent, loss)."""
        stats = stream.hub.stats
        data: dict[str, Any] = {
            "stage": stream.stage.id,
            "state": self.shown(stream)[0].value,
            **stats.public(),
        }
        problems: list[str] = []
        if stream.probe is not None:
            data["probe"] = stream.probe.state.public()
            problems += stream.probe.state.problems()
        packets = stats.video.packets + stats.audio.packets
        lost = (stats.video.lost or 0) + (stats.audio.lost or 0)
        new_packets, new_lost = packets - stream.loss_seen[0], lost - stream.loss_seen[1]
        if update:  # a snapshot looks without starting a new loss window
            stream.loss_seen = (packets, lost)
        loss = new_lost / (new_packets + new_lost) if new_packets + new_lost > 0 else 0.0
        data["loss"] = round(loss, 4)
        if loss > LOSS_ALERT:
            problems.append("loss")
        data["problems"] = problems
        return data

    def push_health(self) -> None:
        """Push ``stream.health`` for live stages and log it."""
        for stream in self.stages.values():
            if stream.state is not StreamState.LIVE:
                stream.metrics.loss.set(0)
                continue
            data = self.health(stream)
            stream.metrics.loss.set(data["loss"])
            topic = f"stage:{stream.stage.id}"
            self.outlet.broadcast(f"mod:{topic}", "stream.health", data)
            self.outlet.engage(payloads.StreamHealth(health=data), topic)

    def check_stalls(self) -> None:
        """Close publishers that send nothing (any more).

        A publisher that vanishes (a laptop closed, a network gone) sends no goodbye, and
        ICE takes half a minute to give up; the media stopping is the sign: after
        ``stream_stall_seconds`` its live stage is interrupted. A publisher whose first
        playable media has not come ``whip_first_media_seconds`` after its offer was
        answered (ICE or DTLS never connected, or no keyframe and no audio) is closed
        without the stage ever going live.
        """
        settings = self.services.settings
        now = time.monotonic()
        for stream in self.stages.values():
            if stream.publisher is None:
                continue
            stats = stream.hub.stats
            if stream.media_at is None:
                waited = now - stream.accepted_at
                if waited > settings.whip_first_media_seconds:
                    log.warning(
                        "stream_no_media",
                        stage=stream.stage.id,
                        session=(stream.publisher_session or "")[:8],
                        seconds=round(waited, 1),
                        packets=stats.video.packets + stats.audio.packets,
                        reason="no audio and no video keyframe since the offer was answered; "
                        "publisher closed",
                    )
                    stream.metrics.stalled("no_media")
                    self.outlet.background(self._drop_publisher(stream, StreamEvent.DROPPED))
                continue
            if stream.state is not StreamState.LIVE:
                continue
            ages = [
                k.last_packet_age_s
                for k in (stats.video, stats.audio)
                if k.last_packet_age_s is not None
            ]
            quiet = min(ages) if ages else now - stream.media_at
            if quiet > settings.stream_stall_seconds:
                log.warning("stream_stalled", stage=stream.stage.id, seconds=round(quiet, 1))
                stream.metrics.stalled("stalled")
                self.outlet.background(self._drop_publisher(stream, StreamEvent.DROPPED))

    def sample_metrics(self) -> None:
        """Bring every stage's Prometheus series in line with its hub (once a second)."""
        for stream in self.stages.values():
            stream.metrics.sample(
                stream.hub.stats,
                publisher=stream.publisher is not None or stream.reserved is not None,
                viewers=len(stream.viewers),
            )

    async def start(self) -> None:
        """Start the periodic health pushes, the stall watch and the metrics samples (and,
        on several nodes, the renewal of the records of the stages this node holds)."""
        self._periodic.every(1.0, self._each_second, "stream-watch")
        if self.records.shared:
            self._periodic.every(1.0, self.renew, "stage-records")
        self._periodic.every(
            self.services.settings.stream_health_seconds, self.push_health, "stream-health"
        )

    def _each_second(self) -> None:
        self.sample_metrics()
        self.check_stalls()

    async def stop(self) -> None:
        """Close every publisher and viewer."""
        await self._periodic.stop()
        for stream in self.stages.values():
            for viewer in list(stream.viewers.values()):
                with contextlib.suppress(Exception):
                    await viewer.close()
            stream.viewers.clear()
            if stream.publisher is not None:
                await self._drop_publisher(stream, StreamEvent.DROPPED)
        if self._sharing:
            # The last records and pushes, while the bus still runs (it stops after).
            await asyncio.wait(set(self._sharing), timeout=2 * RECORD_TIMEOUT + 1)
