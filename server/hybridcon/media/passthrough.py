"""The one seam into aiortc's internals: receive encoded frames instead of decoded ones.

aiortc is an endpoint library. Its :class:`~aiortc.RTCRtpReceiver` reassembles each
encoded frame in a jitter buffer and puts it on a :class:`queue.Queue` for a
module-level ``decoder_worker`` thread that always decodes; there is no public
encoded-receive API, and the maintainer has declined one (aiortc #366, #449, #627).
hybridcon never transcodes video, so for a receiver marked with :func:`pass_through`
the reassembled frame never reaches a thread: the receiver's frame queue is replaced by
a :class:`FrameSink` that wraps each frame as an :class:`av.Packet` (``pts`` = the RTP
timestamp as aiortc maps it, ``time_base`` = 1 / the codec's clock rate, ``opaque`` =
the codec name in lower case: ``"h264"``, ``"vp8"``, ``"opus"``) and puts it on the
track's queue right there, on the event loop. The thread aiortc still starts for the
receiver runs :func:`packet_worker`, which returns at once for a marked receiver.
Everything before the queue keeps working: SRTP, NACK and RTX, the jitter buffer, REMB
and the PLIs the jitter buffer itself asks for.

Skipping the thread matters for cost: handing every frame to a worker thread and back
(``queue.Queue`` put, a condition notify, ``call_soon_threadsafe`` waking the loop) was
about a sixth of a live stage's ingest time (docs/benchmarks.md, "Media").

Only receivers marked with :func:`pass_through` get packets; every other receiver in
the process (a test client, a room peer that must decode) goes on to aiortc's own
decoder unchanged, so installing the seam changes nothing for them.

What this module relies on, all checked against aiortc :data:`AIORTC_VERSION` (pinned
exactly in ``pyproject.toml``) by :func:`install` or, per receiver, by
:func:`pass_through`:

1. ``RTCRtpReceiver.__init__`` creates the frame queue as the private attribute
   ``_RTCRtpReceiver__decoder_queue``; ``_handle_rtp_packet`` calls its ``put()`` in
   the event loop with ``(RTCRtpCodecParameters, JitterFrame)`` for each reassembled
   frame, and ``__stop_decoder`` calls ``put(None)`` when the receiver stops (then
   joins the thread).
2. ``aiortc.rtcrtpreceiver.decoder_worker(loop, input_q, output_q, decode_error)`` is
   looked up as a module global each time ``RTCRtpReceiver.receive()`` starts the
   receiver's thread, with that frame queue as ``input_q`` and the receiver track's
   ``RemoteStreamTrack._queue`` as ``output_q``; the track's ``recv()`` returns what is
   put there and ends the track (``MediaStreamError``) on ``None``.
3. ``JitterFrame.data`` is one whole frame: H.264 as Annex-B (start codes, as
   ``h264_depayload`` writes them), VP8 without its payload descriptor, Opus as is;
   ``JitterFrame.timestamp`` is the RTP timestamp minus the stream's first one.
4. ``RTCRtpReceiver._track`` exists from ``setRemoteDescription()`` on, well before
   ``receive()`` runs (that waits for ICE and DTLS).
5. ``RTCRtpReceiver._send_rtcp_pli(media_ssrc)`` sends a Picture Loss Indication
   (RFC 4585 §6.3.1) and ``getSynchronizationSources()`` names the SSRC to send it for.
6. ``RTCRtpSender._send_keyframe()`` is what the sender calls on a PLI or FIR from its
   peer; on the packet path (``av.Packet`` in, no encoder) it has no effect, so
   :func:`on_picture_loss` replaces it per sender to forward the request upstream.
7. ``aiortc.codecs.CODECS`` is the table both offers/answers and
   ``getCapabilities()`` read; :func:`install` adds H.264 Main, High and Constrained
   High (packetization-mode 1) to it, which aiortc leaves out only because it cannot
   *encode* them; a pass-through receiver need not decode them either. Other aiortc
   peers in the process may now negotiate them too, which their FFmpeg decoder
   handles (and a baseline stream from aiortc's encoder is valid High).

The patch in aiortc's module is the only process-wide mutable state hybridcon has
outside an application object: it is applied once, never undone, and is the same for
every application in the process.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import aiortc
import av
import structlog
from aiortc import RTCRtpReceiver, RTCRtpSender, codecs, rtcrtpreceiver
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters

log = structlog.get_logger(__name__)

AIORTC_VERSION = "1.16.0"

# aiortc's own worker, kept to decode for the receivers that are not marked.
_DECODER_WORKER = rtcrtpreceiver.decoder_worker

# Profiles aiortc cannot encode but a pass-through receiver can carry: Main, High and
# Constrained High (what OBS and hardware encoders send). Level 3.1 like aiortc's own
# entries; aiortc matches offers by profile, not level.
EXTRA_H264_PROFILES = ("4d001f", "640c1f", "64001f")


class IncompatibleAiortc(RuntimeError):
    """The installed aiortc is not the version this seam was written and tested for."""


class PassthroughQueue(asyncio.Queue["av.Packet[Any] | None"]):
    """The receiver track's queue, swapped in to mark the receiver as pass-through.

    Attributes:
        frames: frames wrapped for this receiver so far.
    """

    def __init__(self) -> None:
        super().__init__()
        self.frames = 0

    def end(self) -> None:
        """End the track: its next ``recv()`` raises ``MediaStreamError``.

        For a receiver that never started (ICE never connected), nothing else would
        ever end the track.
        """
        self.put_nowait(None)


def installed() -> bool:
    """Whether :func:`install` has replaced aiortc's decoder worker."""
    return rtcrtpreceiver.decoder_worker is packet_worker


