//! Load runs of conversation routing on the whole platform in this process:
//!
//! - [`churn_run`]: [`assist_tests::churn`] at full size on PostgreSQL;
//! - [`throughput`]: created → assigned latency at a steady arrival rate, then a backlog assigned to
//!   1,000 online agents: assignments per second and fairness (PostgreSQL);
//! - [`messages`]: the time a customer's message takes to reach the assignee's watch stream, on the
//!   same replica and across replicas (PostgreSQL).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::routing::v1 as rt;
use assist_runtime::auth::Realm;
use assist_runtime::testing::TestBackend;
use sqlx::Row;

use assist_tests::churn::{Churn, churn};
use assist_tests::platform::{Platform, authed};

use crate::console_load::{seed_agents, tokens_for};
use crate::latencies::Latencies;

/// Seeds `agents` active, online console agents of `capacity` straight in agent-directory's database,
/// then restarts routing (`replicas` replicas) so that its view starts from them. Their tokens.
async fn online_agents(
    platform: &mut Platform,
    agents: u64,
    capacity: u32,
    replicas: usize,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let ids = seed_agents(platform, agents).await?;
    let db = platform
        .agents_db()
        .open(&assist_agent_directory::store::MIGRATIONS)
        .await;
    sqlx::query(
        "UPDATE agents SET presence = 'online', role = 'agent', capacity = $1, last_seen_at = $2",
    )
    .bind(i64::from(capacity))
    .bind(assist_runtime::time::now_us())
    .execute(&db.pool)
    .await?;
    db.pool.close().await;
    let tokens = tokens_for(platform, &ids, Realm::BackOffice).await?;
    platform.stop_routing().await;
    for _ in 0..replicas {
        platform.add_routing_replica(&[]).await;
    }
    Ok((ids, tokens))
}

/// Keeps `tokens`' presence online (a heartbeat each every 20 s, spread) until the task is aborted.
fn keep_online(platform: &Platform, tokens: Vec<String>) -> tokio::task::JoinHandle<()> {
    let client = platform.agents_client();
    tokio::spawn(async move {
        let gap = Duration::from_secs(20) / tokens.len().max(1) as u32;
        loop {
            for token in &tokens {
                let _ = client
                    .clone()
                    .heartbeat(authed(
                        token,
                        dir::HeartbeatRequest {
                            presence: dir::Presence::Online as i32,
                        },
                    ))
                    .await;
                tokio::time::sleep(gap).await;
            }
        }
    })
}

/// Jain's fairness index of `counts`: 1 when all are equal.
pub fn jain(counts: &[f64]) -> f64 {
    let sum: f64 = counts.iter().sum();
    let squares: f64 = counts.iter().map(|x| x * x).sum();
    if squares == 0.0 {
        return 1.0;
    }
    sum * sum / (counts.len() as f64 * squares)
}

