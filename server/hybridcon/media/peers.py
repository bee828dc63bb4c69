"""WebRTC peers of the stage hubs: publishers (WHIP) in, viewers (WHEP) out.

The only module that makes an :class:`~aiortc.RTCPeerConnection`. For WHIP and WHEP
hybridcon answers: the remote peer offers, aiortc gathers every candidate inside
``setLocalDescription()`` (no trickle needed), and the answer is complete. For a room's
subscription hybridcon offers (:func:`offer_viewer`, complete with every candidate the
same way) and the participant answers (:meth:`Viewer.complete`).

* A **publisher**'s receivers are marked pass-through before the connection comes up,
  so its tracks yield encoded packets that go straight into the stage's hub.
* A **viewer**'s senders get tracks whose ``recv()`` returns :class:`av.Packet` s from
  hub consumers; aiortc packetizes them without an encoder (H.264 must be Annex-B,
  which the hub's packets are). A viewer's PLI goes to the hub, which forwards it
  upstream, rate-limited.

Codecs are filtered *before* the answer: aiortc negotiates codecs inside
``setRemoteDescription()``, using the preferences of a transceiver that already
exists for that kind, so the transceivers are made (with their preferences) first;
``setCodecPreferences()`` after ``setRemoteDescription()`` would change nothing.

ICE servers are always passed explicitly: with none configured aiortc would use a
public STUN server of Google's.

Where host candidates are gathered is chosen with :func:`gathering_on` (the
``ice_addresses`` setting): aioice itself offers every address of the machine but
loopback, and has no option to change that, so this module wraps aioice's one address
lookup, in one place (:func:`_install_address_hook`), and the wrapper only acts inside
a :func:`gathering_on` block. Peers outside one gather as aioice always does.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any, Literal

import aioice.ice
import av
import ifaddr
import structlog
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpTransceiver,
    RTCSessionDescription,
    sdp,
)
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError, OperationError
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from hybridcon.errors import Conflict, Invalid, Unavailable
from hybridcon.media import passthrough
from hybridcon.media.consumer import Consumer, Playhead
from hybridcon.media.hub import StageHub
from hybridcon.media.packets import Kind, MediaPacket, as_kind

log = structlog.get_logger(__name__)

STATS_INTERVAL = 2.0

# What aiortc raises for an offer it cannot take.
_NEGOTIATION_ERRORS = (
    ValueError,
    InternalError,
    InvalidAccessError,
    InvalidStateError,
    OperationError,
)

# H.264 profiles from the most to the least widely decodable. A constrained baseline
# stream is valid in every profile; a High one needs a High decoder.
_H264_ORDER = ("42e01f", "42001f", "4d001f", "640c1f", "64001f")

Direction = Literal["send", "receive"]


# --- where candidates are gathered -------------------------------------------------------

# The addresses peers set up inside a gathering_on() block gather on. A context
# variable, not a module setting: aiortc gathers inside setLocalDescription(), in tasks
# that inherit the caller's context, so the choice reaches exactly the peers of that
# call and never another RTCPeerConnection of the process (the tests' own, say).
_GATHER_ON: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "hybridcon_ice_addresses", default=None
)


def host_addresses(selectors: Sequence[str]) -> list[str]:
    """The machine's addresses that ``selectors`` name, in the system's order.

    A selector is an interface name (``"lo"``, ``"eth1"``: all its addresses), an
    address (``"127.0.0.1"``, ``"::1"``) or a network (``"10.0.0.0/8"``). Loopback
    counts like any other interface. IPv6 link-local addresses are left out, as aioice
    leaves them out: they cannot be bound without a scope.

    Raises:
        ValueError: a selector is none of the three (the setting checks this first).
    """
    names: set[str] = set()
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for selector in selectors:
        try:
            networks.append(ipaddress.ip_network(selector, strict=False))
        except ValueError:
            if "/" in selector or ":" in selector:
                raise ValueError(f"{selector!r} is not an address or a network") from None
            names.add(selector)
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, tuple):  # IPv6: (address, flowinfo, scope id)
                if ip.ip[2] != 0:
                    continue
                text = ip.ip[0]
            else:
                text = ip.ip
            address = ipaddress.ip_address(text)
            chosen = adapter.name in names or any(address in n for n in networks)
            if chosen and text not in found:
                found.append(text)
    return found


@contextlib.contextmanager
def gathering_on(selectors: Sequence[str]) -> Iterator[list[str]]:
    """Peers whose candidates are gathered in this block gather only on ``selectors``.

    aiortc gathers in ``setLocalDescription()``: call that inside the block. The
    innermost block wins; blocks in other tasks do not see each other's choice.

    Args:
        selectors: interface names, addresses or networks (see
            :func:`host_addresses`); empty: aioice's own choice (every address of the
            machine but loopback).

    Yields:
        The addresses chosen (``[]`` for aioice's own choice).

    Raises:
        Unavailable: ``selectors`` name no address this machine has now (an interface
            that is down or gone); no peer could be reached.
    """
    if not selectors:
        yield []
        return
    addresses = host_addresses(selectors)
    if not addresses:
        raise Unavailable(
            f"no local address matches the ICE addresses {list(selectors)}", retry_after=30
        )
    _install_address_hook()
    token = _GATHER_ON.set(tuple(addresses))
    try:
        yield addresses
    finally:
        _GATHER_ON.reset(token)


def _install_address_hook() -> None:
    """Wrap ``aioice.ice.get_host_addresses`` once, so :func:`gathering_on` can choose.

    aioice 0.13's ``Connection.gather_candidates()`` asks this module-level function
    for the host addresses (every address but 127.0.0.1 and ::1) and offers no other
    way to name them; aiortc passes nothing through. The wrapper answers with the
    context's choice, filtered by the connection's IPv4/IPv6 flags as aioice's own
    function is, and calls the original outside a :func:`gathering_on` block. aioice
    is pinned for this; ``tests/integration/test_ice_addresses.py`` fails if a new
    aioice stops asking the function.
    """
    original = aioice.ice.get_host_addresses
    if getattr(original, "_hybridcon_hook", False):
        return

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        chosen = _GATHER_ON.get()
        if chosen is None:
            return original(use_ipv4, use_ipv6)
        return [
            a for a in chosen if (use_ipv4 if ipaddress.ip_address(a).version == 4 else use_ipv6)
        ]

    get_host_addresses._hybridcon_hook = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses


# --- negotiation helpers ---------------------------------------------------------------


def _offer_kinds(offer_sdp: str, *, remote: Direction) -> list[Kind]:
    """The kinds of the offer's m-lines, checked: one audio and one video at most.

    Raises:
        Invalid: unparsable, no media, data channels, two lines of a kind, or a line
            that does not send (publisher) / receive (viewer).
    """
    try:
        description = sdp.SessionDescription.parse(offer_sdp)
    except Exception as exc:  # aiortc's parser raises whatever it trips on
        raise Invalid("the offer is not valid SDP") from exc
    allowed = ("sendonly", "sendrecv") if remote == "send" else ("recvonly", "sendrecv")
    kinds: list[Kind] = []
    for media in description.media:
        if media.kind not in ("audio", "video"):
            raise Invalid(f"unsupported media section {media.kind!r}: audio and video only")
        kind = as_kind(media.kind)
        if kind in kinds:
            raise Invalid(f"more than one {kind} section in the offer")
        if (media.direction or "sendrecv") not in allowed:
            raise Invalid(f"the {kind} section is {media.direction}, expected one of {allowed}")
        kinds.append(kind)
    if not kinds:
        raise Invalid("the offer has no audio or video")
    return kinds


def _preferences(
    kind: Kind, names: Sequence[str], *, h264_profile: str | None = None
) -> list[RTCRtpCodecCapability]:
    """Codec preferences for a transceiver: ``names`` in order, with RTX for video.

    Raises:
        Invalid: none of ``names`` is a codec aiortc (with the seam) can carry.
    """
    capabilities = RTCRtpReceiver.getCapabilities(kind)
    assert capabilities is not None  # kind is audio or video
    chosen: list[RTCRtpCodecCapability] = []
    for name in names:
        matching = [c for c in capabilities.codecs if c.name.lower() == name.lower()]
        if name.lower() == "h264":
            matching.sort(key=lambda c: _h264_rank(c, h264_profile))
        chosen += matching
    if not chosen:
        raise Invalid(f"no {kind} codec among {list(names)}")
    if kind == "video":
        chosen += [c for c in capabilities.codecs if c.name.lower() == "rtx"]
    return chosen


def _h264_rank(codec: RTCRtpCodecCapability, ingest: str | None) -> tuple[int, int]:
    """Sort key: the ingest's own profile first, then the more capable ones, then others."""
    own = str(codec.parameters.get("profile-level-id", "42e01f")).lower()
    order = _H264_ORDER.index(own) if own in _H264_ORDER else len(_H264_ORDER)
    if ingest is None:
        return (0, order)
    try:
        theirs, _ = sdp.parse_h264_profile_level_id(ingest)
        mine, _ = sdp.parse_h264_profile_level_id(own)
    except ValueError:
        return (0, order)
    if mine == theirs:
        return (0, order)
    theirs_order = next(
        (i for i, p in enumerate(_H264_ORDER) if sdp.parse_h264_profile_level_id(p)[0] == theirs),
        0,
    )
    return (1, order) if order >= theirs_order else (2, order)


def _negotiated(pc: RTCPeerConnection) -> tuple[dict[Kind, str], str | None]:
    """Kind -> the codec each transceiver sends or receives with (the answer's first),
    and the H.264 ``profile-level-id`` of the video one, if H.264."""
    return _answer_codecs(pc.localDescription.sdp)


def _answer_codecs(answer_sdp: str) -> tuple[dict[Kind, str], str | None]:
    """What :func:`_negotiated` says, read from an answer's text."""
    description = sdp.SessionDescription.parse(answer_sdp)
    codecs: dict[Kind, str] = {}
    profile: str | None = None
    for media in description.media:
        if media.kind not in ("audio", "video") or not media.rtp.codecs:
            continue
        first = media.rtp.codecs[0]
        codecs[as_kind(media.kind)] = first.name.lower()
        if media.kind == "video" and first.name.lower() == "h264":
            profile = str(first.parameters.get("profile-level-id", "42e01f")).lower()
    return codecs, profile


class _Peer:
    """What publishers and viewers share: one connection, its end, its callbacks."""

    def __init__(self, pc: RTCPeerConnection, on_closed: Callable[[], None], role: str) -> None:
        self.pc = pc
        self.answer_sdp = ""
        self._on_closed = on_closed
        self._role = role
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._lost_reason: str | None = None
        self._shutdown: asyncio.Future[None] | None = None
        pc.on("connectionstatechange", self._state_changed)

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (closed, failed or lost)."""
        return self._closing or self._lost_reason is not None

    async def close(self) -> None:
        """Close the connection; ``on_closed`` is not called for this. Idempotent."""
        self._closing = True
        await asyncio.shield(self._start_shutdown())

    def _state_changed(self) -> None:
        state = self.pc.connectionState
        if state in ("failed", "closed"):
            self._lost(f"connection {state}")

    def _lost(self, reason: str) -> None:
        """The connection ended without :meth:`close`: shut down, tell the owner once."""
        if self._closing or self._lost_reason is not None:
            return
        self._lost_reason = reason
        log.info("media.peer_lost", role=self._role, reason=reason)
        self._start_shutdown()
        try:
            self._on_closed()
        except Exception:  # the owner's bug must not stop our cleanup
            log.exception("media.on_closed_failed", role=self._role)

    def _start_shutdown(self) -> asyncio.Future[None]:
        # One shutdown, whoever asks first (close(), or the connection ending).
        if self._shutdown is None:
            self._shutdown = asyncio.ensure_future(self._do_shutdown())
            self._shutdown.add_done_callback(self._shutdown_done)
        return self._shutdown

    def _shutdown_done(self, future: asyncio.Future[None]) -> None:
        # Nobody may await a shutdown the connection started itself: log its failure here.
        if not future.cancelled() and future.exception() is not None:
            log.error("media.peer_close_failed", role=self._role, exc_info=future.exception())

    async def _do_shutdown(self) -> None:
        self._before_close()
        await self.pc.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _before_close(self) -> None:
        """Hook: release what the connection's close would not."""

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# --- publishers ------------------------------------------------------------------------


class Publisher(_Peer):
    """A publisher's connection, feeding its stage's hub (see :func:`accept_publisher`).

    Attributes:
        pc: the peer connection.
        answer_sdp: the complete SDP answer (every candidate included).
        codecs: kind -> negotiated codec name (``"h264"``, ``"vp8"``, ``"opus"``).
    """

    def __init__(self, pc: RTCPeerConnection, hub: StageHub, on_closed: Callable[[], None]):
        super().__init__(pc, on_closed, "publisher")
        self.hub = hub
        self.codecs: dict[Kind, str] = {}
        self._queues: dict[Kind, passthrough.PassthroughQueue] = {}
        self._receivers: dict[Kind, RTCRtpReceiver] = {}
        self._ended: set[Kind] = set()

    @property
    def frames(self) -> int:
        """Frames the pass-through seam has delivered for this publisher (none decoded)."""
        return sum(q.frames for q in self._queues.values())

    def _mark(self, kind: Kind, transceiver: RTCRtpTransceiver) -> MediaStreamTrack:
        receiver = transceiver.receiver
        self._queues[kind] = passthrough.pass_through(receiver)
        self._receivers[kind] = receiver
        track = receiver.track
        track.on("ended", lambda: self._track_ended(kind))
        return track

    def _track_ended(self, kind: Kind) -> None:
        self._ended.add(kind)
        if self._ended >= set(self._queues):
            self._lost("tracks ended")

    def request_keyframe(self, kind: Kind = "video") -> Callable[[], None]:
        """A callable that sends a PLI upstream for ``kind``'s receiver (for the hub)."""

        def request() -> None:
            receiver = self._receivers.get(kind)
            if receiver is not None and not self.closed:
                self._spawn(passthrough.request_picture(receiver))

        return request

    async def _poll_stats(self) -> None:
        # RTP loss as the receivers count it, for the hub's health stats.
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            for kind, receiver in self._receivers.items():
                report = await receiver.getStats()
                lost = [
                    getattr(s, "packetsLost", 0) for s in report.values() if s.type == "inbound-rtp"
                ]
                if lost:
                    self.hub.note_lost(kind, sum(lost))

    def _before_close(self) -> None:
        # A receiver that never started (ICE never connected) would never end its
        # track, and the hub would drain it forever.
        for queue in self._queues.values():
            queue.end()


async def accept_publisher(
    offer_sdp: str,
    hub: StageHub,
    *,
    ice_servers: Sequence[RTCIceServer],
    ice_addresses: Sequence[str] = (),
    video_codecs: tuple[str, ...] = ("H264",),
    audio_codecs: tuple[str, ...] = ("opus",),
    on_closed: Callable[[], None],
) -> Publisher:
    """Answer a publisher's offer (WHIP) and feed its tracks into ``hub``, undecoded.

    H.264 is accepted in constrained baseline (``42e01f``, ``42401f``), baseline
    (``42001f``), Main, High and Constrained High, packetization-mode 1; VP8 when
    named in ``video_codecs``; Opus. The stream is carried whatever its profile:
    only the viewers decode it.

    Args:
        offer_sdp: the publisher's SDP offer (one audio and/or one video section,
            sending).
        hub: the stage's hub; it must not have an ingest (detach it first).
        ice_servers: STUN/TURN servers; ``[]`` for none (never a public default).
        ice_addresses: where to gather host candidates (see :func:`gathering_on`);
            ``()``: every address but loopback.
        video_codecs: acceptable video codecs in order of preference; ``()`` takes
            no video (the radio).
        audio_codecs: acceptable audio codecs in order of preference.
        on_closed: called once when the connection ends by itself (ICE or DTLS
            failed, the publisher closed, its tracks ended), not after :meth:`close`.

    Returns:
        The publisher, its answer in ``answer_sdp``.

    Raises:
        Invalid: the offer is malformed, offers a kind this stage does not take, or
            none of the acceptable codecs.
        Conflict: the hub already has an ingest.
        Unavailable: ``ice_addresses`` match no address of this machine.
    """
    passthrough.install()
    if hub.publishing:
        raise Conflict(f"stage {hub.stage} already has a publisher")
    kinds = _offer_kinds(offer_sdp, remote="send")
    names = {"video": video_codecs, "audio": audio_codecs}
    for kind in kinds:
        if not names[kind]:
            raise Invalid(f"this stage takes no {kind}")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers)))
    publisher = Publisher(pc, hub, on_closed)
    try:
        transceivers: dict[Kind, RTCRtpTransceiver] = {}
        for kind in kinds:
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(_preferences(kind, names[kind]))
            transceivers[kind] = transceiver
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except _NEGOTIATION_ERRORS as exc:
            raise Invalid(f"cannot accept the offer: {exc}") from exc
        # Before setLocalDescription(): the receivers start only once ICE and DTLS
        # are up, which needs our candidates, which that call gathers.
        tracks = {kind: publisher._mark(kind, t) for kind, t in transceivers.items()}
        with gathering_on(ice_addresses):
            await pc.setLocalDescription(await pc.createAnswer())
        publisher.codecs, profile = _negotiated(pc)
        publisher.answer_sdp = pc.localDescription.sdp
        for kind, track in tracks.items():
            await hub.attach(
                track,
                request_keyframe=publisher.request_keyframe(kind),
                codec=publisher.codecs.get(kind),
                profile=profile,
            )
    except BaseException:
        await publisher.close()
        raise
    publisher._spawn(publisher._poll_stats())
    log.info("media.publisher_accepted", stage=hub.stage, codecs=publisher.codecs)
    return publisher


