//! The agent-directory service: the profile of every back-office user who works as an agent (display
//! name, nickname) and who may assist whom (assist capabilities), with a history of every change and a
//! watch feed for the services that act on changes. `serve` runs it on a listener; `main.rs` is the thin
//! binary around it.
//!
//! Identity owns principals: this service asks it (with its own service token) who an id is before it
//! stores a profile, and trusts identity's keys for the tokens it receives. Decisions the proto leaves
//! open:
//!
//! - A back-office user without a stored profile has a default one (named after the user, no
//!   capabilities, version 0, times 0); it is stored by the first change that changes something, and
//!   only for users identity lists as active or invited.
//! - A change that changes nothing (granting a held capability, revoking one not held, setting a field to
//!   its value) writes nothing: no version, no history, no notice. Every other change is one transaction:
//!   the profile, its version + 1, a history row (actor, changed fields before and after as JSON) and a
//!   notice to watchers on every replica.
//! - Agents are listed by display name compared case-insensitively (Unicode lowercase, then bytewise,
//!   identical on both backends), then id.
//! - Tokens carrying `act` (impersonation) are refused on every method.

pub mod api;
pub mod console;
pub mod domain;
pub mod principals;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use assist_proto::agentdirectory::v1::agent_directory_server::AgentDirectoryServer;
use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_runtime::auth::{AuthPolicy, IdentityJwks, TokenVerifier, TrustedIssuer};
use assist_runtime::client::{Outgoing, ServiceToken};
use assist_runtime::config::{ConfigError, database_url, http_url, positive_secs};
use assist_runtime::db::{Database, PoolSize};
use assist_runtime::server::{GrpcServer, Health, ServerSettings};
use tokio::net::TcpListener;
use tokio::sync::{OnceCell, watch};
use tonic::transport::Channel;

use crate::principals::Principals;
use crate::service::Agents;
use crate::store::Store;

/// Configuration of the agent-directory service, from flags or `ASSIST_AGENT_DIRECTORY_*` variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "assist-agent-directory",
    about = "Agent Assist agent directory service"
)]
pub struct Config {
    /// gRPC listen address.
    #[arg(
        long,
        env = "ASSIST_AGENT_DIRECTORY_LISTEN",
        default_value = "127.0.0.1:50052"
    )]
    pub listen: SocketAddr,
    /// Prometheus `/metrics` listen address; none when unset.
    #[arg(long, env = "ASSIST_AGENT_DIRECTORY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// `postgres://…` or `sqlite://path`.
    #[arg(long, env = "ASSIST_AGENT_DIRECTORY_DATABASE_URL")]
    pub database_url: String,
    #[arg(
        long,
        env = "ASSIST_AGENT_DIRECTORY_DATABASE_POOL_SIZE",
        default_value_t = 16
    )]
    pub database_pool_size: u32,
    /// The identity service: its keys verify tokens, and it answers who a principal is.
    #[arg(
        long,
        env = "ASSIST_AGENT_DIRECTORY_IDENTITY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub identity_url: String,
    /// The service account this service calls identity as.
    #[arg(
        long,
        env = "ASSIST_AGENT_DIRECTORY_CLIENT_ID",
        default_value = "agent-directory"
    )]
    pub client_id: String,
    #[arg(
        long,
        env = "ASSIST_AGENT_DIRECTORY_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: String,
    /// The `aud` every accepted token carries.
    #[arg(
        long,
        env = "ASSIST_AGENT_DIRECTORY_AUDIENCE",
        default_value = "agent-assist"
    )]
    pub audience: String,
    /// The `iss` of identity's tokens.
    #[arg(
        long,
        env = "ASSIST_AGENT_DIRECTORY_IDENTITY_ISSUER",
        default_value = "assist-identity"
    )]
    pub identity_issuer: String,
    #[arg(
        long,
        env = "ASSIST_AGENT_DIRECTORY_REQUEST_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub request_timeout_secs: u64,
    #[arg(
        long,
        env = "ASSIST_AGENT_DIRECTORY_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024
    )]
    pub max_concurrent_requests: usize,
    #[arg(
        long,
        env = "ASSIST_AGENT_DIRECTORY_SHUTDOWN_GRACE_SECS",
        default_value_t = 10
    )]
    pub shutdown_grace_secs: u64,
    /// An agent with no heartbeat for this long is offline.
    #[arg(
        long,
        env = "ASSIST_AGENT_DIRECTORY_PRESENCE_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub presence_timeout_secs: u32,
}

/// A configuration checked for sense, ready to serve.
#[derive(Debug, Clone)]
pub struct Checked {
    pub server: ServerSettings,
}

