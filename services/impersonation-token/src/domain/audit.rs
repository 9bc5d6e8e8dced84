//! The audit log of a session is a keyed hash chain: each action's hash is an HMAC-SHA256, under an
//! audit key only impersonation-token holds, of the previous hash and the action; the session row
//! keeps the head and the count, and a seal (an HMAC of the session id, count and head) that moves on
//! with every append, so the session's record, also once it has ended, names its chain's head. A
//! changed row breaks its own hash, a deleted row breaks the numbering or the link, a deleted tail no
//! longer reaches the head, and a forged entry, a rewound head or a new seal cannot be computed by a
//! party with database access but without the key.
//!
//! Audit keys are derived from impersonation-token's key-encryption key (never stored) and named by
//! the signing key that was active when they were used, so they rotate with the signing keys while
//! every earlier entry stays verifiable.

use std::sync::RwLock;

use assist_runtime::keys::KeyEncryptionKey;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// 1-based position in the session's log.
    pub index: u64,
    pub method: String,
    pub target: String,
    pub outcome: String,
    pub at_us: i64,
    pub recorded_at_us: i64,
    /// The audit key this action's hash was made with (empty: recorded before keyed chains).
    pub key_id: String,
    /// Hex HMAC-SHA256 of the previous hash and this action.
    pub hash: String,
}

/// The audit keys: derived on demand from one root, the current one named by the active signing key.
pub struct AuditKeys {
    root: [u8; 32],
    current: RwLock<String>,
}

impl AuditKeys {
    pub fn new(kek: &KeyEncryptionKey) -> Self {
        Self {
            root: kek.derive("assist-audit-keys-v2"),
            current: RwLock::new("initial".into()),
        }
    }

