"""Media: the stage hubs (pass-through ingest and fan-out) and their WebRTC peers.

hybridcon never transcodes video. A publisher's WHIP connection feeds a
:class:`~hybridcon.media.hub.StageHub` through the pass-through seam in
:mod:`hybridcon.media.passthrough`; WHEP viewers, the HLS packager and the recorder
read the hub's packets as they arrived.
"""
