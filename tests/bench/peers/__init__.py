"""The peers of the fan-out benchmark: other servers relaying the same chat lines.

Each speaks the bare protocol of :mod:`tests.bench.baseline_server` (the first frame gets
``auth.ok``; ``subscribe`` gets a result; ``chat.send`` becomes one ``chat.message``,
serialised once and sent to every subscriber, and a result to the sender), prints
``listening on PORT`` and stops on SIGTERM:

* ``ws-relay.mjs``: Node with the ``ws`` package (pinned by ``package-lock.json`` here,
  installed by ``make bench-deps``);
* :mod:`tests.bench.peers.websockets_relay`: ``websockets.broadcast``;
* :mod:`tests.bench.peers.socketio_relay`: ``python-socketio`` on aiohttp, the same
  messages as Socket.IO events (Engine.IO v4 framing, which the load generator speaks
  through its ``socketio`` wire).
"""
