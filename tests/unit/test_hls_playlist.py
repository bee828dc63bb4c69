"""Playlist text and the small bitstream helpers of the HLS packager (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import pytest

from hybridcon.media.opus import adts_header, opus_packet_channels, opus_packet_samples
from hybridcon.media.playlists import (
    Segment,
    format_program_date_time,
    live_window,
    parse_playlist,
    render_playlist,
    segment_uri,
    target_duration,
)

START = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


def segments(
    durations: list[Fraction], *, first: int = 0, breaks: set[int] | None = None
) -> list[Segment]:
    out = []
    moment = START
    for offset, duration in enumerate(durations):
        sequence = first + offset
        out.append(
            Segment(
                sequence=sequence,
                uri=segment_uri(sequence),
                duration=duration,
                program_date_time=moment,
                discontinuity=sequence in (breaks or set()),
            )
        )
        moment += timedelta(seconds=float(duration))
    return out


def test_segment_uris_are_relative_and_sortable() -> None:
    assert segment_uri(0) == "seg-000000.ts"
    assert segment_uri(123) == "seg-000123.ts"
    assert "/" not in segment_uri(999999)


@pytest.mark.parametrize(
    ("durations", "minimum", "expected"),
    [
        ([], 2.0, 2),  # before any segment: the nominal length
        ([Fraction(2)], 2.0, 2),  # exactly 2 s stays 2
        ([Fraction(2), Fraction(2001, 1000)], 2.0, 3),  # any excess rounds up
        ([Fraction(4, 3)], 1.0, 2),
        ([Fraction(1, 2)], 0.5, 1),  # never 0
        ([Fraction(6), Fraction(2)], 2.0, 6),  # the longest counts
    ],
)
def test_target_duration_rounds_the_longest_segment_up(
    durations: list[Fraction], minimum: float, expected: int
) -> None:
    assert target_duration(segments(durations), minimum) == expected


def test_program_date_time_has_milliseconds_and_offset() -> None:
    assert format_program_date_time(START) == "2024-05-01T10:00:00.000+00:00"
    moment = datetime(2024, 5, 1, 12, 0, 2, 345678, tzinfo=timezone(timedelta(hours=2)))
    assert format_program_date_time(moment) == "2024-05-01T12:00:02.345+02:00"
    with pytest.raises(ValueError, match="timezone"):
        format_program_date_time(datetime(2024, 5, 1, 10, 0))  # naive on purpose


def test_live_window_keeps_the_newest_and_counts_dropped_discontinuities() -> None:
    every = segments([Fraction(2)] * 10, breaks={3, 8})
    listed, discontinuities = live_window(every, 6)
    assert [s.sequence for s in listed] == [4, 5, 6, 7, 8, 9]
    assert discontinuities == 1  # the one at 3 slid out; the one at 8 is still listed
    listed, discontinuities = live_window(every[:2], 6)
    assert [s.sequence for s in listed] == [0, 1]
    assert discontinuities == 0
    with pytest.raises(ValueError, match="window"):
        live_window(every, 0)


def test_live_playlist_text() -> None:
    every = segments([Fraction(2), Fraction(2), Fraction(2), Fraction(3, 2)], first=7)
    listed, discontinuities = live_window(every, 3)
    text = render_playlist(listed, target=2, ended=False, discontinuity_sequence=discontinuities)
    assert text == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:3\n"
        "#EXT-X-TARGETDURATION:2\n"
        "#EXT-X-MEDIA-SEQUENCE:8\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T10:00:02.000+00:00\n"
        "#EXTINF:2.000,\n"
        "seg-000008.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T10:00:04.000+00:00\n"
        "#EXTINF:2.000,\n"
        "seg-000009.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T10:00:06.000+00:00\n"
        "#EXTINF:1.500,\n"
        "seg-000010.ts\n"
    )


def test_media_sequence_follows_the_window_as_it_slides() -> None:
    every = segments([Fraction(2)] * 9)
    for count in range(1, 10):
        listed, _ = live_window(every[:count], 6)
        text = render_playlist(listed, target=2, ended=False)
        assert f"#EXT-X-MEDIA-SEQUENCE:{max(0, count - 6)}\n" in text
        assert text.count("#EXTINF:") == min(count, 6)


def test_discontinuity_and_its_sequence() -> None:
    every = segments([Fraction(2)] * 8, breaks={2, 6})
    listed, discontinuities = live_window(every, 4)
    text = render_playlist(listed, target=2, ended=False, discontinuity_sequence=discontinuities)
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:1\n" in text
    # The tag comes right before the segment where timestamps restart.
    assert "#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2024-05-01T10:00:12.000+00:00\n" in text
    assert text.count("#EXT-X-DISCONTINUITY\n") == 1
    # Without a dropped discontinuity the sequence tag is left out (it defaults to 0).
    assert "DISCONTINUITY-SEQUENCE" not in render_playlist(every, target=2, ended=False)


def test_endlist_and_event_type() -> None:
    every = segments([Fraction(2)] * 3)
    live = render_playlist(every, target=2, ended=False)
    assert "#EXT-X-ENDLIST" not in live and "PLAYLIST-TYPE" not in live
    archive = render_playlist(every, target=2, ended=False, event=True)
    assert "#EXT-X-PLAYLIST-TYPE:EVENT\n" in archive and "#EXT-X-ENDLIST" not in archive
    closed = render_playlist(every, target=2, ended=True, event=True)
    assert closed.endswith("seg-000002.ts\n#EXT-X-ENDLIST\n")
    assert render_playlist([], target=2, ended=False).startswith(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
    )


def test_a_rendered_playlist_parses_back() -> None:
    every = segments([Fraction(2), Fraction(1999, 1000), Fraction(1, 2)], first=40, breaks={41})
    parsed = parse_playlist(render_playlist(every, target=2, ended=True, event=True))
    assert parsed == every
    with pytest.raises(ValueError, match="M3U"):
        parse_playlist("seg-000001.ts\n")
    with pytest.raises(ValueError, match="lacks"):
        parse_playlist("#EXTM3U\n#EXTINF:2.000,\nseg-000001.ts\n")


def test_adts_header_describes_one_aac_lc_frame() -> None:
    header = adts_header(100)
    assert len(header) == 7
    assert header[:2] == b"\xff\xf1"  # sync word, MPEG-4, no CRC
    assert header[2] >> 6 == 1  # AAC-LC
    assert (header[2] >> 2) & 0xF == 3  # 48 kHz
    channels = ((header[2] & 1) << 2) | (header[3] >> 6)
    assert channels == 2
    length = ((header[3] & 3) << 11) | (header[4] << 3) | (header[5] >> 5)
    assert length == 107
    mono = adts_header(100, channels=1)
    assert ((mono[2] & 1) << 2) | (mono[3] >> 6) == 1
    assert mono[:3] == header[:3] and mono[4:] == header[4:]


@pytest.mark.parametrize(
    ("toc", "channels"),
    # CELT FB 20 ms, SILK NB 20 ms, hybrid FB 20 ms: mono, then stereo (the 0x04 bit)
    [(0xF8, 1), (0xFC, 2), (0x08, 1), (0x0C, 2), (0x78, 1), (0x7D, 2)],
)
def test_opus_packet_channels_reads_the_stereo_flag(toc: int, channels: int) -> None:
    assert opus_packet_channels(bytes([toc, 0xFF])) == channels


@pytest.mark.parametrize(
    ("packet", "samples"),
    [
        (bytes([0xFC, 0xFF]), 960),  # CELT FB 20 ms, one frame
        (bytes([0x7C, 0xFF]), 960),  # hybrid FB 20 ms
        (bytes([0x08]), 960),  # SILK NB 20 ms
        (bytes([0x18]), 2880),  # SILK NB 60 ms
        (bytes([0xFD, 0xFF]), 1920),  # two equal CELT frames
        (bytes([0xE3, 0x03]), 360),  # three 2.5-ms CELT frames (code 3)
        (b"", 0),
    ],
)
def test_opus_packet_durations_come_from_the_toc(packet: bytes, samples: int) -> None:
    assert opus_packet_samples(packet) == samples
