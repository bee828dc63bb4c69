"""The one settings object: the only reader of the environment.

Every field is documented in ``docs/operations.md``; ``tests/unit/test_docs.py``
fails when a field is added here without a line there.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from hybridcon.core.admission import parse_networks

DEFAULT_PROGRAMME = Path("config/sociaalwerkconferentie-2022.toml")
# The browser pages in a checkout: clients/web beside server/ (an installed package, as
# in the container image, is told where they are with HYBRIDCON_WEB_ROOT).
CHECKOUT_WEB_ROOT = Path(__file__).resolve().parents[2] / "clients" / "web"


class IceServer(BaseModel):
    """A STUN or TURN server offered to WebRTC peers (RFC 8489 / RFC 8656)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    urls: tuple[str, ...] = Field(min_length=1)
    username: str | None = None
    credential: str | None = None

    @field_validator("urls")
    @classmethod
    def _ice_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if not url.startswith(("stun:", "turn:", "turns:")):
                raise ValueError(f"{url!r} is not a stun:, turn: or turns: URL")
        return urls


def _is_ice_selector(selector: str) -> bool:
    """Whether ``selector`` can name where ICE candidates are gathered: an address, a
    network (CIDR) or an interface name (Linux: at most 15 bytes, no ``/`` or spaces)."""
    try:
        ipaddress.ip_network(selector, strict=False)
    except ValueError:
        return 0 < len(selector.encode()) <= 15 and not any(c in selector for c in "/: \t")
    return True


