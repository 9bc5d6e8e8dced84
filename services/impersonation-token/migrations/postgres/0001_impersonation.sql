-- Assist sessions, their hash-chained action logs, and the service's own signing keys.

CREATE TABLE assist_sessions (
    id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    target_realm TEXT NOT NULL,
    reason TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    idle_expires_at BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT,
    ended_by TEXT,
    action_count BIGINT NOT NULL DEFAULT 0,
    audit_head TEXT NOT NULL
);

-- One session per agent that is not ended yet: the database enforces "one active session per agent".
CREATE UNIQUE INDEX assist_sessions_open_per_agent ON assist_sessions (agent_id) WHERE ended_at IS NULL;
CREATE INDEX assist_sessions_open_target ON assist_sessions (target_id) WHERE ended_at IS NULL;
CREATE INDEX assist_sessions_agent ON assist_sessions (agent_id, started_at DESC, id DESC);
CREATE INDEX assist_sessions_target ON assist_sessions (target_id, started_at DESC, id DESC);
CREATE INDEX assist_sessions_started ON assist_sessions (started_at DESC, id DESC);

CREATE TABLE assist_actions (
    session_id TEXT NOT NULL REFERENCES assist_sessions (id),
    idx BIGINT NOT NULL,
    method TEXT NOT NULL,
    target TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (session_id, idx)
);

CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    private_key TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    retired_at BIGINT,
    publish_until BIGINT
);
