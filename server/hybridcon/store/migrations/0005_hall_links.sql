-- Hall participation: a link (and its QR code) per room lets people on site vote and ask
-- from their phones without registering. Only the code's hash is stored.
CREATE TABLE hall_links (
    link_id     uuid PRIMARY KEY,
    stage       text NOT NULL,
    code_hash   bytea NOT NULL UNIQUE,
    salt        bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    valid_until timestamptz NOT NULL,
    revoked_at  timestamptz
);
