//! Store conformance: the same scenarios against SQLite and PostgreSQL (when `ASSIST_TEST_DATABASE_URL`
//! is set).

mod common;

use std::sync::Arc;

use assist_agent_directory::domain::console::{Role, Status};
use assist_agent_directory::domain::{self, Agent, Capability, Edit, NewAgent, ProfileUpdate};
use assist_agent_directory::store::{AgentFilter, Outcome, Store};
use assist_runtime::validate::Page;
use common::TestDb;

const CUSTOMERS: Capability = Capability::AssistCustomers;
const MERCHANTS: Capability = Capability::AssistMerchantUsers;

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

fn new_agent(name: &str) -> NewAgent {
    NewAgent {
        id: uuid::Uuid::now_v7().to_string(),
        display_name: name.into(),
        created_at_us: assist_runtime::time::now_us(),
        email: format!("{}@example.com", name.to_lowercase().replace(' ', ".")),
        role: Role::Agent,
        status: Status::Active,
        invitation_expires_at_us: 0,
        reservation: None,
    }
}

fn every_agent() -> AgentFilter {
    AgentFilter::default()
}

fn holding(capability: Capability) -> AgentFilter {
    AgentFilter {
        capability: Some(capability),
        ..AgentFilter::default()
    }
}

fn page(limit: u32, offset: u64) -> Page {
    Page::new(limit, offset).unwrap()
}

/// Applies `edit` by `actor` as the service does, creating the profile from `create` when given.
async fn change(store: &Store, id: &str, create: Option<&NewAgent>, edit: Edit) -> Outcome {
    let decide = |agent: &Agent| {
        Ok(domain::apply(
            agent,
            &edit,
            "actor-1",
            assist_runtime::time::now_us(),
        ))
    };
    match create {
        Some(create) => store
            .change_membership(
                id,
                Some(create),
                assist_runtime::time::now_us(),
                |agent, _| decide(agent),
            )
            .await
            .unwrap(),
        None => store.change(id, decide).await.unwrap(),
    }
}

async fn stored(store: &Store, name: &str, capabilities: &[Capability]) -> Agent {
    let new = new_agent(name);
    for capability in capabilities {
        change(store, &new.id, Some(&new), Edit::Grant(*capability)).await;
    }
    if capabilities.is_empty() {
        let update = ProfileUpdate::new(None, Some("x")).unwrap();
        change(store, &new.id, Some(&new), Edit::UpdateProfile(update)).await;
    }
    store.get_agent(&new.id).await.unwrap().unwrap()
}

fn changed(outcome: Outcome) -> Agent {
    match outcome {
        Outcome::Changed(agent, _) => agent,
        other => panic!("expected a change, got {other:?}"),
    }
}

#[tokio::test]
async fn grants_and_revokes_are_stored_recorded_and_versioned() {
    for_each_backend(|store, backend| async move {
        let new = new_agent("Ann Lee");
        assert_eq!(
            change(&store, &new.id, None, Edit::Grant(CUSTOMERS)).await,
            Outcome::Missing,
            "{backend}: no profile, none to create"
        );

        let (agent, record) =
            match change(&store, &new.id, Some(&new), Edit::Grant(CUSTOMERS)).await {
                Outcome::Changed(agent, record) => (agent, record),
                other => panic!("{backend}: {other:?}"),
            };
        assert_eq!(agent.display_name, "Ann Lee");
        assert_eq!(agent.capabilities, [CUSTOMERS]);
        assert_eq!(agent.version, 1, "{backend}");
        assert_eq!(agent.created_at_us, new.created_at_us);
        assert_eq!(store.get_agent(&new.id).await.unwrap(), Some(agent.clone()));
        assert_eq!(record.actor_id, "actor-1");

        // Idempotent: the same grant again changes and records nothing.
        match change(&store, &new.id, Some(&new), Edit::Grant(CUSTOMERS)).await {
            Outcome::Unchanged(same) => assert_eq!(same, agent, "{backend}"),
            other => panic!("{backend}: {other:?}"),
        }

        let both = changed(change(&store, &new.id, None, Edit::Grant(MERCHANTS)).await);
        assert_eq!(both.capabilities, [CUSTOMERS, MERCHANTS], "sorted");
        assert_eq!(both.version, 2);
        let revoked = changed(change(&store, &new.id, None, Edit::Revoke(CUSTOMERS)).await);
        assert_eq!(revoked.capabilities, [MERCHANTS]);
        assert_eq!(revoked.version, 3);
        assert!(matches!(
            change(&store, &new.id, None, Edit::Revoke(CUSTOMERS)).await,
            Outcome::Unchanged(_)
        ));
        assert_eq!(store.get_agent(&new.id).await.unwrap().unwrap(), revoked);

        let history = store.list_history(&new.id, page(10, 0)).await.unwrap();
        assert_eq!((history.total, history.total_exact), (3, true), "{backend}");
        let actions: Vec<&str> = history.items.iter().map(|c| c.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "capability_revoked",
                "capability_granted",
                "capability_granted"
            ],
            "newest first"
        );
        let last = &history.items[0];
        assert_eq!(last.agent_id, new.id);
        assert_eq!(last.actor_id, "actor-1");
        assert_eq!(
            last.before,
            r#"{"capabilities":["assist_customers","assist_merchant_users"]}"#
        );
        assert_eq!(last.after, r#"{"capabilities":["assist_merchant_users"]}"#);
        assert_eq!(history.items[2], record, "{backend}: stored as returned");
    })
    .await;
}