/// The throughput run: `agents` online agents; first `steady` conversations created at `rate` per
/// second with the created → assigned latency seen by a watcher of all conversations; then a backlog
/// of `backlog` queued conversations stored at once and assigned by `replicas` replicas, with the
/// assignments per second and their fairness.
pub async fn throughput(
    admin_url: &str,
    agents: u64,
    steady: usize,
    rate: u32,
    backlog: u64,
    replicas: usize,
) -> anyhow::Result<()> {
    let mut platform = Platform::start(TestBackend::Postgres(admin_url.to_owned()), 0, &[]).await;
    let capacity = ((steady as u64 + backlog) / agents + 2).min(100) as u32;
    let (ids, tokens) = online_agents(&mut platform, agents, capacity, replicas).await?;
    let heartbeats = keep_online(&platform, tokens);
    let customer_ids: Vec<String> = (0..100).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let customers = tokens_for(&platform, &customer_ids, Realm::Customer).await?;

    // Steady arrivals, watched.
    let mut watch = platform
        .routing_client(0)
        .watch_conversations(authed(
            &platform.admin.token,
            rt::WatchConversationsRequest {
                scope: rt::Scope::All as i32,
                conversation_id: String::new(),
            },
        ))
        .await?
        .into_inner();
    watch.message().await?;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watcher = {
        let sent = sent.clone();
        tokio::spawn(async move {
            let mut client_side = Vec::with_capacity(steady);
            let mut server_side = Vec::with_capacity(steady);
            let mut seen = Vec::with_capacity(steady);
            let mut early: HashMap<String, Instant> = HashMap::new();
            while client_side.len() < steady {
                let Ok(Ok(Some(event))) =
                    tokio::time::timeout(Duration::from_secs(30), watch.message()).await
                else {
                    break;
                };
                if event.kind != rt::conversation_event::Kind::Assigned as i32 {
                    continue;
                }
                let now = Instant::now();
                if let Some(c) = &event.conversation {
                    server_side.push(Duration::from_micros(
                        (event.at_us - c.created_at_us).max(0) as u64,
                    ));
                    seen.push(Duration::from_micros(
                        (assist_runtime::time::now_us() - c.created_at_us).max(0) as u64,
                    ));
                }
                match sent.lock().unwrap().remove(&event.conversation_id) {
                    Some(at) => client_side.push(now - at),
                    None => {
                        early.insert(event.conversation_id.clone(), now);
                    }
                }
                // An assignment can arrive before its create call returned.
                let mut sent = sent.lock().unwrap();
                early.retain(|id, seen| match sent.remove(id) {
                    Some(at) => {
                        client_side.push(seen.saturating_duration_since(at));
                        false
                    }
                    None => true,
                });
            }
            (
                Latencies::new(client_side),
                Latencies::new(server_side),
                Latencies::new(seen),
            )
        })
    };
    let client = platform.routing_client(0);
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let mut calls = Vec::with_capacity(steady);
    let began = Instant::now();
    for i in 0..steady {
        ticks.tick().await;
        let mut client = client.clone();
        let token = customers[i % customers.len()].clone();
        let sent = sent.clone();
        calls.push(tokio::spawn(async move {
            let at = Instant::now();
            let created = client
                .create_conversation(authed(
                    &token,
                    rt::CreateConversationRequest {
                        subject: format!("steady {i}"),
                        body: "help".into(),
                        ..Default::default()
                    },
                ))
                .await?
                .into_inner();
            sent.lock().unwrap().insert(created.id, at);
            anyhow::Ok(())
        }));
    }
    for call in calls {
        call.await??;
    }
    let offered = began.elapsed();
    let (client_side, server_side, seen) = watcher.await?;

    // The backlog: stored at once, then assigned by the replicas as fast as they go.
    let db = platform
        .routing_db()
        .open(&assist_conversation_routing::store::MIGRATIONS)
        .await;
    let before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM conversation_events WHERE kind = 'assigned'")
            .fetch_one(&db.pool)
            .await?;
    let stored_at = assist_runtime::time::now_us();
    sqlx::query(
        "INSERT INTO conversations (id, customer_id, channel, subject, priority, required_skills, \
         status, requeued, queued_at, created_at, updated_at, last_message_at, version) \
         SELECT gen_random_uuid()::text, $2, 'api', 'backlog ' || n, 2, '', 'queued', 0, $3 + n, \
         $3 + n, $3 + n, $3 + n, 1 FROM generate_series(1, $1::bigint) AS n",
    )
    .bind(backlog as i64)
    .bind(&customer_ids[0])
    .bind(stored_at)
    .execute(&db.pool)
    .await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let queued: i64 =
            sqlx::query_scalar("SELECT count(*) FROM conversations WHERE status = 'queued'")
                .fetch_one(&db.pool)
                .await?;
        if queued == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let row = sqlx::query(
        "SELECT count(*), min(at), max(at) FROM conversation_events WHERE kind = 'assigned' AND at >= $1",
    )
    .bind(stored_at)
    .fetch_one(&db.pool)
    .await?;
    let (assigned, first, last): (i64, Option<i64>, Option<i64>) =
        (row.get(0), row.get(1), row.get(2));
    let span = Duration::from_micros((last.unwrap_or(0) - first.unwrap_or(0)).max(1) as u64);
    let per_agent: HashMap<String, i64> = sqlx::query(
        "SELECT to_agent_id, count(*) FROM conversation_events WHERE kind = 'assigned' \
         GROUP BY to_agent_id",
    )
    .fetch_all(&db.pool)
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let counts: Vec<f64> = ids
        .iter()
        .map(|id| per_agent.get(id).copied().unwrap_or(0) as f64)
        .collect();
    let (max, min) = counts.iter().fold((f64::MIN, f64::MAX), |(max, min), &c| {
        (max.max(c), min.min(c))
    });
    heartbeats.abort();

    println!(
        "Routing, {agents} online agents (capacity {capacity}), {replicas} replica(s), PostgreSQL:"
    );
    println!(
        "  steady arrivals, {steady} at {rate}/s (offered in {:.1} s):",
        offered.as_secs_f64()
    );
    println!(
        "    create call sent -> assignment on a watch stream: {}",
        client_side.summary()
    );
    println!(
        "    stored (created_at) -> assignment planned (at):    {}",
        server_side.summary()
    );
    println!(
        "    stored (created_at) -> assignment on the stream:   {}",
        seen.summary()
    );
    println!(
        "  backlog of {backlog}: {assigned} assigned in {:.2} s = {:.0} assignments/s",
        span.as_secs_f64(),
        assigned as f64 / span.as_secs_f64()
    );
    println!(
        "  fairness over all {} assignments: max - min per agent = {}, Jain's index = {:.4}",
        before + assigned,
        max - min,
        jain(&counts)
    );
    db.pool.close().await;
    platform.stop().await;
    Ok(())
}

