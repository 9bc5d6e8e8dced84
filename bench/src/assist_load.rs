//! Load runs of the assist-session figures, on the whole platform in this process (PostgreSQL):
//! StartAssist throughput and latency, and how fast an end reaches a verifier on another replica.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assist_proto::agentdirectory::v1::Capability;
use assist_proto::impersonation::v1 as pb;
use assist_runtime::client::{Outgoing, ServiceToken};
use assist_runtime::sessions::SessionLiveness;
use assist_runtime::testing::TestBackend;

use assist_runtime::testing::TestDb;

use crate::latencies::{Latencies, SEARCH_PREFIXES};
use assist_tests::platform::{Platform, Signed, authed, http};

/// Closed loop: `concurrency` agents each start sessions back to back (each start replaces the
/// agent's previous session) for `seconds`, after `warmup` seconds.
pub async fn start_assist(
    admin_url: &str,
    concurrency: usize,
    seconds: u64,
    warmup: u64,
) -> anyhow::Result<()> {
    let platform = Platform::start(TestBackend::Postgres(admin_url.to_owned()), 1, &[]).await;
    let mut agents = Vec::new();
    for i in 0..concurrency {
        agents.push(
            platform
                .agent(
                    &format!("load-agent-{i}@example.com"),
                    &[Capability::AssistCustomers],
                )
                .await,
        );
    }
    let mut customers = Vec::new();
    for i in 0..64 {
        customers.push(
            platform
                .customer(&format!("load-customer-{i}@example.com"))
                .await
                .id,
        );
    }
    let customers = Arc::new(customers);
    let client = platform.impersonation_client(0);
    let run = |duration: Duration| {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(0u64));
        let tasks: Vec<_> = agents
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, agent): (usize, Signed)| {
                let client = client.clone();
                let customers = customers.clone();
                let samples = samples.clone();
                let failures = failures.clone();
                tokio::spawn(async move {
                    let until = Instant::now() + duration;
                    let mut n = i;
                    let mut local = Vec::new();
                    while Instant::now() < until {
                        n += 7;
                        let request = authed(
                            &agent.token,
                            pb::StartAssistRequest {
                                target_id: customers[n % customers.len()].clone(),
                                ..Default::default()
                            },
                        );
                        let began = Instant::now();
                        match client.clone().start_assist(request).await {
                            Ok(_) => local.push(began.elapsed()),
                            Err(status) => {
                                *failures.lock().unwrap() += 1;
                                eprintln!("start failed: {status}");
                            }
                        }
                    }
                    samples.lock().unwrap().extend(local);
                })
            })
            .collect();
        async move {
            for task in tasks {
                task.await.unwrap();
            }
            let failures = *failures.lock().unwrap();
            (
                Latencies::new(std::mem::take(&mut *samples.lock().unwrap())),
                failures,
            )
        }
    };
    run(Duration::from_secs(warmup)).await;
    let began = Instant::now();
    let (latencies, failures) = run(Duration::from_secs(seconds)).await;
    let elapsed = began.elapsed();
    println!(
        "start-assist (PostgreSQL, {concurrency} agents in flight, {seconds}s): {:.0}/s, {}, failures={failures}",
        latencies.len() as f64 / elapsed.as_secs_f64(),
        latencies.summary()
    );
    platform.stop().await;
    Ok(())
}

