-- Open polls: the answers a moderator put on the wall, in the order they were shown.
ALTER TABLE votes ADD COLUMN shown_at timestamptz;
