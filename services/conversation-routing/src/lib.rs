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

use std::sync::Arc;
use std::time::Duration;

use assist_proto::agentdirectory::v1::agent_directory_client::AgentDirectoryClient;
use assist_proto::impersonation::v1::impersonation_client::ImpersonationClient;
use assist_proto::routing::v1::routing_server::RoutingServer;
use assist_runtime::auth::{AuthPolicy, TokenVerifier};
use assist_runtime::client::{Outgoing, channel};
use assist_runtime::config::{ConfigError, http_url, positive_secs};
use assist_runtime::server::ServerSettings;
use assist_runtime::startup::{Ready, Service};
use tokio::net::TcpListener;
use tokio::sync::watch;
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

assist_runtime::server_settings!(
    prefix = "ASSIST_CONVERSATION_ROUTING",
    listen = "127.0.0.1:50054"
);
assist_runtime::database_settings!(prefix = "ASSIST_CONVERSATION_ROUTING");
assist_runtime::caller_settings!(
    prefix = "ASSIST_CONVERSATION_ROUTING",
    client_id = "conversation-routing"
);

/// Configuration of the conversation-routing service, from flags or `ASSIST_CONVERSATION_ROUTING_*` variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "assist-conversation-routing",
    about = "Agent Assist conversation routing service"
)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub caller: CallerArgs,
    /// The agent-directory service, whose `WatchAgents` feeds the routing view of agents.
    #[arg(
        long,
        env = "ASSIST_CONVERSATION_ROUTING_AGENT_DIRECTORY_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub agent_directory_url: String,
    /// The impersonation-token service, asked whether an assist session recorded in a conversation is
    /// the caller's own and serves the conversation's customer.
    #[arg(
        long,
        env = "ASSIST_CONVERSATION_ROUTING_IMPERSONATION_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub impersonation_url: String,
    /// How long an agent may stay offline before their assigned conversations go back to the queue.
    #[arg(
        long,
        env = "ASSIST_CONVERSATION_ROUTING_OFFLINE_GRACE_SECS",
        default_value_t = 900
    )]
    pub offline_grace_secs: u64,
    /// Queued conversations one assignment pass plans (1 to 1,000).
    #[arg(
        long,
        env = "ASSIST_CONVERSATION_ROUTING_ASSIGN_BATCH",
        default_value_t = 128
    )]
    pub assign_batch: u32,
    /// How often the safety-net pass and the offline sweep run, in milliseconds.
    #[arg(
        long,
        env = "ASSIST_CONVERSATION_ROUTING_SWEEP_MS",
        default_value_t = 1000
    )]
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
        self.database.check()?;
        self.caller.check()?;
        http_url(
            &self.agent_directory_url,
            "ASSIST_CONVERSATION_ROUTING_AGENT_DIRECTORY_URL",
        )?;
        http_url(
            &self.impersonation_url,
            "ASSIST_CONVERSATION_ROUTING_IMPERSONATION_URL",
        )?;
        if !(1..=1_000).contains(&self.assign_batch) {
            return Err(ConfigError::new(
                "ASSIST_CONVERSATION_ROUTING_ASSIGN_BATCH",
                "must be between 1 and 1000",
            ));
        }
        if !(10..=60_000).contains(&self.sweep_ms) {
            return Err(ConfigError::new(
                "ASSIST_CONVERSATION_ROUTING_SWEEP_MS",
                "must be between 10 and 60000",
            ));
        }
        let offline_grace = positive_secs(
            self.offline_grace_secs,
            "ASSIST_CONVERSATION_ROUTING_OFFLINE_GRACE_SECS",
        )?;
        Ok(Checked {
            server: self.server.check()?,
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
    let service =
        Service::new::<RoutingServer<api::Api>>("conversation-routing", checked.server.clone())
            .await;
    let identity = channel(&config.caller.identity_url, checked.server.request_timeout)?;
    let verifier = Arc::new(TokenVerifier::new(
        &config.caller.audience,
        vec![config.caller.identity_issuer(identity.clone())],
    ));
    let auth = AuthPolicy::new(verifier, api::PUBLIC_METHODS);
    let api = RoutingServer::new(api::Api::new(service.state(), shutdown.clone()));
    service
        .serve(listener, api, auth, shutdown, |ready| {
            start(config, checked, identity, ready)
        })
        .await
}

/// Opens the database, obtains the service token, follows agent-directory, then makes the service
/// ready and runs the engine.
async fn start(
    config: Config,
    checked: Checked,
    identity: Channel,
    ready: Ready<Routing>,
) -> anyhow::Result<()> {
    let db = config.database.open(&ready, &store::MIGRATIONS).await?;
    let shutdown = ready.shutdown().clone();
    let store = Store::new(db);
    store.events().listen(shutdown.clone());
    let token = config.caller.service_token(&ready, identity).await?;
    let timeout = checked.server.request_timeout;
    let outgoing = Outgoing { token: Some(token) };
    let sessions = ImpersonationClient::with_interceptor(
        channel(&config.impersonation_url, timeout)?,
        outgoing.clone(),
    );
    let agents = AgentDirectoryClient::with_interceptor(
        channel(&config.agent_directory_url, timeout)?,
        outgoing,
    );
    let roster = Arc::new(Roster::default());
    let engine = Arc::new(Engine::new(store.clone(), roster.clone(), checked.engine));
    tokio::spawn(engine.clone().follow_agents(agents, shutdown.clone()));
    let mut waiting = shutdown.clone();
    while !roster.is_synced() {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = waiting.wait_for(|s| *s) => return Ok(()),
        }
    }
    let routing = Routing::new(store, roster, engine.clone(), sessions);
    ready.serving(Arc::new(routing)).await;
    engine.run(shutdown).await;
    Ok(())
}
