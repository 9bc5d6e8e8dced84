-- Identity schema (SQLite). Times are UTC microseconds since the epoch; ids are UUIDv7 text.
-- Text compares bytewise (BINARY) by default, so prefix ranges use plain b-tree indexes.

CREATE TABLE principals (
    id                 TEXT PRIMARY KEY,
    realm              TEXT NOT NULL,
    status             TEXT NOT NULL,
    email              TEXT,
    password_hash      TEXT,
    scope              TEXT NOT NULL,
    full_name          TEXT NOT NULL DEFAULT '',
    first_name         TEXT NOT NULL DEFAULT '',
    last_name          TEXT NOT NULL DEFAULT '',
    customer_reference TEXT,
    merchant_id        TEXT,
    merchant_name      TEXT,
    merchant_approval  TEXT,
    client_id          TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE UNIQUE INDEX principals_realm_email ON principals (realm, email) WHERE email IS NOT NULL;
CREATE UNIQUE INDEX principals_customer_reference ON principals (customer_reference)
    WHERE customer_reference IS NOT NULL;
CREATE UNIQUE INDEX principals_client_id ON principals (client_id) WHERE client_id IS NOT NULL;
CREATE INDEX principals_realm_id ON principals (realm, id);

-- One row per searchable string of a principal (email, first, last, "first last", merchant name),
-- lowercased.
CREATE TABLE search_terms (
    realm        TEXT NOT NULL,
    term         TEXT NOT NULL,
    principal_id TEXT NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    PRIMARY KEY (realm, term, principal_id)
) WITHOUT ROWID;
CREATE INDEX search_terms_principal ON search_terms (principal_id);

CREATE TABLE refresh_tokens (
    token_hash   TEXT PRIMARY KEY,
    family_id    TEXT NOT NULL,
    principal_id TEXT NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_principal ON refresh_tokens (principal_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

CREATE TABLE login_throttle (
    key           TEXT PRIMARY KEY,
    failures      BIGINT NOT NULL,
    window_start  BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    -- XChaCha20-Poly1305 under the key-encryption key, base64: nonce || ciphertext.
    private_key   TEXT NOT NULL,
    public_key    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    retired_at    BIGINT,
    publish_until BIGINT
);

CREATE TABLE one_time_tokens (
    token_hash   TEXT PRIMARY KEY,
    principal_id TEXT NOT NULL REFERENCES principals (id) ON DELETE CASCADE,
    purpose      TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT
);
CREATE INDEX one_time_tokens_principal ON one_time_tokens (principal_id, purpose);

CREATE TABLE outbox (
    id         TEXT PRIMARY KEY,
    recipient  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    sent_at    BIGINT,
    attempts   BIGINT NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX outbox_pending ON outbox (sent_at, created_at);
CREATE INDEX outbox_recipient ON outbox (recipient, id);

CREATE TABLE sequences (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO sequences (name, value) VALUES ('customer_reference', 0);
