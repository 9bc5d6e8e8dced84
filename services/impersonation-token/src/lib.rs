//! The impersonation-token service: assist sessions in which an agent acts for a customer or a merchant
//! user (RFC 8693 delegation), impersonation tokens signed with its own keys, the revocation feed that
//! every verifier follows, and the hash-chained audit of what was done in each session. `serve` runs it
//! on a listener; `main.rs` is the thin binary around it.

pub mod api;
pub mod directory;
pub mod domain;
pub mod enforce;
pub mod service;
pub mod store;

use std::sync::Arc;

use assist_proto::agentdirectory::v1::agent_directory_client::AgentDirectoryClient;
use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_proto::impersonation::v1::impersonation_server::ImpersonationServer;
use assist_proto::routing::v1::routing_client::RoutingClient;
use assist_runtime::auth::{
    AuthPolicy, Delegated, KeySource, PublicKey, TokenVerifier, TrustedIssuer,
};
use assist_runtime::client::{Outgoing, channel};
use assist_runtime::config::{ConfigError, http_url, key_encryption_key, positive_secs};
use assist_runtime::keys::KeyEncryptionKey;
use assist_runtime::server::ServerSettings;
use assist_runtime::startup::{Ready, Service};
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::directory::Directory;
use crate::domain::session::Limits;
use crate::service::{Impersonation, Settings};
use crate::store::Store;

assist_runtime::server_settings!(prefix = "ASSIST_IMPERSONATION", listen = "127.0.0.1:50053");
assist_runtime::database_settings!(prefix = "ASSIST_IMPERSONATION");
assist_runtime::caller_settings!(prefix = "ASSIST_IMPERSONATION");

/// Configuration of the impersonation-token service, from flags or `ASSIST_IMPERSONATION_*` variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "assist-impersonation-token",
    about = "Agent Assist impersonation-token service"
)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub caller: CallerArgs,
    /// base64 of 32 random bytes; encrypts this service's signing keys at rest.
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_KEY_ENCRYPTION_KEY",
        hide_env_values = true
    )]
    pub key_encryption_key: String,
    /// `iss` of impersonation tokens.
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_ISSUER",
        default_value = "assist-impersonation"
    )]
    pub issuer: String,
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_AGENT_DIRECTORY_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub agent_directory_url: String,
    /// Conversation routing, asked (with the agent's own token) whether the conversation an assist
    /// session is started for exists, is the agent's to read and belongs to the target.
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_ROUTING_URL",
        default_value = "http://127.0.0.1:50054"
    )]
    pub routing_url: String,
    /// Maximum length of an assist session.
    #[arg(long, env = "ASSIST_IMPERSONATION_SESSION_MAX_SECS", default_value_t = 8 * 3600)]
    pub session_max_secs: u64,
    /// A session unused for this long ends.
    #[arg(long, env = "ASSIST_IMPERSONATION_SESSION_IDLE_SECS", default_value_t = 30 * 60)]
    pub session_idle_secs: u64,
}

/// A configuration checked for sense, ready to serve.
pub struct Checked {
    pub settings: Settings,
    pub kek: KeyEncryptionKey,
    pub server: ServerSettings,
}