impl Config {
    /// Checks values clap cannot: URLs, non-empty names and secrets, positive sizes and durations.
    pub fn check(&self) -> Result<Checked, ConfigError> {
        database_url(&self.database_url, "ASSIST_AGENT_DIRECTORY_DATABASE_URL")?;
        if self.database_pool_size == 0 {
            return Err(ConfigError::new(
                "ASSIST_AGENT_DIRECTORY_DATABASE_POOL_SIZE",
                "must be greater than 0",
            ));
        }
        http_url(&self.identity_url, "ASSIST_AGENT_DIRECTORY_IDENTITY_URL")?;
        for (value, variable) in [
            (&self.client_id, "ASSIST_AGENT_DIRECTORY_CLIENT_ID"),
            (&self.client_secret, "ASSIST_AGENT_DIRECTORY_CLIENT_SECRET"),
            (&self.audience, "ASSIST_AGENT_DIRECTORY_AUDIENCE"),
            (
                &self.identity_issuer,
                "ASSIST_AGENT_DIRECTORY_IDENTITY_ISSUER",
            ),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::new(variable, "must not be empty"));
            }
        }
        let request_timeout = positive_secs(
            self.request_timeout_secs,
            "ASSIST_AGENT_DIRECTORY_REQUEST_TIMEOUT_SECS",
        )?;
        positive_secs(
            u64::from(self.presence_timeout_secs),
            "ASSIST_AGENT_DIRECTORY_PRESENCE_TIMEOUT_SECS",
        )?;
        Ok(Checked {
            server: ServerSettings {
                metrics_listen: self.metrics_listen,
                request_timeout,
                max_concurrent_requests: self.max_concurrent_requests.max(1),
                shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            },
        })
    }
}

/// Serves the agent directory on `listener` until `shutdown` trips. Health is NOT_SERVING until the
/// database is reachable and migrated and identity has issued this service its token (both retried
/// meanwhile: identity may start later).
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let checked = config.check()?;
    let server = GrpcServer::new::<AgentDirectoryServer<api::Api>>(checked.server.clone()).await;
    let identity =
        assist_runtime::client::channel(&config.identity_url, checked.server.request_timeout)?;
    let verifier = Arc::new(TokenVerifier::new(
        &config.audience,
        vec![TrustedIssuer {
            issuer: config.identity_issuer.clone(),
            keys: Arc::new(IdentityJwks(IdentityClient::new(identity.clone()))),
        }],
    ));
    let cell: Arc<OnceCell<Arc<Agents>>> = Arc::new(OnceCell::new());
    let presence_timeout_secs = config.presence_timeout_secs;
    tokio::spawn(start(
        config,
        identity,
        cell.clone(),
        server.health(),
        shutdown.clone(),
    ));
    let auth = AuthPolicy::new(verifier, api::PUBLIC_METHODS);
    server
        .serve(
            listener,
            AgentDirectoryServer::new(api::Api::new(cell, shutdown.clone(), presence_timeout_secs)),
            auth,
            shutdown,
        )
        .await
}

/// Opens the database and obtains the service token, then makes the service ready.
async fn start(
    config: Config,
    identity: Channel,
    cell: Arc<OnceCell<Arc<Agents>>>,
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
        // Only ends without a database when shutting down.
        Err(error) => {
            tracing::info!(error = %error, "agent-directory stopped before its database opened");
            return;
        }
    };
    let store = Store::new(db);
    store.changes().listen(shutdown.clone());
    let Some(token) = service_token(&config, identity.clone(), &shutdown).await else {
        return;
    };
    let identity = IdentityClient::with_interceptor(identity, Outgoing { token: Some(token) });
    let agents = Arc::new(Agents::new(store, Principals::new(identity)));
    let _ = cell.set(agents.clone());
    if !*shutdown.borrow() {
        health.serving().await;
        tracing::info!("agent-directory serving");
    }
    let timeout = Duration::from_secs(u64::from(config.presence_timeout_secs));
    sweep_presence(agents, timeout, shutdown).await;
}

/// Sets agents offline whose heartbeats stopped, about every second (more often for short timeouts),
/// until shutdown. Every replica sweeps; a sweep is idempotent.
async fn sweep_presence(
    agents: Arc<Agents>,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let every = (timeout / 4).min(Duration::from_secs(1));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if let Err(error) = agents.expire_presence(timeout).await {
                    tracing::warn!(error = %error, "presence sweep failed");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// This service's token from identity (see [`ServiceToken::obtain`]); `None` when shutdown comes first.
async fn service_token(
    config: &Config,
    identity: Channel,
    shutdown: &watch::Receiver<bool>,
) -> Option<ServiceToken> {
    ServiceToken::obtain(
        IdentityClient::new(identity),
        &config.client_id,
        &config.client_secret,
        shutdown,
    )
    .await
}