def install() -> None:
    """Replace aiortc's decoder worker with :func:`packet_worker`; idempotent.

    Raises:
        IncompatibleAiortc: aiortc is not :data:`AIORTC_VERSION`, or one of the
            internals listed in this module's docstring is missing or changed.
    """
    # Checked every time, not only the first: cheap, and a test can prove it guards.
    _check_aiortc()
    if installed():
        return
    _register_h264_profiles()
    # The seam itself (see the module docstring, point 1).
    rtcrtpreceiver.decoder_worker = packet_worker
    log.info("media.passthrough_installed", aiortc=aiortc.__version__)


def _check_aiortc() -> None:
    version = getattr(aiortc, "__version__", "unknown")
    if version != AIORTC_VERSION:
        raise IncompatibleAiortc(
            f"hybridcon.media.passthrough was written for aiortc {AIORTC_VERSION}, "
            f"found {version}: re-check the internals listed in its docstring, run "
            "tests/integration/test_media_hub.py, then update AIORTC_VERSION and the pin"
        )
    params = list(inspect.signature(_DECODER_WORKER).parameters)
    if params != ["loop", "input_q", "output_q", "decode_error"]:
        raise IncompatibleAiortc(f"aiortc decoder_worker takes {params}")
    needed = [
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpReceiver, "getSynchronizationSources"),
        (RTCRtpSender, "_send_keyframe"),
        (rtcrtpreceiver.RemoteStreamTrack, "recv"),
    ]
    for cls, name in needed:
        if not callable(getattr(cls, name, None)):
            raise IncompatibleAiortc(f"aiortc {cls.__name__}.{name} is missing")
    if not isinstance(getattr(codecs, "CODECS", None), dict):
        raise IncompatibleAiortc("aiortc.codecs.CODECS is missing")


def _register_h264_profiles() -> None:
    video = codecs.CODECS["video"]
    known = {str(c.parameters.get("profile-level-id", "")).lower() for c in video}
    payload_type = max(c.payloadType or 0 for c in video) + 1
    for profile_level_id in EXTRA_H264_PROFILES:
        if profile_level_id in known:
            continue
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/H264",
                clockRate=90000,
                payloadType=payload_type,
                rtcpFeedback=[
                    RTCRtcpFeedback(type="nack"),
                    RTCRtcpFeedback(type="nack", parameter="pli"),
                    RTCRtcpFeedback(type="goog-remb"),
                ],
                parameters={
                    "level-asymmetry-allowed": "1",
                    "packetization-mode": "1",
                    "profile-level-id": profile_level_id,
                },
            )
        )
        video.append(
            RTCRtpCodecParameters(
                mimeType="video/rtx",
                clockRate=90000,
                payloadType=payload_type + 1,
                parameters={"apt": payload_type},
            )
        )
        payload_type += 2


# Where RTCRtpReceiver keeps its frame queue (name-mangled ``__decoder_queue``).
_FRAME_QUEUE = "_RTCRtpReceiver__decoder_queue"


