"""HLS media playlists as text (RFC 8216): segments in, a playlist out, and back.

Pure: no files, no clock, no event loop. The packager
(:class:`~hybridcon.media.hls.HlsPackager`) decides which segments exist and writes the
text these functions return.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class Segment:
    """One finished media segment as the playlists list it.

    Attributes:
        sequence: Media sequence number (``seg-{sequence:06d}.ts``).
        uri: Relative URI of the segment file.
        duration: Length in seconds.
        program_date_time: Wall-clock time of the segment's first sample.
        discontinuity: Whether timestamps or encoding restart at this segment.
    """

    sequence: int
    uri: str
    duration: Fraction
    program_date_time: datetime
    discontinuity: bool = False


def segment_uri(sequence: int) -> str:
    """The relative URI (and file name) of a segment.

    Args:
        sequence: The segment's media sequence number.

    Returns:
        ``seg-000123.ts`` style names, sorting in order up to a million segments.
    """
    return f"seg-{sequence:06d}.ts"


def target_duration(segments: Sequence[Segment], minimum: float) -> int:
    """``EXT-X-TARGETDURATION``: the longest segment in whole seconds, rounded up.

    RFC 8216 only requires each duration *rounded to nearest* to fit; rounding up is
    the safe reading (some players treat the target as a hard upper bound).

    Args:
        segments: Every segment the playlist has listed or will list.
        minimum: The nominal segment length, so the target is right from the start
            and does not grow while the first segments are short.

    Returns:
        The target duration, at least 1.
    """
    longest = max((math.ceil(s.duration) for s in segments), default=0)
    return max(1, math.ceil(minimum), longest)


def format_program_date_time(moment: datetime) -> str:
    """``EXT-X-PROGRAM-DATE-TIME`` value: ISO 8601 with milliseconds and UTC offset.

    Args:
        moment: A timezone-aware time.

    Returns:
        E.g. ``2024-05-01T10:00:02.000+00:00``.

    Raises:
        ValueError: If ``moment`` is naive (a playlist time must say its offset).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("program date time needs a timezone-aware datetime")
    return moment.isoformat(timespec="milliseconds")


def live_window(segments: Sequence[Segment], window: int) -> tuple[list[Segment], int]:
    """The segments a rolling live playlist lists, and its discontinuity sequence.

    Args:
        segments: Every segment so far, oldest first.
        window: How many of the newest to list.

    Returns:
        The newest ``window`` segments and ``EXT-X-DISCONTINUITY-SEQUENCE``: the number
        of discontinuities that have slid out of the window.

    Raises:
        ValueError: If ``window`` is less than 1.
    """
    if window < 1:
        raise ValueError("window must be at least 1")
    listed = list(segments[-window:])
    dropped = segments[: len(segments) - len(listed)]
    return listed, sum(1 for s in dropped if s.discontinuity)


def render_playlist(
    segments: Sequence[Segment],
    *,
    target: int,
    ended: bool,
    event: bool = False,
    discontinuity_sequence: int = 0,
) -> str:
    """A media playlist's text.

    Args:
        segments: The segments to list, oldest first; the first one's sequence number
            is the playlist's ``EXT-X-MEDIA-SEQUENCE``.
        target: ``EXT-X-TARGETDURATION`` (see :func:`target_duration`).
        ended: Append ``#EXT-X-ENDLIST``: no segment will be added.
        event: Declare ``#EXT-X-PLAYLIST-TYPE:EVENT`` (segments are only ever appended).
        discontinuity_sequence: Discontinuities before the first listed segment.

    Returns:
        The playlist, ending with a newline.
    """
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target}",
        f"#EXT-X-MEDIA-SEQUENCE:{segments[0].sequence if segments else 0}",
    ]
    if discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}")
    if event:
        lines.append("#EXT-X-PLAYLIST-TYPE:EVENT")
    for segment in segments:
        if segment.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        lines.append(
            f"#EXT-X-PROGRAM-DATE-TIME:{format_program_date_time(segment.program_date_time)}"
        )
        lines.append(f"#EXTINF:{float(segment.duration):.3f},")
        lines.append(segment.uri)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def parse_playlist(text: str) -> list[Segment]:
    """Read back the segments of a playlist written by :func:`render_playlist`.

    Args:
        text: The playlist.

    Returns:
        Its segments, oldest first.

    Raises:
        ValueError: If it is not an M3U playlist, or a segment has no duration or
            program date time.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise ValueError("not an M3U playlist")
    sequence = 0
    duration: Fraction | None = None
    moment: datetime | None = None
    discontinuity = False
    segments: list[Segment] = []
    for line in lines[1:]:
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            duration = Fraction(line.split(":", 1)[1].split(",", 1)[0])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            moment = datetime.fromisoformat(line.split(":", 1)[1])
        elif line == "#EXT-X-DISCONTINUITY":
            discontinuity = True
        elif not line.startswith("#"):
            if duration is None or moment is None:
                raise ValueError(f"segment {line!r} lacks EXTINF or PROGRAM-DATE-TIME")
            segments.append(Segment(sequence, line, duration, moment, discontinuity))
            sequence += 1
            duration, moment, discontinuity = None, None, False
    return segments
