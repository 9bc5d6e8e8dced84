//! Store conformance: the same scenarios against SQLite and PostgreSQL.

mod common;

use assist_identity::domain::keys::{self, KeyEncryptionKey};
use assist_identity::domain::throttle::ThrottlePolicy;
use assist_identity::domain::{
    MerchantApproval, NewPrincipal, Principal, PrincipalKind, Purpose, Status,
};
use assist_identity::service::terms_of;
use assist_identity::store::{
    OneTimeToken, OutboxMessage, Rotation, SearchQuery, Store, ThrottleState,
};
use assist_runtime::auth::Realm;
use assist_runtime::validate::Page;
use common::TestDb;
use std::time::Duration;

fn customer(n: u32, first: &str, last: &str) -> NewPrincipal {
    let id = uuid::Uuid::now_v7().to_string();
    NewPrincipal {
        principal: Principal {
            id,
            status: Status::Active,
            email: format!(
                "{}.{}{n}@example.com",
                first.to_lowercase(),
                last.to_lowercase()
            ),
            scope: "customer".into(),
            kind: PrincipalKind::Customer {
                customer_reference: format!("DE--{n}"),
                first_name: first.into(),
                last_name: last.into(),
            },
            created_at_us: 1,
            updated_at_us: 1,
        },
        password_hash: Some("$argon2id$fake".into()),
    }
}

fn merchant_user(n: u32, merchant: &str, first: &str, status: Status) -> NewPrincipal {
    NewPrincipal {
        principal: Principal {
            id: uuid::Uuid::now_v7().to_string(),
            status,
            email: format!(
                "{}{n}@{}.example",
                first.to_lowercase(),
                merchant.to_lowercase()
            ),
            scope: "merchant_user".into(),
            kind: PrincipalKind::MerchantUser {
                merchant_id: format!("MER{n}"),
                merchant_name: merchant.into(),
                merchant_approval: MerchantApproval::Approved,
                first_name: first.into(),
                last_name: "Doe".into(),
            },
            created_at_us: 1,
            updated_at_us: 1,
        },
        password_hash: None,
    }
}

async fn add(store: &Store, new: NewPrincipal) -> Principal {
    let terms = terms_of(&new.principal);
    store.create_principal(&new, &terms).await.unwrap();
    new.principal
}

fn page(limit: u32, offset: u64) -> Page {
    Page::new(limit, offset).unwrap()
}

async fn for_each_backend<F, Fut>(scenario: F)
where
    F: Fn(Store, &'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for db in TestDb::all().await {
        let store = common::store(&db).await;
        scenario(store, db.backend).await;
    }
}

#[tokio::test]
async fn principals_round_trip_and_emails_are_unique_per_realm() {
    for_each_backend(|store, backend| async move {
        let ann = add(&store, customer(1, "Ann", "Lee")).await;
        assert_eq!(
            store.get_principal(&ann.id).await.unwrap().as_ref(),
            Some(&ann),
            "{backend}"
        );
        let (found, hash) = store
            .find_login(Realm::Customer, &ann.email)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, ann.id);
        assert_eq!(hash.as_deref(), Some("$argon2id$fake"));
        assert!(
            store
                .find_login(Realm::BackOffice, &ann.email)
                .await
                .unwrap()
                .is_none(),
            "realms are apart"
        );

        let mut twin = customer(2, "Ann", "Lee");
        twin.principal.email = ann.email.clone();
        let err = store.create_principal(&twin, &[]).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::AlreadyExists, "{backend}");

        let mut same_ref = customer(3, "Bob", "Ray");
        same_ref.principal.kind = PrincipalKind::Customer {
            customer_reference: "DE--1".into(),
            first_name: "Bob".into(),
            last_name: "Ray".into(),
        };
        assert_eq!(
            store
                .create_principal(&same_ref, &[])
                .await
                .unwrap_err()
                .code(),
            tonic::Code::AlreadyExists
        );
        // Nothing of the refused principal was written.
        assert!(
            store
                .get_principal(&same_ref.principal.id)
                .await
                .unwrap()
                .is_none()
        );
    })
    .await;
}

