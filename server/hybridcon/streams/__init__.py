"""Livestreams: each stage's publisher, outputs, viewers, state and health."""
