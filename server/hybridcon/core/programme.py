"""The event programme: themes, stages (livestreams, radio, film room) and sessions.

A programme is data (``config/*.toml``); another event is another file. This module
parses the TOML text and validates it into frozen models; reading the file is the
caller's job. Errors name the file's entry that is wrong, so an organiser can fix it.

Times in the file are local wall-clock times on the event's date, in the event's time
zone (TOML local times, ``09:30:00``); the API serves them as ISO 8601 with offset.
"""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Iterable
from datetime import date, datetime, time
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, ValidationError

from hybridcon.errors import ConfigError, Invalid

Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=300, strip_whitespace=True)]


class StageKind(StrEnum):
    """What a stage carries."""

    STREAM = "stream"  # a video livestream (WHIP in, HLS/WHEP out)
    RADIO = "radio"  # an audio-only stream, all day
    FILM = "film"  # the on-site film room; shows recordings, not streamed live


class SessionKind(StrEnum):
    """What happens in a session."""

    PLENARY = "plenary"
    THEME = "theme"
    WORKSHOP = "workshop"
    ONLINE_WORKSHOP = "online_workshop"
    WALK = "walk"
    RADIO = "radio"
    FILM = "film"
    NETWORKING = "networking"
    BREAK = "break"


class Online(StrEnum):
    """How online attendees take part in a session."""

    STREAM = "stream"  # watch its stage's livestream, chat, polls, Q&A
    ROOM = "room"  # a zoom-style room: camera and microphone (rooms provider)
    NONE = "none"  # on site only


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Event(_Model):
    """The event itself."""

    id: Ident
    title: Text
    tagline: Text | None = None
    date: Annotated[date, Strict()]
    timezone: str = "Europe/Brussels"
    venue: Text
    city: Text | None = None
    languages: tuple[str, ...] = ("nl",)


class Theme(_Model):
    """One of the event's themes; theme stages and workshops belong to one."""

    id: Ident
    title: Text
    description: str | None = None


class Stage(_Model):
    """A place with a continuous output: a livestream, the radio, the film room."""

    id: Ident
    title: Text
    kind: StageKind
    theme: Ident | None = None
    description: str | None = None

    @property
    def streamed(self) -> bool:
        """Whether the stage goes out live (a livestream or the radio), not the film room."""
        return self.kind in (StageKind.STREAM, StageKind.RADIO)


LocalTime = Annotated[time, Strict()]
"""A time of day as TOML writes it, without an offset (the event's timezone applies)."""


class SessionEntry(_Model):
    """One programme entry as written in the file (local times)."""

    id: Ident
    title: Text
    kind: SessionKind
    # Strict: a TOML local time (14:45:00). Lax parsing took `start = 1` as 00:00:01 UTC,
    # an aware time that could not be compared with the naive end (a crash, not a message).
    start: LocalTime
    end: LocalTime
    stage: Ident | None = None
    theme: Ident | None = None
    online: Online = Online.NONE
    location: Text | None = None
    capacity: int | None = Field(default=None, ge=1)
    description: str | None = None


class Session(_Model):
    """A programme entry with absolute times."""

    id: str
    title: str
    kind: SessionKind
    starts_at: datetime
    ends_at: datetime
    stage: str | None
    theme: str | None
    online: Online
    location: str | None
    capacity: int | None
    description: str | None


class _File(_Model):
    event: Event
    themes: tuple[Theme, ...] = ()
    stages: tuple[Stage, ...] = ()
    sessions: tuple[SessionEntry, ...] = ()


class Programme(_Model):
    """A validated programme."""

    event: Event
    themes: tuple[Theme, ...]
    stages: tuple[Stage, ...]
    sessions: tuple[Session, ...]

    def stage(self, stage_id: str) -> Stage | None:
        """The stage with this id, if any."""
        return next((s for s in self.stages if s.id == stage_id), None)

    def session(self, session_id: str) -> Session | None:
        """The session with this id, if any."""
        return next((s for s in self.sessions if s.id == session_id), None)

    def has_topic(self, topic: str) -> bool:
        """Whether ``topic`` names something in this programme (or is ``event`` or ``org``,
        the organisers' live view)."""
        if topic in ("event", "org"):
            return True
        kind, _, ident = topic.partition(":")
        if kind == "stage":
            return self.stage(ident) is not None
        if kind == "session":
            return self.session(ident) is not None
        if kind == "mod":
            return (
                ident == "event" or ident.partition(":")[0] in {"stage", "session"}
            ) and self.has_topic(ident)
        return False

    def check_scopes(self, scopes: Iterable[str]) -> None:
        """Refuse token scopes that name nothing in this programme.

        ``*`` is always fine; ``stage:x`` and ``hall:x`` need stage ``x``, ``session:x``
        needs session ``x``. A token for a stage that does not exist would let nobody in
        anywhere, so an organiser's typo is an error, not a useless token.

        Raises:
            Invalid: naming the first such scope and what the programme does have.
        """
        for scope in scopes:
            kind, _, ident = scope.partition(":")
            if kind in {"stage", "hall"} and self.stage(ident) is None:
                known = ", ".join(s.id for s in self.stages) or "none"
                raise Invalid(
                    f"scope {scope!r} names stage {ident!r}, which is not in the programme "
                    f"(stages: {known})"
                )
            if kind == "session" and self.session(ident) is None:
                raise Invalid(
                    f"scope {scope!r} names session {ident!r}, which is not in the programme"
                )

    @property
    def starts_at(self) -> datetime:
        """When the first session starts."""
        return min(s.starts_at for s in self.sessions)

    @property
    def ends_at(self) -> datetime:
        """When the last session ends."""
        return max(s.ends_at for s in self.sessions)

    def public(self) -> dict[str, Any]:
        """The programme as served by ``GET /api/v1/programme``."""
        return self.model_dump(mode="json")