#[tokio::test]
async fn search_by_prefix_reference_paging_and_stable_order() {
    for_each_backend(|store, backend| async move {
        let ann = add(&store, customer(1, "Ann", "Lee")).await;
        let anna = add(&store, customer(2, "Anna", "Berg")).await;
        let _bob = add(&store, customer(3, "Bob", "Annex")).await;
        let _carl = add(&store, customer(4, "Carl", "Moss")).await;
        let q = |prefix: &'static str, p: Page| SearchQuery {
            prefix,
            reference: None,
            status: None,
            page: p,
        };

        let hits = store
            .search(Realm::Customer, &q("ann", page(10, 0)))
            .await
            .unwrap();
        assert_eq!(hits.total, 3, "{backend}: first names and last name Annex");
        assert!(hits.total_exact);
        let names: Vec<_> = hits.items.iter().map(|p| p.display_name()).collect();
        assert_eq!(
            names,
            ["Ann Lee", "Anna Berg", "Bob Annex"],
            "{backend}: ordered by matching term"
        );

        let full = store
            .search(Realm::Customer, &q("ann lee", page(10, 0)))
            .await
            .unwrap();
        assert_eq!(full.items.len(), 1);
        assert_eq!(full.items[0].id, ann.id);

        let by_email = store
            .search(Realm::Customer, &q("anna.berg", page(10, 0)))
            .await
            .unwrap();
        assert_eq!(by_email.items[0].id, anna.id);

        // Paging: disjoint pages in the same order as the whole list.
        let first = store
            .search(Realm::Customer, &q("ann", page(2, 0)))
            .await
            .unwrap();
        let second = store
            .search(Realm::Customer, &q("ann", page(2, 2)))
            .await
            .unwrap();
        assert_eq!(first.items.len(), 2);
        assert_eq!(second.items.len(), 1);
        assert_eq!(second.items[0].display_name(), "Bob Annex");
        assert_eq!(second.total, 3);

        // An exact reference comes first, even when no term matches.
        let by_ref = store
            .search(
                Realm::Customer,
                &SearchQuery {
                    prefix: "de--4",
                    reference: Some("DE--4"),
                    status: None,
                    page: page(10, 0),
                },
            )
            .await
            .unwrap();
        assert_eq!(by_ref.items.len(), 1, "{backend}");
        assert_eq!(by_ref.items[0].display_name(), "Carl Moss");
        assert_eq!(by_ref.total, 1);

        // No query lists everyone.
        assert_eq!(
            store
                .search(Realm::Customer, &q("", page(10, 0)))
                .await
                .unwrap()
                .total,
            4
        );
        assert_eq!(
            store
                .search(Realm::Customer, &q("zed", page(10, 0)))
                .await
                .unwrap()
                .total,
            0
        );
    })
    .await;
}

#[tokio::test]
async fn merchant_users_by_merchant_name_with_status_filter() {
    for_each_backend(|store, backend| async move {
        add(&store, merchant_user(1, "Spryker", "Ann", Status::Active)).await;
        add(&store, merchant_user(2, "Spryker", "Ben", Status::Inactive)).await;
        add(&store, merchant_user(3, "Sony", "Cid", Status::Active)).await;
        let all = store
            .search(
                Realm::MerchantUser,
                &SearchQuery {
                    prefix: "spr",
                    reference: None,
                    status: None,
                    page: page(10, 0),
                },
            )
            .await
            .unwrap();
        assert_eq!(all.total, 2, "{backend}");
        let active = store
            .search(
                Realm::MerchantUser,
                &SearchQuery {
                    prefix: "spr",
                    reference: None,
                    status: Some(Status::Active),
                    page: page(10, 0),
                },
            )
            .await
            .unwrap();
        assert_eq!(active.total, 1, "{backend}");
        assert_eq!(active.items[0].display_name(), "Ann Doe");
        // Customers and merchant users are searched apart.
        let customers = store
            .search(
                Realm::Customer,
                &SearchQuery {
                    prefix: "spr",
                    reference: None,
                    status: None,
                    page: page(10, 0),
                },
            )
            .await
            .unwrap();
        assert_eq!(customers.total, 0);
    })
    .await;
}

