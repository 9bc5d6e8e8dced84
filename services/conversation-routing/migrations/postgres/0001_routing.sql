-- Conversations, their messages and events, and each agent's open-conversation count (the counter the
-- assignment compare-and-set works on). Times are microseconds since the epoch; booleans are 0/1.

CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    subject TEXT NOT NULL,
    priority BIGINT NOT NULL,
    -- Space-separated, sorted.
    required_skills TEXT NOT NULL,
    status TEXT NOT NULL,
    -- The current assignee (assigned, pending) or the last one (resolved, closed); NULL while never
    -- assigned or queued again.
    assignee_id TEXT,
    requeued BIGINT NOT NULL DEFAULT 0,
    queued_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    assigned_at BIGINT NOT NULL DEFAULT 0,
    first_reply_at BIGINT NOT NULL DEFAULT 0,
    resolved_at BIGINT NOT NULL DEFAULT 0,
    closed_at BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    last_message_at BIGINT NOT NULL DEFAULT 0,
    version BIGINT NOT NULL DEFAULT 1
);

-- The queue, in the order conversations are taken.
CREATE INDEX conversations_queue ON conversations (priority DESC, requeued DESC, queued_at, id)
    WHERE status = 'queued';
CREATE INDEX conversations_assignee ON conversations (assignee_id, status, updated_at);
CREATE INDEX conversations_status ON conversations (status, assignee_id);
CREATE INDEX conversations_customer ON conversations (customer_id, updated_at);
CREATE INDEX conversations_updated ON conversations (updated_at, id);

CREATE TABLE messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    author_kind TEXT NOT NULL,
    author_id TEXT NOT NULL,
    body TEXT NOT NULL,
    internal BIGINT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX messages_of ON messages (conversation_id, at, id);

CREATE TABLE conversation_events (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    kind TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    to_agent_id TEXT NOT NULL DEFAULT '',
    from_agent_id TEXT NOT NULL DEFAULT '',
    capacity_override BIGINT NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    message_id TEXT,
    session_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX conversation_events_of ON conversation_events (conversation_id, at, id);

-- One row per agent routing has seen assignable: how many conversations are open on them (assigned or
-- pending), when they were last assigned one, and how many they were assigned in all.
CREATE TABLE routing_agents (
    agent_id TEXT PRIMARY KEY,
    open_count BIGINT NOT NULL DEFAULT 0,
    last_assigned_at BIGINT NOT NULL DEFAULT 0,
    assignments BIGINT NOT NULL DEFAULT 0
);
