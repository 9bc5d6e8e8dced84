-- Agent-directory schema (PostgreSQL). Times are UTC microseconds since the epoch; ids are UUIDv7 text.
-- An agent's id is its back-office principal's id in identity. Console role, status, capacity, seats and
-- presence are later columns of `agents` (added with defaults); skills a table of their own, like
-- `agent_capabilities`.

CREATE TABLE agents (
    id           TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    -- display_name lowercased (Unicode, in the service) and compared bytewise, so both backends list
    -- agents in the same order.
    sort_name    TEXT COLLATE "C" NOT NULL,
    nickname     TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    -- Grows by one with every change; watchers keep the highest they have seen.
    version      BIGINT NOT NULL
);
CREATE INDEX agents_sort_name ON agents (sort_name, id);

CREATE TABLE agent_capabilities (
    agent_id   TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    capability TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, capability)
);
CREATE INDEX agent_capabilities_capability ON agent_capabilities (capability, agent_id);

-- Every change to an agent, with who made it, the changed fields before and after (JSON), and the
-- agent's version after it (which orders one agent's changes exactly).
CREATE TABLE agent_history (
    id          TEXT PRIMARY KEY,
    agent_id    TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    actor_id    TEXT NOT NULL,
    action      TEXT NOT NULL,
    before_json TEXT NOT NULL,
    after_json  TEXT NOT NULL,
    at          BIGINT NOT NULL,
    version     BIGINT NOT NULL
);
CREATE UNIQUE INDEX agent_history_agent_version ON agent_history (agent_id, version);
