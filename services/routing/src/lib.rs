//! The conversation-routing service: conversations between customers and console agents, their
//! messages and history, the queue, and the engine that assigns queued conversations to available
//! agents (DESIGN.md section 5). `serve` runs it on a listener; `main.rs` is the thin binary around it.
//!
//! Agents are known from agent-directory's `WatchAgents` stream (the [`roster`]), never from its
//! tables. Decisions the proto leaves open:
//!
//! - Open conversations (assigned and pending) count against an agent's capacity; the counter lives in
//!   `routing_agents` and changes in the same transaction as the conversation.
//! - Going offline past the grace period takes back ASSIGNED conversations only (a PENDING one waits
//!   for the customer, not the agent). Removal, or becoming an administrator, takes back both at once.
//! - "Offline since" is when this replica saw the agent go offline, or the last heartbeat for agents
//!   already offline when the replica (re)synced.
//! - A customer message on a resolved conversation queues it again with no assignee, ahead of newer
//!   conversations of its priority; on a pending one it returns it to the assignee.

pub mod api;
pub mod domain;
pub mod engine;
pub mod plan;
pub mod roster;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use assist_proto::agentdirectory::v1::agent_directory_client::AgentDirectoryClient;
use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_proto::impersonation::v1::impersonation_client::ImpersonationClient;
use assist_proto::routing::v1::routing_server::RoutingServer;
use assist_runtime::auth::{AuthPolicy, IdentityJwks, TokenVerifier, TrustedIssuer};
use assist_runtime::client::{Outgoing, ServiceToken, channel};
use assist_runtime::config::{ConfigError, database_url, http_url, positive_secs};
use assist_runtime::db::{Database, PoolSize};
use assist_runtime::server::{GrpcServer, Health, ServerSettings};
use tokio::net::TcpListener;
use tokio::sync::{OnceCell, watch};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use crate::engine::Engine;
use crate::roster::Roster;
use crate::service::Routing;
use crate::store::Store;

/// Agent-directory as routing calls it, with its service token.
pub type Agents = AgentDirectoryClient<InterceptedService<Channel, Outgoing>>;

/// Impersonation-token as routing calls it (`GetSession`, to check a recorded assist session), with
/// its service token.
pub type Sessions = ImpersonationClient<InterceptedService<Channel, Outgoing>>;

/// Configuration of the routing service, from flags or `ASSIST_ROUTING_*` variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "assist-routing",
    about = "Agent Assist conversation routing service"
)]
pub struct Config {
    /// gRPC listen address.
    #[arg(long, env = "ASSIST_ROUTING_LISTEN", default_value = "127.0.0.1:50054")]
    pub listen: SocketAddr,
    /// Prometheus `/metrics` listen address; none when unset.
    #[arg(long, env = "ASSIST_ROUTING_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// `postgres://…` or `sqlite://path`.
    #[arg(long, env = "ASSIST_ROUTING_DATABASE_URL")]
    pub database_url: String,
    #[arg(long, env = "ASSIST_ROUTING_DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: u32,
    /// The identity service: its keys verify tokens, and it issues this service's token.
    #[arg(
        long,
        env = "ASSIST_ROUTING_IDENTITY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub identity_url: String,
    /// The agent-directory service, whose `WatchAgents` feeds the routing view of agents.
    #[arg(
        long,
        env = "ASSIST_ROUTING_AGENT_DIRECTORY_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub agent_directory_url: String,
    /// The impersonation-token service, asked whether an assist session recorded in a conversation is
    /// the caller's own and serves the conversation's customer.
    #[arg(
        long,
        env = "ASSIST_ROUTING_IMPERSONATION_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub impersonation_url: String,
    /// The service account this service calls as.
    #[arg(
        long,
        env = "ASSIST_ROUTING_CLIENT_ID",
        default_value = "conversation-routing"
    )]
    pub client_id: String,
    #[arg(long, env = "ASSIST_ROUTING_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: String,
    /// The `aud` every accepted token carries.
    #[arg(long, env = "ASSIST_ROUTING_AUDIENCE", default_value = "agent-assist")]
    pub audience: String,
    /// The `iss` of identity's tokens.
    #[arg(
        long,
        env = "ASSIST_ROUTING_IDENTITY_ISSUER",
        default_value = "assist-identity"
    )]
    pub identity_issuer: String,
    #[arg(
        long,
        env = "ASSIST_ROUTING_REQUEST_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub request_timeout_secs: u64,
    #[arg(
        long,
        env = "ASSIST_ROUTING_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024
    )]
    pub max_concurrent_requests: usize,
    #[arg(long, env = "ASSIST_ROUTING_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// How long an agent may stay offline before their assigned conversations go back to the queue.
    #[arg(long, env = "ASSIST_ROUTING_OFFLINE_GRACE_SECS", default_value_t = 900)]
    pub offline_grace_secs: u64,
    /// Queued conversations one assignment pass plans (1 to 1,000).
    #[arg(long, env = "ASSIST_ROUTING_ASSIGN_BATCH", default_value_t = 128)]
    pub assign_batch: u32,
    /// How often the safety-net pass and the offline sweep run, in milliseconds.
    #[arg(long, env = "ASSIST_ROUTING_SWEEP_MS", default_value_t = 1000)]
    pub sweep_ms: u64,
}

/// A configuration checked for sense, ready to serve.
#[derive(Debug, Clone)]
pub struct Checked {
    pub server: ServerSettings,
    pub engine: engine::Settings,
}

