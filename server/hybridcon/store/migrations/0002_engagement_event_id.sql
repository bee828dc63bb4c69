-- A client-made id per engagement event, so a batch sent twice (replayed from the
-- writer's spool after PostgreSQL came back, or retried after a lost commit
-- acknowledgement) is stored once: inserts say ON CONFLICT (event_id) DO NOTHING.
--
-- engagement_events is append-only: its trigger refuses UPDATE, so existing rows cannot
-- be given an id by an UPDATE. ADD COLUMN with a volatile default fills every existing
-- row during the table rewrite instead (no row trigger fires); the default is then
-- dropped because every writer must bring its own id.
ALTER TABLE engagement_events ADD COLUMN event_id uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE engagement_events ALTER COLUMN event_id DROP DEFAULT;
ALTER TABLE engagement_events
    ADD CONSTRAINT engagement_events_event_id_key UNIQUE (event_id);
