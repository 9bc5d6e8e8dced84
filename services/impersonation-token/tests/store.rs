//! Store conformance: every scenario runs on SQLite and, when configured, on PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use assist_impersonation_token::domain::audit::{AuditKeys, Verdict};
use assist_impersonation_token::domain::{EndReason, NewSession, TargetRealm};
use assist_impersonation_token::store::{
    MIGRATIONS, NewAction, Recorded, Selection, SessionFilter, Store,
};
use assist_runtime::keys::KeyEncryptionKey;
use assist_runtime::notify::Notice;
use assist_runtime::testing::TestDb;
use assist_runtime::time::now_us;
use assist_runtime::validate::Page;

const HOUR: i64 = 3_600_000_000;

async fn store(db: &TestDb) -> Store {
    let kek = KeyEncryptionKey::from_base64(&KeyEncryptionKey::generate_base64().unwrap()).unwrap();
    Store::new(db.open(&MIGRATIONS).await, Arc::new(AuditKeys::new(&kek)))
}

fn session(agent: &str, target: &str, realm: TargetRealm) -> NewSession {
    let now = now_us();
    NewSession {
        id: uuid::Uuid::now_v7().to_string(),
        agent_id: agent.into(),
        target_id: target.into(),
        target_realm: realm,
        reason: "order help".into(),
        conversation_id: String::new(),
        scope: "assisted customer".into(),
        started_at_us: now,
        expires_at_us: now + 8 * HOUR,
        idle_expires_at_us: now + HOUR / 2,
    }
}

fn action(target: &str) -> NewAction {
    NewAction {
        method: "GET".into(),
        target: target.into(),
        outcome: "200".into(),
        idempotency_key: Some(uuid::Uuid::now_v7().to_string()),
    }
}