impl Config {
    /// Checks values clap cannot: URLs, non-empty names and secrets, positive sizes and durations.
    pub fn check(&self) -> Result<Checked, ConfigError> {
        database_url(&self.database_url, "ASSIST_ROUTING_DATABASE_URL")?;
        if self.database_pool_size == 0 {
            return Err(ConfigError::new(
                "ASSIST_ROUTING_DATABASE_POOL_SIZE",
                "must be greater than 0",
            ));
        }
        http_url(&self.identity_url, "ASSIST_ROUTING_IDENTITY_URL")?;
        http_url(
            &self.agent_directory_url,
            "ASSIST_ROUTING_AGENT_DIRECTORY_URL",
        )?;
        http_url(&self.impersonation_url, "ASSIST_ROUTING_IMPERSONATION_URL")?;
        for (value, variable) in [
            (&self.client_id, "ASSIST_ROUTING_CLIENT_ID"),
            (&self.client_secret, "ASSIST_ROUTING_CLIENT_SECRET"),
            (&self.audience, "ASSIST_ROUTING_AUDIENCE"),
            (&self.identity_issuer, "ASSIST_ROUTING_IDENTITY_ISSUER"),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::new(variable, "must not be empty"));
            }
        }
        if !(1..=1_000).contains(&self.assign_batch) {
            return Err(ConfigError::new(
                "ASSIST_ROUTING_ASSIGN_BATCH",
                "must be between 1 and 1000",
            ));
        }
        if !(10..=60_000).contains(&self.sweep_ms) {
            return Err(ConfigError::new(
                "ASSIST_ROUTING_SWEEP_MS",
                "must be between 10 and 60000",
            ));
        }
        let offline_grace =
            positive_secs(self.offline_grace_secs, "ASSIST_ROUTING_OFFLINE_GRACE_SECS")?;
        Ok(Checked {
            server: ServerSettings {
                metrics_listen: self.metrics_listen,
                request_timeout: positive_secs(
                    self.request_timeout_secs,
                    "ASSIST_ROUTING_REQUEST_TIMEOUT_SECS",
                )?,
                max_concurrent_requests: self.max_concurrent_requests.max(1),
                shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            },
            engine: engine::Settings {
                batch: self.assign_batch,
                offline_grace,
                sweep_every: Duration::from_millis(self.sweep_ms),
            },
        })
    }
}

/// Serves conversation routing on `listener` until `shutdown` trips. Health is NOT_SERVING until the
/// database is migrated, identity has issued the service token and the routing view of agents has
/// synced from agent-directory (all retried meanwhile: the others may start later).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let checked = config.check()?;
    let server = GrpcServer::new::<RoutingServer<api::Api>>(checked.server.clone()).await;
    let identity = channel(&config.identity_url, checked.server.request_timeout)?;
    let verifier = Arc::new(TokenVerifier::new(
        &config.audience,
        vec![TrustedIssuer {
            issuer: config.identity_issuer.clone(),
            keys: Arc::new(IdentityJwks(IdentityClient::new(identity.clone()))),
        }],
    ));
    let cell: Arc<OnceCell<Arc<Routing>>> = Arc::new(OnceCell::new());
    tokio::spawn(start(
        config,
        checked.clone(),
        identity,
        cell.clone(),
        server.health(),
        shutdown.clone(),
    ));
    let auth = AuthPolicy::new(verifier, api::PUBLIC_METHODS);
    server
        .serve(
            listener,
            RoutingServer::new(api::Api::new(cell, shutdown.clone())),
            auth,
            shutdown,
        )
        .await
}

/// Opens the database, obtains the service token, follows agent-directory, then makes the service
/// ready and runs the engine.
async fn start(
    config: Config,
    checked: Checked,
    identity: Channel,
    cell: Arc<OnceCell<Arc<Routing>>>,
    health: Health,
    shutdown: watch::Receiver<bool>,
) {
    let db = match Database::connect_and_migrate(
        &config.database_url,
        PoolSize(config.database_pool_size),
        &store::MIGRATIONS,
        &shutdown,
    )
    .await
    {
        Ok(db) => db,
        Err(error) => {
            tracing::info!(error = %error, "routing stopped before its database opened");
            return;
        }
    };
    let store = Store::new(db);
    store.events().listen(shutdown.clone());
    let Some(token) = ServiceToken::obtain(
        IdentityClient::new(identity),
        &config.client_id,
        &config.client_secret,
        &shutdown,
    )
    .await
    else {
        return;
    };
    let agents_channel = match channel(&config.agent_directory_url, checked.server.request_timeout)
    {
        Ok(channel) => channel,
        Err(error) => {
            tracing::error!(error = %error, "agent-directory URL unusable");
            return;
        }
    };
    let sessions_channel = match channel(&config.impersonation_url, checked.server.request_timeout)
    {
        Ok(channel) => channel,
        Err(error) => {
            tracing::error!(error = %error, "impersonation URL unusable");
            return;
        }
    };
    let sessions = ImpersonationClient::with_interceptor(
        sessions_channel,
        Outgoing {
            token: Some(token.clone()),
        },
    );
    let agents =
        AgentDirectoryClient::with_interceptor(agents_channel, Outgoing { token: Some(token) });
    let roster = Arc::new(Roster::default());
    let engine = Arc::new(Engine::new(store.clone(), roster.clone(), checked.engine));
    tokio::spawn(engine.clone().follow_agents(agents, shutdown.clone()));
    let mut waiting = shutdown.clone();
    while !roster.is_synced() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = waiting.wait_for(|s| *s) => return,
        }
    }
    let _ = cell.set(Arc::new(Routing::new(
        store,
        roster,
        engine.clone(),
        sessions,
    )));
    if !*shutdown.borrow() {
        health.serving().await;
        tracing::info!("conversation routing serving");
    }
    engine.run(shutdown).await;
}
