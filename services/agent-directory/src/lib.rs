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
pub mod domain;
pub mod principals;
pub mod service;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use assist_proto::agentdirectory::v1::agent_directory_server::AgentDirectoryServer;
use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_runtime::auth::{AuthPolicy, TokenVerifier};
use assist_runtime::client::{Outgoing, channel};
use assist_runtime::config::{ConfigError, positive_secs};
use assist_runtime::server::ServerSettings;
use assist_runtime::startup::Service;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::principals::Principals;
use crate::service::Agents;
use crate::store::Store;

assist_runtime::server_settings!(
    prefix = "ASSIST_AGENT_DIRECTORY",
    listen = "127.0.0.1:50052"
);
assist_runtime::database_settings!(prefix = "ASSIST_AGENT_DIRECTORY");
assist_runtime::caller_settings!(
    prefix = "ASSIST_AGENT_DIRECTORY",
    client_id = "agent-directory"
);

/// Configuration of the agent-directory service, from flags or `ASSIST_AGENT_DIRECTORY_*` variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "assist-agent-directory",
    about = "Agent Assist agent directory service"
)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub caller: CallerArgs,
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
        self.database.check()?;
        self.caller.check()?;
        positive_secs(
            u64::from(self.presence_timeout_secs),
            "ASSIST_AGENT_DIRECTORY_PRESENCE_TIMEOUT_SECS",
        )?;
        Ok(Checked {
            server: self.server.check()?,
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
    let service =
        Service::new::<AgentDirectoryServer<api::Api>>("agent-directory", checked.server.clone())
            .await;
    let identity = channel(&config.caller.identity_url, checked.server.request_timeout)?;
    let verifier = Arc::new(TokenVerifier::new(
        &config.caller.audience,
        vec![config.caller.identity_issuer(identity.clone())],
    ));
    let auth = AuthPolicy::new(verifier, api::PUBLIC_METHODS);
    let api = AgentDirectoryServer::new(api::Api::new(
        service.state(),
        shutdown.clone(),
        config.presence_timeout_secs,
    ));
    service
        .serve(listener, api, auth, shutdown, |ready| async move {
            let db = config.database.open(&ready, &store::MIGRATIONS).await?;
            let store = Store::new(db);
            store.changes().listen(ready.shutdown().clone());
            let token = config
                .caller
                .service_token(&ready, identity.clone())
                .await?;
            let identity =
                IdentityClient::with_interceptor(identity, Outgoing { token: Some(token) });
            let agents = Arc::new(Agents::new(store, Principals::new(identity)));
            ready.serving(agents.clone()).await;
            let timeout = Duration::from_secs(u64::from(config.presence_timeout_secs));
            sweep_presence(agents, timeout, ready.shutdown().clone()).await;
            Ok(())
        })
        .await
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