#[tokio::test]
async fn refresh_rotation_spends_once_and_reuse_revokes_the_family() {
    for_each_backend(|store, backend| async move {
        let ann = add(&store, customer(1, "Ann", "Lee")).await;
        store
            .insert_refresh_token("h1", "fam", &ann.id, 10, 1_000)
            .await
            .unwrap();
        match store
            .rotate_refresh_token("h1", "h2", 20, 1_000)
            .await
            .unwrap()
        {
            Rotation::Rotated { subject } => assert_eq!(
                (subject.id, subject.realm),
                (ann.id.clone(), Realm::Customer)
            ),
            other => panic!("{backend}: {other:?}"),
        }
        // h1 again: reuse. The whole family, h2 included, is revoked.
        assert_eq!(
            store
                .rotate_refresh_token("h1", "h3", 30, 1_000)
                .await
                .unwrap(),
            Rotation::Reused
        );
        assert_eq!(
            store
                .rotate_refresh_token("h2", "h4", 40, 1_000)
                .await
                .unwrap(),
            Rotation::Invalid
        );
        // Unknown and expired tokens.
        assert_eq!(
            store
                .rotate_refresh_token("nope", "h5", 40, 1_000)
                .await
                .unwrap(),
            Rotation::Invalid
        );
        store
            .insert_refresh_token("old", "fam2", &ann.id, 10, 50)
            .await
            .unwrap();
        assert_eq!(
            store
                .rotate_refresh_token("old", "h6", 60, 1_000)
                .await
                .unwrap(),
            Rotation::Invalid
        );
    })
    .await;
}

#[tokio::test]
async fn revocations_and_blocking_end_refresh_tokens() {
    for_each_backend(|store, backend| async move {
        let ann = add(&store, customer(1, "Ann", "Lee")).await;
        store
            .insert_refresh_token("a", "f1", &ann.id, 10, 1_000)
            .await
            .unwrap();
        store
            .insert_refresh_token("b", "f2", &ann.id, 10, 1_000)
            .await
            .unwrap();
        store
            .insert_refresh_token("c", "f3", &ann.id, 10, 1_000)
            .await
            .unwrap();
        assert!(store.revoke_refresh_family("a", 20).await.unwrap());
        assert!(!store.revoke_refresh_family("unknown", 20).await.unwrap());
        assert_eq!(
            store
                .rotate_refresh_token("a", "a2", 30, 1_000)
                .await
                .unwrap(),
            Rotation::Invalid
        );
        assert_eq!(
            store.revoke_all_refresh_tokens(&ann.id, 30).await.unwrap(),
            2,
            "{backend}"
        );
        assert_eq!(
            store
                .rotate_refresh_token("b", "b2", 40, 1_000)
                .await
                .unwrap(),
            Rotation::Invalid
        );

        store
            .insert_refresh_token("d", "f4", &ann.id, 50, 1_000)
            .await
            .unwrap();
        store
            .set_status(&ann.id, Status::Blocked, 60)
            .await
            .unwrap();
        assert_eq!(
            store
                .rotate_refresh_token("d", "d2", 70, 1_000)
                .await
                .unwrap(),
            Rotation::Invalid,
            "{backend}"
        );
        assert_eq!(
            store.get_principal(&ann.id).await.unwrap().unwrap().status,
            Status::Blocked
        );
    })
    .await;
}

#[tokio::test]
async fn throttle_blocks_after_the_limit_within_the_window() {
    for_each_backend(|store, backend| async move {
        let policy = ThrottlePolicy {
            max_failures: 3,
            window: Duration::from_secs(60),
            block: Duration::from_secs(30),
        };
        let s = 1_000_000i64;
        let keys = ["account:x", "address:1.2.3.4"];
        for t in [1, 2] {
            store
                .record_failure("account:x", &policy, t * s)
                .await
                .unwrap();
        }
        assert_eq!(
            store.throttle_state(keys, 3 * s).await.unwrap(),
            ThrottleState::Open,
            "{backend}"
        );
        store
            .record_failure("account:x", &policy, 3 * s)
            .await
            .unwrap();
        assert_eq!(
            store.throttle_state(keys, 4 * s).await.unwrap(),
            ThrottleState::BlockedUntil(33 * s),
            "{backend}"
        );
        assert_eq!(
            store.throttle_state(keys, 34 * s).await.unwrap(),
            ThrottleState::Open,
            "the block ends"
        );

        // Failures spread wider than the window never block.
        for t in [100, 170, 240, 310] {
            store
                .record_failure("account:y", &policy, t * s)
                .await
                .unwrap();
        }
        assert_eq!(
            store
                .throttle_state(["account:y", "none"], 311 * s)
                .await
                .unwrap(),
            ThrottleState::Open
        );

        // A success forgets the account's failures.
        store
            .record_failure("account:z", &policy, 400 * s)
            .await
            .unwrap();
        store
            .record_failure("account:z", &policy, 401 * s)
            .await
            .unwrap();
        store.clear_failures(&["account:z"]).await.unwrap();
        store
            .record_failure("account:z", &policy, 402 * s)
            .await
            .unwrap();
        assert_eq!(
            store
                .throttle_state(["account:z", "none"], 403 * s)
                .await
                .unwrap(),
            ThrottleState::Open
        );
    })
    .await;
}