# --- viewers ---------------------------------------------------------------------------


class StageTrack(MediaStreamTrack):
    """A track that plays a hub's packets to one viewer, undecoded.

    It reads from a hub consumer made at its first ``recv()`` (when the connection is
    up, so the viewer starts on the freshest cached keyframe). The consumer is live:
    paced by the viewer's :class:`~hybridcon.media.consumer.Playhead`, which its other
    track shares, so a late viewer catches up from an old keyframe without a burst
    its socket cannot hold, and jumps to a fresh keyframe. When the ingest ends it
    waits for the next one, keeping its timestamps running; when the next one comes
    with another codec than this viewer negotiated, the track ends.
    """

    def __init__(
        self,
        hub: StageHub,
        kind: Kind,
        *,
        name: str,
        on_mismatch: Callable[[str], None],
        playhead: Playhead | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self._kind: Kind = kind
        self.codec: str | None = None
        self._hub = hub
        self._name = name
        self._on_mismatch = on_mismatch
        self._playhead = playhead if playhead is not None else Playhead()
        self._consumer: Consumer | None = None
        self._offset = 0
        self._last_pts: int | None = None
        self._rebase = False
        self.sent = 0

    async def recv(self) -> av.Packet[Any]:
        """The next packet for the sender.

        Raises:
            MediaStreamError: the track was stopped, or the codec changed.
        """
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            consumer = self._consumer
            if consumer is None:
                consumer = self._consumer = self._hub.consumer(
                    self._kind, name=self._name, playhead=self._playhead
                )
            packet = await consumer.get()
            if packet is None:
                # The ingest ended (or stop() closed the consumer): the next consumer
                # belongs to the next ingest.
                consumer.close()
                if self._consumer is consumer:
                    self._consumer = None
                self._rebase = True
                continue
            if packet.codec != self.codec:
                self._on_mismatch(f"the stage now sends {packet.codec}, not {self.codec}")
                self.stop()
                raise MediaStreamError
            return self._packet(packet)

    def _packet(self, packet: MediaPacket) -> av.Packet[Any]:
        if self._rebase and self._last_pts is not None:
            # A new ingest restarts at 0: keep the viewer's timestamps going forward,
            # one frame on, so its jitter buffer sees no jump back.
            step = round(1 / (30 * packet.time_base)) if packet.kind == "video" else 960
            self._offset = self._last_pts + step - packet.pts
        self._rebase = False
        out = av.Packet(packet.data)
        out.pts = self._last_pts = packet.pts + self._offset
        out.time_base = packet.time_base
        self.sent += 1
        return out

    def stop(self) -> None:
        """End the track and release its consumer."""
        super().stop()
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class Viewer(_Peer):
    """A viewer's connection, playing its stage's hub (see :func:`accept_viewer`).

    Attributes:
        pc: the peer connection.
        answer_sdp: the complete SDP answer.
        codecs: kind -> the codec sent to this viewer.
        tracks: kind -> the track feeding each sender.
    """

    def __init__(self, pc: RTCPeerConnection, hub: StageHub, on_closed: Callable[[], None]):
        super().__init__(pc, on_closed, "viewer")
        self.hub = hub
        self.codecs: dict[Kind, str] = {}
        self.tracks: dict[Kind, StageTrack] = {}
        self.offer_sdp = ""

    @property
    def answered(self) -> bool:
        """Whether the negotiation is complete (an answer given or taken)."""
        return self.pc.remoteDescription is not None and self.pc.localDescription is not None

    async def complete(self, answer_sdp: str) -> None:
        """Take the remote peer's answer to :attr:`offer_sdp` (see :func:`offer_viewer`).

        Raises:
            Invalid: the answer is not SDP, does not answer the offer, or picks no codec
                of those offered.
            Conflict: the offer was answered already, or the connection has ended.
        """
        if self.closed:
            raise Conflict("this connection has ended; ask for a new offer")
        if self.pc.remoteDescription is not None:
            raise Conflict("the offer was answered already")
        try:
            codecs, _ = _answer_codecs(answer_sdp)
            description = sdp.SessionDescription.parse(answer_sdp)
        except Exception as exc:  # aiortc's parser raises whatever it trips on
            raise Invalid("the answer is not valid SDP") from exc
        if len(description.media) != len(self.tracks):
            raise Invalid(
                f"the answer has {len(description.media)} media sections; "
                f"the offer had {len(self.tracks)}"
            )
        # Before setRemoteDescription(): the senders start right after it, and a track
        # compares every packet's codec with the one negotiated.
        for kind, track in self.tracks.items():
            track.codec = codecs.get(kind)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        except _NEGOTIATION_ERRORS as exc:
            raise Invalid(f"cannot take the answer: {exc}") from exc
        self.codecs = {k: c for k, c in codecs.items() if k in self.tracks}

    def _before_close(self) -> None:
        for track in self.tracks.values():
            track.stop()

    def _add_tracks(
        self,
        kinds: Sequence[Kind],
        *,
        name: str,
        video_codecs: tuple[str, ...],
        audio_codecs: tuple[str, ...],
    ) -> None:
        """One send-only transceiver per kind, playing the hub: the ingest's codec (for
        H.264 its own profile first) or, with no ingest yet, the codecs given."""
        hub = self.hub
        # One playhead for both tracks: audio is paced with video and jumps with it.
        playhead = Playhead()
        for kind in kinds:
            ingest = hub.codecs.get(kind)
            names = (ingest,) if ingest else (video_codecs if kind == "video" else audio_codecs)
            track = StageTrack(
                hub, kind, name=f"{name}:{kind}", on_mismatch=self._lost, playhead=playhead
            )
            transceiver = self.pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(_preferences(kind, names, h264_profile=hub.profile))
            if kind == "video":
                passthrough.on_picture_loss(transceiver.sender, hub.request_keyframe)
            self.tracks[kind] = track


async def accept_viewer(
    offer_sdp: str,
    hub: StageHub,
    *,
    ice_servers: Sequence[RTCIceServer],
    ice_addresses: Sequence[str] = (),
    on_closed: Callable[[], None],
    name: str = "whep",
    video_codecs: tuple[str, ...] = ("H264",),
    audio_codecs: tuple[str, ...] = ("opus",),
) -> Viewer:
    """Answer a viewer's offer (WHEP) and send it the hub's packets, not re-encoded.

    The answer's codec is the ingest's (for H.264 its own profile first, from the
    in-band SPS); with no ingest yet, ``video_codecs`` / ``audio_codecs`` decide.
    A viewer that cannot receive the ingest's codec is refused. The viewer survives a
    publisher's interruption and plays the next ingest if its codec is the same;
    otherwise its connection ends and ``on_closed`` is called.

    Args:
        offer_sdp: the viewer's SDP offer (audio and/or video, receiving).
        hub: the stage's hub.
        ice_servers: STUN/TURN servers; ``[]`` for none (never a public default).
        ice_addresses: where to gather host candidates (see :func:`gathering_on`);
            ``()``: every address but loopback.
        on_closed: called once when the connection ends by itself, not after
            :meth:`close`.
        name: consumer name prefix (logs, stats).
        video_codecs: video codecs to offer when nothing is published yet.
        audio_codecs: audio codecs to offer when nothing is published yet.

    Returns:
        The viewer, its answer in ``answer_sdp``.

    Raises:
        Invalid: the offer is malformed or cannot receive the stage's codecs.
        Unavailable: ``ice_addresses`` match no address of this machine.
    """
    passthrough.install()
    kinds = _offer_kinds(offer_sdp, remote="receive")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers)))
    viewer = Viewer(pc, hub, on_closed)
    try:
        viewer._add_tracks(kinds, name=name, video_codecs=video_codecs, audio_codecs=audio_codecs)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except _NEGOTIATION_ERRORS as exc:
            raise Invalid(f"cannot send this stage to the viewer: {exc}") from exc
        with gathering_on(ice_addresses):
            await pc.setLocalDescription(await pc.createAnswer())
        viewer.codecs, _ = _negotiated(pc)
        viewer.answer_sdp = pc.localDescription.sdp
        for kind, track in viewer.tracks.items():
            track.codec = viewer.codecs.get(kind)
        if "video" in viewer.tracks:
            # While the viewer connects (ICE, DTLS: ~30 ms on loopback), a fresh
            # keyframe is on its way if the cached one is old.
            hub.request_fresh_keyframe()
    except BaseException:
        await viewer.close()
        raise
    log.info("media.viewer_accepted", stage=hub.stage, codecs=viewer.codecs)
    return viewer


