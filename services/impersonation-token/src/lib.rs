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

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use assist_proto::agentdirectory::v1::agent_directory_client::AgentDirectoryClient;
use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_proto::impersonation::v1::impersonation_server::ImpersonationServer;
use assist_proto::routing::v1::routing_client::RoutingClient;
use assist_runtime::auth::{
    AuthPolicy, Delegated, IdentityJwks, KeySource, PublicKey, TokenVerifier, TrustedIssuer,
};
use assist_runtime::client::{Outgoing, ServiceToken, channel};
use assist_runtime::config::{
    ConfigError, database_url, http_url, key_encryption_key, positive_secs,
};
use assist_runtime::db::{Database, PoolSize};
use assist_runtime::keys::KeyEncryptionKey;
use assist_runtime::server::{GrpcServer, ServerSettings};
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::{OnceCell, watch};

use crate::directory::Directory;
use crate::domain::session::Limits;
use crate::service::{Impersonation, Settings};
use crate::store::Store;

/// Configuration of the impersonation-token service, from flags or `ASSIST_IMPERSONATION_*` variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "assist-impersonation-token",
    about = "Agent Assist impersonation-token service"
)]
pub struct Config {
    /// gRPC listen address.
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_LISTEN",
        default_value = "127.0.0.1:50053"
    )]
    pub listen: SocketAddr,
    /// Prometheus `/metrics` listen address; none when unset.
    #[arg(long, env = "ASSIST_IMPERSONATION_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// `postgres://…` or `sqlite://path`: this service's own database.
    #[arg(long, env = "ASSIST_IMPERSONATION_DATABASE_URL")]
    pub database_url: String,
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_DATABASE_POOL_SIZE",
        default_value_t = 16
    )]
    pub database_pool_size: u32,
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
        env = "ASSIST_IMPERSONATION_AUDIENCE",
        default_value = "agent-assist"
    )]
    pub audience: String,
    /// `iss` of identity's access tokens.
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_IDENTITY_ISSUER",
        default_value = "assist-identity"
    )]
    pub identity_issuer: String,
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_IDENTITY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub identity_url: String,
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
    /// The service account this service calls identity and agent-directory with.
    #[arg(long, env = "ASSIST_IMPERSONATION_CLIENT_ID")]
    pub client_id: String,
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub client_secret: String,
    /// Maximum length of an assist session.
    #[arg(long, env = "ASSIST_IMPERSONATION_SESSION_MAX_SECS", default_value_t = 8 * 3600)]
    pub session_max_secs: u64,
    /// A session unused for this long ends.
    #[arg(long, env = "ASSIST_IMPERSONATION_SESSION_IDLE_SECS", default_value_t = 30 * 60)]
    pub session_idle_secs: u64,
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_REQUEST_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub request_timeout_secs: u64,
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024
    )]
    pub max_concurrent_requests: usize,
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_SHUTDOWN_GRACE_SECS",
        default_value_t = 10
    )]
    pub shutdown_grace_secs: u64,
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
        database_url(&self.database_url, "ASSIST_IMPERSONATION_DATABASE_URL")?;
        http_url(&self.identity_url, "ASSIST_IMPERSONATION_IDENTITY_URL")?;
        http_url(
            &self.agent_directory_url,
            "ASSIST_IMPERSONATION_AGENT_DIRECTORY_URL",
        )?;
        http_url(&self.routing_url, "ASSIST_IMPERSONATION_ROUTING_URL")?;
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return Err(ConfigError::new(
                "ASSIST_IMPERSONATION_CLIENT_ID",
                "a service account id and secret are required",
            ));
        }
        if self.database_pool_size == 0 {
            return Err(ConfigError::new(
                "ASSIST_IMPERSONATION_DATABASE_POOL_SIZE",
                "must be greater than 0",
            ));
        }
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
        if self.issuer == self.identity_issuer {
            return Err(ConfigError::new(
                "ASSIST_IMPERSONATION_ISSUER",
                "must differ from the identity issuer",
            ));
        }
        let settings = Settings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            limits,
        };
        let server = ServerSettings {
            metrics_listen: self.metrics_listen,
            request_timeout: positive_secs(
                self.request_timeout_secs,
                "ASSIST_IMPERSONATION_REQUEST_TIMEOUT_SECS",
            )?,
            max_concurrent_requests: self.max_concurrent_requests.max(1),
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
        };
        Ok(Checked {
            settings,
            kek,
            server,
        })
    }
}