impl Config {
    /// Checks values clap cannot: key sizes, URLs, positive durations.
    pub fn check(&self) -> Result<Checked, ConfigError> {
        let kek = key_encryption_key(
            &self.key_encryption_key,
            "ASSIST_IMPERSONATION_KEY_ENCRYPTION_KEY",
        )?;
        self.database.check()?;
        self.caller.check()?;
        http_url(
            &self.agent_directory_url,
            "ASSIST_IMPERSONATION_AGENT_DIRECTORY_URL",
        )?;
        http_url(&self.routing_url, "ASSIST_IMPERSONATION_ROUTING_URL")?;
        let limits = Limits {
            max_length: positive_secs(
                self.session_max_secs,
                "ASSIST_IMPERSONATION_SESSION_MAX_SECS",
            )?,
            idle_timeout: positive_secs(
                self.session_idle_secs,
                "ASSIST_IMPERSONATION_SESSION_IDLE_SECS",
            )?,
        };
        if limits.idle_timeout > limits.max_length {
            return Err(ConfigError::new(
                "ASSIST_IMPERSONATION_SESSION_IDLE_SECS",
                "must not exceed ASSIST_IMPERSONATION_SESSION_MAX_SECS",
            ));
        }
        if self.issuer == self.caller.identity_issuer {
            return Err(ConfigError::new(
                "ASSIST_IMPERSONATION_ISSUER",
                "must differ from the identity issuer",
            ));
        }
        let settings = Settings {
            issuer: self.issuer.clone(),
            audience: self.caller.audience.clone(),
            limits,
        };
        let server = self.server.check()?;
        Ok(Checked {
            settings,
            kek,
            server,
        })
    }
}

/// This service's own keys, for the impersonation tokens it receives (EndAssist by the session's
/// token) without calling itself.
impl KeySource for Impersonation {
    fn fetch(&self) -> BoxFuture<'_, assist_runtime::Result<Vec<PublicKey>>> {
        Box::pin(async move { Ok(self.jwks()) })
    }
}

/// Migrates the database, obtains the service token and opens the use cases.
pub async fn open(
    config: &Config,
    checked: &Checked,
    ready: &Ready<Impersonation>,
) -> anyhow::Result<Impersonation> {
    let db = config.database.open(ready, &store::MIGRATIONS).await?;
    let timeout = checked.server.request_timeout;
    let identity_channel = channel(&config.caller.identity_url, timeout)?;
    let token = config
        .caller
        .service_token(ready, identity_channel.clone())
        .await?;
    let outgoing = Outgoing { token: Some(token) };
    let directory = Directory {
        identity: IdentityClient::with_interceptor(identity_channel, outgoing.clone()),
        agents: AgentDirectoryClient::with_interceptor(
            channel(&config.agent_directory_url, timeout)?,
            outgoing,
        ),
        routing: RoutingClient::new(channel(&config.routing_url, timeout)?),
    };
    let audit_keys = Arc::new(crate::domain::audit::AuditKeys::new(&checked.kek));
    Ok(Impersonation::new(
        Store::new(db, audit_keys),
        checked.settings.clone(),
        checked.kek.clone(),
        directory,
    )
    .await?)
}

/// Serves the impersonation-token service on `listener` until `shutdown` trips. Health is NOT_SERVING
/// until the database is migrated and the service token obtained.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let checked = config.check()?;
    let service = Service::new::<ImpersonationServer<api::Api>>(
        "impersonation-token",
        checked.server.clone(),
    )
    .await;
    let identity = channel(&config.caller.identity_url, checked.server.request_timeout)?;
    let verifier = Arc::new(TokenVerifier::new(
        &checked.settings.audience,
        vec![
            config.caller.identity_issuer(identity),
            TrustedIssuer {
                issuer: checked.settings.issuer.clone(),
                keys: Arc::new(service.local_keys()),
            },
        ],
    ));
    let auth = AuthPolicy {
        delegated: Delegated::PassThrough,
        ..AuthPolicy::new(verifier, api::PUBLIC_METHODS)
    };
    let api = ImpersonationServer::new(api::Api::new(service.state(), shutdown.clone()));
    service
        .serve(listener, api, auth, shutdown, |ready| async move {
            let service = Arc::new(open(&config, &checked, &ready).await?);
            let stop = ready.shutdown().clone();
            service.store().revocations().listen(stop.clone());
            ready.serving(service.clone()).await;
            tokio::spawn(enforce::run(service.clone(), stop.clone()));
            housekeeping(service, stop).await;
            Ok(())
        })
        .await
}

async fn housekeeping(service: Arc<Impersonation>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(error) = service.housekeeping().await {
            tracing::warn!(error = %error, "housekeeping failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(service::HOUSEKEEPING) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