async def offer_viewer(
    hub: StageHub,
    kinds: Sequence[Kind],
    *,
    ice_servers: Sequence[RTCIceServer],
    ice_addresses: Sequence[str] = (),
    on_closed: Callable[[], None],
    name: str = "feed",
    video_codecs: tuple[str, ...] = ("H264", "VP8"),
    audio_codecs: tuple[str, ...] = ("opus",),
) -> Viewer:
    """Offer the hub's packets to a remote peer, not re-encoded (a room's subscription).

    The other way round from :func:`accept_viewer`: hybridcon makes the offer (send-only
    audio and/or video in the ingest's codecs, every candidate gathered) and the remote
    peer answers it with :meth:`Viewer.complete`. The viewer's life is tied to the
    ingest as in :func:`accept_viewer`.

    Args:
        hub: the hub to play.
        kinds: what to offer (what the publisher sends).
        ice_servers: STUN/TURN servers; ``[]`` for none (never a public default).
        ice_addresses: where to gather host candidates (see :func:`gathering_on`).
        on_closed: called once when the connection ends by itself, not after
            :meth:`close`.
        name: consumer name prefix (logs, stats).
        video_codecs: video codecs to offer when nothing is published yet.
        audio_codecs: audio codecs to offer when nothing is published yet.

    Returns:
        The viewer, its offer in ``offer_sdp``.

    Raises:
        Invalid: no kind to offer.
        Unavailable: ``ice_addresses`` match no address of this machine.
    """
    passthrough.install()
    if not kinds:
        raise Invalid("nothing to offer: the feed has no audio and no video")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=list(ice_servers)))
    viewer = Viewer(pc, hub, on_closed)
    try:
        viewer._add_tracks(
            [as_kind(k) for k in kinds],
            name=name,
            video_codecs=video_codecs,
            audio_codecs=audio_codecs,
        )
        with gathering_on(ice_addresses):
            await pc.setLocalDescription(await pc.createOffer())
        viewer.offer_sdp = pc.localDescription.sdp
        if "video" in viewer.tracks:
            hub.request_fresh_keyframe()
    except BaseException:
        await viewer.close()
        raise
    log.info("media.viewer_offered", stage=hub.stage, kinds=list(viewer.tracks))
    return viewer