#[tokio::test]
async fn signing_keys_rotate_and_retired_keys_stay_published_until_expiry() {
    for_each_backend(|store, backend| async move {
        let kek =
            KeyEncryptionKey::from_base64(&KeyEncryptionKey::generate_base64().unwrap()).unwrap();
        let (first, _) = keys::generate(&kek, 1).unwrap();
        assert!(store.insert_first_signing_key(&first).await.unwrap());
        let (racer, _) = keys::generate(&kek, 2).unwrap();
        assert!(
            !store.insert_first_signing_key(&racer).await.unwrap(),
            "{backend}: one first key"
        );

        let (second, _) = keys::generate(&kek, 3).unwrap();
        store.rotate_signing_key(&second, 10, 100).await.unwrap();
        let all = store.signing_keys().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].kid, second.kid);
        assert!(all[0].retired_at_us.is_none());
        assert_eq!(all[1].retired_at_us, Some(10));
        assert_eq!(all[1].publish_until_us, Some(100));
        assert!(
            keys::open(&kek, &all[1]).is_ok(),
            "sealed key survives the round trip"
        );

        assert_eq!(store.delete_unpublished_keys(50).await.unwrap(), 0);
        assert_eq!(store.delete_unpublished_keys(101).await.unwrap(), 1);
        assert_eq!(store.signing_keys().await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn one_time_tokens_are_single_use_expiring_and_replace_older_ones() {
    for_each_backend(|store, backend| async move {
        let mut invited = customer(1, "Ann", "Lee");
        invited.principal.status = Status::Invited;
        invited.password_hash = None;
        let ann = add(&store, invited).await;
        let mail = |id: &str| OutboxMessage {
            id: id.into(),
            recipient: ann.email.clone(),
            subject: "s".into(),
            body: "b".into(),
            created_at: 1,
            sent_at: None,
        };
        let token = |hash: &'static str, expires_at| OneTimeToken {
            token_hash: hash,
            principal_id: &ann.id,
            purpose: Purpose::Invitation,
            now: 10,
            expires_at,
        };
        store
            .issue_one_time_token(&token("t1", 1_000), &mail("m1"))
            .await
            .unwrap();
        store
            .issue_one_time_token(&token("t2", 1_000), &mail("m2"))
            .await
            .unwrap();
        assert_eq!(
            store.redeem_one_time_token("t1", "hash", 20).await.unwrap(),
            None,
            "{backend}: replaced"
        );
        assert_eq!(
            store.redeem_one_time_token("t2", "hash", 20).await.unwrap(),
            Some((ann.id.clone(), Purpose::Invitation))
        );
        assert_eq!(
            store.get_principal(&ann.id).await.unwrap().unwrap().status,
            Status::Active,
            "invitation activates"
        );
        assert_eq!(
            store.redeem_one_time_token("t2", "hash", 30).await.unwrap(),
            None,
            "single use"
        );

        store
            .issue_one_time_token(&token("t3", 40), &mail("m3"))
            .await
            .unwrap();
        assert_eq!(
            store.redeem_one_time_token("t3", "hash", 50).await.unwrap(),
            None,
            "{backend}: expired"
        );

        let outbox = store
            .list_outbox(Some(&ann.email), page(2, 0))
            .await
            .unwrap();
        assert_eq!(outbox.total, 3);
        assert_eq!(outbox.items.len(), 2);
        assert_eq!(outbox.items[0].id, "m3", "newest first");
        store.mark_mail_sent("m3", 60).await.unwrap();
        let pending = store.pending_mail(10, 5).await.unwrap();
        assert_eq!(
            pending.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["m1", "m2"]
        );
        // A mail is handed over once: a second (or concurrent) listing is not given its link, and
        // delivered mail is not handed over at all.
        assert_eq!(
            store.hand_over_mail(&["m2", "m3"], 61).await.unwrap(),
            ["m2"],
            "{backend}"
        );
        assert!(store.hand_over_mail(&["m2"], 62).await.unwrap().is_empty());
        let pending = store.pending_mail(10, 5).await.unwrap();
        assert_eq!(
            pending.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["m1"]
        );
    })
    .await;
}

#[tokio::test]
async fn lists_are_paged_newest_first_with_counts() {
    for_each_backend(|store, backend| async move {
        for n in 0..5 {
            add(&store, customer(n, "P", &format!("N{n}"))).await;
        }
        let first = store
            .list_principals(Realm::Customer, None, page(2, 0))
            .await
            .unwrap();
        assert_eq!(first.total, 5, "{backend}");
        assert_eq!(first.items[0].display_name(), "P N4");
        let last = store
            .list_principals(Realm::Customer, None, page(2, 4))
            .await
            .unwrap();
        assert_eq!(last.items.len(), 1);
        assert_eq!(last.items[0].display_name(), "P N0");
        let blocked = store
            .list_principals(Realm::Customer, Some(Status::Blocked), page(2, 0))
            .await
            .unwrap();
        assert_eq!(blocked.total, 0);
    })
    .await;
}

#[tokio::test]
async fn sequences_count_up() {
    for_each_backend(|store, backend| async move {
        assert_eq!(
            store.next_sequence("customer_reference").await.unwrap(),
            1,
            "{backend}"
        );
        assert_eq!(store.next_sequence("customer_reference").await.unwrap(), 2);
        assert_eq!(
            store
                .reserve_sequence("customer_reference", 10)
                .await
                .unwrap(),
            3
        );
        assert_eq!(store.next_sequence("customer_reference").await.unwrap(), 13);
        assert_eq!(store.next_sequence("other").await.unwrap(), 1);
    })
    .await;
}

#[tokio::test]
async fn replicas_starting_together_migrate_once() {
    for db in TestDb::all().await {
        let mut starts = Vec::new();
        for _ in 0..4 {
            let url = db.url.clone();
            starts.push(tokio::spawn(async move {
                let database =
                    assist_runtime::db::Database::connect(&url, assist_runtime::db::PoolSize(2))
                        .await?;
                database.migrate(&assist_identity::store::MIGRATIONS).await
            }));
        }
        for start in starts {
            start
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: {e}", db.backend));
        }
        let store = common::store(&db).await;
        assert_eq!(
            store.next_sequence("customer_reference").await.unwrap(),
            1,
            "{}: schema made once",
            db.backend
        );
    }
}

#[tokio::test]
async fn bulk_creation_writes_principals_and_terms_or_nothing() {
    for_each_backend(|store, backend| async move {
        let batch: Vec<_> = (0..1500)
            .map(|n| {
                let new = customer(
                    n,
                    if n.is_multiple_of(2) { "Greta" } else { "Hans" },
                    "Bulk",
                );
                let terms = terms_of(&new.principal);
                (new, terms)
            })
            .collect();
        store.create_principals(&batch).await.unwrap();
        let greta = store
            .search(
                Realm::Customer,
                &SearchQuery {
                    prefix: "greta",
                    reference: None,
                    status: None,
                    page: page(10, 0),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            greta.total, 750,
            "{backend}: 1,500 rows span two statements"
        );
        assert!(
            store
                .get_principal(&batch[1499].0.principal.id)
                .await
                .unwrap()
                .is_some()
        );

        // A duplicate anywhere refuses the whole batch.
        let mut again = vec![(customer(5000, "New", "One"), vec!["new".to_owned()])];
        again.push((batch[0].0.clone(), vec![]));
        assert_eq!(
            store.create_principals(&again).await.unwrap_err().code(),
            tonic::Code::AlreadyExists
        );
        assert!(
            store
                .get_principal(&again[0].0.principal.id)
                .await
                .unwrap()
                .is_none(),
            "{backend}: nothing written"
        );
    })
    .await;
}

#[tokio::test]
async fn a_refresh_token_presented_concurrently_rotates_exactly_once() {
    for_each_backend(|store, backend| async move {
        let ann = add(&store, customer(1, "Ann", "Lee")).await;
        store
            .insert_refresh_token("shared", "fam", &ann.id, 10, i64::MAX / 2)
            .await
            .unwrap();
        let mut racers = Vec::new();
        for n in 0..8 {
            let store = store.clone();
            racers.push(tokio::spawn(async move {
                store
                    .rotate_refresh_token("shared", &format!("next{n}"), 20 + n, i64::MAX / 2)
                    .await
                    .unwrap()
            }));
        }
        let mut rotated = 0;
        for racer in racers {
            if matches!(racer.await.unwrap(), Rotation::Rotated { .. }) {
                rotated += 1;
            }
        }
        assert_eq!(rotated, 1, "{backend}: one winner");
        // The losers were reuses, so the family is revoked, the winner's new token included.
        for n in 0..8 {
            let next = format!("next{n}");
            let outcome = store
                .rotate_refresh_token(&next, "after", 100, i64::MAX / 2)
                .await
                .unwrap();
            assert!(
                !matches!(outcome, Rotation::Rotated { .. }),
                "{backend}: {next} must not rotate"
            );
        }
    })
    .await;
}
