"""The health probe: black or frozen video and silent audio, from a stage's own packets.

Video is judged on keyframes only (one decode per GOP, a few milliseconds at 720p):
a keyframe whose mean luma is near black is ``black``; keyframes that stay the same for
``frozen_after`` seconds are ``frozen`` (a camera that hangs keeps sending the same
picture). Audio is judged once a second on one decoded Opus packet: below
``silence_dbfs`` for ``silent_after`` seconds is ``silent``. Bitrate, fps, keyframe
interval and loss come from the hub's counters; this adds what only pixels and samples
can tell.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import av
import numpy as np
import structlog

from hybridcon.media.packets import MediaPacketLike, PacketSource
from hybridcon.media.timeline import BATCH_SECONDS, rest_when_drained

log = structlog.get_logger(__name__)

BLACK_LUMA = 24.0  # mean Y of a video-range picture that is (nearly) black
FROZEN_DIFF = 1.0  # mean absolute difference of 32x18 thumbnails that counts as unchanged
THUMB = (32, 18)


_FrameT = TypeVar("_FrameT")


class _Decoder(Protocol[_FrameT]):
    """A PyAV decoder of video or audio frames."""

    def decode(self, packet: av.Packet[Any] | None = None) -> list[_FrameT]: ...


def _decode(decoder: _Decoder[_FrameT], data: bytes) -> list[_FrameT]:
    """The frames ``data`` decodes to; none when the decoder rejects it.

    A corrupt packet is logged at debug level and skipped: the probe judges the next
    keyframe or the next second of audio instead.
    """
    try:
        return decoder.decode(av.Packet(data))
    except av.FFmpegError as exc:
        log.debug("probe_decode_failed", error=str(exc))
        return []


@dataclass
class ProbeState:
    """What the probe last found."""

    black: bool = False
    frozen: bool = False
    silent: bool = False
    luma: float | None = None
    audio_dbfs: float | None = None
    keyframes_seen: int = 0

    def public(self) -> dict[str, Any]:
        """For ``stream.health``."""
        return {
            "black": self.black,
            "frozen": self.frozen,
            "silent": self.silent,
            "luma": None if self.luma is None else round(self.luma, 1),
            "audio_dbfs": None if self.audio_dbfs is None else round(self.audio_dbfs, 1),
        }

    def problems(self) -> list[str]:
        """The names of what is wrong now."""
        return [name for name in ("black", "frozen", "silent") if getattr(self, name)]


class Probe:
    """Watches one stage's video keyframes and audio.

    Args:
        video: a video consumer of the hub (or None for the radio).
        audio: an audio consumer (or None).
        frozen_after: seconds of identical keyframes before ``frozen``.
        silent_after: seconds below ``silence_dbfs`` before ``silent``.
        silence_dbfs: the level under which audio counts as silence.
        on_change: called with the state when a problem starts or ends.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        *,
        video: PacketSource | None,
        audio: PacketSource | None,
        frozen_after: float = 6.0,
        silent_after: float = 5.0,
        silence_dbfs: float = -60.0,
        on_change: Callable[[ProbeState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = ProbeState()
        self._video = video
        self._audio = audio
        self._frozen_after = frozen_after
        self._silent_after = silent_after
        self._silence_dbfs = silence_dbfs
        self._on_change = on_change
        self._clock = clock
        self._thumb: np.ndarray[Any, Any] | None = None
        self._same_since: float | None = None
        self._quiet_since: float | None = None
        self._next_audio = 0.0
        self._video_decoders: dict[str, av.VideoCodecContext] = {}
        self._audio_decoder: av.AudioCodecContext | None = None

    async def run(self) -> None:
        """Watch until the sources end."""
        jobs = []
        if self._video is not None:
            jobs.append(self._watch(self._video, self.video_packet))
        if self._audio is not None:
            jobs.append(self._watch(self._audio, self.audio_packet))
        await asyncio.gather(*jobs)

    @staticmethod
    async def _watch(source: PacketSource, handle: Callable[[MediaPacketLike], None]) -> None:
        while True:
            packet = await source.get()
            if packet is None:
                return
            handle(packet)
            await rest_when_drained(source, BATCH_SECONDS)

    def _video_decoder(self, codec: str) -> av.VideoCodecContext:
        decoder = self._video_decoders.get(codec)
        if decoder is None:
            created = av.CodecContext.create(codec, "r")
            assert isinstance(created, av.VideoCodecContext)
            decoder = self._video_decoders[codec] = created
        return decoder

    def _opus_decoder(self) -> av.AudioCodecContext:
        if self._audio_decoder is None:
            created = av.CodecContext.create("opus", "r")
            assert isinstance(created, av.AudioCodecContext)
            created.sample_rate = 48_000
            created.layout = "stereo"
            self._audio_decoder = created
        return self._audio_decoder

    def video_packet(self, packet: MediaPacketLike) -> None:
        """Judge a video packet (only keyframes are decoded)."""
        if not packet.keyframe:
            return
        for frame in _decode(self._video_decoder(packet.codec), packet.data):
            self.judge_picture(frame.to_ndarray(format="gray"))

    def judge_picture(self, gray: np.ndarray[Any, Any]) -> None:
        """Update black/frozen from one keyframe's luma plane."""
        now = self._clock()
        before = self.state.problems()
        self.state.keyframes_seen += 1
        self.state.luma = float(gray.mean())
        self.state.black = self.state.luma < BLACK_LUMA
        height, width = gray.shape
        rows = np.linspace(0, height - 1, THUMB[1]).astype(int)
        cols = np.linspace(0, width - 1, THUMB[0]).astype(int)
        thumb = gray[np.ix_(rows, cols)].astype(np.float32)
        if self._thumb is not None and float(np.abs(thumb - self._thumb).mean()) < FROZEN_DIFF:
            if self._same_since is None:
                self._same_since = now
        else:
            self._same_since = None
        self._thumb = thumb
        # A black picture does not change either; call it black, not frozen.
        self.state.frozen = (
            not self.state.black
            and self._same_since is not None
            and now - self._same_since >= self._frozen_after
        )
        self._changed(before)

    def audio_packet(self, packet: MediaPacketLike) -> None:
        """Judge audio once a second from one decoded packet."""
        now = self._clock()
        if now < self._next_audio:
            return
        self._next_audio = now + 1.0
        for frame in _decode(self._opus_decoder(), packet.data):
            self.judge_samples(frame.to_ndarray().astype(np.float32))

    def judge_samples(self, samples: np.ndarray[Any, Any]) -> None:
        """Update silent from one packet's samples (float, full scale 1.0)."""
        now = self._clock()
        before = self.state.problems()
        rms = float(np.sqrt(np.mean(np.square(samples)))) if samples.size else 0.0
        dbfs = -120.0 if rms <= 1e-6 else 20 * math.log10(rms)
        self.state.audio_dbfs = dbfs
        if dbfs < self._silence_dbfs:
            if self._quiet_since is None:
                self._quiet_since = now
        else:
            self._quiet_since = None
        self.state.silent = (
            self._quiet_since is not None and now - self._quiet_since >= self._silent_after
        )
        self._changed(before)

    def _changed(self, before: list[str]) -> None:
        if self._on_change is not None and self.state.problems() != before:
            self._on_change(self.state)
