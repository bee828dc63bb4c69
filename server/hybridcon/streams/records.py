"""Which node holds a stage's publisher, and the stage's stream as every node shows it.

A stage has at most one publisher across the nodes. On one node (:class:`LocalRecords`)
the node's own cap decides and nothing is shared. Over Redis (:class:`RedisRecords`)
each streamed stage has one hash, ``hc:{stage:<id>}:stream``:

- ``node``: the id of the node that holds the stage's publisher (or is answering a WHIP
  offer for it); empty once it let go;
- ``url``: that node's own reachable URL (``HYBRIDCON_NODE_URL``), empty when it has
  none of its own (WHEP elsewhere is then refused, not redirected);
- ``state`` and ``hls``: the stream's state and whether its HLS playlist has a segment,
  written by the holder before it pushes each change, and kept after it let go (an ended
  or interrupted stage stays so on every node).

The claim is leased through the node's lease the viewer counts already keep
(``hc:nodes``, see :mod:`hybridcon.realtime.viewers`: a score per node, when it counts as
gone, renewed every second): a claim by a node that is no longer among the live nodes is
void, so a dead node's stage can be published elsewhere within that lease (5 s). Taking
a stage and writing its record are one Lua script on the stage's key (one slot in a
cluster): it refuses when another node holds it, unless that is the dead holder the
caller has just seen.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis

from hybridcon.core.streams import StreamState

# KEYS[1]: the stage's record. ARGV[1]: this node; ARGV[2]: a holder that may be replaced
# (a dead one, or ""); ARGV[3]: the holder to write (this node, or "" to let go);
# ARGV[4...]: field, value pairs. Returns "" when written, else the holder that stays.
_WRITE = """
local holder = redis.call('HGET', KEYS[1], 'node')
if holder and holder ~= '' and holder ~= ARGV[1] and holder ~= ARGV[2] then
  return holder
end
redis.call('HSET', KEYS[1], 'node', ARGV[3], unpack(ARGV, 4))
return ''
"""


def record_key(stage_id: str) -> str:
    """The Redis key of a stage's record."""
    return "hc:{stage:" + stage_id + "}:stream"


@dataclass(frozen=True, slots=True)
class StageRecord:
    """A stage's stream as the node that holds (or last held) it wrote it."""

    state: StreamState
    hls: bool  # its HLS playlist has a segment
    holder: str  # the node holding its publisher ("" none)
    url: str  # that node's own URL ("" none of its own)
    holder_alive: bool  # the holder is among the live nodes
    mine: bool = False  # the holder is the node that read the record

    @property
    def held(self) -> bool:
        """A live node holds the stage's publisher."""
        return bool(self.holder) and self.holder_alive

    @property
    def held_elsewhere(self) -> bool:
        """A live node other than the reader holds the stage's publisher."""
        return self.held and not self.mine

    @property
    def shown_state(self) -> StreamState:
        """What other nodes show: a live stage whose holder died is interrupted."""
        if self.state is StreamState.LIVE and self.holder and not self.holder_alive:
            return StreamState.INTERRUPTED
        return self.state


@dataclass(frozen=True, slots=True)
class Claim:
    """What a claim found: ``taken`` by this node, or not (``record`` then names the live
    node that holds the stage); ``record``, when taken, is the stage's record before."""

    taken: bool
    record: StageRecord | None


class StageRecords(Protocol):
    """Where the nodes agree on each stage's holder and stream."""

    @property
    def shared(self) -> bool:
        """Whether other nodes exist to share with (False: one node)."""

    async def claim(self, stage_id: str, url: str) -> Claim:
        """Take the stage for this node (its record's stream fields stay).

        Returns:
            Whether this node holds it now, and the record as it was.

        Raises:
            RedisError, OSError: the claim could not be checked now.
        """

    async def write(self, stage_id: str, fields: Mapping[str, str], *, hold: bool) -> str:
        """Write this node's record of the stage, holding it (``hold``) or letting go.

        Returns:
            "" when written; else the id of another node that holds the stage.

        Raises:
            RedisError, OSError: not written.
        """

    async def read(self, stage_id: str) -> StageRecord | None:
        """The stage's record (None: none yet).

        Raises:
            RedisError, OSError: not read.
        """


class LocalRecords:
    """One node: it holds whatever it publishes; nothing to share or read."""

    shared = False

    async def claim(self, stage_id: str, url: str) -> Claim:
        """Always this node's."""
        return Claim(taken=True, record=None)

    async def write(self, stage_id: str, fields: Mapping[str, str], *, hold: bool) -> str:
        """Nothing to write."""
        return ""

    async def read(self, stage_id: str) -> StageRecord | None:
        """No records."""
        return None


class RedisRecords:
    """Stage records in Redis, claims leased by the node lease (see the module's docstring).

    Args:
        redis: the bus's client.
        node_id: this node's id (its member in ``nodes_key``).
        nodes_key: the sorted set of live nodes (score: when each counts as gone).
    """

    shared = True

    def __init__(self, redis: aioredis.Redis, node_id: str, nodes_key: str) -> None:
        self._redis = redis
        self._node = node_id
        self._nodes_key = nodes_key
        self._script = redis.register_script(_WRITE)

    async def read(self, stage_id: str) -> StageRecord | None:
        """The record, with whether its holder is alive (one round trip)."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(record_key(stage_id))
        pipe.zrangebyscore(self._nodes_key, time.time(), "+inf")
        fields, live = await pipe.execute()
        if not fields:
            return None
        data = {k.decode(): v.decode() for k, v in fields.items()}
        holder = data.get("node", "")
        try:
            state = StreamState(data.get("state", StreamState.SCHEDULED.value))
        except ValueError:
            state = StreamState.SCHEDULED
        return StageRecord(
            state=state,
            hls=data.get("hls") == "1",
            holder=holder,
            url=data.get("url", ""),
            holder_alive=holder == self._node or holder.encode() in set(live),
            mine=holder == self._node,
        )

    async def claim(self, stage_id: str, url: str) -> Claim:
        """Take the stage unless a live node other than this one holds it."""
        record = await self.read(stage_id)
        replaceable = ""
        if record is not None and record.holder and record.holder != self._node:
            if record.holder_alive:
                return Claim(taken=False, record=record)
            replaceable = record.holder  # a dead node's claim
        holder = await self._run(stage_id, replaceable, self._node, {"url": url})
        if not holder:
            return Claim(taken=True, record=record)
        # Another node took it between the read and the script.
        again = await self.read(stage_id)
        if again is None or again.holder != holder:
            again = StageRecord(StreamState.SCHEDULED, False, holder, "", holder_alive=True)
        return Claim(taken=False, record=again)

    async def write(self, stage_id: str, fields: Mapping[str, str], *, hold: bool) -> str:
        """Write the record while this node holds the stage or nobody does."""
        return await self._run(stage_id, "", self._node if hold else "", fields)

    async def _run(
        self, stage_id: str, replaceable: str, holder: str, fields: Mapping[str, str]
    ) -> str:
        args = [self._node, replaceable, holder]
        for name, value in fields.items():
            args += [name, value]
        result = await self._script(keys=[record_key(stage_id)], args=args)
        return result.decode() if isinstance(result, bytes) else str(result or "")