/// This service's own keys, for the impersonation tokens it receives (EndAssist by the session's
/// token) without calling itself.
struct LocalJwks(Arc<OnceCell<Arc<Impersonation>>>);

impl KeySource for LocalJwks {
    fn fetch(&self) -> BoxFuture<'_, assist_runtime::Result<Vec<PublicKey>>> {
        Box::pin(async move {
            let service = self.0.get().ok_or_else(|| {
                assist_runtime::Error::Unavailable("impersonation is starting".into())
            })?;
            Ok(service.jwks())
        })
    }
}

/// Connects to the database (retrying while it is unreachable), migrates, obtains the service token
/// (retrying while identity is unreachable) and opens the use cases.
pub async fn open(
    config: &Config,
    checked: &Checked,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Impersonation> {
    let db = Database::connect_and_migrate(
        &config.database_url,
        PoolSize(config.database_pool_size),
        &store::MIGRATIONS,
        shutdown,
    )
    .await?;
    let timeout = checked.server.request_timeout;
    let identity_channel = channel(&config.identity_url, timeout)?;
    let token = ServiceToken::obtain(
        IdentityClient::new(identity_channel.clone()),
        &config.client_id,
        &config.client_secret,
        shutdown,
    )
    .await
    .ok_or_else(|| anyhow::anyhow!("shut down before identity issued a service token"))?;
    let outgoing = Outgoing { token: Some(token) };
    let directory = Directory {
        identity: IdentityClient::with_interceptor(identity_channel, outgoing.clone()),
        agents: AgentDirectoryClient::with_interceptor(
            channel(&config.agent_directory_url, timeout)?,
            outgoing,
        ),
        routing: RoutingClient::new(channel(&config.routing_url, timeout)?),
    };
    Ok(Impersonation::new(
        Store::new(
            db,
            std::sync::Arc::new(crate::domain::audit::AuditKeys::new(&checked.kek)),
        ),
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
    let server = GrpcServer::new::<ImpersonationServer<api::Api>>(checked.server.clone()).await;
    let cell: Arc<OnceCell<Arc<Impersonation>>> = Arc::new(OnceCell::new());
    let identity_jwks = IdentityJwks(IdentityClient::new(channel(
        &config.identity_url,
        checked.server.request_timeout,
    )?));
    let verifier = Arc::new(TokenVerifier::new(
        &checked.settings.audience,
        vec![
            TrustedIssuer {
                issuer: config.identity_issuer.clone(),
                keys: Arc::new(identity_jwks),
            },
            TrustedIssuer {
                issuer: checked.settings.issuer.clone(),
                keys: Arc::new(LocalJwks(cell.clone())),
            },
        ],
    ));

    let health = server.health();
    let ready = cell.clone();
    let stop = shutdown.clone();
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
    tokio::spawn(async move {
        let service = match open(&config, &checked, &stop).await {
            Ok(service) => Arc::new(service),
            Err(error) => {
                if !*stop.borrow() {
                    let _ = failed_tx.send(error);
                }
                return;
            }
        };
        drop(failed_tx);
        service.store().revocations().listen(stop.clone());
        let _ = ready.set(service.clone());
        health.serving().await;
        tracing::info!("impersonation serving");
        tokio::spawn(enforce::run(service.clone(), stop.clone()));
        housekeeping(service, stop).await;
    });

    let auth = AuthPolicy {
        delegated: Delegated::PassThrough,
        ..AuthPolicy::new(verifier, api::PUBLIC_METHODS)
    };
    let serving = server.serve(
        listener,
        ImpersonationServer::new(api::Api::new(cell, shutdown.clone())),
        auth,
        shutdown,
    );
    tokio::select! {
        result = serving => result,
        Ok(error) = failed_rx => {
            tracing::error!(error = format!("{error:#}"), "impersonation did not start");
            Err(error.context("impersonation did not start"))
        }
    }
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
