"""Zoom-style rooms' media: the providers behind :class:`hybridcon.core.rooms.RoomProvider`.

``builtin`` carries media in this process with the stage hub's pass-through code;
``janus`` drives a Janus VideoRoom. The session rules (lobby, floor, breakouts) are not
here: they are in :mod:`hybridcon.core.sessions`, carried out by the sessions capability.
"""