#[tokio::test]
async fn a_profile_is_not_created_by_a_change_that_changes_nothing() {
    for_each_backend(|store, backend| async move {
        let new = new_agent("Ann Lee");
        let unchanged = store
            .change_membership(&new.id, Some(&new), 0, |_, _| Ok(None))
            .await
            .unwrap();
        assert!(matches!(unchanged, Outcome::Unchanged(_)), "{backend}");
        assert_eq!(store.get_agent(&new.id).await.unwrap(), None, "{backend}");
        assert_eq!(
            store
                .list_agents(&every_agent(), page(10, 0), 0)
                .await
                .unwrap()
                .agents
                .total,
            0,
            "{backend}"
        );
    })
    .await;
}

#[tokio::test]
async fn profile_updates_change_only_the_fields_set() {
    for_each_backend(|store, backend| async move {
        let ann = stored(&store, "Ann Lee", &[CUSTOMERS]).await;
        let update = ProfileUpdate::new(None, Some("Annie")).unwrap();
        let after = changed(change(&store, &ann.id, None, Edit::UpdateProfile(update)).await);
        assert_eq!(
            (after.display_name.as_str(), after.nickname.as_str()),
            ("Ann Lee", "Annie")
        );
        assert_eq!(
            after.capabilities,
            [CUSTOMERS],
            "{backend}: capabilities kept"
        );
        assert_eq!(after.version, ann.version + 1);
        assert!(after.updated_at_us >= ann.updated_at_us);

        let update = ProfileUpdate::new(Some("Ann Lee-Smith"), Some("")).unwrap();
        let after = changed(change(&store, &ann.id, None, Edit::UpdateProfile(update)).await);
        assert_eq!(
            (after.display_name.as_str(), after.nickname.as_str()),
            ("Ann Lee-Smith", "")
        );
        assert_eq!(store.get_agent(&ann.id).await.unwrap().unwrap(), after);
        let history = store.list_history(&ann.id, page(1, 0)).await.unwrap();
        assert_eq!(history.items[0].action, "profile_updated");
        assert_eq!(
            history.items[0].before,
            r#"{"display_name":"Ann Lee","nickname":"Annie"}"#
        );
        assert_eq!(
            history.items[0].after,
            r#"{"display_name":"Ann Lee-Smith","nickname":""}"#
        );
    })
    .await;
}

#[tokio::test]
async fn agents_list_by_display_name_with_paging_and_a_capability_filter() {
    for_each_backend(|store, backend| async move {
        let zed = stored(&store, "zed", &[CUSTOMERS]).await;
        let bob = stored(&store, "Bob", &[MERCHANTS]).await;
        let ann = stored(&store, "ann", &[CUSTOMERS, MERCHANTS]).await;
        let carl = stored(&store, "Carl", &[]).await;
        let names = |agents: &[Agent]| -> Vec<String> {
            agents.iter().map(|a| a.display_name.clone()).collect()
        };

        let all = store
            .list_agents(&every_agent(), page(10, 0), 0)
            .await
            .unwrap()
            .agents;
        assert_eq!(
            names(&all.items),
            ["ann", "Bob", "Carl", "zed"],
            "{backend}: case-insensitive"
        );
        assert_eq!((all.total, all.total_exact), (4, true));
        assert_eq!(all.items[0], ann, "{backend}: capabilities come along");

        let first = store
            .list_agents(&every_agent(), page(2, 0), 0)
            .await
            .unwrap()
            .agents;
        let second = store
            .list_agents(&every_agent(), page(2, 2), 0)
            .await
            .unwrap()
            .agents;
        assert_eq!(names(&first.items), ["ann", "Bob"]);
        assert_eq!(names(&second.items), ["Carl", "zed"]);
        assert_eq!(second.total, 4, "the total counts every page");
        assert!(
            store
                .list_agents(&every_agent(), page(2, 4), 0)
                .await
                .unwrap()
                .agents
                .items
                .is_empty()
        );

        let customers = store
            .list_agents(&holding(CUSTOMERS), page(10, 0), 0)
            .await
            .unwrap()
            .agents;
        assert_eq!(names(&customers.items), ["ann", "zed"], "{backend}");
        assert_eq!(customers.total, 2);
        assert_eq!(
            customers.items[0].capabilities,
            [CUSTOMERS, MERCHANTS],
            "the filter does not hide other capabilities"
        );
        let merchants = store
            .list_agents(&holding(MERCHANTS), page(1, 1), 0)
            .await
            .unwrap()
            .agents;
        assert_eq!(names(&merchants.items), ["Bob"]);
        assert_eq!(merchants.total, 2);

        // Renaming moves an agent in the order; equal names fall back to the id.
        let update = ProfileUpdate::new(Some("Aaron"), None).unwrap();
        change(&store, &zed.id, None, Edit::UpdateProfile(update)).await;
        let update = ProfileUpdate::new(Some("BOB"), None).unwrap();
        change(&store, &carl.id, None, Edit::UpdateProfile(update)).await;
        let all = store
            .list_agents(&every_agent(), page(10, 0), 0)
            .await
            .unwrap()
            .agents;
        assert_eq!(
            names(&all.items),
            ["Aaron", "ann", "Bob", "BOB"],
            "{backend}"
        );
        assert!(bob.id < carl.id, "ids are time-ordered");
    })
    .await;
}

