//! The audit log of a session is a hash chain: each action's hash covers the previous hash and the
//! action, and the session row keeps the head and the count. A changed row breaks its own hash, a
//! deleted row breaks the numbering or the link, and a deleted tail no longer reaches the head.

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
    /// Hex SHA-256 of the previous hash and this action.
    pub hash: String,
}

/// The head of an empty log: bound to the session id, so logs cannot be swapped between sessions.
pub fn genesis(session_id: &str) -> String {
    hex(&Sha256::digest(format!("assist-audit-v1:{session_id}")))
}

/// The hash of `action` (its `hash` field aside) following `previous`.
pub fn link(previous: &str, action: &Action) -> String {
    // A JSON array is an unambiguous encoding of the fields (no separator can be forged).
    let encoded = serde_json::json!([
        previous,
        action.index,
        action.method,
        action.target,
        action.outcome,
        action.at_us,
        action.recorded_at_us,
    ])
    .to_string();
    hex(&Sha256::digest(encoded))
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
pub struct ChainCheck {
    previous: String,
    next_index: u64,
    broken: Option<(u64, &'static str)>,
}

impl ChainCheck {
    pub fn new(session_id: &str) -> Self {
        Self {
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
        if link(&self.previous, action) != action.hash {
            self.broken = Some((action.index, "hash mismatch"));
            return;
        }
        self.previous = action.hash.clone();
        self.next_index += 1;
    }

    pub fn finish(self, head: &str, count: u64) -> Verdict {
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

    fn chain(session: &str, n: u64) -> (Vec<Action>, String) {
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
                hash: String::new(),
            };
            action.hash = link(&head, &action);
            head = action.hash.clone();
            actions.push(action);
        }
        (actions, head)
    }

    fn check(session: &str, actions: &[Action], head: &str, count: u64) -> Verdict {
        let mut check = ChainCheck::new(session);
        actions.iter().for_each(|a| check.feed(a));
        check.finish(head, count)
    }

    #[test]
    fn an_untouched_chain_is_intact() {
        let (actions, head) = chain("s", 5);
        assert_eq!(
            check("s", &actions, &head, 5),
            Verdict::Intact { checked: 5 }
        );
        assert_eq!(
            check("s", &[], &genesis("s"), 0),
            Verdict::Intact { checked: 0 }
        );
    }

    #[test]
    fn changed_deleted_and_truncated_rows_are_detected() {
        let (mut actions, head) = chain("s", 5);
        actions[2].outcome = "500".into();
        assert!(matches!(
            check("s", &actions, &head, 5),
            Verdict::Broken { at_index: 3, .. }
        ));

        let (mut actions, head) = chain("s", 5);
        actions.remove(1);
        assert!(matches!(
            check("s", &actions, &head, 5),
            Verdict::Broken {
                at_index: 2,
                problem: "missing action",
                ..
            }
        ));

        let (mut actions, head) = chain("s", 5);
        actions.pop();
        assert!(matches!(
            check("s", &actions, &head, 5),
            Verdict::Broken { .. }
        ));

        let (actions, head) = chain("s", 3);
        assert!(matches!(
            check("other", &actions, &head, 3),
            Verdict::Broken { at_index: 1, .. }
        ));
    }
}
