"""The WebSocket gateway: auth, connections, topics, fan-out."""
