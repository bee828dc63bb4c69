"""aiohttp routes: REST under /api/v1, health, metrics, JWKS."""
