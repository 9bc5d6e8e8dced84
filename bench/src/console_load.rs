//! Load runs of the console figures on the whole platform in this process (PostgreSQL): `ListAgents`
//! over many agents with seats and presence counts, and heartbeats at a sustained rate with the time a
//! presence change takes to reach a `WatchAgents` subscriber.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::common::v1::PageRequest;
use assist_runtime::auth::{Claims, Realm};
use assist_runtime::keys::{self, KeyEncryptionKey};
use assist_runtime::testing::TestBackend;

use crate::latencies::Latencies;
use assist_tests::platform::{Platform, authed};

/// Stores `agents` active console profiles straight in agent-directory's database (one statement;
/// every third online), with enough seats; their ids, by id.
pub(crate) async fn seed_agents(platform: &Platform, agents: u64) -> anyhow::Result<Vec<String>> {
    let db = platform
        .agents_db()
        .open(&assist_agent_directory::store::MIGRATIONS)
        .await;
    let now = assist_runtime::time::now_us();
    sqlx::query(
        "INSERT INTO agents (id, display_name, sort_name, nickname, created_at, updated_at, version, \
         email, sort_email, role, status, presence, last_seen_at) \
         SELECT gen_random_uuid()::text, 'Agent ' || n, 'agent ' || lpad(n::text, 6, '0'), '', $2, $2, 1, \
         'agent' || n || '@load.test', 'agent' || n || '@load.test', \
         CASE WHEN n % 50 = 0 THEN 'supervisor' ELSE 'agent' END, 'active', \
         CASE WHEN n % 3 = 0 THEN 'online' ELSE 'offline' END, $2 \
         FROM generate_series(1, $1::bigint) AS n",
    )
    .bind(agents as i64)
    .bind(now)
    .execute(&db.pool)
    .await?;
    sqlx::query("UPDATE seats SET licensed = $1")
        .bind(agents as i64 + 1000)
        .execute(&db.pool)
        .await?;
    sqlx::query("ANALYZE agents").execute(&db.pool).await?;
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM agents ORDER BY id")
        .fetch_all(&db.pool)
        .await?;
    db.pool.close().await;
    Ok(ids)
}

/// Access tokens of principals `ids` of `realm`, signed with identity's live key as its Login would
/// (the principals need not exist in identity: services only verify the signature).
pub(crate) async fn tokens_for(
    platform: &Platform,
    ids: &[String],
    realm: Realm,
) -> anyhow::Result<Vec<String>> {
    let store = assist_identity::store::Store::new(
        platform
            .identity_db()
            .open(&assist_identity::store::MIGRATIONS)
            .await,
    );
    let kek = KeyEncryptionKey::from_base64(&platform.identity_kek)
        .ok_or_else(|| anyhow::anyhow!("the identity key-encryption key is not valid"))?;
    let key = keys::open(&kek, &store.signing_keys().await?[0])?;
    let now = assist_runtime::time::now_us() / 1_000_000;
    ids.iter()
        .map(|id| {
            Ok(key.sign(&Claims {
                iss: "assist-identity".into(),
                sub: id.clone(),
                aud: "agent-assist".into(),
                exp: now + 3600,
                iat: now - 5,
                nbf: now - 5,
                jti: uuid::Uuid::now_v7().to_string(),
                realm,
                scope: match realm {
                    Realm::Customer => "customer".into(),
                    _ => "back_office".into(),
                },
                act: None,
                sid: None,
                name: None,
                merchant_name: None,
            })?)
        })
        .collect()
}

/// `requests` ListAgents calls (pages of 50 at spread offsets, every fourth a search by an email prefix
/// of 1 to 3 digits after "agent", matching up to 111 agents), with
/// `concurrency` in flight, over `agents` seeded agents.
pub async fn list_agents(
    admin_url: &str,
    agents: u64,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let platform = Platform::start(TestBackend::Postgres(admin_url.to_owned()), 0, &[]).await;
    seed_agents(&platform, agents).await?;
    let client = platform.agents_client();
    let token = platform.admin.token.clone();
    let pages = agents.div_ceil(50).max(1);
    let call = |i: usize| {
        let mut client = client.clone();
        let token = token.clone();
        async move {
            let query = if i.is_multiple_of(4) {
                format!("agent{}", 1 + i * 37 % 999)
            } else {
                String::new()
            };
            let request = dir::ListAgentsRequest {
                page: Some(PageRequest {
                    limit: 50,
                    offset: (i as u64 * 7919 % pages) * 50,
                }),
                query,
                ..Default::default()
            };
            let began = Instant::now();
            let reply = client
                .list_agents(authed(&token, request))
                .await?
                .into_inner();
            anyhow::ensure!(
                reply.seats.is_some() && reply.presence.is_some(),
                "no counts"
            );
            Ok::<_, anyhow::Error>((i.is_multiple_of(4), began.elapsed()))
        }
    };
    let run = |count: usize| async move {
        use futures::StreamExt;
        let samples: Vec<anyhow::Result<(bool, Duration)>> = futures::stream::iter(0..count)
            .map(call)
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let samples = samples.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        let of = |search: bool| {
            Latencies::new(
                samples
                    .iter()
                    .filter(|(s, _)| *s == search)
                    .map(|(_, d)| *d)
                    .collect(),
            )
        };
        let all = Latencies::new(samples.iter().map(|(_, d)| *d).collect());
        Ok::<_, anyhow::Error>((all, of(false), of(true)))
    };
    run(requests.min(200)).await?;
    let (measured, plain, searches) = run(requests).await?;
    let last = client
        .clone()
        .list_agents(authed(&token, dir::ListAgentsRequest::default()))
        .await?
        .into_inner();
    println!(
        "ListAgents, page of 50 with seats and presence counts, over {} agents, {concurrency} in flight \
         (PostgreSQL):",
        last.page.map_or(0, |p| p.total)
    );
    println!("  all:       {}", measured.summary());
    println!("  pages:     {}", plain.summary());
    println!("  searches:  {}", searches.summary());
    println!(
        "  counts: {:?} {:?}",
        last.seats.unwrap_or_default(),
        last.presence.unwrap_or_default()
    );
    platform.stop().await;
    Ok(())
}

