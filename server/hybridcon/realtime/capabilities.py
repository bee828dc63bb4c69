"""The node's realtime capabilities: the one list a new capability is added to.

Each entry is a :class:`~hybridcon.realtime.command.Capability` class made with the
node's narrow side (:class:`~hybridcon.realtime.context.Node`). Its request types, push
types, snapshot part and periodic work all come with it; the order here is the order
of the snapshot's parts. ``subscribe``, ``unsubscribe`` and ``ping``
(:class:`~hybridcon.realtime.topics.Topics`) come with the gateway itself.
"""

from __future__ import annotations

from hybridcon.realtime.captions import Captions
from hybridcon.realtime.chat import Chat
from hybridcon.realtime.command import Capability
from hybridcon.realtime.live import Live
from hybridcon.realtime.networking import Networking
from hybridcon.realtime.polls import Polls
from hybridcon.realtime.presence import Presence
from hybridcon.realtime.qa import Qa
from hybridcon.realtime.reactions import Reactions
from hybridcon.realtime.sessions import Sessions
from hybridcon.realtime.topics import Topics

CAPABILITIES: tuple[type[Capability], ...] = (
    Chat,
    Polls,
    Qa,
    Reactions,
    Presence,
    Captions,
    Live,
    Sessions,
    Networking,
)

EVERY_CAPABILITY: tuple[type[Capability], ...] = (Topics, *CAPABILITIES)
"""With the gateway's own: what the protocol documentation must cover."""