/// Two impersonation replicas on one database; a verifier follows replica 1. Each of `sessions`
/// sessions is started and ended through replica 0, and the time until the verifier refuses it is
/// measured.
pub async fn revocation(admin_url: &str, sessions: usize) -> anyhow::Result<()> {
    let platform = Platform::start(TestBackend::Postgres(admin_url.to_owned()), 2, &[]).await;
    let token = ServiceToken::start(
        platform.identity_client(),
        platform.service.0.clone(),
        platform.service.1.clone(),
    )
    .await?;
    let verifier_client = pb::impersonation_client::ImpersonationClient::with_interceptor(
        platform.impersonation[1].channel(),
        Outgoing { token: Some(token) },
    );
    let (_trigger, shutdown) = assist_runtime::shutdown::channel();
    let liveness = SessionLiveness::start(verifier_client, shutdown);
    while !liveness.is_following() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut agents = Vec::new();
    for i in 0..16 {
        agents.push(
            platform
                .agent(
                    &format!("rev-agent-{i}@example.com"),
                    &[Capability::AssistCustomers],
                )
                .await,
        );
    }
    let customer = platform.customer("rev-customer@example.com").await;
    let mut client = platform.impersonation_client(0);
    let mut samples = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let agent = &agents[i % agents.len()];
        let sid = client
            .start_assist(authed(
                &agent.token,
                pb::StartAssistRequest {
                    target_id: customer.id.clone(),
                    ..Default::default()
                },
            ))
            .await?
            .into_inner()
            .session
            .unwrap()
            .id;
        liveness.check(&sid).await?;
        let began = Instant::now();
        client
            .end_assist(authed(
                &agent.token,
                pb::EndAssistRequest {
                    session_id: sid.clone(),
                },
            ))
            .await?;
        loop {
            if liveness.check(&sid).await.is_err() {
                break;
            }
            if began.elapsed() > Duration::from_secs(10) {
                anyhow::bail!("session {sid} was still accepted after 10 s");
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        samples.push(began.elapsed());
    }
    println!(
        "end-to-revocation across two replicas (PostgreSQL LISTEN/NOTIFY), from EndAssist sent: {}",
        Latencies::new(samples).summary()
    );
    platform.stop().await;
    Ok(())
}

/// `GET /agent-customer-search?q=<3 letters>` through the gateway, `concurrency` clients, over an
/// identity database that is already seeded (kept afterwards).
pub async fn gateway_search(
    admin_url: &str,
    identity_database_url: &str,
    identity_kek: &str,
    queries: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let platform = Platform::start_with_identity(
        TestBackend::Postgres(admin_url.to_owned()),
        1,
        &[],
        TestDb::existing(identity_database_url),
        identity_kek.to_owned(),
    )
    .await;
    let email = format!("search-agent-{}@example.com", uuid::Uuid::now_v7().simple());
    let agent = platform.agent(&email, &[Capability::AssistCustomers]).await;
    let gateway = platform.start_gateway().await;
    let bearer: Arc<str> = format!("Bearer {}", agent.token).into();
    let addr = gateway.addr;
    let search = move |i: usize| {
        let bearer = bearer.clone();
        async move {
            let prefix =
                SEARCH_PREFIXES[(i * 7 + i / SEARCH_PREFIXES.len()) % SEARCH_PREFIXES.len()];
            let path = format!("/agent-customer-search?q={prefix}&page[limit]=10");
            let began = Instant::now();
            let reply = http(addr, "GET", &path, &[("authorization", &bearer)], None).await?;
            anyhow::ensure!(
                reply.status == 200,
                "search answered {}: {}",
                reply.status,
                reply.body
            );
            Ok::<_, anyhow::Error>(began.elapsed())
        }
    };
    for i in 0..SEARCH_PREFIXES.len() {
        search(i).await?;
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let began = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let next = next.clone();
            let search = search.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= queries {
                        return Ok::<_, anyhow::Error>(samples);
                    }
                    samples.push(search(i).await?);
                }
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(queries);
    for task in tasks {
        samples.extend(task.await??);
    }
    let elapsed = began.elapsed();
    println!(
        "gateway customer search ({concurrency} clients, 3-letter prefixes, page of 10 with links): {:.0}/s, {}",
        samples.len() as f64 / elapsed.as_secs_f64(),
        Latencies::new(samples).summary()
    );
    gateway.stop().await;
    platform.stop().await;
    Ok(())
}

/// What a proxied request adds: `GET /cart` with impersonation tokens of `sessions` live sessions,
/// offered at `rate` per second for `seconds` (open loop, keep-alive connections), first straight to
/// the demo shop, then through the gateway (token verify + session check + audit record + forward),
/// then straight again. The shop checks the token itself either way, so the difference is the
/// gateway's.
pub async fn gateway_overhead(
    admin_url: &str,
    rate: u64,
    seconds: u64,
    sessions: usize,
) -> anyhow::Result<()> {
    let platform = Platform::start(TestBackend::Postgres(admin_url.to_owned()), 1, &[]).await;
    let (shop, gateway) = platform.start_fronted_shop().await;
    let mut tokens = Vec::with_capacity(sessions);
    for i in 0..sessions {
        let agent = platform
            .agent(
                &format!("overhead-agent-{i}@example.com"),
                &[Capability::AssistCustomers],
            )
            .await;
        let customer = platform
            .customer(&format!("overhead-customer-{i}@example.com"))
            .await;
        let started = platform
            .impersonation_client(0)
            .start_assist(authed(
                &agent.token,
                pb::StartAssistRequest {
                    target_id: customer.id,
                    ..Default::default()
                },
            ))
            .await?
            .into_inner();
        tokens.push(format!("Bearer {}", started.access_token));
    }
    let tokens: Arc<Vec<String>> = Arc::new(tokens);
    let client = assist_gateway::proxy::client();
    let run = |addr: std::net::SocketAddr, duration: Duration| {
        let client = client.clone();
        let tokens = tokens.clone();
        async move {
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let until = Instant::now() + duration;
            let mut tasks = Vec::new();
            let mut n = 0usize;
            while Instant::now() < until {
                ticks.tick().await;
                n += 1;
                let request = http::Request::get(format!("http://{addr}/cart"))
                    .header("authorization", &tokens[n % tokens.len()])
                    .body(axum::body::Body::empty())?;
                let client = client.clone();
                tasks.push(tokio::spawn(async move {
                    let began = Instant::now();
                    let answer = client.request(request).await?;
                    let status = answer.status();
                    axum::body::to_bytes(axum::body::Body::new(answer.into_body()), 1 << 20)
                        .await?;
                    anyhow::ensure!(status == 200, "GET /cart answered {status}");
                    Ok::<_, anyhow::Error>(began.elapsed())
                }));
            }
            let mut samples = Vec::with_capacity(tasks.len());
            for task in tasks {
                samples.push(task.await??);
            }
            Ok::<_, anyhow::Error>(Latencies::new(samples))
        }
    };
    let warmup = Duration::from_secs(2);
    let measured = Duration::from_secs(seconds);
    run(shop.addr, warmup).await?;
    let direct = run(shop.addr, measured).await?;
    run(gateway.addr, warmup).await?;
    let proxied = run(gateway.addr, measured).await?;
    let direct_again = run(shop.addr, measured).await?;
    let forwarded = proxied.len() as u64 + (warmup.as_secs() * rate);
    let recorded = recorded_actions(&platform, forwarded).await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "gateway overhead, GET /cart at {rate}/s over {sessions} assist sessions (PostgreSQL):"
    );
    println!("  straight to the shop: {}", direct.summary());
    println!("  through the gateway:  {}", proxied.summary());
    println!("  straight again:       {}", direct_again.summary());
    println!("  recorded in the sessions' audit logs: {recorded} of about {forwarded} forwarded");
    for p in [50.0, 99.0] {
        let baseline = direct.percentile(p).max(direct_again.percentile(p));
        println!(
            "  added at p{p}: {:.3} ms",
            ms(proxied.percentile(p).saturating_sub(baseline))
        );
    }
    gateway.stop().await;
    shop.stop().await;
    platform.stop().await;
    Ok(())
}