    /// New entries and seals use the audit key named `kid` (the active signing key's id).
    pub fn use_key(&self, kid: &str) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = kid.to_owned();
    }

    pub fn current(&self) -> String {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn mac(&self, key_id: &str, message: &str) -> String {
        let mut key = <Hmac<Sha256> as Mac>::new_from_slice(&self.root).expect("any key length");
        key.update(key_id.as_bytes());
        let key = key.finalize().into_bytes();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
        mac.update(message.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// The hash of `action` (its `hash` field aside) following `previous`, under its `key_id`.
    pub fn link(&self, previous: &str, action: &Action) -> String {
        // A JSON array is an unambiguous encoding of the fields (no separator can be forged).
        let encoded = serde_json::json!([
            "assist-audit-v2",
            previous,
            action.index,
            action.method,
            action.target,
            action.outcome,
            action.at_us,
            action.recorded_at_us,
            action.key_id,
        ])
        .to_string();
        self.mac(&action.key_id, &encoded)
    }

    /// The seal of a session's chain state, under the current key: `<key id>:<hex HMAC>`.
    pub fn seal(&self, session_id: &str, count: u64, head: &str) -> String {
        let key_id = self.current();
        let mac = self.mac(&key_id, &seal_message(session_id, count, head));
        format!("{key_id}:{mac}")
    }

    /// Whether `seal` is this session's seal of `count` and `head`.
    pub fn seal_matches(&self, seal: &str, session_id: &str, count: u64, head: &str) -> bool {
        let Some((key_id, mac)) = seal.rsplit_once(':') else {
            return false;
        };
        let expected = self.mac(key_id, &seal_message(session_id, count, head));
        // Both are hex of the same length; compare without an early exit.
        expected.len() == mac.len()
            && expected
                .bytes()
                .zip(mac.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

fn seal_message(session_id: &str, count: u64, head: &str) -> String {
    serde_json::json!(["assist-audit-seal-v2", session_id, count, head]).to_string()
}

/// The head of an empty log: bound to the session id, so logs cannot be swapped between sessions.
pub fn genesis(session_id: &str) -> String {
    hex(&Sha256::digest(format!("assist-audit-v1:{session_id}")))
}

/// What a check of a chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact {
        checked: u64,
    },
    Broken {
        checked: u64,
        /// 0 when only the head or count disagrees.
        at_index: u64,
        problem: &'static str,
    },
}

/// Walks a chain piece by piece (the log may be long); `finish` compares with the session's head.
pub struct ChainCheck<'a> {
    keys: &'a AuditKeys,
    session_id: String,
    previous: String,
    next_index: u64,
    broken: Option<(u64, &'static str)>,
}

impl<'a> ChainCheck<'a> {
    pub fn new(keys: &'a AuditKeys, session_id: &str) -> Self {
        Self {
            keys,
            session_id: session_id.to_owned(),
            previous: genesis(session_id),
            next_index: 1,
            broken: None,
        }
    }

    /// Feeds the next action in index order.
    pub fn feed(&mut self, action: &Action) {
        if self.broken.is_some() {
            return;
        }
        if action.index != self.next_index {
            self.broken = Some((self.next_index, "missing action"));
            return;
        }
        if action.key_id.is_empty() {
            self.broken = Some((action.index, "recorded before keyed audit chains"));
            return;
        }
        if self.keys.link(&self.previous, action) != action.hash {
            self.broken = Some((action.index, "hash mismatch"));
            return;
        }
        self.previous = action.hash.clone();
        self.next_index += 1;
    }

    /// Compares with the session's head, count and seal.
    pub fn finish(self, head: &str, count: u64, seal: &str) -> Verdict {
        let checked = self.next_index - 1;
        match self.broken {
            Some((at_index, problem)) => Verdict::Broken {
                checked,
                at_index,
                problem,
            },
            None if checked != count => Verdict::Broken {
                checked,
                at_index: if checked < count { checked + 1 } else { 0 },
                problem: "action count does not match the session",
            },
            None if self.previous != head => Verdict::Broken {
                checked,
                at_index: 0,
                problem: "chain does not reach the session's head",
            },
            None if !self.keys.seal_matches(seal, &self.session_id, count, head) => {
                Verdict::Broken {
                    checked,
                    at_index: 0,
                    problem: "the session's seal does not match its chain",
                }
            }
            None => Verdict::Intact { checked },
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> AuditKeys {
        let kek = KeyEncryptionKey::from_base64(&KeyEncryptionKey::generate_base64().unwrap());
        AuditKeys::new(&kek.unwrap())
    }

    fn chain(keys: &AuditKeys, session: &str, n: u64) -> (Vec<Action>, String) {
        let mut head = genesis(session);
        let mut actions = Vec::new();
        for index in 1..=n {
            let mut action = Action {
                index,
                method: "GET".into(),
                target: format!("/carts/{index}"),
                outcome: "200".into(),
                at_us: index as i64,
                recorded_at_us: index as i64,
                key_id: keys.current(),
                hash: String::new(),
            };
            action.hash = keys.link(&head, &action);
            head = action.hash.clone();
            actions.push(action);
        }
        (actions, head)
    }

    fn check(
        keys: &AuditKeys,
        session: &str,
        actions: &[Action],
        head: &str,
        count: u64,
    ) -> Verdict {
        let seal = keys.seal(session, count, head);
        let mut check = ChainCheck::new(keys, session);
        actions.iter().for_each(|a| check.feed(a));
        check.finish(head, count, &seal)
    }

    #[test]
    fn an_untouched_chain_is_intact_across_key_rotations() {
        let keys = keys();
        let (mut actions, _) = chain(&keys, "s", 3);
        keys.use_key("rotated");
        let mut head = actions.last().unwrap().hash.clone();
        for index in 4..=5 {
            let mut action = actions[0].clone();
            action.index = index;
            action.key_id = keys.current();
            action.hash = keys.link(&head, &action);
            head = action.hash.clone();
            actions.push(action);
        }
        assert_eq!(
            check(&keys, "s", &actions, &head, 5),
            Verdict::Intact { checked: 5 }
        );
        assert_eq!(
            check(&keys, "s", &[], &genesis("s"), 0),
            Verdict::Intact { checked: 0 }
        );
    }

    #[test]
    fn changed_deleted_and_truncated_rows_are_detected() {
        let keys = keys();
        let (mut actions, head) = chain(&keys, "s", 5);
        actions[2].outcome = "500".into();
        assert!(matches!(
            check(&keys, "s", &actions, &head, 5),
            Verdict::Broken { at_index: 3, .. }
        ));

        let (mut actions, head) = chain(&keys, "s", 5);
        actions.remove(1);
        assert!(matches!(
            check(&keys, "s", &actions, &head, 5),
            Verdict::Broken {
                at_index: 2,
                problem: "missing action",
                ..
            }
        ));

        let (mut actions, head) = chain(&keys, "s", 5);
        actions.pop();
        assert!(matches!(
            check(&keys, "s", &actions, &head, 5),
            Verdict::Broken { .. }
        ));

        let (actions, head) = chain(&keys, "s", 3);
        assert!(matches!(
            check(&keys, "other", &actions, &head, 3),
            Verdict::Broken { at_index: 1, .. }
        ));
    }

    /// Without the key, neither a forged entry (even one hashed the unkeyed way), nor a tail cut off
    /// with the head and count rewound to match, nor a seal of one's own passes.
    #[test]
    fn forged_entries_and_rewound_heads_are_detected_without_the_key() {
        let keys = keys();
        let stranger = self::keys();
        let (actions, head) = chain(&keys, "s", 4);
        let seal = keys.seal("s", 4, &head);

        let mut forged = actions.clone();
        forged[3].target = "/nothing-to-see".into();
        forged[3].hash = stranger.link(&forged[2].hash, &forged[3]);
        let mut check = ChainCheck::new(&keys, "s");
        forged.iter().for_each(|a| check.feed(a));
        assert!(matches!(
            check.finish(&forged[3].hash, 4, &stranger.seal("s", 4, &forged[3].hash)),
            Verdict::Broken {
                at_index: 4,
                problem: "hash mismatch",
                ..
            }
        ));

        // Truncated to three entries, head and count rewound, the old seal kept or a new one made
        // with another key: the seal gives it away.
        for seal in [seal.clone(), stranger.seal("s", 3, &actions[2].hash)] {
            let mut check = ChainCheck::new(&keys, "s");
            actions[..3].iter().for_each(|a| check.feed(a));
            assert_eq!(
                check.finish(&actions[2].hash, 3, &seal),
                Verdict::Broken {
                    checked: 3,
                    at_index: 0,
                    problem: "the session's seal does not match its chain",
                }
            );
        }

        let mut legacy = actions.clone();
        legacy[0].key_id = String::new();
        let mut check = ChainCheck::new(&keys, "s");
        legacy.iter().for_each(|a| check.feed(a));
        assert!(matches!(
            check.finish(&head, 4, &seal),
            Verdict::Broken { at_index: 1, .. }
        ));
    }
}
