"""The pure domain: no asyncio, no sockets, no database. Functions take state and ``now``."""
