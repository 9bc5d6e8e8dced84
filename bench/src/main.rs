//! Load generator for the identity figures. Every server it talks to listens on 127.0.0.1 and every run
//! is bounded in requests and time.
//!
//! - `load refresh --database-url postgres://…`: refresh-token rotation over gRPC at a fixed rate.
//! - `load search --database-url …`: customer search over an already seeded database (`assist seed`).
//! - `load startup --binary target/release/assist-identity --database-url …`: time to SERVING, idle RSS.
//! - `load start-assist --admin-url postgres://…`: StartAssist over gRPC on the whole platform.
//! - `load revocation --admin-url postgres://…`: end-to-revocation latency across two replicas.
//! - `load gateway-search --admin-url … --identity-database-url …`: customer search through the gateway.
//! - `load gateway-overhead --admin-url postgres://…`: what the gateway's proxy adds to a shop request.
//! - `load sign-in [--admin-url postgres://…]`: successful sign-ins through the gateway against the
//!   argon2 ceiling of the machine.
//! - `load console-list --admin-url postgres://…`: ListAgents over 10,000 agents with counts.
//! - `load heartbeats --admin-url postgres://…`: 5,000 agents' heartbeats, and changes reaching a watcher.
//! - `load routing --admin-url postgres://…`: created → assigned latency, assignments per second over a
//!   backlog with 1,000 online agents, fairness.
//! - `load routing-churn --admin-url postgres://…`: 10,000 conversations over three routing replicas
//!   while 100 agents come and go; fails on any double assignment, capacity violation or loss.
//! - `load routing-messages --admin-url postgres://…`: customer message to the assignee's watch stream.

mod assist_load;
mod console_load;
mod latencies;
mod routing_load;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::latencies::Latencies;
use anyhow::Context;
use assist_identity::domain::keys::KeyEncryptionKey;
use assist_identity::service::{Actor, Identity, PrincipalInput};
use assist_identity::store::Store;
use assist_proto::identity::v1 as pb;
use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_runtime::db::{Database, PoolSize};
use clap::{Parser, Subcommand};
use tonic::transport::Channel;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Refresh {
        #[arg(long)]
        database_url: String,
        /// Requests per second to offer; 0 runs closed-loop as fast as the chains allow.
        #[arg(long, default_value_t = 2000)]
        rate: u64,
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
        seconds: u64,
        /// Independent refresh-token chains (the most requests in flight).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
        chains: u64,
        /// Seconds at the same rate before measuring (connections opened, statements prepared).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
        warmup_seconds: u64,
    },
    Search {
        #[arg(long)]
        database_url: String,
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        queries: u64,
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
        concurrency: u64,
    },
    Startup {
        #[arg(long)]
        binary: std::path::PathBuf,
        #[arg(long)]
        database_url: String,
    },
    /// Creates its own databases on the server of `--admin-url` and drops them afterwards.
    StartAssist {
        #[arg(long)]
        admin_url: String,
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=256))]
        concurrency: u64,
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
        seconds: u64,
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
        warmup_seconds: u64,
    },
    /// `GET /agent-customer-search` through the gateway over an identity database seeded with
    /// `assist seed customers` (pass its key-encryption key as ASSIST_IDENTITY_KEY_ENCRYPTION_KEY).
    GatewaySearch {
        #[arg(long)]
        admin_url: String,
        #[arg(long)]
        identity_database_url: String,
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        queries: u64,
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
        concurrency: u64,
    },
    /// Successful sign-ins through the gateway against the argon2 ceiling of this machine; on SQLite
    /// files (the embedded default) without `--admin-url`, else on databases it creates there.
    SignIn {
        #[arg(long)]
        admin_url: Option<String>,
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
        concurrency: u64,
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
        seconds: u64,
    },
    /// Creates its own databases on the server of `--admin-url` and drops them afterwards.
    GatewayOverhead {
        #[arg(long)]
        admin_url: String,
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=20_000))]
        rate: u64,
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
        seconds: u64,
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1000))]
        sessions: u64,
    },
    /// Creates its own databases on the server of `--admin-url` and drops them afterwards.
    ConsoleList {
        #[arg(long)]
        admin_url: String,
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=200_000))]
        agents: u64,
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        requests: u64,
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
        concurrency: u64,
    },
    /// Creates its own databases on the server of `--admin-url` and drops them afterwards.
    Heartbeats {
        #[arg(long)]
        admin_url: String,
        #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        agents: u64,
        /// Seconds between two heartbeats of one agent.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=120))]
        period_seconds: u64,
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
        rounds: u32,
    },
    /// Creates its own databases on the server of `--admin-url` and drops them afterwards.
    Routing {
        #[arg(long)]
        admin_url: String,
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        agents: u64,
        /// Conversations created one by one at `--rate` per second, their assignment watched.
        #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        steady: u64,
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=5_000))]
        rate: u32,
        /// Queued conversations stored at once, then assigned as fast as routing goes.
        #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=500_000))]
        backlog: u64,
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3))]
        replicas: u64,
    },
    /// Creates its own databases on the server of `--admin-url` and drops them afterwards.
    RoutingChurn {
        #[arg(long)]
        admin_url: String,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1_000))]
        agents: u64,
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
        capacity: u32,
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        conversations: u64,
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=256))]
        concurrency: u64,
    },
    /// Creates its own databases on the server of `--admin-url` and drops them afterwards.
    RoutingMessages {
        #[arg(long)]
        admin_url: String,
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        messages: u64,
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=5_000))]
        rate: u32,
    },
    Revocation {
        #[arg(long)]
        admin_url: String,
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        sessions: u64,
    },
}