def parse_programme(text: str, *, source: str = "programme") -> Programme:
    """Parse and validate a programme from TOML text.

    Args:
        text: the TOML document.
        source: a name for messages (usually the file path).

    Returns:
        The validated programme.

    Raises:
        ConfigError: the TOML does not parse, or an entry is missing, malformed, refers to
            an unknown stage or theme, repeats an id, ends before it starts, or overlaps
            another session on the same stage. The message names the entry.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, raw)}") from None

    try:
        tz = ZoneInfo(parsed.event.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{source}: event.timezone {parsed.event.timezone!r} is unknown"
        ) from None

    _unique(source, "themes", [t.id for t in parsed.themes])
    _unique(source, "stages", [s.id for s in parsed.stages])
    _unique(source, "sessions", [s.id for s in parsed.sessions])
    theme_ids = {t.id for t in parsed.themes}
    stage_ids = {s.id for s in parsed.stages}
    for stage in parsed.stages:
        if stage.theme is not None and stage.theme not in theme_ids:
            raise ConfigError(f"{source}: stage {stage.id!r} names unknown theme {stage.theme!r}")
    if not parsed.sessions:
        raise ConfigError(f"{source}: the programme has no sessions")

    sessions: list[Session] = []
    for entry in parsed.sessions:
        where = f"{source}: session {entry.id!r}"
        if entry.stage is not None and entry.stage not in stage_ids:
            raise ConfigError(f"{where} names unknown stage {entry.stage!r}")
        if entry.theme is not None and entry.theme not in theme_ids:
            raise ConfigError(f"{where} names unknown theme {entry.theme!r}")
        if entry.end <= entry.start:
            raise ConfigError(f"{where} ends ({entry.end}) before it starts ({entry.start})")
        if entry.online is Online.STREAM and entry.stage is None:
            raise ConfigError(f"{where} is online 'stream' but names no stage")
        sessions.append(
            Session(
                id=entry.id,
                title=entry.title,
                kind=entry.kind,
                starts_at=datetime.combine(parsed.event.date, entry.start, tzinfo=tz),
                ends_at=datetime.combine(parsed.event.date, entry.end, tzinfo=tz),
                stage=entry.stage,
                theme=entry.theme,
                online=entry.online,
                location=entry.location,
                capacity=entry.capacity,
                description=entry.description,
            )
        )

    by_stage: dict[str, list[Session]] = {}
    for session in sessions:
        if session.stage is not None:
            by_stage.setdefault(session.stage, []).append(session)
    for stage_id, on_stage in by_stage.items():
        on_stage.sort(key=lambda s: s.starts_at)
        for before, after in itertools.pairwise(on_stage):
            if after.starts_at < before.ends_at:
                raise ConfigError(
                    f"{source}: sessions {before.id!r} and {after.id!r} "
                    f"overlap on stage {stage_id!r}"
                )

    sessions.sort(key=lambda s: (s.starts_at, s.id))
    return Programme(
        event=parsed.event, themes=parsed.themes, stages=parsed.stages, sessions=tuple(sessions)
    )


def _unique(source: str, table: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for ident in ids:
        if ident in seen:
            raise ConfigError(f"{source}: {table} repeats the id {ident!r}")
        seen.add(ident)


def _describe(exc: ValidationError, raw: dict[str, Any]) -> str:
    """The first validation error as 'sessions[3] (id 'x').end: message'."""
    error = exc.errors()[0]
    loc = error["loc"]
    parts: list[str] = []
    node: Any = raw
    for step in loc:
        if isinstance(step, int):
            parts[-1] = f"{parts[-1]}[{step}]"
            ident = node[step].get("id") if isinstance(node, list) and step < len(node) else None
            if isinstance(ident, str):
                parts[-1] += f" (id {ident!r})"
        else:
            parts.append(str(step))
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            node = None
    where = ".".join(parts) or "document"
    return f"{where}: {error['msg']}"
