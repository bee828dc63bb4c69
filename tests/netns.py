"""A network namespace of the test run's own, for peers that cannot keep to loopback.

Chromium gathers ICE candidates on every interface it sees (loopback only as an extra,
with ``--allow-loopback-in-peer-connection``) and has no switch to leave the others
out, so on the host it would offer, and try, the machine's external addresses. Run
inside :func:`namespace`, it sees one interface: its end of a veth pair whose other end
is in the host's namespace, with addresses of the run's own from 198.18.0.0/15 (the
range RFC 2544 sets aside for benchmark networks). hybridcon, in the test process,
answers on the host end (``ice_addresses``), so media goes from one end of the pair to
the other and nowhere else. IPv6 is off on both ends (no link-local addresses).

Needs root and iproute2 (``make system-deps``); :func:`unavailable` says why not.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

# RFC 2544's benchmarking range: no real network uses it.
RANGE = ipaddress.ip_network("198.18.0.0/15")


@dataclass(frozen=True)
class Namespace:
    """A namespace and the veth pair into it.

    Attributes:
        name: the namespace (``ip netns``).
        host_interface: the pair's end in the host's namespace.
        host_address: that end's address (hybridcon's side).
        address: the address inside the namespace (the peer's side).
        network: the /30 both are in.
    """

    name: str
    host_interface: str
    host_address: str
    address: str
    network: ipaddress.IPv4Network

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root to make a network namespace"
    if shutil.which("ip") is None:
        return "needs iproute2 (make system-deps)"
    return None


def _ip(*argv: str) -> None:
    result = subprocess.run(["ip", *argv], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {result.stderr.strip()}")


def _used_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    out = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout
    return [
        ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}").network
        for link in json.loads(out)
        for a in link.get("addr_info", [])
    ]


def _free_network() -> ipaddress.IPv4Network:
    used = _used_networks()
    for _ in range(100):
        offset = random.randrange(RANGE.num_addresses // 4) * 4
        candidate = ipaddress.ip_network(f"{RANGE.network_address + offset}/30")
        if not any(candidate.overlaps(n) for n in used):
            return candidate  # type: ignore[return-value]
    raise RuntimeError(f"no free /30 in {RANGE}")


@contextlib.contextmanager
def namespace() -> Iterator[Namespace]:
    """Make a namespace with a veth pair into it; delete both afterwards.

    Raises:
        RuntimeError: an ``ip`` command failed (the message has its error).
    """
    tag = f"{os.getpid() % 10000:04d}{random.randrange(16**3):03x}"
    network = _free_network()
    host_address, address = (str(a) for a in list(network.hosts())[:2])
    ns = Namespace(f"hybridcon-test-{tag}", f"hc{tag}h", host_address, address, network)
    inside = f"hc{tag}n"
    _ip("netns", "add", ns.name)
    try:
        _ip("link", "add", ns.host_interface, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", ns.name)
        # No IPv6 link-local addresses: nothing but the /30 is there to gather on.
        _ip("link", "set", ns.host_interface, "addrgenmode", "none")
        _ip("addr", "add", f"{host_address}/30", "dev", ns.host_interface)
        _ip("link", "set", ns.host_interface, "up")
        _ip("-n", ns.name, "link", "set", inside, "addrgenmode", "none")
        _ip("-n", ns.name, "addr", "add", f"{address}/30", "dev", inside)
        _ip("-n", ns.name, "link", "set", inside, "up")
        _ip("-n", ns.name, "link", "set", "lo", "up")
        yield ns
    finally:
        # Deleting the namespace deletes its end of the pair, and with it the other.
        with contextlib.suppress(RuntimeError):
            _ip("netns", "del", ns.name)
        with contextlib.suppress(RuntimeError):
            _ip("link", "del", ns.host_interface)