class Settings(BaseSettings):
    """hybridcon's settings, read from ``HYBRIDCON_*`` variables and an optional ``.env``."""

    model_config = SettingsConfigDict(
        env_prefix="HYBRIDCON_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    data_dir: Path = Field(
        default=Path("var"),
        description="Embedded database, signing keys, spool, HLS segments and recordings.",
    )
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL DSN. Unset: an embedded PostgreSQL under DATA_DIR/postgres.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis/Valkey URL for the bus between nodes. Unset: the in-process bus.",
    )
    programme: Path = Field(
        default=DEFAULT_PROGRAMME, description="The event programme (TOML) to load at start."
    )
    public_url: str | None = Field(
        default=None,
        description="The URL attendees reach this service at; unset: http://HOST:PORT.",
    )
    node_url: str | None = Field(
        default=None,
        description="This node's own URL, reachable by viewers' browsers (several nodes: "
        "WHEP for a stage published on this node is redirected here from the others); "
        "unset: the public base URL, which no other node redirects to.",
    )
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port to listen on.")
    http_header_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a connection has to deliver a complete request head (the "
        "request line and headers), from when it opens or starts its next request.",
    )
    http_max_connections: int = Field(
        default=10000,
        ge=1,
        description="TCP connections open at once on the HTTP listener (WebSockets included); "
        "lowered at start to fit the open-file limit.",
    )
    http_max_connections_per_address: int = Field(
        default=2000,
        ge=0,
        description="TCP connections open at once from one client address; 0: no such cap.",
    )
    reverse_proxies: tuple[str, ...] = Field(
        default=("127.0.0.1", "::1"),
        description="Addresses or networks of reverse proxies in front of hybridcon (JSON "
        "list); their connections count only towards http_max_connections.",
    )
    token_issuer: str = Field(
        default="hybridcon", description="The `iss` claim of tokens this service issues."
    )
    token_audience: str = Field(
        default="hybridcon", description="The `aud` claim tokens must carry to be accepted."
    )
    token_ttl: timedelta = Field(
        default=timedelta(hours=12),
        description="Default lifetime of an access token (ISO 8601 duration, e.g. PT12H).",
    )
    token_max_ttl: timedelta = Field(
        default=timedelta(days=2),
        description="Longest lifetime a token may be issued with.",
    )
    token_leeway: timedelta = Field(
        default=timedelta(seconds=30),
        description="Clock skew tolerated when checking exp, nbf and iat.",
    )
    signing_keys_file: Path | None = Field(
        default=None,
        description="The private keyset (JSON). Unset: DATA_DIR/keys/signing-keys.json.",
    )
    invite_secret_file: Path | None = Field(
        default=None,
        description="Secret invite codes are derived from. Unset: DATA_DIR/keys/invite.secret.",
    )
    invite_valid_days: int = Field(
        default=2,
        ge=0,
        description="Invites stay redeemable until this many days after the event's last day.",
    )
    invite_redeem_rate: int = Field(
        default=10,
        ge=1,
        description="Redeem attempts allowed per client address per minute.",
    )
    hall_join_rate: float = Field(
        default=10.0, gt=0, description="Phones per second that may join through one hall link."
    )
    hall_join_burst: float = Field(
        default=300.0, ge=1, description="Phones that may join through one hall link at once."
    )
    max_connections_per_person: int = Field(
        default=2,
        ge=1,
        description="Simultaneous WebSocket connections per token subject; the oldest is closed.",
    )
    auth_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a WebSocket has to send its auth frame."
    )
    ws_signing_in_per_address: int = Field(
        default=50,
        ge=0,
        description="WebSockets from one address that may wait for their auth frame at once "
        "(0: no such cap; reverse proxies are exempt).",
    )
    ws_signing_in_total: int = Field(
        default=2000,
        ge=1,
        description="WebSockets in all that may wait for their auth frame at once.",
    )
    engagement_spool_max_bytes: int = Field(
        default=1 << 30,
        ge=4096,
        description="The engagement spool's size on disk at most (per node); past it events "
        "wait in memory, then are dropped and counted.",
    )
    web_root: Path = Field(
        default=CHECKOUT_WEB_ROOT,
        description="The browser pages: clients/web with its node_modules (npm ci). Default: "
        "the checkout's clients/web.",
    )
    ws_max_topics: int = Field(
        default=64, ge=1, description="Topics one connection may follow at once."
    )
    revocation_resync_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How often each node reloads the full revocation list (besides NOTIFY).",
    )
    ws_rate: float = Field(
        default=10.0, gt=0, description="Requests per second one WebSocket may send, on average."
    )
    ws_burst: float = Field(
        default=30.0, ge=1, description="Requests one WebSocket may send in a burst."
    )
    ws_idle_timeout: float = Field(
        default=90.0,
        gt=0,
        description="Seconds without any frame from a client before its socket is closed.",
    )
    ws_flush_interval: float = Field(
        default=0.01,
        ge=0,
        description="Least seconds pushed messages wait to be coalesced into one write per client.",
    )
    ws_flush_period: float = Field(
        default=0.12,
        ge=0,
        description="Least seconds between the starts of two fan-out ticks while pushes keep "
        "coming (0: ticks are paced by ws_flush_interval alone); with "
        "ws_flush_load_factor, the most.",
    )
    ws_flush_load_factor: float = Field(
        default=1.5,
        ge=0,
        description="> 0: the tick period is this many times the last tick's length (at most "
        "ws_flush_period), so a lightly loaded node writes almost at once; 0: fixed pacing.",
    )
    gc_freeze_joins: int = Field(
        default=500,
        ge=0,
        description="WebSocket joins after which the objects alive are frozen out of Python's "
        "full garbage collections (also once after start-up); 0: never.",
    )
    ws_max_pending_bytes: int = Field(
        default=1 << 20,
        ge=64 * 1024,
        description="Unsent bytes a client may lag behind before it is closed (4008).",
    )
    topic_history: int = Field(
        default=500, ge=10, description="Messages per topic kept for reconnects with since."
    )
    chat_recent: int = Field(
        default=50, ge=0, le=500, description="Chat lines in a subscribe snapshot."
    )
    wordfilter_files: tuple[Path, ...] = Field(
        default=(Path("config/wordfilter/nl.txt"), Path("config/wordfilter/en.txt")),
        description="Word lists that hold a chat line for a moderator (JSON list of paths).",
    )
    engagement_key_file: Path | None = Field(
        default=None,
        description="Key of the actor hashes in the engagement log. "
        "Unset: DATA_DIR/keys/engagement.key.",
    )
    ice_servers: tuple[IceServer, ...] = Field(
        default=(),
        description="STUN/TURN servers for WHIP/WHEP peers, as JSON "
        '(`[{"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "p"}]`). '
        "Empty: host candidates only; never a public default.",
    )
    ice_addresses: tuple[str, ...] = Field(
        default=(),
        description="Where WHIP/WHEP peers gather their host candidates, as a JSON list of "
        'interface names, addresses and networks (`["eth1"]`, `["203.0.113.7", "::1"]`, '
        '`["10.0.0.0/8"]`); loopback only when named. Empty: every address but loopback.',
    )
    turn_urls: tuple[str, ...] = Field(
        default=(),
        description="TURN servers with per-person credentials (coturn `use-auth-secret`), as "
        'a JSON list of turn:/turns: URLs (`["turn:turn.example.org:3478?transport=udp"]`); '
        "each peer gets a username and credential of its own that expire after turn_ttl. "
        "Empty: no minted TURN credentials.",
    )
    turn_secret_file: Path | None = Field(
        default=None,
        description="The secret shared with coturn (its static-auth-secret), one line of "
        "text. Unset: DATA_DIR/keys/turn.secret, created when missing.",
    )
    turn_ttl: timedelta = Field(
        default=timedelta(hours=12),
        description="How long minted TURN credentials stay good (ISO 8601 duration); a "
        "connection set up before the expiry keeps its relay.",
    )
    whip_max_publishers: int = Field(
        default=8, ge=1, description="Publishers (stages going live) one node takes."
    )
    whep_max_viewers: int = Field(
        default=50,
        ge=0,
        description="Low-latency WHEP viewers per node; beyond it viewers are sent to HLS.",
    )
    hls_url_ttl: timedelta = Field(
        default=timedelta(hours=14),
        description="How long a signed HLS link stays valid (a conference day: players "
        "that stay longer get new links with stream.state or by subscribing again).",
    )
    hls_segment_seconds: float = Field(
        default=2.0, gt=0.5, le=10, description="Target HLS segment length (cut at keyframes)."
    )
    hls_secret_file: Path | None = Field(
        default=None,
        description="Secret that signs HLS links (shared with nginx/CDN). "
        "Unset: DATA_DIR/keys/hls.secret.",
    )
    stream_health_seconds: float = Field(
        default=5.0, gt=0, description="How often live stages' health goes to their moderators."
    )
    stream_stall_seconds: float = Field(
        default=5.0,
        gt=0,
        description="Seconds without media from a publisher before its stage is interrupted.",
    )
    whip_first_media_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Seconds an accepted WHIP publisher has to deliver its first media "
        "before it is closed (its stage does not go live).",
    )
    rooms_provider: Literal["builtin", "janus"] = Field(
        default="builtin",
        description="What carries the zoom-style sessions' media: builtin (pass-through "
        "hubs in this process) or janus (a Janus VideoRoom hybridcon drives).",
    )
    room_max_publishers: int = Field(
        default=6, ge=1, description="Cameras/microphones publishing at once in one room."
    )
    room_max_participants: int = Field(
        default=60, ge=2, description="People admitted to one zoom-style session at once."
    )
    room_max_peers: int = Field(
        default=300,
        ge=1,
        description="WebRTC peer connections (publishing and subscribing) the builtin room "
        "provider takes on one node; beyond it a publish or subscription gets 503.",
    )
    janus_url: str = Field(
        default="ws://127.0.0.1:8188",
        description="The Janus API's WebSocket URL (rooms_provider janus).",
    )
    janus_admin_url: str | None = Field(
        default=None,
        description="Janus's admin API WebSocket URL (admin_ws), when Janus has token_auth on: "
        "hybridcon then mints its own API token there at every connect. Unset: no token.",
    )
    janus_admin_secret_file: Path | None = Field(
        default=None,
        description="Janus's admin_secret (janus.jcfg), one line; read with janus_admin_url. "
        "Unset: DATA_DIR/keys/janus-admin.secret.",
    )
    janus_room_key_file: Path | None = Field(
        default=None,
        description="The VideoRoom plugin's admin_key (janus.plugin.videoroom.jcfg), one line; "
        "also seeds the rooms' secrets. Unset: DATA_DIR/keys/janus-room.key (made if missing).",
    )
    janus_timeout: float = Field(
        default=10.0, gt=0, description="Seconds one request to Janus may take."
    )
    cors_allow_origin: str = Field(
        default="*",
        description="Access-Control-Allow-Origin for WHIP/WHEP (browser publishers/players).",
    )
    db_pool_min: int = Field(default=1, ge=0, description="Smallest PostgreSQL pool size.")
    db_pool_max: int = Field(default=10, ge=1, description="Largest PostgreSQL pool size.")
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    log_format: str = Field(
        default="json", description="json (one object a line) or console (for people)."
    )
    shutdown_grace: float = Field(
        default=5.0, ge=0, description="Seconds readiness reports 503 before sockets close."
    )

    @field_validator("reverse_proxies")
    @classmethod
    def _networks(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        parse_networks(values)  # raises ValueError naming the bad entry
        return values

    @field_validator("turn_urls")
    @classmethod
    def _turn_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if not url.startswith(("turn:", "turns:")):
                raise ValueError(f"{url!r} is not a turn: or turns: URL")
        return urls

    @field_validator("ice_addresses")
    @classmethod
    def _ice_selectors(cls, selectors: tuple[str, ...]) -> tuple[str, ...]:
        for selector in selectors:
            if not _is_ice_selector(selector):
                raise ValueError(
                    f"{selector!r} is neither an interface name, an IP address nor a network"
                )
        return selectors

    @field_validator("janus_url", "janus_admin_url")
    @classmethod
    def _websocket_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("ws://", "wss://")):
            raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
        return url

    @field_validator("log_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in {"json", "console"}:
            raise ValueError("log_format must be 'json' or 'console'")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error"}:
            raise ValueError("log_level must be debug, info, warning or error")
        return value.lower()

    @property
    def keys_path(self) -> Path:
        """Where the private signing keyset lives."""
        return self.signing_keys_file or self.data_dir / "keys" / "signing-keys.json"

    @property
    def invite_secret_path(self) -> Path:
        """Where the invite-code secret lives."""
        return self.invite_secret_file or self.data_dir / "keys" / "invite.secret"

    @property
    def engagement_key_path(self) -> Path:
        """Where the key of the engagement log's actor hashes lives."""
        return self.engagement_key_file or self.data_dir / "keys" / "engagement.key"

    @property
    def hls_secret_path(self) -> Path:
        """Where the HLS link secret lives."""
        return self.hls_secret_file or self.data_dir / "keys" / "hls.secret"

    @property
    def turn_secret_path(self) -> Path:
        """Where the secret shared with coturn lives."""
        return self.turn_secret_file or self.data_dir / "keys" / "turn.secret"

    @property
    def janus_room_key_path(self) -> Path:
        """Where the Janus VideoRoom admin_key lives."""
        return self.janus_room_key_file or self.data_dir / "keys" / "janus-room.key"

    @property
    def janus_admin_secret_path(self) -> Path:
        """Where Janus's admin_secret lives."""
        return self.janus_admin_secret_file or self.data_dir / "keys" / "janus-admin.secret"

    @property
    def hls_dir(self) -> Path:
        """Where HLS segments and playlists are written, one folder per stage."""
        return self.data_dir / "hls"

    @property
    def captions_dir(self) -> Path:
        """Where live caption cues are kept, one JSON-lines file per stage."""
        return self.data_dir / "captions"

    @property
    def recordings_dir(self) -> Path:
        """Where recordings are written, one file per stage per live period."""
        return self.data_dir / "recordings"

    @property
    def spool_path(self) -> Path:
        """Where engagement events wait while PostgreSQL is away."""
        return self.data_dir / "spool" / "engagement.jsonl"

    @property
    def topic_journal_path(self) -> Path:
        """Where a single node keeps its topics' recent pushes across restarts (``since``)."""
        return self.data_dir / "topics" / "journal"

    @property
    def embedded_pgdata(self) -> Path:
        """The embedded PostgreSQL cluster's data directory."""
        return self.data_dir / "postgres"

    def base_url(self) -> str:
        """The public base URL, without a trailing slash."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "localhost" if self.host in {"127.0.0.1", "0.0.0.0", "::"} else self.host  # noqa: S104
        return f"http://{host}:{self.port}"