#[tokio::test]
async fn concurrent_grants_of_one_capability_store_one_change() {
    for_each_backend(|store, backend| async move {
        let store = Arc::new(store);
        let new = Arc::new(new_agent("Ann Lee"));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (store, new) = (store.clone(), new.clone());
            tasks.push(tokio::spawn(async move {
                change(&store, &new.id, Some(&new), Edit::Grant(CUSTOMERS)).await
            }));
        }
        let mut changes = 0;
        for task in tasks {
            if matches!(task.await.unwrap(), Outcome::Changed(..)) {
                changes += 1;
            }
        }
        assert_eq!(changes, 1, "{backend}");
        let agent = store.get_agent(&new.id).await.unwrap().unwrap();
        assert_eq!(
            (agent.version, agent.capabilities.as_slice()),
            (1, &[CUSTOMERS][..])
        );
        assert_eq!(
            store
                .list_history(&new.id, page(10, 0))
                .await
                .unwrap()
                .total,
            1
        );

        // Concurrent changes of different kinds all land, one after another.
        let mut tasks = Vec::new();
        for edit in [
            Edit::Grant(MERCHANTS),
            Edit::Revoke(CUSTOMERS),
            Edit::UpdateProfile(ProfileUpdate::new(None, Some("Annie")).unwrap()),
        ] {
            let (store, id) = (store.clone(), new.id.clone());
            tasks.push(tokio::spawn(async move {
                change(&store, &id, None, edit).await
            }));
        }
        for task in tasks {
            assert!(
                matches!(task.await.unwrap(), Outcome::Changed(..)),
                "{backend}"
            );
        }
        let agent = store.get_agent(&new.id).await.unwrap().unwrap();
        assert_eq!(agent.capabilities, [MERCHANTS]);
        assert_eq!(agent.nickname, "Annie");
        assert_eq!(agent.version, 4, "{backend}: one version per change");
        assert_eq!(
            store
                .list_history(&new.id, page(10, 0))
                .await
                .unwrap()
                .total,
            4
        );
    })
    .await;
}

#[tokio::test]
async fn snapshots_read_every_agent_in_pages_by_id() {
    for_each_backend(|store, backend| async move {
        let mut ids = Vec::new();
        for n in 0..7 {
            let capabilities: &[Capability] = if n % 2 == 0 { &[CUSTOMERS] } else { &[] };
            ids.push(stored(&store, &format!("Agent {n}"), capabilities).await.id);
        }
        ids.sort();
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let page = store.agents_after(&after, 3).await.unwrap();
            assert!(page.len() <= 3);
            let Some(last) = page.last() else { break };
            after = last.id.clone();
            seen.extend(page);
        }
        let seen_ids: Vec<String> = seen.iter().map(|a| a.id.clone()).collect();
        assert_eq!(seen_ids, ids, "{backend}");
        for agent in &seen {
            assert_eq!(
                store.get_agent(&agent.id).await.unwrap().as_ref(),
                Some(agent),
                "{backend}: same agent as read one by one"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn history_pages_newest_first_and_is_per_agent() {
    for_each_backend(|store, backend| async move {
        let ann = stored(&store, "Ann", &[]).await;
        let bob = stored(&store, "Bob", &[CUSTOMERS]).await;
        for n in 0..4 {
            let update = ProfileUpdate::new(None, Some(&format!("nick {n}"))).unwrap();
            change(&store, &ann.id, None, Edit::UpdateProfile(update)).await;
        }
        let all = store.list_history(&ann.id, page(10, 0)).await.unwrap();
        assert_eq!(all.total, 5, "{backend}");
        let second = store.list_history(&ann.id, page(2, 2)).await.unwrap();
        assert_eq!(second.items, all.items[2..4], "{backend}");
        assert_eq!(all.items[0].after, r#"{"nickname":"nick 3"}"#);
        assert!(
            all.items
                .windows(2)
                .all(|w| w[0].version == w[1].version + 1)
        );
        assert!(all.items.windows(2).all(|w| w[0].at_us >= w[1].at_us));
        assert!(all.items.iter().all(|c| c.agent_id == ann.id));
        assert_eq!(
            store
                .list_history(&bob.id, page(10, 0))
                .await
                .unwrap()
                .total,
            1
        );
        let nobody = uuid::Uuid::now_v7().to_string();
        let none = store.list_history(&nobody, page(10, 0)).await.unwrap();
        assert_eq!((none.total, none.items.len()), (0, 0));
    })
    .await;
}
