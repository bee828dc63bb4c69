-- Polls and Q&A as built: scale polls, where each vote and question came from (a stage,
-- a session or a hall), per-topic Q&A settings.

ALTER TABLE polls ADD COLUMN scale_max integer NOT NULL DEFAULT 5 CHECK (scale_max IN (5, 10));
ALTER TABLE votes RENAME COLUMN topic TO origin;
ALTER TABLE questions ADD COLUMN origin text NOT NULL DEFAULT '';
ALTER TABLE questions ALTER COLUMN origin DROP DEFAULT;
CREATE INDEX polls_state ON polls (state);

CREATE TABLE qa_settings (
    topic       text PRIMARY KEY,
    moderated   boolean NOT NULL DEFAULT true,
    anonymous   boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL
);
