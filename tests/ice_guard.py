"""Where WebRTC media goes in tests and benchmarks: loopback, or the run's own namespaces.

The machines this project is tested on allow test traffic only to loopback (127.0.0.0/8,
::1) and to network namespaces the test run makes itself. WebRTC chooses its own paths
(ICE), so the harness pins them and this guard checks them:

* ``media_fixtures.ICE_ADDRESSES`` is where hybridcon (``ice_addresses``) and the tests'
  own aiortc peers (``media_fixtures.make_offer``) gather their host candidates.
* :class:`IceGuard` watches every datagram the aiortc peers of this process send
  (aioice's sockets: media and DTLS on the selected candidate pair, connectivity checks
  on every pair) and :meth:`IceGuard.check` fails naming each flow whose source or
  destination is outside the allowed networks. aiortc's ``getStats()`` reports no
  candidate pairs, so the sockets are watched instead: that sees the selected pair
  (it is the one media is sent on) and every other pair that was tried.
* Chromium reports its selected pairs in ``getStats()``; :meth:`IceGuard.check_pairs`
  judges them with the same rule.

``tests/conftest.py`` runs every test inside a guard (:func:`ice_guard` there); the media
benchmark's agents run inside one and report it.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aioice.ice

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


class StrayMedia(AssertionError):
    """WebRTC traffic went to or came from an address outside the allowed networks."""


@dataclass(frozen=True)
class Flow:
    """Datagrams one aiortc peer sent from one address to another."""

    kind: str  # "media" (send_data: DTLS, SRTP on the selected pair) or "ice" (STUN checks)
    source: str  # "address:port"
    destination: str


def _host(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[0].strip("[]")


def _endpoint(address: Any) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class IceGuard:
    """Records where this process's aiortc peers send, and judges it.

    Args:
        allowed: the networks media may use; loopback by default. A namespace fixture
            adds its own with :meth:`allow`.
    """

    def __init__(self, allowed: Sequence[Network] = LOOPBACK) -> None:
        self.allowed: list[Network] = list(allowed)
        self.flows: dict[Flow, int] = {}

    def allow(self, network: Network) -> None:
        """Also accept ``network`` (a namespace the run made itself)."""
        self.allowed.append(network)

    def allows(self, host: str) -> bool:
        """Whether ``host`` (an IP address) is inside an allowed network."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False  # an mDNS name or worse: not a place we chose
        return any(address in network for network in self.allowed)

    def record(self, kind: str, source: Any, destination: Any) -> None:
        """Count one datagram sent from ``source`` to ``destination`` (socket addresses)."""
        flow = Flow(kind, _endpoint(source), _endpoint(destination))
        self.flows[flow] = self.flows.get(flow, 0) + 1

    def stray(self) -> list[str]:
        """One line per flow with an end outside the allowed networks."""
        return [
            f"{flow.kind} from {flow.source} to {flow.destination} ({count} datagrams)"
            for flow, count in sorted(self.flows.items(), key=lambda item: str(item[0]))
            if not (self.allows(_host(flow.source)) and self.allows(_host(flow.destination)))
        ]

    def media_flows(self) -> list[Flow]:
        """The flows that carried media (DTLS/SRTP): the selected pairs."""
        return [flow for flow in self.flows if flow.kind == "media"]

    def check(self) -> None:
        """Raises:
        StrayMedia: some flow left the allowed networks; the message names each.
        """
        stray = self.stray()
        if stray:
            raise StrayMedia(self._message("aiortc peers of this process sent", stray))

    def check_pairs(self, pairs: Iterable[dict[str, Any]], who: str) -> None:
        """Judge another peer's selected candidate pairs (Chromium's ``getStats()``).

        Args:
            pairs: ``{"local": address, "remote": address, ...}`` each.
            who: the peer, for the message.

        Raises:
            StrayMedia: a pair has an end outside the allowed networks.
        """
        stray = [
            f"selected pair {pair['local']} -> {pair['remote']} ({pair.get('peer', '?')})"
            for pair in pairs
            if not (self.allows(str(pair["local"])) and self.allows(str(pair["remote"])))
        ]
        if stray:
            raise StrayMedia(self._message(f"{who} chose", stray))

    def _message(self, what: str, stray: list[str]) -> str:
        allowed = ", ".join(str(n) for n in self.allowed)
        lines = "\n  ".join(stray)
        return (
            f"WebRTC media left loopback and the test's namespaces ({allowed}): {what}\n  {lines}"
        )

    @contextlib.contextmanager
    def watching(self) -> Iterator[IceGuard]:
        """Record every datagram aioice sends while inside; restore aioice after.

        Wraps aioice's ``StunProtocol.send_data`` (the selected pair's media) and
        ``send_stun`` (connectivity checks, on every pair) on the class, so every peer
        of the process is seen, including ones made before the block.
        """
        protocol = aioice.ice.StunProtocol
        send_data, send_stun = protocol.send_data, protocol.send_stun
        guard = self

        async def watched_data(self: Any, data: bytes, addr: tuple[str, int]) -> None:
            guard.record("media", self.transport.get_extra_info("sockname"), addr)
            await send_data(self, data, addr)

        def watched_stun(self: Any, message: Any, addr: tuple[str, int]) -> None:
            guard.record("ice", self.transport.get_extra_info("sockname"), addr)
            send_stun(self, message, addr)

        protocol.send_data = watched_data  # type: ignore[method-assign]
        protocol.send_stun = watched_stun  # type: ignore[method-assign]
        try:
            yield self
        finally:
            protocol.send_data = send_data  # type: ignore[method-assign]
            protocol.send_stun = send_stun  # type: ignore[method-assign]


# Chromium's side: every selected candidate pair of the page's peers (``peers`` is the
# test page's registry of RTCPeerConnections), with the addresses of both ends.
CHROMIUM_SELECTED_PAIRS_JS = """
async function selectedPairs() {
  const pairs = [];
  for (const [name, peer] of Object.entries(peers)) {
    const report = await peer.pc.getStats();
    report.forEach((s) => {
      if (s.type !== "transport" || !s.selectedCandidatePairId) return;
      const pair = report.get(s.selectedCandidatePairId);
      const local = report.get(pair.localCandidateId);
      const remote = report.get(pair.remoteCandidateId);
      pairs.push({peer: name, local: local.address || local.ip, localPort: local.port,
                  remote: remote.address || remote.ip, remotePort: remote.port,
                  bytesSent: pair.bytesSent, bytesReceived: pair.bytesReceived});
    });
  }
  return pairs;
}
"""
