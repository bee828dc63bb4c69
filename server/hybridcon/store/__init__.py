"""PostgreSQL (asyncpg) and local files: migrations, repositories, the keyset file."""
