-- The console (issue 5): console role, membership status, routing settings and presence on `agents`,
-- the licensed seats, and seats reserved while an invitation is being sent. Skills are a column (labels
-- joined by single spaces, sorted) rather than a table: they are only ever read with their agent.
-- Profiles stored before this migration are active agents.

ALTER TABLE agents ADD COLUMN email TEXT NOT NULL DEFAULT '';
-- Lowercased copies of the email and nickname, compared bytewise, for prefix search.
ALTER TABLE agents ADD COLUMN sort_email TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN sort_nickname TEXT NOT NULL DEFAULT '';
-- agent | supervisor | administrator
ALTER TABLE agents ADD COLUMN role TEXT NOT NULL DEFAULT 'agent';
-- invited | active | removed
ALTER TABLE agents ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
ALTER TABLE agents ADD COLUMN capacity BIGINT NOT NULL DEFAULT 5;
ALTER TABLE agents ADD COLUMN skills TEXT NOT NULL DEFAULT '';
-- online | away | offline; the service sets agents offline whose last heartbeat is too old.
ALTER TABLE agents ADD COLUMN presence TEXT NOT NULL DEFAULT 'offline';
ALTER TABLE agents ADD COLUMN last_seen_at BIGINT NOT NULL DEFAULT 0;
-- Invited agents: when the invitation expires (then the seat is free again); 0 otherwise.
ALTER TABLE agents ADD COLUMN invitation_expires_at BIGINT NOT NULL DEFAULT 0;

UPDATE agents SET sort_nickname = lower(nickname);

CREATE INDEX agents_status_presence ON agents (status, presence);
CREATE INDEX agents_sort_email ON agents (sort_email);
CREATE INDEX agents_sort_nickname ON agents (sort_nickname);
-- The presence sweep: agents not offline, by last heartbeat.
CREATE INDEX agents_presence_last_seen ON agents (presence, last_seen_at);

-- The licence: one row. Membership changes lock it, so seat counts and the last-administrator rule are
-- decided one change at a time.
CREATE TABLE seats (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    licensed   BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
INSERT INTO seats (id, licensed, updated_at, updated_by)
    SELECT 1, MAX(25, COUNT(*)), 0, 'operator' FROM agents;

-- A seat held for an invitation between the seat check and the profile being stored (identity creates
-- the user and sends the mail meanwhile). Expired reservations (a crash in between) hold nothing.
CREATE TABLE seat_reservations (
    id         TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
