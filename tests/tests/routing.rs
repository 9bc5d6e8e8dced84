//! Conversation routing end to end over gRPC, with identity and agent-directory running for real: a
//! customer's conversation routed to an online agent and answered, reopened, watched; the rules of
//! DESIGN.md sections 4 and 5 for each role; fairness and queue order; the offline grace period and
//! removal; bad input; and three replicas on one PostgreSQL database assigning concurrently while
//! agents come and go, checked from the database afterwards.

use std::collections::HashMap;
use std::time::Duration;

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::common::v1::PageRequest;
use assist_proto::routing::v1 as rt;
use assist_proto::routing::v1::routing_client::RoutingClient;
use assist_runtime::testing::TestBackend;
use assist_tests::platform::{Platform, Signed, authed};
use sqlx::Row;
use tonic::Code;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(20);

/// Polls `check` until it gives a value, for at most [`WAIT`].
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn create(
    routing: &mut RoutingClient<Channel>,
    token: &str,
    subject: &str,
) -> rt::Conversation {
    routing
        .create_conversation(authed(
            token,
            rt::CreateConversationRequest {
                subject: subject.into(),
                body: format!("{subject}: please help"),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn get(routing: &mut RoutingClient<Channel>, token: &str, id: &str) -> rt::Conversation {
    routing
        .get_conversation(authed(
            token,
            rt::GetConversationRequest {
                conversation_id: id.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The conversation once it is assigned (to anyone).
async fn assigned(routing: &RoutingClient<Channel>, token: &str, id: &str) -> rt::Conversation {
    until(&format!("{id} assigned"), || {
        let mut routing = routing.clone();
        async move {
            let c = get(&mut routing, token, id).await;
            (c.status == rt::ConversationStatus::Assigned as i32).then_some(c)
        }
    })
    .await
}

async fn post(
    routing: &mut RoutingClient<Channel>,
    token: &str,
    id: &str,
    body: &str,
    internal: bool,
) -> Result<rt::PostMessageResponse, tonic::Status> {
    routing
        .post_message(authed(
            token,
            rt::PostMessageRequest {
                conversation_id: id.into(),
                body: body.into(),
                internal,
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn set_status(
    routing: &mut RoutingClient<Channel>,
    token: &str,
    id: &str,
    status: rt::ConversationStatus,
) -> Result<rt::Conversation, tonic::Status> {
    routing
        .set_conversation_status(authed(
            token,
            rt::SetConversationStatusRequest {
                conversation_id: id.into(),
                status: status as i32,
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn assign(
    routing: &mut RoutingClient<Channel>,
    token: &str,
    id: &str,
    agent: &str,
) -> Result<rt::Conversation, tonic::Status> {
    routing
        .assign_conversation(authed(
            token,
            rt::AssignConversationRequest {
                conversation_id: id.into(),
                agent_id: agent.into(),
            },
        ))
        .await
        .map(|r| r.into_inner())
}

async fn history(
    routing: &mut RoutingClient<Channel>,
    token: &str,
    id: &str,
) -> Vec<rt::ConversationEvent> {
    routing
        .get_conversation_history(authed(
            token,
            rt::GetConversationHistoryRequest {
                conversation_id: id.into(),
                page: Some(PageRequest {
                    limit: 100,
                    offset: 0,
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .events
}

fn kinds(events: &[rt::ConversationEvent]) -> Vec<rt::conversation_event::Kind> {
    events
        .iter()
        .map(|e| rt::conversation_event::Kind::try_from(e.kind).unwrap())
        .collect()
}

async fn list(
    routing: &mut RoutingClient<Channel>,
    token: &str,
    scope: rt::Scope,
    status: rt::ConversationStatus,
) -> Result<Vec<rt::Conversation>, tonic::Status> {
    routing
        .list_conversations(authed(
            token,
            rt::ListConversationsRequest {
                page: Some(PageRequest {
                    limit: 100,
                    offset: 0,
                }),
                scope: scope as i32,
                status: status as i32,
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().conversations)
}

/// A watch stream, past its WATCHING marker.
async fn watch(
    routing: &mut RoutingClient<Channel>,
    token: &str,
    scope: rt::Scope,
    conversation_id: &str,
) -> tonic::Streaming<rt::ConversationEvent> {
    let mut stream = routing
        .watch_conversations(authed(
            token,
            rt::WatchConversationsRequest {
                scope: scope as i32,
                conversation_id: conversation_id.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.kind, rt::conversation_event::Kind::Watching as i32);
    stream
}

/// The next event of `stream` that `matches`, within [`WAIT`].
async fn next_matching(
    stream: &mut tonic::Streaming<rt::ConversationEvent>,
    what: &str,
    matches: impl Fn(&rt::ConversationEvent) -> bool,
) -> rt::ConversationEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = stream.message().await.unwrap().expect("stream ended");
            if matches(&event) {
                return event;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} on the stream"))
}

fn is_message(body: &str) -> impl Fn(&rt::ConversationEvent) -> bool + '_ {
    move |e| e.message.as_ref().is_some_and(|m| m.body == body)
}

#[tokio::test]
async fn a_customer_conversation_is_routed_answered_reopened_and_watched() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend.clone(), 1, &[]).await;
        let agent = platform
            .console_member("ana@example.com", dir::Role::Agent, 5)
            .await;
        let customer = platform.customer("casey@example.com").await;
        let mut routing = platform.routing_client(0);
        let mut agent_stream = watch(&mut routing, &agent.token, rt::Scope::Mine, "").await;

        let created = create(&mut routing, &customer.token, "Parcel").await;
        assert_eq!(created.channel, rt::Channel::Web as i32);
        assert_eq!(created.priority, rt::Priority::Normal as i32);
        let conversation = assigned(&routing, &customer.token, &created.id).await;
        assert_eq!(conversation.assignee_id, agent.id, "{}", backend.name());
        assert!(conversation.assigned_at_us >= conversation.created_at_us);
        // The agent's own watch tells of the assignment.
        next_matching(&mut agent_stream, "assignment", |e| {
            e.kind == rt::conversation_event::Kind::Assigned as i32
                && e.conversation_id == created.id
        })
        .await;
        let mine = list(
            &mut routing,
            &agent.token,
            rt::Scope::Mine,
            rt::ConversationStatus::Unspecified,
        )
        .await
        .unwrap();
        assert_eq!(mine.len(), 1);

        // The customer watches the conversation; the agent replies and writes a note.
        let mut customer_stream = watch(
            &mut routing,
            &customer.token,
            rt::Scope::Unspecified,
            &created.id,
        )
        .await;
        post(
            &mut routing,
            &agent.token,
            &created.id,
            "internal: VIP",
            true,
        )
        .await
        .unwrap();
        let reply = post(
            &mut routing,
            &agent.token,
            &created.id,
            "On its way!",
            false,
        )
        .await
        .unwrap();
        assert!(reply.conversation.unwrap().first_reply_at_us > 0);
        let seen = next_matching(&mut customer_stream, "the reply", |e| e.message.is_some()).await;
        assert_eq!(
            seen.message.unwrap().body,
            "On its way!",
            "the customer's stream skips the internal note"
        );
        let messages = routing
            .list_messages(authed(
                &customer.token,
                rt::ListMessagesRequest {
                    conversation_id: created.id.clone(),
                    page: None,
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .messages;
        let bodies: Vec<&str> = messages.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["Parcel: please help", "On its way!"]);
        // The customer writes; the agent's stream has it.
        post(&mut routing, &customer.token, &created.id, "Thanks", false)
            .await
            .unwrap();
        next_matching(
            &mut agent_stream,
            "the customer's message",
            is_message("Thanks"),
        )
        .await;

        // Resolve, then a customer message reopens it, ahead of the queue, and routing assigns again.
        set_status(
            &mut routing,
            &agent.token,
            &created.id,
            rt::ConversationStatus::Resolved,
        )
        .await
        .unwrap();
        let error = post(&mut routing, &agent.token, &created.id, "late", false)
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::FailedPrecondition);
        post(
            &mut routing,
            &customer.token,
            &created.id,
            "One more thing",
            false,
        )
        .await
        .unwrap();
        let again = assigned(&routing, &customer.token, &created.id).await;
        assert_eq!(again.assignee_id, agent.id);
        let events = history(&mut routing, &agent.token, &created.id).await;
        use rt::conversation_event::Kind::*;
        assert_eq!(
            kinds(&events),
            [
                Created, Message, Assigned, Message, Message, Message, Resolved, Message, Reopened,
                Assigned
            ]
        );
        assert_eq!(events[2].actor_id, "routing");
        // The customer's history has neither the note nor routing's internals.
        let customer_events = history(&mut routing, &customer.token, &created.id).await;
        assert!(
            customer_events
                .iter()
                .all(|e| !e.message.as_ref().is_some_and(|m| m.internal))
        );
        assert_eq!(customer_events.len(), events.len() - 1);
        // Resolved, then closed: no more messages.
        set_status(
            &mut routing,
            &customer.token,
            &created.id,
            rt::ConversationStatus::Resolved,
        )
        .await
        .unwrap();
        set_status(
            &mut routing,
            &customer.token,
            &created.id,
            rt::ConversationStatus::Closed,
        )
        .await
        .unwrap();
        let error = post(&mut routing, &customer.token, &created.id, "hello?", false)
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::FailedPrecondition);
        drop((agent_stream, customer_stream));
        // The figures on /metrics (one registry per process).
        let metrics = assist_runtime::metrics::render();
        for name in [
            "assist_routing_queue_depth",
            "assist_routing_waiting_seconds_bucket",
            "assist_routing_time_to_assignment_seconds_count",
        ] {
            assert!(metrics.contains(name), "{name} missing from /metrics");
        }
        assert!(metrics.contains(&format!(
            "assist_routing_assignments_total{{agent_id=\"{}\"}}",
            agent.id
        )));
        platform.stop().await;
    }
}

#[tokio::test]
async fn each_role_assigns_reads_and_writes_as_the_matrix_says() {
    for backend in TestBackend::all() {
        roles_on(backend).await;
    }
}

async fn roles_on(backend: TestBackend) {
    let platform = Platform::start(backend, 1, &[]).await;
    let agent = platform
        .console_member("agent@example.com", dir::Role::Agent, 1)
        .await;
    let other = platform
        .console_member("other@example.com", dir::Role::Agent, 1)
        .await;
    let supervisor = platform
        .console_member("super@example.com", dir::Role::Supervisor, 1)
        .await;
    let administrator = platform
        .console_member("boss@example.com", dir::Role::Administrator, 1)
        .await;
    // Nobody takes work automatically in this test: everyone away.
    for member in [&agent, &other, &supervisor, &administrator] {
        platform.presence(&member.token, dir::Presence::Away).await;
    }
    let customer = platform.customer("c1@example.com").await;
    let stranger = platform.customer("c2@example.com").await;
    let mut routing = platform.routing_client(0);
    platform.until_routing_sees_online(0).await;
    let conversation = create(&mut routing, &customer.token, "Refund").await;
    let id = conversation.id.clone();
    assert_eq!(conversation.status, rt::ConversationStatus::Queued as i32);

    // Agents neither assign nor see all; customers see only their own.
    let error = assign(&mut routing, &agent.token, &id, &agent.id)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    assert!(
        error.message().contains("supervisor"),
        "{}",
        error.message()
    );
    let error = list(
        &mut routing,
        &agent.token,
        rt::Scope::All,
        rt::ConversationStatus::Unspecified,
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let error = routing
        .get_conversation(authed(
            &stranger.token,
            rt::GetConversationRequest {
                conversation_id: id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    let error = routing
        .get_conversation(authed(
            &agent.token,
            rt::GetConversationRequest {
                conversation_id: id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let queued = list(
        &mut routing,
        &supervisor.token,
        rt::Scope::All,
        rt::ConversationStatus::Queued,
    )
    .await
    .unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].queue_position, 0);
    assert!(queued[0].queued_at_us > 0);

    // Administrators are never assignees.
    let error = assign(&mut routing, &supervisor.token, &id, &administrator.id)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert!(
        error.message().contains("administrators"),
        "{}",
        error.message()
    );
    // A supervisor assigns to an agent (presence does not bind a manual assignment) …
    let assigned = assign(&mut routing, &supervisor.token, &id, &agent.id)
        .await
        .unwrap();
    assert_eq!(assigned.assignee_id, agent.id);
    // … the agent reads and replies; the other agent may not, nor may the supervisor reply.
    post(&mut routing, &agent.token, &id, "Hello", false)
        .await
        .unwrap();
    let error = post(&mut routing, &other.token, &id, "Hi", false)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let error = post(&mut routing, &supervisor.token, &id, "Hi", false)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    post(
        &mut routing,
        &supervisor.token,
        &id,
        "note from the supervisor",
        true,
    )
    .await
    .unwrap();
    let error = post(&mut routing, &customer.token, &id, "note?", true)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    // Only the assignee marks it pending.
    let error = set_status(
        &mut routing,
        &supervisor.token,
        &id,
        rt::ConversationStatus::Pending,
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    set_status(
        &mut routing,
        &agent.token,
        &id,
        rt::ConversationStatus::Pending,
    )
    .await
    .unwrap();

    // A supervisor transfers to self; an administrator transfers to the other agent, who is at
    // capacity with another conversation: recorded as an override.
    let transferred = assign(&mut routing, &supervisor.token, &id, &supervisor.id)
        .await
        .unwrap();
    assert_eq!(transferred.assignee_id, supervisor.id);
    assert_eq!(transferred.status, rt::ConversationStatus::Pending as i32);
    let error = assign(&mut routing, &supervisor.token, &id, &supervisor.id)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition);
    let second = create(&mut routing, &customer.token, "Second").await;
    assign(&mut routing, &administrator.token, &second.id, &other.id)
        .await
        .unwrap();
    let moved = assign(&mut routing, &administrator.token, &id, &other.id)
        .await
        .unwrap();
    assert_eq!(moved.assignee_id, other.id);
    let events = history(&mut routing, &administrator.token, &id).await;
    let transfer = events.last().unwrap();
    assert_eq!(
        transfer.kind,
        rt::conversation_event::Kind::Transferred as i32
    );
    assert_eq!(transfer.from_agent_id, supervisor.id);
    assert_eq!(transfer.to_agent_id, other.id);
    assert_eq!(transfer.actor_id, administrator.id);
    assert!(transfer.capacity_override, "two open on a capacity of one");
    assert!(!events[events.len() - 2].capacity_override);
    // The agent it was taken from no longer reads it.
    let error = routing
        .get_conversation(authed(
            &agent.token,
            rt::GetConversationRequest {
                conversation_id: id.clone(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);

    // The counters follow: other holds two, everyone else none.
    let loads = loads(&platform).await;
    assert_eq!(loads.get(&other.id), Some(&2));
    assert_eq!(loads.get(&agent.id).copied().unwrap_or(0), 0);
    assert_eq!(loads.get(&supervisor.id).copied().unwrap_or(0), 0);
    platform.stop().await;
}

/// Open conversations per agent as the counters say, checked against the conversations themselves.
async fn loads(platform: &Platform) -> HashMap<String, i64> {
    let db = platform
        .routing_db()
        .open(&assist_conversation_routing::store::MIGRATIONS)
        .await;
    let counters: HashMap<String, i64> =
        sqlx::query("SELECT agent_id, open_count FROM routing_agents WHERE open_count <> 0")
            .fetch_all(&db.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect();
    let actual: HashMap<String, i64> = sqlx::query(
        "SELECT assignee_id, count(*) FROM conversations \
         WHERE status IN ('assigned', 'pending') GROUP BY assignee_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
    .collect();
    assert_eq!(counters, actual, "the counters match the conversations");
    actual
}

#[tokio::test]
async fn equal_agents_take_turns_and_the_queue_is_fifo_with_reopened_first() {
    for backend in TestBackend::all() {
        fairness_on(backend).await;
    }
}

async fn fairness_on(backend: TestBackend) {
    let platform = Platform::start(backend, 1, &[]).await;
    let agents: Vec<Signed> = {
        let mut agents = Vec::new();
        for i in 0..4 {
            agents.push(
                platform
                    .console_member(&format!("fair{i}@example.com"), dir::Role::Agent, 100)
                    .await,
            );
        }
        agents
    };
    let customer = platform.customer("queue@example.com").await;
    let mut routing = platform.routing_client(0);
    platform.until_routing_sees_online(4).await;
    let mut counts: HashMap<String, u32> = HashMap::new();
    for round in 0..5 {
        let mut ids = Vec::new();
        for i in 0..agents.len() {
            ids.push(
                create(&mut routing, &customer.token, &format!("r{round}-{i}"))
                    .await
                    .id,
            );
        }
        for id in &ids {
            let c = assigned(&routing, &customer.token, id).await;
            *counts.entry(c.assignee_id).or_default() += 1;
        }
        let max = agents
            .iter()
            .map(|a| counts.get(&a.id).copied().unwrap_or(0))
            .max()
            .unwrap();
        let min = agents
            .iter()
            .map(|a| counts.get(&a.id).copied().unwrap_or(0))
            .min()
            .unwrap();
        assert!(max - min <= 1, "round {round}: {counts:?}");
    }

    // Queue order: one agent with room for one; everyone else away.
    for agent in &agents[1..] {
        platform.presence(&agent.token, dir::Presence::Away).await;
    }
    let solo = &agents[0];
    let service = platform.service_token().await;
    let mut resolve_all = list(
        &mut routing,
        &solo.token,
        rt::Scope::Mine,
        rt::ConversationStatus::Assigned,
    )
    .await
    .unwrap();
    // Keep one resolved conversation to reopen later.
    let reopen = resolve_all.pop().unwrap();
    for c in resolve_all.iter().chain([&reopen]) {
        set_status(
            &mut routing,
            &solo.token,
            &c.id,
            rt::ConversationStatus::Resolved,
        )
        .await
        .unwrap();
    }
    platform.presence(&solo.token, dir::Presence::Away).await;
    platform.until_routing_sees_online(0).await;
    let older = create(&mut routing, &customer.token, "older").await;
    let newer = create(&mut routing, &customer.token, "newer").await;
    let urgent = routing
        .create_conversation(authed(
            &service,
            rt::CreateConversationRequest {
                customer_id: customer.id.clone(),
                subject: "urgent".into(),
                body: "now".into(),
                priority: rt::Priority::Urgent as i32,
                required_skills: vec![],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(urgent.channel, rt::Channel::Api as i32);
    post(
        &mut routing,
        &customer.token,
        &reopen.id,
        "It broke again",
        false,
    )
    .await
    .unwrap();
    let queue = list(
        &mut routing,
        &solo.token,
        rt::Scope::All,
        rt::ConversationStatus::Queued,
    )
    .await;
    assert_eq!(
        queue.unwrap_err().code(),
        Code::PermissionDenied,
        "agents see their own only"
    );
    let platform_admin = platform.admin.token.clone();
    let queue = list(
        &mut routing,
        &platform_admin,
        rt::Scope::All,
        rt::ConversationStatus::Queued,
    )
    .await
    .unwrap();
    let order: Vec<&str> = queue.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(order, [&urgent.id, &reopen.id, &older.id, &newer.id]);
    assert_eq!(
        queue.iter().map(|c| c.queue_position).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert!(queue[1].requeued);
    // Capacity one: each resolve lets the next in.
    platform
        .agents_client()
        .update_agent_routing(authed(
            &platform.admin.token,
            dir::UpdateAgentRoutingRequest {
                agent_id: solo.id.clone(),
                capacity: Some(1),
                skills: None,
            },
        ))
        .await
        .unwrap();
    platform.presence(&solo.token, dir::Presence::Online).await;
    for expected in [&urgent.id, &reopen.id, &older.id, &newer.id] {
        let c = assigned(&routing, &customer.token, expected).await;
        assert_eq!(c.assignee_id, solo.id);
        set_status(
            &mut routing,
            &solo.token,
            expected,
            rt::ConversationStatus::Resolved,
        )
        .await
        .unwrap();
    }
    loads(&platform).await;
    platform.stop().await;
}

#[tokio::test]
async fn offline_agents_lose_assigned_conversations_after_the_grace_period_and_removed_ones_at_once()
 {
    let mut platform = Platform::start(TestBackend::Sqlite, 1, &[]).await;
    platform.stop_routing().await;
    platform
        .add_routing_replica(&["--offline-grace-secs=2", "--sweep-ms=100"])
        .await;
    let leaving = platform
        .console_member("leaving@example.com", dir::Role::Agent, 5)
        .await;
    let customer = platform.customer("wait@example.com").await;
    let mut routing = platform.routing_client(0);
    let first = create(&mut routing, &customer.token, "first").await;
    let pending = create(&mut routing, &customer.token, "pending").await;
    assert_eq!(
        assigned(&routing, &customer.token, &first.id)
            .await
            .assignee_id,
        leaving.id
    );
    assert_eq!(
        assigned(&routing, &customer.token, &pending.id)
            .await
            .assignee_id,
        leaving.id
    );
    set_status(
        &mut routing,
        &leaving.token,
        &pending.id,
        rt::ConversationStatus::Pending,
    )
    .await
    .unwrap();
    platform
        .presence(&leaving.token, dir::Presence::Offline)
        .await;
    // Still theirs within the grace period (checked right away), queued after it.
    assert_eq!(
        get(&mut routing, &customer.token, &first.id)
            .await
            .assignee_id,
        leaving.id
    );
    let requeued = until("the requeue", || {
        let mut routing = routing.clone();
        let (token, id) = (customer.token.clone(), first.id.clone());
        async move {
            let c = get(&mut routing, &token, &id).await;
            (c.status == rt::ConversationStatus::Queued as i32).then_some(c)
        }
    })
    .await;
    assert!(requeued.requeued);
    assert!(requeued.assignee_id.is_empty());
    let events = history(&mut routing, &platform.admin.token, &first.id).await;
    let last = events.last().unwrap();
    assert_eq!(last.kind, rt::conversation_event::Kind::Requeued as i32);
    assert_eq!(last.reason, "offline");
    assert_eq!(last.from_agent_id, leaving.id);
    // Pending waits for the customer, not the agent: it stays.
    let still = get(&mut routing, &platform.admin.token, &pending.id).await;
    assert_eq!(still.assignee_id, leaving.id);
    assert_eq!(still.status, rt::ConversationStatus::Pending as i32);

    // Someone comes online and gets the requeued one.
    let arriving = platform
        .console_member("arriving@example.com", dir::Role::Agent, 5)
        .await;
    assert_eq!(
        assigned(&routing, &customer.token, &first.id)
            .await
            .assignee_id,
        arriving.id
    );

    // Removing an agent takes back everything they hold at once, pending included.
    let removed = platform
        .agents_client()
        .remove_agent(authed(
            &platform.admin.token,
            dir::RemoveAgentRequest {
                agent_id: leaving.id.clone(),
                confirm_email: leaving.email.clone(),
            },
        ))
        .await;
    removed.unwrap();
    let c = assigned(&routing, &customer.token, &pending.id).await;
    assert_eq!(c.assignee_id, arriving.id);
    let events = history(&mut routing, &platform.admin.token, &pending.id).await;
    let requeue = events
        .iter()
        .find(|e| e.kind == rt::conversation_event::Kind::Requeued as i32)
        .unwrap();
    assert_eq!(requeue.reason, "removed");
    loads(&platform).await;
    platform.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let platform = Platform::start(TestBackend::Sqlite, 1, &[]).await;
    let customer = platform.customer("bad@example.com").await;
    let agent = platform
        .console_member("careful@example.com", dir::Role::Agent, 5)
        .await;
    let mut routing = platform.routing_client(0);
    let request = |subject: &str, body: &str| rt::CreateConversationRequest {
        subject: subject.into(),
        body: body.into(),
        ..Default::default()
    };
    for (req, field) in [
        (request("", "x"), "subject"),
        (request("x", ""), "body"),
        (request(&"s".repeat(201), "x"), "subject"),
        (request("x", &"b".repeat(4_001)), "body"),
        (request("x", "a\u{0}b"), "body"),
        (
            rt::CreateConversationRequest {
                priority: 99,
                ..request("x", "y")
            },
            "priority",
        ),
    ] {
        let error = routing
            .create_conversation(authed(&customer.token, req))
            .await
            .unwrap_err();
        assert_eq!(
            error.code(),
            Code::InvalidArgument,
            "{field}: {}",
            error.message()
        );
        assert!(error.message().contains(field), "{}", error.message());
    }
    // Customers set neither priority nor skills, nor create for others; agents do not create.
    for req in [
        rt::CreateConversationRequest {
            priority: rt::Priority::Urgent as i32,
            ..request("x", "y")
        },
        rt::CreateConversationRequest {
            required_skills: vec!["vip".into()],
            ..request("x", "y")
        },
        rt::CreateConversationRequest {
            customer_id: agent.id.clone(),
            ..request("x", "y")
        },
    ] {
        let error = routing
            .create_conversation(authed(&customer.token, req))
            .await
            .unwrap_err();
        assert_eq!(error.code(), Code::PermissionDenied, "{}", error.message());
    }
    let error = routing
        .create_conversation(authed(&agent.token, request("x", "y")))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied);
    let service = platform.service_token().await;
    let error = routing
        .create_conversation(authed(
            &service,
            rt::CreateConversationRequest {
                customer_id: customer.id.clone(),
                required_skills: vec!["Not A Skill".into()],
                ..request("x", "y")
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    // Nothing was stored.
    let all = list(
        &mut routing,
        &platform.admin.token,
        rt::Scope::All,
        rt::ConversationStatus::Unspecified,
    )
    .await
    .unwrap();
    assert!(all.is_empty(), "{all:?}");

    let conversation = create(&mut routing, &customer.token, "ok").await;
    for (id, code) in [
        ("not-an-id", Code::InvalidArgument),
        ("00000000-0000-0000-0000-000000000000", Code::NotFound),
    ] {
        let error = post(&mut routing, &customer.token, id, "hi", false)
            .await
            .unwrap_err();
        assert_eq!(error.code(), code);
    }
    let error = post(
        &mut routing,
        &customer.token,
        &conversation.id,
        &"b".repeat(4_001),
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let error = set_status(
        &mut routing,
        &customer.token,
        &conversation.id,
        rt::ConversationStatus::Queued,
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let error = routing
        .set_conversation_status(authed(
            &customer.token,
            rt::SetConversationStatusRequest {
                conversation_id: conversation.id.clone(),
                status: 42,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let error = routing
        .list_conversations(authed(
            &customer.token,
            rt::ListConversationsRequest {
                page: Some(PageRequest {
                    limit: 1_000,
                    offset: 0,
                }),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let error = routing
        .record_assist_session(authed(
            &agent.token,
            rt::RecordAssistSessionRequest {
                conversation_id: conversation.id.clone(),
                session_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let c = assigned(&routing, &customer.token, &conversation.id).await;
    let events = history(&mut routing, &agent.token, &c.id).await;
    assert_eq!(events.len(), 3, "created, message, assigned: nothing else");
    // A call without a token is refused; a console member sees the queue.
    let error = routing
        .get_queue_stats(rt::GetQueueStatsRequest {})
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated);
    let stats = routing
        .get_queue_stats(authed(&agent.token, rt::GetQueueStatsRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((stats.queued, stats.open, stats.agents_online), (0, 1, 1));
    // An agent acting as the customer (an impersonation token) is neither here: refused everywhere.
    let assist = platform
        .impersonation_client(0)
        .start_assist(authed(
            &agent.token,
            assist_proto::impersonation::v1::StartAssistRequest {
                target_id: customer.id.clone(),
                reason: "the customer asked in chat".into(),
                conversation_id: c.id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let error = post(
        &mut routing,
        &assist.access_token,
        &c.id,
        "as the customer",
        false,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(error.code(), Code::Unauthenticated | Code::PermissionDenied),
        "{error:?}"
    );
    assert_eq!(history(&mut routing, &agent.token, &c.id).await.len(), 3);
    platform.stop().await;
}

/// Runs a churn over `replicas` replicas on `backend` (offline grace one second, so that requeues race
/// with assignments) and fails on any violation or loss.
async fn churn_checked(backend: TestBackend, replicas: usize, spec: assist_tests::churn::Churn) {
    let mut platform = Platform::start(backend, 1, &[]).await;
    platform.stop_routing().await;
    for _ in 0..replicas {
        platform
            .add_routing_replica(&["--offline-grace-secs=1", "--sweep-ms=200"])
            .await;
    }
    let report = assist_tests::churn::churn(&platform, spec).await;
    eprintln!("{report}");
    let first: Vec<_> = report.violations.iter().take(10).collect();
    assert!(first.is_empty(), "{first:#?}");
    assert_eq!(report.lost, 0);
    assert!(report.assignments >= report.created, "{report}");
    loads(&platform).await;
    platform.stop().await;
}

/// Three replicas on one PostgreSQL database; conversations arrive through all of them while agents
/// go online and offline (past the grace period) and resolve. Afterwards, from the database: no
/// conversation assigned while not queued, no agent ever above capacity, none lost, counters equal to
/// the conversations.
#[tokio::test]
async fn three_replicas_never_double_assign_nor_exceed_capacity() {
    let Some(backend) = TestBackend::postgres() else {
        eprintln!("skipped: no PostgreSQL");
        return;
    };
    let spec = assist_tests::churn::Churn {
        agents: 20,
        capacity: 3,
        conversations: 600,
        concurrency: 12,
    };
    churn_checked(backend, 3, spec).await;
}

/// The embedded mode: one replica on SQLite (one writer at a time) under the same churn.
#[tokio::test]
async fn the_embedded_mode_never_double_assigns_nor_exceeds_capacity() {
    let spec = assist_tests::churn::Churn {
        agents: 10,
        capacity: 3,
        conversations: 500,
        concurrency: 8,
    };
    churn_checked(TestBackend::Sqlite, 1, spec).await;
}

/// Reads `stream` until it ends (within [`WAIT`]): the events it still delivered, and how it ended.
async fn until_ended(
    stream: &mut tonic::Streaming<rt::ConversationEvent>,
) -> (Vec<rt::ConversationEvent>, Option<tonic::Status>) {
    tokio::time::timeout(WAIT, async {
        let mut delivered = Vec::new();
        loop {
            match stream.message().await {
                Ok(Some(event)) => delivered.push(event),
                Ok(None) => return (delivered, None),
                Err(status) => return (delivered, Some(status)),
            }
        }
    })
    .await
    .expect("the stream did not end")
}

#[tokio::test]
async fn open_watches_end_when_access_ends_and_each_caller_holds_a_bounded_number() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend.clone(), 1, &[]).await;
        let name = backend.name();
        let ann = platform
            .console_member("ann@example.com", dir::Role::Agent, 5)
            .await;
        let bob = platform
            .console_member("bob@example.com", dir::Role::Agent, 5)
            .await;
        let supervisor = platform
            .console_member("sue@example.com", dir::Role::Supervisor, 5)
            .await;
        for member in [&ann, &bob, &supervisor] {
            platform.presence(&member.token, dir::Presence::Away).await;
        }
        let customer = platform.customer("casey@example.com").await;
        let mut routing = platform.routing_client(0);
        let conversation = create(&mut routing, &customer.token, "Parcel").await;
        let id = conversation.id.clone();
        assign(&mut routing, &supervisor.token, &id, &ann.id)
            .await
            .unwrap();

        // Ann watches the conversation, the supervisor all of them; both see the customer.
        let mut ann_stream = watch(&mut routing, &ann.token, rt::Scope::Unspecified, &id).await;
        let mut all_stream = watch(&mut routing, &supervisor.token, rt::Scope::All, "").await;
        post(&mut routing, &customer.token, &id, "first", false)
            .await
            .unwrap();
        next_matching(&mut ann_stream, "the first message", is_message("first")).await;
        next_matching(&mut all_stream, "the first message", is_message("first")).await;

        // Transferred to Bob: Ann's open watch ends and carries nothing said afterwards.
        assign(&mut routing, &supervisor.token, &id, &bob.id)
            .await
            .unwrap();
        post(&mut routing, &customer.token, &id, "for bob only", false)
            .await
            .unwrap();
        post(&mut routing, &bob.token, &id, "internal: for bob", true)
            .await
            .unwrap();
        let (delivered, ended) = until_ended(&mut ann_stream).await;
        assert!(
            delivered.iter().all(|e| e.message.is_none()),
            "{name}: messages after the transfer reached the old assignee: {delivered:?}"
        );
        assert_eq!(
            ended.map(|s| s.code()),
            Some(Code::PermissionDenied),
            "{name}: the old assignee's watch ends refused"
        );

        // The supervisor, demoted, loses the watch of everything (without any new event).
        platform
            .agents_client()
            .change_role(authed(
                &platform.admin.token,
                dir::ChangeRoleRequest {
                    agent_id: supervisor.id.clone(),
                    role: dir::Role::Agent as i32,
                },
            ))
            .await
            .unwrap();
        let (_, ended) = until_ended(&mut all_stream).await;
        assert_eq!(
            ended.map(|s| s.code()),
            Some(Code::PermissionDenied),
            "{name}: a demoted supervisor's watch of all conversations ends"
        );
        let refused = routing
            .watch_conversations(authed(
                &supervisor.token,
                rt::WatchConversationsRequest {
                    scope: rt::Scope::All as i32,
                    conversation_id: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{name}");

        // One caller holds at most eight watches; closing one frees its place.
        let mut open = Vec::new();
        for _ in 0..assist_runtime::notify::WATCHES_PER_PERSON {
            open.push(watch(&mut routing, &customer.token, rt::Scope::Mine, "").await);
        }
        let request = || {
            authed(
                &customer.token,
                rt::WatchConversationsRequest {
                    scope: rt::Scope::Mine as i32,
                    conversation_id: String::new(),
                },
            )
        };
        let refused = routing.watch_conversations(request()).await.unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted, "{name}");
        // Someone else is not affected.
        watch(&mut routing, &bob.token, rt::Scope::Mine, "").await;
        drop(open.pop());
        until("a freed watch place", || {
            let mut routing = routing.clone();
            async move { routing.watch_conversations(request()).await.ok() }
        })
        .await;
        platform.stop().await;
    }
}

/// Starts an assist session by `agent` for `target`, labelled with `conversation`.
async fn start_assist(
    platform: &Platform,
    agent: &Signed,
    target: &str,
    conversation: &str,
) -> Result<String, tonic::Status> {
    platform
        .impersonation_client(0)
        .start_assist(authed(
            &agent.token,
            assist_proto::impersonation::v1::StartAssistRequest {
                target_id: target.to_owned(),
                reason: "the customer asked in chat".into(),
                conversation_id: conversation.to_owned(),
                ..Default::default()
            },
        ))
        .await
        .map(|r| r.into_inner().session.unwrap().id)
}

async fn record(
    routing: &mut RoutingClient<Channel>,
    token: &str,
    conversation: &str,
    session: &str,
) -> Result<rt::Conversation, tonic::Status> {
    routing
        .record_assist_session(authed(
            token,
            rt::RecordAssistSessionRequest {
                conversation_id: conversation.to_owned(),
                session_id: session.to_owned(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// A conversation's history names only assist sessions that served it: the recording agent's own
/// live session, for the conversation's customer, started for this conversation; and a session is
/// started for a conversation only when it exists, is the agent's to read and is the target's.
#[tokio::test]
async fn assist_sessions_and_conversations_are_linked_only_where_they_belong() {
    let platform = Platform::start(TestBackend::Sqlite, 1, &[]).await;
    let ann = platform
        .console_member("ann@example.com", dir::Role::Agent, 5)
        .await;
    let bob = platform
        .console_member("bob@example.com", dir::Role::Agent, 5)
        .await;
    platform.presence(&bob.token, dir::Presence::Away).await;
    let casey = platform.customer("casey@example.com").await;
    let olga = platform.customer("olga@example.com").await;
    let mut routing = platform.routing_client(0);
    let conversation = create(&mut routing, &casey.token, "Parcel").await;
    let id = assigned(&routing, &casey.token, &conversation.id).await.id;
    let other = create(&mut routing, &olga.token, "Refund").await.id;
    // Routed to Ann too (Bob is away): Ann may read it, but it is Olga's.
    let other = assigned(&routing, &olga.token, &other).await.id;
    let before = history(&mut routing, &ann.token, &id).await.len();

    // StartAssist: another customer's conversation, one Bob may not read, and one that does not
    // exist are refused, and no session is started.
    let error = start_assist(&platform, &ann, &casey.id, &other)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    let error = start_assist(&platform, &bob, &casey.id, &id)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");
    let error = start_assist(
        &platform,
        &ann,
        &casey.id,
        "01890000-0000-7000-8000-00000000000c",
    )
    .await
    .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    let sessions = platform
        .impersonation_client(0)
        .list_sessions(authed(
            &platform.admin.token,
            assist_proto::impersonation::v1::ListSessionsRequest::default(),
        ))
        .await
        .unwrap()
        .into_inner()
        .sessions;
    assert!(sessions.is_empty(), "{sessions:?}");

    // Bob's session, a session for another customer, one for another conversation, an unknown id
    // and an ended session are all refused.
    let bobs = start_assist(&platform, &bob, &casey.id, "").await.unwrap();
    let error = record(&mut routing, &ann.token, &id, &bobs)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::PermissionDenied, "{error:?}");
    let for_olga = start_assist(&platform, &ann, &olga.id, "").await.unwrap();
    let error = record(&mut routing, &ann.token, &id, &for_olga)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    let unknown = "01890000-0000-7000-8000-000000000000";
    let error = record(&mut routing, &ann.token, &id, unknown)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    let ended = start_assist(&platform, &ann, &casey.id, &id).await.unwrap();
    platform
        .impersonation_client(0)
        .end_assist(authed(
            &ann.token,
            assist_proto::impersonation::v1::EndAssistRequest {
                session_id: ended.clone(),
            },
        ))
        .await
        .unwrap();
    let error = record(&mut routing, &ann.token, &id, &ended)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    assert_eq!(
        history(&mut routing, &ann.token, &id).await.len(),
        before,
        "nothing recorded"
    );

    // Ann's own live session for Casey, started for this conversation, is recorded.
    let own = start_assist(&platform, &ann, &casey.id, &id).await.unwrap();
    record(&mut routing, &ann.token, &id, &own).await.unwrap();
    let events = history(&mut routing, &ann.token, &id).await;
    assert_eq!(events.len(), before + 1);
    assert_eq!(events.last().unwrap().session_id, own);
    platform.stop().await;
}
