"""Unit tests for the bitstream facts (hybridcon.media.h264, .vp8, .packets) and the
bounded structures of hybridcon.media.hub: keyframe detection (H.264 Annex-B, VP8), RTP
timestamp unwrapping, SPS/PPS repair, the last-GOP cache and consumer queues. Real
encoder output comes from PyAV."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest

from hybridcon.errors import Invalid
from hybridcon.media.h264 import (
    H264ParameterSets,
    h264_is_keyframe,
    h264_nal_units,
    h264_profile_level_id,
)
from hybridcon.media.hub import GopCache, RtpUnwrapper, StageHub
from hybridcon.media.packets import MediaPacket, as_kind, is_keyframe
from hybridcon.media.vp8 import vp8_is_keyframe

START4 = b"\x00\x00\x00\x01"
START3 = b"\x00\x00\x01"
AUD = bytes([0x09, 0xF0])
SPS = bytes([0x67, 0x42, 0xC0, 0x1F, 0xDA, 0x01])
PPS = bytes([0x68, 0xCE, 0x3C, 0x80])
SEI = bytes([0x06, 0x05, 0x01, 0x80])
IDR = bytes([0x65, 0x88, 0x84, 0x00, 0x33])
SLICE = bytes([0x41, 0x9A, 0x20, 0x36])


def encode(codec: str, frames: int, gop: int, **options: str) -> list[av.Packet]:
    """Real encoder output: ``frames`` small frames with a keyframe every ``gop``."""
    ctx = av.CodecContext.create(codec, "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = 64, 48, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.framerate = Fraction(30)
    ctx.options = {"g": str(gop), "keyint_min": str(gop), **options}
    packets: list[av.Packet] = []
    for index in range(frames):
        frame = av.VideoFrame(64, 48, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(index * 37) % 256]) * plane.buffer_size)
        frame.pts = index
        frame.time_base = Fraction(1, 30)
        packets += ctx.encode(frame)
    packets += ctx.encode(None)
    return packets


# --- H.264 ------------------------------------------------------------------------------


def test_nal_units_with_three_and_four_byte_start_codes() -> None:
    data = START4 + AUD + START3 + SPS + START4 + PPS + START3 + IDR
    units = [data[s:e] for s, e in h264_nal_units(data)]
    assert units == [AUD, SPS, PPS, IDR]


@pytest.mark.parametrize(
    ("units", "key"),
    [
        ([AUD, SPS, PPS, IDR], True),
        ([IDR], True),
        ([SEI, IDR], True),
        ([SPS, PPS], True),  # parameter sets announce a keyframe
        ([AUD, SLICE], False),
        ([SEI, SLICE], False),
        ([SLICE, IDR], False),  # the first slice decides; an IDR never follows a non-IDR
        ([], False),
    ],
)
def test_h264_keyframe_detection(units: list[bytes], key: bool) -> None:
    assert h264_is_keyframe(b"".join(START4 + u for u in units)) is key
    assert h264_is_keyframe(b"".join(START3 + u for u in units)) is key
    assert is_keyframe("video", "h264", b"".join(START4 + u for u in units)) is key


def test_h264_keyframes_match_the_encoder() -> None:
    packets = encode("libx264", 16, 5, preset="ultrafast", tune="zerolatency", bf="0")
    assert sum(p.is_keyframe for p in packets) >= 3
    for packet in packets:
        assert h264_is_keyframe(bytes(packet)) is packet.is_keyframe


def test_profile_level_id_from_sps() -> None:
    # x264 writes the lowest profile the tools it uses need: "ultrafast" needs only
    # baseline ones, "veryfast" with profile=high uses 8x8 transforms (High).
    high = encode("libx264", 1, 5, preset="veryfast", profile="high")
    assert str(h264_profile_level_id(bytes(high[0]))).startswith("64")
    base = encode("libx264", 1, 5, preset="ultrafast", profile="high")
    assert str(h264_profile_level_id(bytes(base[0]))).startswith("42")
    assert h264_profile_level_id(START4 + SLICE) is None


def test_parameter_sets_are_put_back_before_a_bare_idr() -> None:
    sets = H264ParameterSets()
    first = START4 + SPS + START4 + PPS + START4 + IDR
    assert sets.complete(first) == first
    assert sets.profile_level_id == "42c01f"
    bare = START4 + IDR
    repaired = sets.complete(bare)
    assert [repaired[s:e] for s, e in h264_nal_units(repaired)] == [SPS, PPS, IDR]
    assert h264_is_keyframe(repaired)
    # Non-IDR frames are left alone.
    assert sets.complete(START4 + SLICE) == START4 + SLICE


def test_a_bare_idr_before_any_parameter_sets_is_left_alone() -> None:
    assert H264ParameterSets().complete(START4 + IDR) == START4 + IDR


# --- VP8 --------------------------------------------------------------------------------


def test_vp8_keyframe_bit() -> None:
    assert vp8_is_keyframe(bytes([0x70, 0x0B, 0x00]))  # P bit 0: key frame
    assert not vp8_is_keyframe(bytes([0x31, 0x02, 0x00]))  # P bit 1: inter frame
    assert not vp8_is_keyframe(b"")


def test_vp8_keyframes_match_the_encoder() -> None:
    packets = encode("libvpx", 16, 5, deadline="realtime")
    assert sum(p.is_keyframe for p in packets) >= 2
    for packet in packets:
        assert vp8_is_keyframe(bytes(packet)) is packet.is_keyframe
        assert is_keyframe("video", "vp8", bytes(packet)) is packet.is_keyframe


def test_audio_is_always_a_keyframe() -> None:
    assert is_keyframe("audio", "opus", b"\xf8\xff")


def test_kinds() -> None:
    assert as_kind("video") == "video"
    with pytest.raises(Invalid):
        as_kind("data")


# --- RTP timestamps ---------------------------------------------------------------------


def test_unwrap_counts_on_across_the_32_bit_wrap() -> None:
    unwrap = RtpUnwrapper()
    assert unwrap.unwrap(0xFFFF_F000) == 0xFFFF_F000
    assert unwrap.unwrap(0xFFFF_FF00) == 0xFFFF_FF00
    assert unwrap.unwrap(0x0000_0100) == 0x1_0000_0100
    assert unwrap.unwrap(0x0000_1000) == 0x1_0000_1000
    # ... and again.
    for ts in range(0x1000, 1 << 32, 1 << 30):
        unwrap.unwrap(ts)
    assert unwrap.unwrap(0x10) == 0x2_0000_0010


def test_unwrap_takes_a_slightly_older_timestamp_as_older() -> None:
    unwrap = RtpUnwrapper()
    unwrap.unwrap(3000)
    unwrap.unwrap(6000)
    assert unwrap.unwrap(4500) == 4500  # reordered: back a little, not 2**32 ahead
    assert unwrap.unwrap(9000) == 9000


def test_unwrap_undoes_aiortcs_wrap_guess() -> None:
    # aiortc maps timestamps by subtracting the first one and subtracts another 2**32
    # whenever a timestamp is lower than the last (a real wrap, or just reordering).
    unwrap = RtpUnwrapper()
    assert unwrap.unwrap(0) == 0
    assert unwrap.unwrap(3000) == 3000
    assert unwrap.unwrap(1500 + (1 << 32)) == 1500  # aiortc's "wrap" for a late frame
    assert unwrap.unwrap(6000 + (1 << 32)) == 6000


# --- the last-GOP cache -----------------------------------------------------------------


def video(pts: int, *, key: bool = False, size: int = 100) -> MediaPacket:
    return MediaPacket("video", "h264", bytes(size), pts, Fraction(1, 90000), key, 0.0)


def test_gop_cache_keeps_the_last_gop_from_its_keyframe() -> None:
    cache = GopCache(max_packets=10, max_bytes=10_000)
    cache.add(video(0))  # no keyframe yet: nothing to start from
    assert not cache.usable
    cache.add(video(3000, key=True))
    cache.add(video(6000))
    cache.add(video(9000, key=True))
    cache.add(video(12000))
    assert [p.pts for p in cache.packets()] == [9000, 12000]
    assert cache.start is not None and cache.start.pts == 9000
    assert cache.bytes == 200


def test_gop_cache_is_bounded_by_packets() -> None:
    cache = GopCache(max_packets=3, max_bytes=10_000)
    cache.add(video(0, key=True))
    cache.add(video(1))
    cache.add(video(2))
    assert len(cache) == 3
    cache.add(video(3))  # a 4-packet GOP does not fit: no half GOP is kept
    assert not cache.usable and cache.bytes == 0 and cache.overflows == 1
    cache.add(video(4))
    assert not cache.usable
    cache.add(video(5, key=True))
    assert [p.pts for p in cache.packets()] == [5]


def test_gop_cache_is_bounded_by_bytes() -> None:
    cache = GopCache(max_packets=100, max_bytes=1000)
    cache.add(video(0, key=True, size=600))
    cache.add(video(1, size=300))
    assert cache.usable
    cache.add(video(2, size=200))
    assert not cache.usable and cache.overflows == 1
    cache.add(video(3, key=True, size=2000))  # one keyframe over the bound: unusable
    assert not cache.usable


# --- consumer queues (fed directly, no peers) ---------------------------------------------


async def test_lagging_consumer_drops_to_the_next_keyframe() -> None:
    hub = StageHub("s", queue_packets=6)
    slow = hub.consumer("video", name="slow")
    fast = hub.consumer("video", name="fast")
    got: list[int] = []
    pts = 0
    for _ in range(3):
        for index in range(5):
            hub.feed(video(pts, key=index == 0))
            pts += 1
            item = fast.get_nowait()
            assert item is not None
            got.append(item.pts)
    assert got == list(range(15)) and fast.skipped == 0
    # slow read nothing: its queue overflowed in the second GOP (packet 6), it dropped
    # what it held and everything up to the third GOP's keyframe.
    first = await slow.get()
    assert first is not None and first.keyframe and first.pts == 10
    assert slow.skipped == 10
    assert [p.pts for p in (slow.get_nowait() for _ in range(4)) if p] == [11, 12, 13, 14]
    assert hub.stats.video.skipped == slow.skipped


async def test_audio_consumer_overflow_keeps_the_newest() -> None:
    hub = StageHub("s", queue_packets=3)
    consumer = hub.consumer("audio", name="a")
    for pts in range(0, 960 * 5, 960):
        hub.feed(MediaPacket("audio", "opus", b"x", pts, Fraction(1, 48000), True, 0.0))
    assert consumer.skipped == 3
    assert [p.pts for p in (consumer.get_nowait(), consumer.get_nowait()) if p] == [2880, 3840]
    assert consumer.get_nowait() is None


def test_consumer_bound_must_be_positive() -> None:
    with pytest.raises(Invalid):
        StageHub("s").consumer("video", name="x", max_packets=-1)
