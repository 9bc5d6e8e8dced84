-- Keyed audit chains: each action names the audit key its HMAC was made with, and each session keeps
-- a seal (an HMAC of its id, action count and chain head) that moves on with every append. Actions and
-- sessions recorded before have none, and verify as recorded before keyed chains.
ALTER TABLE assist_actions ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE assist_sessions ADD COLUMN audit_seal TEXT NOT NULL DEFAULT '';