/// The message run: one agent per conversation watching its own on replica 0 (and, with two replicas,
/// the same on replica 1); `messages` customer messages sent at `rate` per second through replica 0.
pub async fn messages(admin_url: &str, messages: usize, rate: u32) -> anyhow::Result<()> {
    let mut platform = Platform::start(TestBackend::Postgres(admin_url.to_owned()), 0, &[]).await;
    let (_, tokens) = online_agents(&mut platform, 20, 5, 2).await?;
    let heartbeats = keep_online(&platform, tokens.clone());
    let customer_ids: Vec<String> = (0..20).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let customers = tokens_for(&platform, &customer_ids, Realm::Customer).await?;
    let mut client = platform.routing_client(0);
    let mut conversations = Vec::new();
    for token in &customers {
        let created = client
            .create_conversation(authed(
                token,
                rt::CreateConversationRequest {
                    subject: "latency".into(),
                    body: "hello".into(),
                    ..Default::default()
                },
            ))
            .await?
            .into_inner();
        conversations.push((created.id, token.clone()));
    }
    // Wait until all are assigned.
    let admin = platform.admin.token.clone();
    for (id, _) in &conversations {
        loop {
            let c = client
                .get_conversation(authed(
                    &admin,
                    rt::GetConversationRequest {
                        conversation_id: id.clone(),
                    },
                ))
                .await?
                .into_inner();
            if c.status == rt::ConversationStatus::Assigned as i32 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for (replica, label) in [(0, "same replica"), (1, "across replicas")] {
        let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let mut watchers = Vec::new();
        for token in &tokens {
            let mut stream = platform
                .routing_client(replica)
                .watch_conversations(authed(token, rt::WatchConversationsRequest::default()))
                .await?
                .into_inner();
            stream.message().await?;
            let sent = sent.clone();
            watchers.push(tokio::spawn(async move {
                let mut samples = Vec::new();
                while let Ok(Ok(Some(event))) =
                    tokio::time::timeout(Duration::from_secs(5), stream.message()).await
                {
                    if let Some(message) = event.message
                        && let Some(at) = sent.lock().unwrap().remove(&message.body)
                    {
                        samples.push(at.elapsed());
                    }
                }
                samples
            }));
        }
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
        let mut calls = Vec::new();
        for i in 0..messages {
            ticks.tick().await;
            let (id, token) = conversations[i % conversations.len()].clone();
            let body = format!("{label} {i}");
            sent.lock().unwrap().insert(body.clone(), Instant::now());
            let mut client = client.clone();
            calls.push(tokio::spawn(async move {
                client
                    .post_message(authed(
                        &token,
                        rt::PostMessageRequest {
                            conversation_id: id,
                            body,
                            internal: false,
                        },
                    ))
                    .await
                    .map(|_| ())
            }));
        }
        for call in calls {
            call.await??;
        }
        let mut samples = Vec::new();
        for watcher in watchers {
            samples.extend(watcher.await?);
        }
        println!(
            "Customer message -> assignee's WatchConversations ({label}, {messages} at {rate}/s, \
             PostgreSQL): {}",
            Latencies::new(samples).summary()
        );
    }
    heartbeats.abort();
    platform.stop().await;
    Ok(())
}

/// The churn at full size on PostgreSQL with three replicas (offline grace one second), printed.
pub async fn churn_run(admin_url: &str, spec: Churn) -> anyhow::Result<()> {
    let mut platform = Platform::start(TestBackend::Postgres(admin_url.to_owned()), 0, &[]).await;
    platform.stop_routing().await;
    for _ in 0..3 {
        platform
            .add_routing_replica(&["--offline-grace-secs=1", "--sweep-ms=200"])
            .await;
    }
    let report = churn(&platform, spec).await;
    println!("{report}");
    for violation in report.violations.iter().take(20) {
        println!("  violation: {violation}");
    }
    let failed = !report.violations.is_empty() || report.lost > 0;
    platform.stop().await;
    anyhow::ensure!(!failed, "the churn found violations or lost conversations");
    Ok(())
}