/// `agents` agents each send a heartbeat every `period` for `rounds` periods (open loop, spread evenly:
/// agents / period per second). The first round takes every agent from offline to online (a change,
/// announced); later rounds only refresh last seen. A `WatchAgents` subscriber times each change.
pub async fn heartbeats(
    admin_url: &str,
    agents: u64,
    period: Duration,
    rounds: u32,
) -> anyhow::Result<()> {
    let platform = Platform::start(TestBackend::Postgres(admin_url.to_owned()), 0, &[]).await;
    let ids = seed_agents(&platform, agents).await?;
    // Everyone starts offline, so that each first heartbeat is a change to watch.
    let db = platform
        .agents_db()
        .open(&assist_agent_directory::store::MIGRATIONS)
        .await;
    sqlx::query("UPDATE agents SET presence = 'offline'")
        .execute(&db.pool)
        .await?;
    db.pool.close().await;
    let tokens = Arc::new(tokens_for(&platform, &ids, Realm::BackOffice).await?);
    let ids = Arc::new(ids);

    // The subscriber: the time from each agent's first heartbeat being sent to its change arriving.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut events = platform
        .agents_client()
        .watch_agents(authed(&platform.admin.token, dir::WatchAgentsRequest {}))
        .await?
        .into_inner();
    while let Some(event) = events.message().await? {
        if event.kind == dir::agent_event::Kind::Synced as i32 {
            break;
        }
    }
    let watched = {
        let sent = sent.clone();
        let expected = ids.len();
        tokio::spawn(async move {
            let mut samples = Vec::with_capacity(expected);
            let deadline = tokio::time::sleep(Duration::from_secs(600));
            tokio::pin!(deadline);
            while samples.len() < expected {
                let event = tokio::select! {
                    event = events.message() => event,
                    _ = &mut deadline => break,
                };
                let Ok(Some(event)) = event else { break };
                let Some(agent) = event.agent else { continue };
                if agent.presence != dir::Presence::Online as i32 {
                    continue;
                }
                if let Some(at) = sent.lock().unwrap().remove(&agent.id) {
                    samples.push(at.elapsed());
                }
            }
            Latencies::new(samples)
        })
    };

    let client = platform.agents_client();
    let gap = period / agents as u32;
    let mut ticks = tokio::time::interval(gap);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks: Vec<Vec<tokio::task::JoinHandle<anyhow::Result<Duration>>>> = Vec::new();
    let began = Instant::now();
    for round in 0..rounds {
        let mut this_round = Vec::with_capacity(ids.len());
        for i in 0..ids.len() {
            ticks.tick().await;
            let mut client = client.clone();
            let tokens = tokens.clone();
            let ids = ids.clone();
            let sent = sent.clone();
            this_round.push(tokio::spawn(async move {
                let request = authed(
                    &tokens[i],
                    dir::HeartbeatRequest {
                        presence: dir::Presence::Online as i32,
                    },
                );
                let at = Instant::now();
                if round == 0 {
                    sent.lock().unwrap().insert(ids[i].clone(), at);
                }
                client.heartbeat(request).await?;
                Ok(at.elapsed())
            }));
        }
        tasks.push(this_round);
    }
    let offered = began.elapsed();
    let mut all = Vec::new();
    let mut per_round = Vec::new();
    for round in tasks {
        let mut samples = Vec::with_capacity(round.len());
        for task in round {
            samples.push(task.await??);
        }
        all.extend(samples.iter().copied());
        per_round.push(Latencies::new(samples));
    }
    let watch = watched.await?;
    let total = all.len();
    println!(
        "Heartbeat, {agents} agents every {:?} for {rounds} rounds ({:.0}/s offered, {total} sent in \
         {:.1} s, PostgreSQL):",
        period,
        agents as f64 / period.as_secs_f64(),
        offered.as_secs_f64()
    );
    println!(
        "  all:                        {}",
        Latencies::new(all).summary()
    );
    for (round, latencies) in per_round.iter().enumerate() {
        let what = if round == 0 {
            "offline -> online (changes)"
        } else {
            "online again (last seen)   "
        };
        println!("  round {} {what}: {}", round + 1, latencies.summary());
    }
    println!(
        "  change seen by a WatchAgents subscriber: {}",
        watch.summary()
    );
    platform.stop().await;
    Ok(())
}