class FrameSink:
    """Stands in for a marked receiver's frame queue: each frame goes to the track at once.

    aiortc calls :meth:`put` in the event loop, from ``_handle_rtp_packet``, for every
    frame its jitter buffer completes, and with ``None`` when the receiver stops. The
    frame is wrapped as an :class:`av.Packet` and put on the track's queue there and
    then: no thread, no wake-up of the loop from outside.
    """

    def __init__(self, track_queue: PassthroughQueue) -> None:
        self._queue = track_queue
        # One time base per clock rate, not one per frame.
        self._time_bases: dict[int, Fraction] = {}

    def put(self, item: tuple[RTCRtpCodecParameters, Any] | None) -> None:
        """Take one ``(codec, JitterFrame)`` from aiortc, or ``None`` to end the track."""
        if item is None:
            self._queue.put_nowait(None)
            return
        codec, frame = item
        time_base = self._time_bases.get(codec.clockRate)
        if time_base is None:
            time_base = self._time_bases[codec.clockRate] = Fraction(1, codec.clockRate)
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.time_base = time_base
        # A new string for every packet, never a shared one: PyAV keeps opaque objects
        # in one table keyed by id() and drops the entry when *any* packet holding that
        # object is freed, so a shared name would vanish from every other packet.
        packet.opaque = codec.name.lower()
        self._queue.frames += 1
        # The queue is unbounded: put_nowait never raises. The hub always drains it.
        self._queue.put_nowait(packet)


def pass_through(receiver: RTCRtpReceiver) -> PassthroughQueue:
    """Mark ``receiver`` so that its track yields :class:`av.Packet` s, not frames.

    Call it after ``setRemoteDescription()`` (which creates the track) and before the
    connection is up (when ``receive()`` starts the worker thread).

    Args:
        receiver: a receiver of a peer connection whose remote description is set.

    Returns:
        The track's new queue (its ``frames`` count, its ``end()``).

    Raises:
        RuntimeError: the seam is not installed, the receiver has no track yet, or
            its track already has frames queued (the worker already started).
        IncompatibleAiortc: the receiver has no frame queue where this seam expects it.
    """
    if not installed():
        raise RuntimeError("call hybridcon.media.passthrough.install() first")
    track = receiver._track
    if track is None:
        raise RuntimeError("the receiver has no track: set the remote description first")
    if isinstance(track._queue, PassthroughQueue):
        return track._queue
    if not track._queue.empty():
        raise RuntimeError("the receiver already delivers decoded frames")
    frames = getattr(receiver, _FRAME_QUEUE, None)
    if not isinstance(frames, queue.Queue):
        raise IncompatibleAiortc(f"aiortc RTCRtpReceiver has no frame queue at {_FRAME_QUEUE}")
    if not frames.empty():
        raise RuntimeError("the receiver already queued frames for its decoder")
    marked = PassthroughQueue()
    track._queue = marked
    setattr(receiver, _FRAME_QUEUE, FrameSink(marked))
    return marked


def packet_worker(
    loop: asyncio.AbstractEventLoop,
    input_q: queue.Queue[Any] | FrameSink,
    output_q: asyncio.Queue[Any],
    decode_error: threading.Event,
) -> None:
    """Stand in for aiortc's ``decoder_worker``: nothing to do for a marked receiver.

    Runs in the receiver's own thread. A receiver marked by :func:`pass_through`
    hands its frames to its :class:`FrameSink` in the event loop, so its thread ends
    at once; for any other receiver this is aiortc's decoder, unchanged.

    Args:
        loop: the event loop of the receiver's track.
        input_q: the receiver's frame queue (a :class:`FrameSink` when marked).
        output_q: the track's queue.
        decode_error: set by the decoder on a failure.
    """
    if isinstance(input_q, FrameSink):
        return
    _DECODER_WORKER(loop, input_q, output_q, decode_error)


async def request_picture(receiver: RTCRtpReceiver) -> bool:
    """Send a Picture Loss Indication upstream for every SSRC ``receiver`` hears.

    Args:
        receiver: a video receiver of a publisher's connection.

    Returns:
        Whether a PLI was sent (no: nothing received yet, or no RTCP SSRC yet).
    """
    sent = False
    for source in receiver.getSynchronizationSources():
        await receiver._send_rtcp_pli(source.source)
        sent = True
    return sent


def on_picture_loss(sender: RTCRtpSender, callback: Callable[[], object]) -> None:
    """Call ``callback`` when ``sender``'s peer asks for a keyframe (PLI or FIR).

    On the packet path aiortc has no encoder to force a keyframe from, so the request
    must go to the publisher; ``callback`` should do that, rate-limited.

    Args:
        sender: a sender whose track yields :class:`av.Packet` s.
        callback: called in the event loop for every PLI or FIR received.
    """
    sender._send_keyframe = callback  # type: ignore[method-assign,assignment]