#[tokio::test]
async fn a_new_session_replaces_the_agents_open_one() {
    for db in TestDb::all().await {
        let store = store(&db).await;
        let first = session("agent", "c1", TargetRealm::Customer);
        assert!(store.start(&first).await.unwrap().is_empty());
        assert_eq!(
            store.get(&first.id).await.unwrap(),
            Some(first.clone().into_started()),
            "{}: what the service answers without reading back is what is stored",
            db.backend
        );
        let second = session("agent", "c2", TargetRealm::Customer);
        let ended = store.start(&second).await.unwrap();
        assert_eq!(
            ended,
            vec![(first.id.clone(), EndReason::Replaced)],
            "{}",
            db.backend
        );
        let old = store.get(&first.id).await.unwrap().unwrap();
        assert_eq!(old.end_reason, Some(EndReason::Replaced));
        assert_eq!(old.ended_by.as_deref(), Some("agent"));
        assert!(
            store
                .get(&second.id)
                .await
                .unwrap()
                .unwrap()
                .ended_at_us
                .is_none()
        );
        // Another agent's session is untouched.
        let other = session("other", "c1", TargetRealm::Customer);
        assert!(store.start(&other).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn concurrent_starts_of_one_agent_leave_one_open_session() {
    for db in TestDb::all().await {
        let store = store(&db).await;
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let new = session("agent", &format!("c{i}"), TargetRealm::Customer);
                store.start(&new).await.map(|_| ())
            }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let open = store.open_sessions(100).await.unwrap();
        assert_eq!(open.len(), 1, "{}: one open session per agent", db.backend);
        let all = store
            .list(
                &SessionFilter {
                    agent_id: Some("agent".into()),
                    ..Default::default()
                },
                Page::new(100, 0).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(all.total, 8);
    }
}

#[tokio::test]
async fn ending_is_idempotent_and_selective() {
    for db in TestDb::all().await {
        let store = store(&db).await;
        let customer = session("a1", "c1", TargetRealm::Customer);
        let merchant = session("a2", "m1", TargetRealm::MerchantUser);
        let same_target = session("a3", "c1", TargetRealm::Customer);
        for s in [&customer, &merchant, &same_target] {
            store.start(s).await.unwrap();
        }
        let now = now_us();
        let ended = store
            .end(
                Selection::One(&customer.id),
                EndReason::EndedByAgent,
                "a1",
                now,
            )
            .await
            .unwrap();
        assert_eq!(ended.len(), 1);
        let again = store
            .end(
                Selection::One(&customer.id),
                EndReason::EndedByAdmin,
                "admin",
                now + 1,
            )
            .await
            .unwrap();
        assert!(
            again.is_empty(),
            "{}: an ended session stays as it ended",
            db.backend
        );
        let kept = store.get(&customer.id).await.unwrap().unwrap();
        assert_eq!(kept.end_reason, Some(EndReason::EndedByAgent));
        assert_eq!(kept.ended_at_us, Some(now));

        // Revoking the customer capability of a2 leaves its merchant-user session alone.
        let none = store
            .end(
                Selection::OfAgentInRealm("a2", TargetRealm::Customer),
                EndReason::CapabilityRevoked,
                "system",
                now,
            )
            .await
            .unwrap();
        assert!(none.is_empty());
        let by_target = store
            .end(
                Selection::OfTarget("c1"),
                EndReason::TargetBlocked,
                "system",
                now,
            )
            .await
            .unwrap();
        assert_eq!(
            by_target,
            vec![(same_target.id.clone(), EndReason::TargetBlocked)]
        );
    }
}

#[tokio::test]
async fn timed_out_sessions_end_with_their_timeout() {
    for db in TestDb::all().await {
        let store = store(&db).await;
        let mut idle = session("a1", "c1", TargetRealm::Customer);
        idle.idle_expires_at_us = now_us() - 1;
        store.start(&idle).await.unwrap();
        let fresh = session("a2", "c2", TargetRealm::Customer);
        store.start(&fresh).await.unwrap();
        let ended = store
            .end(
                Selection::TimedOut,
                EndReason::IdleTimeout,
                "system",
                now_us(),
            )
            .await
            .unwrap();
        assert_eq!(
            ended,
            vec![(idle.id.clone(), EndReason::IdleTimeout)],
            "{}",
            db.backend
        );

        // Starting after the previous session went idle records the timeout, not a replacement.
        let mut stale = session("a3", "c3", TargetRealm::Customer);
        stale.idle_expires_at_us = now_us() - 1;
        store.start(&stale).await.unwrap();
        let ended = store
            .start(&session("a3", "c4", TargetRealm::Customer))
            .await
            .unwrap();
        assert_eq!(ended, vec![(stale.id.clone(), EndReason::IdleTimeout)]);
        let recorded = store.get(&stale.id).await.unwrap().unwrap();
        assert_eq!(recorded.ended_by.as_deref(), Some("system"));
    }
}

#[tokio::test]
async fn actions_form_a_chain_that_detects_tampering() {
    for db in TestDb::all().await {
        let store = store(&db).await;
        let new = session("a1", "c1", TargetRealm::Customer);
        store.start(&new).await.unwrap();
        let idle = HOUR / 2;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            let id = new.id.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .record_action(&id, &action(&format!("/carts/{i}")), now_us(), idle)
                    .await
                    .map(|recorded| recorded.index().unwrap())
            }));
        }
        let mut indexes: Vec<u64> = Vec::new();
        for task in tasks {
            indexes.push(task.await.unwrap().unwrap());
        }
        indexes.sort_unstable();
        assert_eq!(indexes, (1..=20).collect::<Vec<_>>(), "{}", db.backend);
        let stored = store.get(&new.id).await.unwrap().unwrap();
        assert_eq!(stored.action_count, 20);
        assert!(
            stored.idle_expires_at_us >= new.idle_expires_at_us,
            "use extends the idle deadline"
        );
        assert_eq!(
            store.verify_chain(&stored).await.unwrap(),
            Verdict::Intact { checked: 20 }
        );
        let page = store
            .actions(&new.id, Page::new(5, 5).unwrap())
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|a| a.index).collect::<Vec<_>>(),
            vec![6, 7, 8, 9, 10]
        );

        let pool = &store.database().pool;
        sqlx::query("UPDATE assist_actions SET outcome = '500' WHERE session_id = $1 AND idx = 7")
            .bind(&new.id)
            .execute(pool)
            .await
            .unwrap();
        match store.verify_chain(&stored).await.unwrap() {
            Verdict::Broken { at_index, .. } => assert_eq!(at_index, 7),
            intact => panic!("{}: a changed row went unnoticed: {intact:?}", db.backend),
        }
        sqlx::query("UPDATE assist_actions SET outcome = '200' WHERE session_id = $1 AND idx = 7")
            .bind(&new.id)
            .execute(pool)
            .await
            .unwrap();
        assert!(matches!(
            store.verify_chain(&stored).await.unwrap(),
            Verdict::Intact { .. }
        ));
        sqlx::query("DELETE FROM assist_actions WHERE session_id = $1 AND idx = 20")
            .bind(&new.id)
            .execute(pool)
            .await
            .unwrap();
        assert!(
            matches!(
                store.verify_chain(&stored).await.unwrap(),
                Verdict::Broken { .. }
            ),
            "{}: a deleted last row went unnoticed",
            db.backend
        );
        sqlx::query("DELETE FROM assist_actions WHERE session_id = $1 AND idx = 3")
            .bind(&new.id)
            .execute(pool)
            .await
            .unwrap();
        match store.verify_chain(&stored).await.unwrap() {
            Verdict::Broken {
                at_index, problem, ..
            } => {
                assert_eq!((at_index, problem), (3, "missing action"))
            }
            intact => panic!("a deleted row went unnoticed: {intact:?}"),
        }
    }
}

