"""A crowd of WebSocket viewers in a process of its own (the test's event loop would be
the bottleneck otherwise): ``python crowd.py`` reads one JSON line on stdin
``{host, port, src_ip, tokens, topic}``, connects and subscribes every viewer (raw
sockets, as tests/bench/loadgen.py does), prints ``{"ready": n}``, then reads
``chat.message`` frames until a line ``stop`` arrives on stdin (``have KEY...`` asks how many viewers saw
those keys) and prints, as JSON, the
keys (the text up to its first space) seen by any viewer, and per viewer the keys it
lacks and the keys it saw twice; viewers closed by the server are counted."""

from __future__ import annotations

import json
import select
import socket
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loadgen import SetupError, next_frame, open_viewer

MARK = b'"text":"'


def main() -> None:
    config = json.loads(sys.stdin.readline())
    viewers: dict[int, tuple[socket.socket, bytearray, Counter[bytes]]] = {}
    failed: list[str] = []
    for token in config["tokens"]:
        try:
            sock, rest = open_viewer(
                config["host"], config["port"], config["src_ip"], token, config["topic"]
            )
        except (OSError, SetupError) as exc:
            failed.append(f"{type(exc).__name__}: {exc}")
            continue
        viewers[sock.fileno()] = (sock, bytearray(rest), Counter())
    print(json.dumps({"ready": len(viewers), "failed": failed[:3]}), flush=True)
    poller = select.epoll()
    poller.register(sys.stdin.fileno(), select.EPOLLIN)
    for fd in viewers:
        poller.register(fd, select.EPOLLIN)
    closed = 0
    running = True
    while running:
        for fd, _ in poller.poll(0.5):
            if fd == sys.stdin.fileno():
                command = sys.stdin.readline().split()
                if not command or command[0] == "stop":
                    running = False
                    break
                # "have KEY...": how many viewers saw every one of these keys.
                keys = [k.encode() for k in command[1:]]
                have = sum(all(k in seen for k in keys) for _, _, seen in viewers.values())
                print(json.dumps({"have": have}), flush=True)
                continue
            sock, buf, seen = viewers[fd]
            try:
                data = sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                poller.unregister(fd)
                closed += 1
                continue
            buf += data
            pos = 0
            while (frame := next_frame(buf, pos)) is not None:
                opcode, start, end = frame
                pos = end
                if opcode != 0x1:
                    continue
                at = buf.find(MARK, start, end)
                if at >= 0 and buf.find(b'"chat.message"', start, end) >= 0:
                    at += len(MARK)
                    seen[bytes(buf[at : buf.find(b" ", at, end)])] += 1
            del buf[:pos]
    everyone = [seen for _, _, seen in viewers.values()]
    union = set().union(*(set(s) for s in everyone)) if everyone else set()
    result = {
        "connected": len(viewers),
        "closed": closed,
        "union": sorted(k.decode() for k in union),
        "missing": [sorted(k.decode() for k in union - set(s)) for s in everyone],
        "doubled": [sorted(k.decode() for k, n in s.items() if n > 1) for s in everyone],
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