/// The actions recorded over every session of the platform, once `expected` are there or 10 s have
/// passed (the audit is written in the background).
async fn recorded_actions(platform: &Platform, expected: u64) -> anyhow::Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sessions = platform
            .impersonation_client(0)
            .list_sessions(authed(
                &platform.admin.token,
                pb::ListSessionsRequest {
                    page: Some(assist_proto::common::v1::PageRequest {
                        limit: assist_runtime::validate::MAX_PAGE_SIZE,
                        offset: 0,
                    }),
                    ..Default::default()
                },
            ))
            .await?
            .into_inner()
            .sessions;
        let recorded: u64 = sessions.iter().map(|s| s.action_count).sum();
        if recorded >= expected || Instant::now() > deadline {
            return Ok(recorded);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Successful sign-ins through the gateway (`POST /access-tokens` of one customer, `concurrency`
/// clients in a closed loop for `seconds`) on `backend`, next to the ceiling: argon2id at identity's
/// parameters verified on every core of this machine at once, measured first in this process. A
/// sign-in costs one such verification, so the ratio says how much of the machine goes elsewhere
/// (gateway, gRPC, token signing, the refresh-token write, this client).
pub async fn sign_in(backend: TestBackend, concurrency: usize, seconds: u64) -> anyhow::Result<()> {
    let before = argon2_ceiling()?;
    let name = backend.name();
    let platform = Platform::start(backend, 1, &[]).await;
    let customer = platform.customer("sign-in-load@example.com").await;
    let gateway = platform.start_gateway().await;
    let addr = gateway.addr;
    let body = serde_json::json!({ "data": { "type": "access-tokens", "attributes": {
        "username": customer.email, "password": assist_tests::platform::PASSWORD } } })
    .to_string();
    let sign_in = move || {
        let body = body.clone();
        async move {
            let began = Instant::now();
            let reply = http(
                addr,
                "POST",
                "/access-tokens",
                &[("content-type", "application/vnd.api+json")],
                Some(&body),
            )
            .await?;
            anyhow::ensure!(
                reply.status == 201,
                "sign-in answered {}: {}",
                reply.status,
                reply.body
            );
            Ok::<_, anyhow::Error>(began.elapsed())
        }
    };
    for _ in 0..concurrency {
        sign_in().await?;
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let began = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let sign_in = sign_in.clone();
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while Instant::now() < deadline {
                    samples.push(sign_in().await?);
                }
                Ok::<_, anyhow::Error>(samples)
            })
        })
        .collect();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await??);
    }
    let rate = samples.len() as f64 / began.elapsed().as_secs_f64();
    gateway.stop().await;
    platform.stop().await;
    // The machine's speed drifts (other tenants, clocks): the ceiling is measured on either side.
    let after = argon2_ceiling()?;
    let ceiling = (before + after) / 2.0;
    let cores = std::thread::available_parallelism()?.get();
    println!(
        "argon2id (19 MiB, t=2, p=1) verifications on {cores} cores at once: {before:.1}/s before, {after:.1}/s after, {:.1}/s per core",
        ceiling / cores as f64
    );
    println!(
        "successful sign-ins through the gateway on {name} ({concurrency} clients, one customer): {rate:.1}/s = {:.0} % of the argon2 ceiling, {}",
        100.0 * rate / ceiling,
        Latencies::new(samples).summary()
    );
    Ok(())
}

/// Password verifications per second at identity's argon2id parameters, on every core at once for
/// three seconds (identity's own code path, kept memory included).
fn argon2_ceiling() -> anyhow::Result<f64> {
    use assist_identity::domain::password;
    const PASSWORD: &str = "correct horse battery";
    let cores = std::thread::available_parallelism()?.get();
    let stored = password::hash(PASSWORD)?;
    let window = Duration::from_secs(3);
    let began = Instant::now();
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let stored = stored.clone();
            std::thread::spawn(move || {
                let mut verified = 0u64;
                while began.elapsed() < window {
                    assert!(password::verify(PASSWORD, Some(&stored)));
                    verified += 1;
                }
                verified
            })
        })
        .collect();
    let verified: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    Ok(verified as f64 / began.elapsed().as_secs_f64())
}
