//! Load runs of conversation routing on the whole platform in this process:
//!
//! - [`churn`]: conversations arriving through every routing replica while agents go online and offline
//!   and resolve, then a check from the database that nothing was assigned twice, no capacity was
//!   exceeded and nothing was lost (the CI test runs it small, `load routing-churn` at full size);
//! - [`throughput`]: created → assigned latency at a steady arrival rate, then a backlog assigned to
//!   1,000 online agents: assignments per second and fairness (PostgreSQL);
//! - [`messages`]: the time a customer's message takes to reach the assignee's watch stream, on the
//!   same replica and across replicas (PostgreSQL).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::routing::v1 as rt;
use assist_runtime::auth::Realm;
use assist_runtime::db::Database;
use assist_runtime::testing::TestBackend;
use sqlx::Row;

use crate::Latencies;
use crate::console_load::{seed_agents, tokens_for};
use crate::platform::{Platform, Signed, authed};

/// The size of a churn run.
#[derive(Debug, Clone, Copy)]
pub struct Churn {
    pub agents: usize,
    pub capacity: u32,
    pub conversations: usize,
    /// Conversations being created at once.
    pub concurrency: usize,
}

/// What a churn run found.
#[derive(Debug, Default)]
pub struct ChurnReport {
    pub created: usize,
    pub resolved: usize,
    pub presence_changes: usize,
    pub assignments: usize,
    /// Conversations taken back from agents offline past the grace period.
    pub requeues: usize,
    pub capacity_samples: usize,
    /// Double assignments, capacity violations, impossible transitions; empty when all is well.
    pub violations: Vec<String>,
    /// Conversations missing, or queued at the end while an agent had room.
    pub lost: usize,
    pub elapsed: Duration,
}

impl std::fmt::Display for ChurnReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "churn: {} conversations created, {} automatic assignments, {} requeues, {} resolved, \
             {} presence changes, {} capacity samples in {:.1} s; {} violations, {} lost",
            self.created,
            self.assignments,
            self.requeues,
            self.resolved,
            self.presence_changes,
            self.capacity_samples,
            self.elapsed.as_secs_f64(),
            self.violations.len(),
            self.lost
        )
    }
}

/// A small xorshift generator: load runs need spread, not cryptography.
struct Dice(u64);

