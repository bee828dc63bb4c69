-- Chat moderation state that must survive a restart: per-topic settings, sanctions,
-- and reports of messages by attendees. Moderator actions themselves go to audit_log.

CREATE TABLE chat_rooms (
    topic       text PRIMARY KEY,
    slowmode    integer NOT NULL DEFAULT 0 CHECK (slowmode BETWEEN 0 AND 600),
    hold_first  boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    updated_by  text NOT NULL
);

CREATE TABLE chat_sanctions (
    topic       text NOT NULL,
    user_id     text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('ban', 'timeout')),
    until       timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    PRIMARY KEY (topic, user_id, kind)
);

CREATE TABLE chat_reports (
    id          bigserial PRIMARY KEY,
    topic       text NOT NULL,
    msg_id      text NOT NULL REFERENCES chat_messages (msg_id),
    reporter    text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    ts          timestamptz NOT NULL,
    UNIQUE (msg_id, reporter)
);

-- A held line has no seq until a moderator releases it onto the topic.
ALTER TABLE chat_messages ALTER COLUMN seq DROP NOT NULL;
CREATE INDEX chat_messages_topic_seq ON chat_messages (topic, seq DESC);
