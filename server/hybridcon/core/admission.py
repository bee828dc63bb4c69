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
        """Whether ``address`` is one of the reverse proxies (IPv4-mapped IPv6 included)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False  # a Unix socket or no address at all: not a known proxy
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._proxies)

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