impl Dice {
    fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Runs a churn over the platform's routing replicas (see the module docs) and checks the outcome
/// from the routing database.
pub async fn churn(platform: &Platform, spec: Churn) -> ChurnReport {
    let began = Instant::now();
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut agents: Vec<Signed> = Vec::with_capacity(spec.agents);
    for i in 0..spec.agents {
        agents.push(
            platform
                .console_member(
                    &format!("churn{i}-{}@load.test", &run[20..]),
                    dir::Role::Agent,
                    spec.capacity,
                )
                .await,
        );
    }
    let customers: Vec<Signed> = {
        let mut customers = Vec::new();
        for i in 0..4 {
            customers.push(
                platform
                    .customer(&format!("churn-customer{i}-{}@load.test", &run[20..]))
                    .await,
            );
        }
        customers
    };
    let clients: Vec<_> = (0..platform.routing.len())
        .map(|i| platform.routing_client(i))
        .collect();
    let db = platform
        .routing_db()
        .open(&assist_conversation_routing::store::MIGRATIONS)
        .await;
    let done = Arc::new(AtomicBool::new(false));
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();

    // Capacity sampler: nobody above capacity at any moment (no manual assignments in this run).
    let sampler = {
        let (db, done, violations) = (db.clone(), done.clone(), violations.clone());
        let capacity = i64::from(spec.capacity);
        tokio::spawn(async move {
            let mut samples = 0;
            while !done.load(Ordering::Relaxed) {
                for (agent, open) in open_per_agent(&db).await {
                    if open > capacity {
                        violations
                            .lock()
                            .unwrap()
                            .push(format!("{agent} held {open} open (capacity {capacity})"));
                    }
                }
                samples += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            samples
        })
    };
    // Presence churn: agents go offline and come back; offline agents resolve nothing.
    let offline: Arc<Vec<AtomicBool>> =
        Arc::new((0..agents.len()).map(|_| AtomicBool::new(false)).collect());
    let presence = {
        let (done, agents, offline) = (done.clone(), agents.clone(), offline.clone());
        let directory = platform.agents_client();
        let gap =
            (Duration::from_millis(1500) / spec.agents.max(1) as u32).max(Duration::from_millis(5));
        tokio::spawn(async move {
            let mut dice = Dice::new(7);
            let mut changes = 0;
            while !done.load(Ordering::Relaxed) {
                let i = dice.below(agents.len());
                let now_offline = !offline[i].load(Ordering::Relaxed);
                let presence = if now_offline {
                    dir::Presence::Offline
                } else {
                    dir::Presence::Online
                };
                let _ = directory
                    .clone()
                    .heartbeat(authed(
                        &agents[i].token,
                        dir::HeartbeatRequest {
                            presence: presence as i32,
                        },
                    ))
                    .await;
                offline[i].store(now_offline, Ordering::Relaxed);
                changes += 1;
                // Each agent changes about every 1.5 s: many stay offline past a 1 s grace.
                tokio::time::sleep(gap).await;
            }
            changes
        })
    };
    // Resolvers: agents resolve what they hold, through any replica, freeing room for the queue.
    let mut resolvers = Vec::new();
    for worker in 0..spec.concurrency.div_ceil(2) {
        let (done, agents, clients) = (done.clone(), agents.clone(), clients.clone());
        let offline = offline.clone();
        resolvers.push(tokio::spawn(async move {
            let mut dice = Dice::new(11 + worker as u64);
            let mut resolved = 0;
            while !done.load(Ordering::Relaxed) {
                let i = dice.below(agents.len());
                if offline[i].load(Ordering::Relaxed) {
                    tokio::task::yield_now().await;
                    continue;
                }
                let agent = &agents[i];
                let mut client = clients[dice.below(clients.len())].clone();
                let mine = client
                    .list_conversations(authed(
                        &agent.token,
                        rt::ListConversationsRequest {
                            status: rt::ConversationStatus::Assigned as i32,
                            ..Default::default()
                        },
                    ))
                    .await;
                let Ok(mine) = mine else { continue };
                let mine = mine.into_inner().conversations;
                if mine.is_empty() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
                let c = &mine[dice.below(mine.len())];
                // Losing a race with a requeue is fine: it is simply not resolved.
                if client
                    .set_conversation_status(authed(
                        &agent.token,
                        rt::SetConversationStatusRequest {
                            conversation_id: c.id.clone(),
                            status: rt::ConversationStatus::Resolved as i32,
                        },
                    ))
                    .await
                    .is_ok()
                {
                    resolved += 1;
                }
            }
            resolved
        }));
    }
    // Creators, spread over the replicas.
    let next = Arc::new(AtomicUsize::new(0));
    let mut creators = Vec::new();
    for worker in 0..spec.concurrency {
        let (next, clients, customers) = (next.clone(), clients.clone(), customers.clone());
        creators.push(tokio::spawn(async move {
            let mut created = 0;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= spec.conversations {
                    return created;
                }
                let customer = &customers[n % customers.len()];
                let mut client = clients[(n + worker) % clients.len()].clone();
                client
                    .create_conversation(authed(
                        &customer.token,
                        rt::CreateConversationRequest {
                            subject: format!("churn {n}"),
                            body: "help".into(),
                            ..Default::default()
                        },
                    ))
                    .await
                    .expect("creating a conversation");
                created += 1;
            }
        }));
    }
    let mut report = ChurnReport::default();
    for creator in creators {
        report.created += creator.await.unwrap();
    }
    // Churn on until the resolvers have made room for everything queued (bounded).
    let deadline = Instant::now() + Duration::from_secs(300);
    while queued_and_open(&db).await.0 > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done.store(true, Ordering::Relaxed);
    report.presence_changes = presence.await.unwrap();
    for resolver in resolvers {
        report.resolved += resolver.await.unwrap();
    }
    report.capacity_samples = sampler.await.unwrap();

    // Everyone online again: what is queued must find room, or every agent is full.
    for agent in &agents {
        platform.presence(&agent.token, dir::Presence::Online).await;
    }
    let total_room = spec.agents as i64 * i64::from(spec.capacity);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (queued, open) = queued_and_open(&db).await;
        if queued == 0 || open >= total_room || Instant::now() > deadline {
            report.lost = if queued > 0 && open < total_room {
                queued as usize
            } else {
                0
            };
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (stored, assignments, requeues, mut walk) = walk_events(&db).await;
    report.assignments = assignments;
    report.requeues = requeues;
    report.lost += report.created.saturating_sub(stored);
    let mut violations = std::mem::take(&mut *violations.lock().unwrap());
    violations.append(&mut walk);
    for (agent, open) in open_per_agent(&db).await {
        if open > i64::from(spec.capacity) {
            violations.push(format!("{agent} ends with {open} open"));
        }
    }
    report.violations = violations;
    report.elapsed = began.elapsed();
    db.pool.close().await;
    report
}

async fn open_per_agent(db: &Database) -> Vec<(String, i64)> {
    sqlx::query(
        "SELECT assignee_id, count(*) FROM conversations \
         WHERE status IN ('assigned', 'pending') GROUP BY assignee_id",
    )
    .fetch_all(&db.pool)
    .await
    .map(|rows| {
        rows.iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect()
    })
    .unwrap_or_default()
}

async fn queued_and_open(db: &Database) -> (i64, i64) {
    let row = sqlx::query(
        "SELECT sum(CASE WHEN status = 'queued' THEN 1 ELSE 0 END), \
         sum(CASE WHEN status IN ('assigned', 'pending') THEN 1 ELSE 0 END) FROM conversations",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    (
        row.get::<Option<i64>, _>(0).unwrap_or(0),
        row.get::<Option<i64>, _>(1).unwrap_or(0),
    )
}

/// Replays every conversation's events: an assignment only from the queue, a requeue or resolve only
/// of an open one, and the stored state equal to where the events lead. Returns the number of
/// conversations, of automatic assignments, of requeues, and the violations.
async fn walk_events(db: &Database) -> (usize, usize, usize, Vec<String>) {
    let events = sqlx::query(
        "SELECT conversation_id, kind, to_agent_id, actor_id FROM conversation_events \
         ORDER BY conversation_id, at, id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let stored: HashMap<String, (String, Option<String>)> =
        sqlx::query("SELECT id, status, assignee_id FROM conversations")
            .fetch_all(&db.pool)
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
    let mut violations = Vec::new();
    let mut automatic = 0;
    let mut requeues = 0;
    let mut states: HashMap<String, (&'static str, String)> = HashMap::new();
    for row in &events {
        let id: String = row.get(0);
        let kind: String = row.get(1);
        let to: String = row.get(2);
        let actor: String = row.get(3);
        let state = states.entry(id.clone()).or_insert(("none", String::new()));
        let next = match (state.0, kind.as_str()) {
            ("none", "created") => Some(("queued", String::new())),
            ("queued", "assigned") => {
                if actor == assist_conversation_routing::domain::ROUTING_ACTOR {
                    automatic += 1;
                }
                Some(("assigned", to))
            }
            ("assigned", "pending") => Some(("pending", state.1.clone())),
            ("pending", "resumed") => Some(("assigned", state.1.clone())),
            ("assigned" | "pending", "requeued") => {
                requeues += 1;
                Some(("queued", String::new()))
            }
            ("assigned" | "pending", "transferred") => Some((state.0, to)),
            ("queued" | "assigned" | "pending", "resolved") => Some(("resolved", state.1.clone())),
            ("resolved", "reopened") => Some(("queued", String::new())),
            ("resolved", "closed") => Some(("closed", state.1.clone())),
            (_, "message" | "assist_started") => None,
            (from, kind) => {
                violations.push(format!("{id}: {kind} while {from}"));
                None
            }
        };
        if let Some(next) = next {
            *state = next;
        }
    }
    for (id, (status, assignee)) in &stored {
        match states.get(id) {
            Some((state, holder)) if state == status => {
                let open = matches!(*state, "assigned" | "pending");
                if open && assignee.as_deref() != Some(holder.as_str()) {
                    violations.push(format!("{id}: held by {assignee:?}, events say {holder}"));
                }
            }
            other => violations.push(format!("{id}: stored {status}, events lead to {other:?}")),
        }
    }
    (stored.len(), automatic, requeues, violations)
}

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