const PASSWORD: &str = "load generator password";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Refresh {
            database_url,
            rate,
            seconds,
            chains,
            warmup_seconds,
        } => refresh(&database_url, rate, seconds, chains, warmup_seconds).await,
        Command::Search {
            database_url,
            queries,
            concurrency,
        } => search(&database_url, queries, concurrency).await,
        Command::Startup {
            binary,
            database_url,
        } => startup(&binary, &database_url).await,
        Command::StartAssist {
            admin_url,
            concurrency,
            seconds,
            warmup_seconds,
        } => {
            assist_load::start_assist(&admin_url, concurrency as usize, seconds, warmup_seconds)
                .await
        }
        Command::GatewaySearch {
            admin_url,
            identity_database_url,
            queries,
            concurrency,
        } => {
            assist_load::gateway_search(
                &admin_url,
                &identity_database_url,
                &bench_kek(&identity_database_url),
                queries as usize,
                concurrency as usize,
            )
            .await
        }
        Command::SignIn {
            admin_url,
            concurrency,
            seconds,
        } => {
            let backend = match admin_url {
                Some(url) => assist_runtime::testing::TestBackend::Postgres(url),
                None => assist_runtime::testing::TestBackend::Sqlite,
            };
            assist_load::sign_in(backend, concurrency as usize, seconds).await
        }
        Command::GatewayOverhead {
            admin_url,
            rate,
            seconds,
            sessions,
        } => assist_load::gateway_overhead(&admin_url, rate, seconds, sessions as usize).await,
        Command::ConsoleList {
            admin_url,
            agents,
            requests,
            concurrency,
        } => {
            console_load::list_agents(&admin_url, agents, requests as usize, concurrency as usize)
                .await
        }
        Command::Heartbeats {
            admin_url,
            agents,
            period_seconds,
            rounds,
        } => {
            console_load::heartbeats(
                &admin_url,
                agents,
                Duration::from_secs(period_seconds),
                rounds,
            )
            .await
        }
        Command::Routing {
            admin_url,
            agents,
            steady,
            rate,
            backlog,
            replicas,
        } => {
            routing_load::throughput(
                &admin_url,
                agents,
                steady as usize,
                rate,
                backlog,
                replicas as usize,
            )
            .await
        }
        Command::RoutingChurn {
            admin_url,
            agents,
            capacity,
            conversations,
            concurrency,
        } => {
            routing_load::churn_run(
                &admin_url,
                assist_tests::churn::Churn {
                    agents: agents as usize,
                    capacity,
                    conversations: conversations as usize,
                    concurrency: concurrency as usize,
                },
            )
            .await
        }
        Command::RoutingMessages {
            admin_url,
            messages,
            rate,
        } => routing_load::messages(&admin_url, messages as usize, rate).await,
        Command::Revocation {
            admin_url,
            sessions,
        } => assist_load::revocation(&admin_url, sessions as usize).await,
    }
}

