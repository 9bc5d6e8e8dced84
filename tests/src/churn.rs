//! A churn run of conversation routing on the whole platform in this process: conversations arriving
//! through every routing replica while agents go online and offline and resolve, then a check from the
//! database that nothing was assigned twice, no capacity was exceeded and nothing was lost. The CI test
//! runs it small; `load routing-churn` (crate `assist-bench`) at full size.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::routing::v1 as rt;
use assist_runtime::db::Database;
use sqlx::Row;

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