/// Someone with write access to the database but not the key: an entry hashed the way anyone can
/// (plain SHA-256, the old unkeyed chain), a tail cut off with the head and count rewound to match,
/// and a session's chain moved onto another session are all found. The seal in the session row is what
/// names the head; it moves on with every append.
#[tokio::test]
async fn forged_entries_and_rewound_heads_are_found_without_the_audit_key() {
    use sha2::{Digest, Sha256};
    for db in TestDb::all().await {
        let store = store(&db).await;
        let new = session("a1", "c1", TargetRealm::Customer);
        store.start(&new).await.unwrap();
        for i in 1..=3 {
            store
                .record_action(&new.id, &action(&format!("/carts/{i}")), now_us(), HOUR)
                .await
                .unwrap();
        }
        let stored = store.get(&new.id).await.unwrap().unwrap();
        assert_eq!(
            store.verify_chain(&stored).await.unwrap(),
            Verdict::Intact { checked: 3 },
            "{}",
            db.backend
        );
        let pool = &store.database().pool;
        let (head_2, key_id): (String, String) = sqlx::query_as(
            "SELECT hash, key_id FROM assist_actions WHERE session_id = $1 AND idx = 2",
        )
        .bind(&new.id)
        .fetch_one(pool)
        .await
        .unwrap();

        // The third entry replaced by a forged one, linked and counted as the service would, with
        // an unkeyed hash.
        let forged = hex(&Sha256::digest(format!("{head_2}/nothing-to-see")));
        sqlx::query(
            "UPDATE assist_actions SET target = '/nothing-to-see', hash = $2 \
             WHERE session_id = $1 AND idx = 3",
        )
        .bind(&new.id)
        .bind(&forged)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query("UPDATE assist_sessions SET audit_head = $2 WHERE id = $1")
            .bind(&new.id)
            .bind(&forged)
            .execute(pool)
            .await
            .unwrap();
        assert!(
            matches!(
                store.verify_chain(&stored).await.unwrap(),
                Verdict::Broken {
                    at_index: 3,
                    problem: "hash mismatch",
                    ..
                }
            ),
            "{}: a forged entry went unnoticed",
            db.backend
        );

        // The tail cut off, head and count rewound: every entry left is genuine, the seal is not.
        sqlx::query("DELETE FROM assist_actions WHERE session_id = $1 AND idx = 3")
            .bind(&new.id)
            .execute(pool)
            .await
            .unwrap();
        sqlx::query("UPDATE assist_sessions SET audit_head = $2, action_count = 2 WHERE id = $1")
            .bind(&new.id)
            .bind(&head_2)
            .execute(pool)
            .await
            .unwrap();
        assert_eq!(
            store.verify_chain(&stored).await.unwrap(),
            Verdict::Broken {
                checked: 2,
                at_index: 0,
                problem: "the session's seal does not match its chain",
            },
            "{}: a rewound head went unnoticed",
            db.backend
        );
        // Nor does a seal of another state of the chain help.
        let other = session("a2", "c2", TargetRealm::Customer);
        store.start(&other).await.unwrap();
        let (other_seal,): (String,) =
            sqlx::query_as("SELECT audit_seal FROM assist_sessions WHERE id = $1")
                .bind(&other.id)
                .fetch_one(pool)
                .await
                .unwrap();
        sqlx::query("UPDATE assist_sessions SET audit_seal = $2 WHERE id = $1")
            .bind(&new.id)
            .bind(&other_seal)
            .execute(pool)
            .await
            .unwrap();
        assert!(
            matches!(
                store.verify_chain(&stored).await.unwrap(),
                Verdict::Broken { at_index: 0, .. }
            ),
            "{}",
            db.backend
        );
        assert!(!key_id.is_empty(), "entries name their audit key");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn an_action_of_an_unknown_session_leaves_the_rest_of_its_batch_written() {
    for db in TestDb::all().await {
        let store = store(&db).await;
        let new = session("a1", "c1", TargetRealm::Customer);
        store.start(&new).await.unwrap();
        let unknown = uuid::Uuid::now_v7().to_string();
        let batch = [
            (new.id.clone(), action("/cart")),
            (unknown, action("/cart")),
            (new.id.clone(), action("/orders")),
        ];
        let recorded = store.record_actions(&batch, now_us(), HOUR).await.unwrap();
        assert_eq!(
            recorded,
            [
                Recorded::Appended(1),
                Recorded::NoSuchSession,
                Recorded::Appended(2)
            ],
            "{}",
            db.backend
        );
        let stored = store.get(&new.id).await.unwrap().unwrap();
        assert_eq!(stored.action_count, 2);
        assert_eq!(
            store.verify_chain(&stored).await.unwrap(),
            Verdict::Intact { checked: 2 }
        );
    }
}

/// A retried batch (its first attempt committed, or not) and a key repeated within one batch append
/// each action once, and the chain stays intact: what makes retrying `RecordActions` safe.
#[tokio::test]
async fn an_idempotency_key_is_appended_once_and_keeps_the_chain_intact() {
    for db in TestDb::all().await {
        let store = store(&db).await;
        let new = session("a1", "c1", TargetRealm::Customer);
        store.start(&new).await.unwrap();
        let first = action("/cart");
        let batch = [
            (new.id.clone(), first.clone()),
            (new.id.clone(), action("/orders")),
        ];
        let once = store.record_actions(&batch, now_us(), HOUR).await.unwrap();
        assert_eq!(once, [Recorded::Appended(1), Recorded::Appended(2)]);
        let mut retried = batch.to_vec();
        retried.push((new.id.clone(), action("/later")));
        let again = store
            .record_actions(&retried, now_us(), HOUR)
            .await
            .unwrap();
        assert_eq!(
            again,
            [
                Recorded::AlreadyRecorded(1),
                Recorded::AlreadyRecorded(2),
                Recorded::Appended(3)
            ],
            "{}",
            db.backend
        );
        let repeated = action("/twice");
        let within = [
            (new.id.clone(), repeated.clone()),
            (new.id.clone(), repeated),
        ];
        let within = store.record_actions(&within, now_us(), HOUR).await.unwrap();
        assert_eq!(
            within,
            [Recorded::Appended(4), Recorded::AlreadyRecorded(4)]
        );
        // No key: nothing to recognise a repeat by, so appended each time.
        let keyless = NewAction {
            idempotency_key: None,
            ..action("/keyless")
        };
        let keyless = [(new.id.clone(), keyless.clone()), (new.id.clone(), keyless)];
        let keyless = store
            .record_actions(&keyless, now_us(), HOUR)
            .await
            .unwrap();
        assert_eq!(keyless, [Recorded::Appended(5), Recorded::Appended(6)]);

        let stored = store.get(&new.id).await.unwrap().unwrap();
        assert_eq!(stored.action_count, 6, "{}", db.backend);
        let targets: Vec<String> = store
            .actions(&new.id, Page::new(100, 0).unwrap())
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.target)
            .collect();
        assert_eq!(
            targets,
            [
                "/cart", "/orders", "/later", "/twice", "/keyless", "/keyless"
            ]
        );
        assert_eq!(
            store.verify_chain(&stored).await.unwrap(),
            Verdict::Intact { checked: 6 },
            "{}",
            db.backend
        );
    }
}

#[tokio::test]
async fn lists_filter_and_page() {
    for db in TestDb::all().await {
        let store = store(&db).await;
        let mut ids = Vec::new();
        for i in 0..5 {
            let new = session(
                &format!("a{}", i % 2),
                &format!("c{i}"),
                TargetRealm::Customer,
            );
            store.start(&new).await.unwrap();
            ids.push(new);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let all = store
            .list(&SessionFilter::default(), Page::new(2, 0).unwrap())
            .await
            .unwrap();
        assert_eq!(all.total, 5, "{}", db.backend);
        assert_eq!(all.items.len(), 2);
        assert_eq!(all.items[0].id, ids[4].id, "newest first");
        let a0 = store
            .list(
                &SessionFilter {
                    agent_id: Some("a0".into()),
                    ..Default::default()
                },
                Page::new(10, 0).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(a0.total, 3);
        let active = store
            .list(
                &SessionFilter {
                    agent_id: Some("a0".into()),
                    active_at_us: Some(now_us()),
                    ..Default::default()
                },
                Page::new(10, 0).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(active.total, 1, "the earlier ones were replaced");
        let by_target = store
            .list(
                &SessionFilter {
                    target_id: Some("c2".into()),
                    started_from_us: Some(ids[2].started_at_us),
                    started_before_us: Some(ids[2].started_at_us + 1),
                    ..Default::default()
                },
                Page::new(10, 0).unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(by_target.items.len(), 1);
        assert_eq!(by_target.items[0].id, ids[2].id);
    }
}

#[tokio::test]
async fn every_end_is_announced_after_it_commits() {
    for db in TestDb::all().await {
        let store = store(&db).await;
        let (_trigger, shutdown) = assist_runtime::shutdown::channel();
        store.revocations().listen(shutdown);
        let mut watcher = store.revocations().subscribe().await;
        let new = session("a1", "c1", TargetRealm::Customer);
        store.start(&new).await.unwrap();
        store
            .end(
                Selection::One(&new.id),
                EndReason::EndedByAgent,
                "a1",
                now_us(),
            )
            .await
            .unwrap();
        let notice = tokio::time::timeout(Duration::from_secs(5), watcher.next())
            .await
            .expect("notice arrives");
        assert_eq!(
            notice,
            Notice::Changed(format!("{} ended_by_agent", new.id)),
            "{}",
            db.backend
        );
        // A start that replaces a session announces that end too.
        let replaced = session("a2", "c1", TargetRealm::Customer);
        store.start(&replaced).await.unwrap();
        store
            .start(&session("a2", "c2", TargetRealm::Customer))
            .await
            .unwrap();
        let notice = tokio::time::timeout(Duration::from_secs(5), watcher.next())
            .await
            .expect("notice arrives");
        assert_eq!(notice, Notice::Changed(format!("{} replaced", replaced.id)));
    }
}
