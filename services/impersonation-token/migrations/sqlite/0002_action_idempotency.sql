-- The idempotency key a recorder gives each action and sends again when it retries a batch: an
-- action whose key its session's log already holds is not appended again, so a retry never puts an
-- entry into the hash chain twice. Earlier actions have none (NULLs never collide).
ALTER TABLE assist_actions ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX assist_actions_idempotency ON assist_actions (session_id, idempotency_key);
