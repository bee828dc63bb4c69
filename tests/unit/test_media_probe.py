"""The health probe: black, frozen and silent, with a fake clock, and on real encoded data."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from hybridcon.media.probe import Probe, ProbeState


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def probe(clock: Clock, changes: list[list[str]]) -> Probe:
    return Probe(
        video=None,
        audio=None,
        frozen_after=6.0,
        silent_after=5.0,
        on_change=lambda state: changes.append(state.problems()),
        clock=clock,
    )


def test_a_moving_picture_is_fine_and_a_hanging_one_is_frozen_after_six_seconds() -> None:
    clock, changes = Clock(), []
    p = probe(clock, changes)
    rng = np.random.default_rng(1)
    for _ in range(4):
        p.judge_picture(rng.integers(40, 220, size=(360, 640), dtype=np.uint8))
        clock.now += 2
    assert not p.state.frozen and not p.state.black
    still = rng.integers(40, 220, size=(360, 640), dtype=np.uint8)
    for _ in range(4):  # seen at 8, 10, 12, 14 s: unchanged since 10 s
        p.judge_picture(still)
        clock.now += 2
    assert not p.state.frozen  # unchanged for 4 s
    p.judge_picture(still)
    assert p.state.frozen  # unchanged for 6 s
    p.judge_picture(rng.integers(40, 220, size=(360, 640), dtype=np.uint8))
    assert not p.state.frozen
    assert changes == [["frozen"], []]


def test_a_black_picture_is_black_not_frozen() -> None:
    clock, changes = Clock(), []
    p = probe(clock, changes)
    for _ in range(5):
        p.judge_picture(np.full((360, 640), 16, dtype=np.uint8))
        clock.now += 2
    assert p.state.black and not p.state.frozen
    assert changes == [["black"]]


def test_silence_after_five_seconds_and_a_tone_is_not_silent() -> None:
    clock, changes = Clock(), []
    p = probe(clock, changes)
    tone = (0.3 * np.sin(np.linspace(0, 2 * np.pi * 440 * 0.02, 960))).astype(np.float32)
    p.judge_samples(tone[None, :])
    assert not p.state.silent and p.state.audio_dbfs is not None and p.state.audio_dbfs > -20
    for _ in range(6):
        p.judge_samples(np.zeros((1, 960), dtype=np.float32))
        clock.now += 1
    assert p.state.silent
    p.judge_samples(tone[None, :])
    assert not p.state.silent
    assert changes == [["silent"], []]


def test_real_keyframes_are_decoded_and_judged() -> None:
    """A black H.264 keyframe from libx264, fed as the hub would (Annex-B, SPS/PPS in band)."""
    encoder = av.CodecContext.create("libx264", "w")
    assert isinstance(encoder, av.VideoCodecContext)
    encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "bf": "0"}
    frame = av.VideoFrame.from_ndarray(np.zeros((240, 320, 3), dtype=np.uint8), format="rgb24")
    frame = frame.reformat(format="yuv420p")
    frame.pts = 0
    packets = list(encoder.encode(frame)) + list(encoder.encode(None))
    assert packets and packets[0].is_keyframe

    class Packet:
        kind, codec, keyframe = "video", "h264", True
        data = bytes(packets[0])

    p = Probe(video=None, audio=None)
    p.video_packet(Packet())
    assert p.state.keyframes_seen == 1
    assert p.state.black
    assert isinstance(p.state, ProbeState) and p.state.public()["black"] is True
