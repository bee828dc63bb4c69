"""Admission of TCP connections to the HTTP listener: a cap in total and per client address.

Every connection holds a file descriptor whether it ever sends a request or not, so a
client that opens hundreds of sockets could run the node out of descriptors (then
PostgreSQL, the spool and the WebRTC sockets fail too). The listener asks :meth:`admit`
before it hands a connection to aiohttp and calls :meth:`release` when it closes.

Connections from a reverse proxy (nginx on the same machine, as ``deploy/nginx``
sets it up) carry every client's traffic, so they count only towards the total.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection was not admitted.

    Attributes:
        reason: ``address_limit`` or ``total_limit`` (the metric label).
        message: a sentence for the client.
    """

    reason: str
    message: str


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or networks (``127.0.0.1``, ``10.0.0.0/8``, ``::1``) as networks.

    Raises:
        ValueError: a value is neither (the message names it).
    """
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network") from None
    return tuple(networks)


class ConnectionCaps:
    """Counts open connections in total and per address; refuses those over a cap.

    Args:
        total: connections open at once, all addresses together (at least 1).
        per_address: connections open at once from one address; 0 for no such cap.
        proxies: addresses exempt from ``per_address`` (they still count in ``total``).
    """

    def __init__(self, *, total: int, per_address: int, proxies: Iterable[Network] = ()) -> None:
        self.total = max(1, total)
        self.per_address = per_address
        self._proxies = tuple(proxies)
        self._by_address: dict[str, int] = {}
        self.open = 0

    def is_proxy(self, address: str) -> bool:
        """Whether ``address`` is one of the reverse proxies (IPv4-mapped IPv6 included;
        a Unix socket or no address at all is not a known proxy)."""
        return _in(address, self._proxies)

    def admit(self, address: str) -> Refusal | None:
        """Count a new connection from ``address``, or say why it is refused (not counted)."""
        if self.open >= self.total:
            return Refusal(
                "total_limit",
                f"the server has its maximum of {self.total} connections open; retry shortly",
            )
        held = self._by_address.get(address, 0)
        if self.per_address and held >= self.per_address and not self.is_proxy(address):
            return Refusal(
                "address_limit",
                f"your address has its maximum of {self.per_address} connections open; "
                "close some and retry",
            )
        self._by_address[address] = held + 1
        self.open += 1
        return None

    def release(self, address: str) -> None:
        """Forget one admitted connection from ``address``."""
        held = self._by_address.get(address, 0)
        if held <= 1:
            self._by_address.pop(address, None)
        else:
            self._by_address[address] = held - 1
        self.open = max(0, self.open - 1)


def client_address(peer: str, forwarded_for: str | None, proxies: Iterable[Network]) -> str:
    """The address of the client behind ``peer``, for rate limits, caps and logs.

    Only a trusted proxy's ``X-Forwarded-For`` is believed (anyone else can write the
    header): from the right, the first address that is not one of ``proxies`` is the
    client (each proxy appends the address it was reached from). Without a trusted proxy
    in front, or without a usable header, the peer itself.

    Args:
        peer: the address of the TCP peer.
        forwarded_for: the ``X-Forwarded-For`` header, if any.
        proxies: the reverse proxies whose header is believed.
    """
    networks = tuple(proxies)
    if not forwarded_for or not _in(peer, networks):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a mangled header: fall back to what the socket says
        if not _in(hop, networks):
            return hop
    return hops[0] if hops else peer


def _in(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
