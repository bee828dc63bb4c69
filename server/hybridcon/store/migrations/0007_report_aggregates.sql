-- The report after a purge (docs/report-definitions.md, R20): `hybridcon purge` keeps
-- each whole day's report aggregates here, then deletes that day's raw engagement rows.
CREATE TABLE report_aggregates (
    day         date PRIMARY KEY,
    range_from  timestamptz NOT NULL,
    range_to    timestamptz NOT NULL CHECK (range_to > range_from),
    version     integer NOT NULL,
    aggregates  jsonb NOT NULL,
    rows_purged bigint NOT NULL,
    purged_at   timestamptz NOT NULL DEFAULT now()
);

-- engagement_events stays append-only for everyone but the purge: a transaction that
-- sets hybridcon.purge to 'on' (SET LOCAL, only `hybridcon purge` does) may DELETE.
-- UPDATE is refused always.
CREATE OR REPLACE FUNCTION engagement_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('hybridcon.purge', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'engagement_events is append-only';
END $$;