/// The key-encryption key of the benchmark database: `ASSIST_IDENTITY_KEY_ENCRYPTION_KEY` (pass the one
/// `assist seed` used), or one kept in the temp folder so repeated runs reuse their signing keys.
fn bench_kek(database_url: &str) -> String {
    if let Ok(key) = std::env::var("ASSIST_IDENTITY_KEY_ENCRYPTION_KEY") {
        return key;
    }
    let name = format!("assist-bench-{:x}.kek", fxhash(database_url));
    let path = std::env::temp_dir().join(name);
    if let Ok(key) = std::fs::read_to_string(&path) {
        return key.trim().to_owned();
    }
    let key = KeyEncryptionKey::generate_base64().unwrap();
    std::fs::write(&path, &key).unwrap();
    key
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

struct Running {
    client: IdentityClient<Channel>,
    operator: Identity,
    _trigger: assist_runtime::shutdown::ShutdownTrigger,
}

/// Identity in this process on 127.0.0.1:0, and an operator handle on the same database.
async fn start_identity(database_url: &str, extra: &[&str]) -> anyhow::Result<Running> {
    let kek = bench_kek(database_url);
    let mut args = vec![
        "identity".to_owned(),
        format!("--database-url={database_url}"),
        format!("--key-encryption-key={kek}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let config = assist_identity::Config::try_parse_from(args)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (trigger, shutdown) = assist_runtime::shutdown::channel();
    tokio::spawn(assist_identity::serve(config, listener, shutdown));
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let db = Database::connect(database_url, PoolSize(4)).await?;
    db.migrate(&assist_identity::store::MIGRATIONS).await?;
    let operator = Identity::new(
        Store::new(db),
        Default::default(),
        KeyEncryptionKey::from_base64(&kek).unwrap(),
    )
    .await?;
    let client = IdentityClient::new(channel);
    for _ in 0..200 {
        if client
            .clone()
            .get_jwks(assist_proto::common::v1::GetJwksRequest {})
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(Running {
        client,
        operator,
        _trigger: trigger,
    })
}

async fn refresh(
    database_url: &str,
    rate: u64,
    seconds: u64,
    chains: u64,
    warmup_seconds: u64,
) -> anyhow::Result<()> {
    let running = start_identity(database_url, &["--database-pool-size=32"]).await?;
    let run_id = uuid::Uuid::now_v7().simple().to_string();
    let mut tokens = Vec::new();
    for n in 0..chains {
        let email = format!("load.{run_id}.{n}@example.com");
        running
            .operator
            .create_customer(
                Actor::Operator,
                PrincipalInput {
                    email: email.clone(),
                    first_name: "Load".into(),
                    last_name: format!("Chain{n}"),
                    password: PASSWORD.into(),
                    ..Default::default()
                },
            )
            .await?;
        let pair = running
            .client
            .clone()
            .login(pb::LoginRequest {
                realm: pb::Realm::Customer as i32,
                email,
                password: PASSWORD.into(),
                client_address: String::new(),
            })
            .await?
            .into_inner();
        tokens.push(pair.refresh_token);
    }
    let (pool_tx, pool_rx) = async_channel(chains as usize);
    for token in tokens {
        pool_tx.send(token).await?;
    }
    if warmup_seconds > 0 {
        paced(&running.client, &pool_rx, &pool_tx, rate, warmup_seconds).await;
    }
    let (latencies, elapsed, errors) =
        paced(&running.client, &pool_rx, &pool_tx, rate, seconds).await;
    println!(
        "refresh rotation: offered {} /s, achieved {:.0} /s over {:.1}s, errors {errors}; {}",
        if rate == 0 {
            "max".to_owned()
        } else {
            rate.to_string()
        },
        latencies.len() as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
        latencies.summary()
    );
    Ok(())
}

/// Offers `rate` refreshes a second (0: as fast as the chains allow) for `seconds`. Latency is taken
/// from the moment a request was due, so a stalled server cannot hide its queue (no coordinated
/// omission).
async fn paced(
    client: &IdentityClient<Channel>,
    pool_rx: &TokenReceiver,
    pool_tx: &TokenSender,
    rate: u64,
    seconds: u64,
) -> (Latencies, Duration, u64) {
    let deadline = Duration::from_secs(seconds);
    let total = if rate == 0 { u64::MAX } else { rate * seconds };
    let started = Instant::now();
    let samples = Arc::new(std::sync::Mutex::new(Vec::with_capacity(
        total.min(1_000_000) as usize,
    )));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let mut issued = 0u64;
    while issued < total && started.elapsed() < deadline {
        let scheduled = if rate == 0 {
            Instant::now()
        } else {
            started + Duration::from_secs_f64(issued as f64 / rate as f64)
        };
        if rate != 0 {
            tokio::time::sleep_until(scheduled.into()).await;
        }
        let Ok(token) = pool_rx.recv().await else {
            break;
        };
        let (mut client, tx, samples, errors) = (
            client.clone(),
            pool_tx.clone(),
            samples.clone(),
            errors.clone(),
        );
        tasks.spawn(async move {
            match client
                .refresh(pb::RefreshRequest {
                    refresh_token: token,
                })
                .await
            {
                Ok(pair) => {
                    samples.lock().unwrap().push(scheduled.elapsed());
                    let _ = tx.send(pair.into_inner().refresh_token).await;
                }
                Err(status) => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    eprintln!("refresh failed: {status}");
                }
            }
        });
        issued += 1;
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let latencies = Latencies::new(std::mem::take(&mut *samples.lock().unwrap()));
    (
        latencies,
        elapsed,
        errors.load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// A bounded multi-producer, multi-consumer queue of refresh tokens.
fn async_channel(capacity: usize) -> (TokenSender, TokenReceiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    (
        TokenSender(tx),
        TokenReceiver(Arc::new(tokio::sync::Mutex::new(rx))),
    )
}

#[derive(Clone)]
struct TokenSender(tokio::sync::mpsc::Sender<String>);

impl TokenSender {
    async fn send(&self, token: String) -> anyhow::Result<()> {
        self.0.send(token).await.context("token pool closed")
    }
}

struct TokenReceiver(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<String>>>);

impl TokenReceiver {
    async fn recv(&self) -> anyhow::Result<String> {
        self.0
            .lock()
            .await
            .recv()
            .await
            .context("token pool closed")
    }
}

/// Three-letter prefixes people type: starts of common first and last names and of emails.
use crate::latencies::SEARCH_PREFIXES as PREFIXES;

async fn search(database_url: &str, queries: u64, concurrency: u64) -> anyhow::Result<()> {
    let running = start_identity(database_url, &[]).await?;
    let email = "search.bench@example.com";
    if running
        .operator
        .store()
        .find_login(assist_runtime::auth::Realm::BackOffice, email)
        .await?
        .is_none()
    {
        running
            .operator
            .create_back_office_user(
                Actor::Operator,
                PrincipalInput {
                    email: email.into(),
                    full_name: "Search Bench".into(),
                    password: PASSWORD.into(),
                    ..Default::default()
                },
            )
            .await?;
    }
    let token = running
        .client
        .clone()
        .login(pb::LoginRequest {
            realm: pb::Realm::BackOffice as i32,
            email: email.into(),
            password: PASSWORD.into(),
            client_address: String::new(),
        })
        .await?
        .into_inner()
        .access
        .context("no access token")?
        .token;
    let count = running
        .operator
        .store()
        .list_principals(
            assist_runtime::auth::Realm::Customer,
            None,
            assist_runtime::validate::Page::new(1, 0)?,
        )
        .await?;
    println!(
        "customers in the database: {}{}",
        count.total,
        if count.total_exact { "" } else { "+" }
    );
    let query = |i: u64| PREFIXES[(i as usize * 7 + i as usize / PREFIXES.len()) % PREFIXES.len()];
    // Warm-up: one pass over the prefixes.
    for prefix in PREFIXES {
        let mut request = tonic::Request::new(pb::SearchCustomersRequest {
            query: (*prefix).into(),
            page: None,
        });
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
        running.client.clone().search_customers(request).await?;
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = queries / concurrency;
    for t in 0..concurrency {
        let (mut client, token) = (running.client.clone(), token.clone());
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let mut matched = 0u64;
            for i in 0..per_task {
                let prefix = query(t * per_task + i);
                let mut request = tonic::Request::new(pb::SearchCustomersRequest {
                    query: prefix.into(),
                    page: Some(assist_proto::common::v1::PageRequest {
                        limit: 10,
                        offset: 0,
                    }),
                });
                request
                    .metadata_mut()
                    .insert("authorization", format!("Bearer {token}").parse().unwrap());
                let begun = Instant::now();
                let reply = client.search_customers(request).await.expect("search");
                samples.push(begun.elapsed());
                matched += reply.into_inner().page.map_or(0, |p| p.total);
            }
            (samples, matched)
        });
    }
    let mut samples = Vec::new();
    let mut matched = 0;
    while let Some(done) = tasks.join_next().await {
        let (s, m) = done?;
        samples.extend(s);
        matched += m;
    }
    let latencies = Latencies::new(samples);
    println!(
        "customer search (3-letter prefixes, page of 10 with total, {concurrency} concurrent): {:.0} /s, mean total {} ; {}",
        latencies.len() as f64 / started.elapsed().as_secs_f64(),
        matched / latencies.len().max(1) as u64,
        latencies.summary()
    );
    Ok(())
}

async fn startup(binary: &std::path::Path, database_url: &str) -> anyhow::Result<()> {
    // Make sure the database exists and is migrated, so this measures a start on an existing database.
    let db = Database::connect(database_url, PoolSize(1)).await?;
    db.migrate(&assist_identity::store::MIGRATIONS).await?;
    db.pool.close().await;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env("ASSIST_IDENTITY_LISTEN", format!("127.0.0.1:{port}"))
        .env("ASSIST_IDENTITY_DATABASE_URL", database_url)
        .env(
            "ASSIST_IDENTITY_KEY_ENCRYPTION_KEY",
            bench_kek(database_url),
        )
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let serving = loop {
        if started.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("not SERVING after 30 s");
        }
        if let Ok(channel) = Channel::from_shared(endpoint.clone())?.connect().await {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
            let status = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if status.is_ok_and(|s| {
                s.into_inner().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            }) {
                break started.elapsed();
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = child.id().context("child pid")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: ?")
        .to_owned();
    println!(
        "identity start to SERVING: {:.0} ms; idle {}",
        serving.as_secs_f64() * 1000.0,
        rss.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
    );
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(())
}
