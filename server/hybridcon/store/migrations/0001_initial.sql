-- hybridcon's first schema: the programme, access (invites, revocations), the audit log,
-- the interaction tables (chat, polls, votes, questions) and the append-only engagement log.
-- Later migrations add to this file's tables; they never edit this file.

CREATE TABLE programme_documents (
    event_id    text PRIMARY KEY,
    document    jsonb NOT NULL,
    source      text NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stages (
    id          text PRIMARY KEY,
    event_id    text NOT NULL REFERENCES programme_documents (event_id) ON DELETE CASCADE,
    title       text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('stream', 'radio', 'film')),
    theme       text
);

CREATE TABLE sessions (
    id          text PRIMARY KEY,
    event_id    text NOT NULL REFERENCES programme_documents (event_id) ON DELETE CASCADE,
    title       text NOT NULL,
    kind        text NOT NULL,
    stage       text,
    theme       text,
    online      text NOT NULL CHECK (online IN ('stream', 'room', 'none')),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
    location    text,
    capacity    integer
);

-- Single-use invite codes from a ticketing export. The code itself is not stored:
-- it is derived from a server secret and the row's salt (so `invites export` can
-- print it again), and looked up by its hash.
CREATE TABLE invites (
    id              uuid PRIMARY KEY,
    ticket_id       text NOT NULL UNIQUE,
    code_hash       bytea NOT NULL UNIQUE,
    salt            bytea NOT NULL,
    name            text NOT NULL,
    email           text,
    role            text NOT NULL,
    scopes          text[] NOT NULL,
    valid_until     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    redeemed_at     timestamptz,
    device_hash     bytea,
    redeem_count    integer NOT NULL DEFAULT 0
);

CREATE TABLE revocations (
    jti         text PRIMARY KEY,
    revoked_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    reason      text NOT NULL DEFAULT '',
    revoked_by  text NOT NULL
);
CREATE INDEX revocations_expires_at ON revocations (expires_at);

-- Who did what to whom: organiser actions, moderation, identified exports.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    ts          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    actor_role  text NOT NULL,
    action      text NOT NULL,
    target      text,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_ts ON audit_log (ts);

CREATE TABLE chat_messages (
    msg_id       text PRIMARY KEY,
    topic        text NOT NULL,
    seq          bigint NOT NULL,
    author_id    text NOT NULL,
    author_name  text NOT NULL,
    author_role  text NOT NULL,
    text         text NOT NULL,
    ts           timestamptz NOT NULL,
    held         boolean NOT NULL DEFAULT false,
    deleted_at   timestamptz,
    deleted_by   text,
    UNIQUE (topic, seq)
);

CREATE TABLE polls (
    poll_id             uuid PRIMARY KEY,
    topics              text[] NOT NULL,
    question            text NOT NULL,
    kind                text NOT NULL CHECK (kind IN ('single', 'multi', 'scale', 'wordcloud', 'open')),
    options             jsonb NOT NULL DEFAULT '[]'::jsonb,
    state               text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'open', 'closed')),
    results_visibility  text NOT NULL DEFAULT 'live' CHECK (results_visibility IN ('live', 'after_close', 'never')),
    allow_change        boolean NOT NULL DEFAULT false,
    opens_at            timestamptz,
    created_by          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    opened_at           timestamptz,
    closed_at           timestamptz
);

-- One vote per person per poll: the primary key makes retries and second devices no-ops.
CREATE TABLE votes (
    poll_id     uuid NOT NULL REFERENCES polls (poll_id) ON DELETE CASCADE,
    voter       text NOT NULL,
    choice      jsonb NOT NULL,
    topic       text NOT NULL,
    cast_at     timestamptz NOT NULL,
    PRIMARY KEY (poll_id, voter)
);

CREATE TABLE questions (
    question_id  uuid PRIMARY KEY,
    topic        text NOT NULL,
    author_id    text NOT NULL,
    author_name  text,
    anonymous    boolean NOT NULL DEFAULT false,
    text         text NOT NULL,
    state        text NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'approved', 'answered', 'dismissed', 'merged')),
    upvotes      integer NOT NULL DEFAULT 0,
    merged_into  uuid REFERENCES questions (question_id),
    created_at   timestamptz NOT NULL
);
CREATE INDEX questions_topic ON questions (topic, state);

CREATE TABLE question_upvotes (
    question_id  uuid NOT NULL REFERENCES questions (question_id) ON DELETE CASCADE,
    voter        text NOT NULL,
    ts           timestamptz NOT NULL,
    PRIMARY KEY (question_id, voter)
);

-- The engagement log behind the report: append-only, written in batches by one writer.
-- `actor` is a keyed hash of the token subject, never the raw id.
CREATE TABLE engagement_events (
    id      bigserial PRIMARY KEY,
    ts      timestamptz NOT NULL,
    kind    text NOT NULL,
    actor   text,
    topic   text,
    data    jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX engagement_events_kind_ts ON engagement_events (kind, ts);
CREATE INDEX engagement_events_topic_ts ON engagement_events (topic, ts);

CREATE FUNCTION engagement_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'engagement_events is append-only';
END $$;
CREATE TRIGGER engagement_events_no_update BEFORE UPDATE OR DELETE ON engagement_events
    FOR EACH ROW EXECUTE FUNCTION engagement_events_append_only();
