//! The identity service: principals, credentials (argon2id), login throttling, access and refresh
//! tokens, signing keys and JWKS, one-time tokens with a mail outbox, and customer and merchant-user
//! search. `serve` runs it on a listener; `main.rs` is the thin binary around it.

pub mod api;
pub mod domain;
pub mod hashing;
pub mod mail;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use assist_proto::identity::v1::identity_server::IdentityServer;
use assist_runtime::auth::{AuthPolicy, KeySource, PublicKey, TokenVerifier, TrustedIssuer};
use assist_runtime::config::{
    ConfigError, database_url, http_url, key_encryption_key, positive_secs,
};
use assist_runtime::db::{Database, PoolSize};
use assist_runtime::server::{GrpcServer, ServerSettings};
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::{OnceCell, watch};

use crate::domain::keys::KeyEncryptionKey;
use crate::domain::throttle::ThrottlePolicy;
use crate::service::{Identity, Settings};
use crate::store::Store;

/// Configuration of the identity service, from flags or `ASSIST_IDENTITY_*` variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "assist-identity", about = "Agent Assist identity service")]
pub struct Config {
    /// gRPC listen address.
    #[arg(
        long,
        env = "ASSIST_IDENTITY_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,
    /// Prometheus `/metrics` listen address; none when unset.
    #[arg(long, env = "ASSIST_IDENTITY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// `postgres://…` or `sqlite://path`.
    #[arg(long, env = "ASSIST_IDENTITY_DATABASE_URL")]
    pub database_url: String,
    #[arg(long, env = "ASSIST_IDENTITY_DATABASE_POOL_SIZE", default_value_t = 16)]
    pub database_pool_size: u32,
    /// base64 of 32 random bytes; encrypts signing keys at rest. `openssl rand -base64 32` makes one.
    #[arg(
        long,
        env = "ASSIST_IDENTITY_KEY_ENCRYPTION_KEY",
        hide_env_values = true
    )]
    pub key_encryption_key: String,
    #[arg(
        long,
        env = "ASSIST_IDENTITY_ISSUER",
        default_value = "assist-identity"
    )]
    pub issuer: String,
    #[arg(long, env = "ASSIST_IDENTITY_AUDIENCE", default_value = "agent-assist")]
    pub audience: String,
    #[arg(
        long,
        env = "ASSIST_IDENTITY_ACCESS_TOKEN_TTL_SECS",
        default_value_t = 900
    )]
    pub access_token_ttl_secs: u64,
    #[arg(long, env = "ASSIST_IDENTITY_REFRESH_TOKEN_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl_secs: u64,
    #[arg(
        long,
        env = "ASSIST_IDENTITY_SERVICE_TOKEN_TTL_SECS",
        default_value_t = 600
    )]
    pub service_token_ttl_secs: u64,
    /// Failed sign-ins per account within the window that start a block.
    #[arg(long, env = "ASSIST_IDENTITY_LOGIN_MAX_FAILURES", default_value_t = 9)]
    pub login_max_failures: u32,
    /// Failed sign-ins per client address within the window that start a block.
    #[arg(
        long,
        env = "ASSIST_IDENTITY_LOGIN_ADDRESS_MAX_FAILURES",
        default_value_t = 9
    )]
    pub login_address_max_failures: u32,
    #[arg(long, env = "ASSIST_IDENTITY_LOGIN_WINDOW_SECS", default_value_t = 15 * 60)]
    pub login_window_secs: u64,
    #[arg(long, env = "ASSIST_IDENTITY_LOGIN_BLOCK_SECS", default_value_t = 6 * 60)]
    pub login_block_secs: u64,
    /// Base URL of the pages that mail links point to.
    #[arg(
        long,
        env = "ASSIST_IDENTITY_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub public_url: String,
    #[arg(
        long,
        env = "ASSIST_IDENTITY_CUSTOMER_REFERENCE_PREFIX",
        default_value = "DE--"
    )]
    pub customer_reference_prefix: String,
    /// SMTP server for outgoing mail (`smtp://host:25`, `smtps://user:pass@host`); without it mail
    /// stays in the outbox, readable with ListOutbox.
    #[arg(long, env = "ASSIST_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    #[arg(
        long,
        env = "ASSIST_SMTP_FROM",
        default_value = "Agent Assist <no-reply@agent-assist.invalid>"
    )]
    pub smtp_from: String,
    #[arg(
        long,
        env = "ASSIST_IDENTITY_REQUEST_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub request_timeout_secs: u64,
    #[arg(
        long,
        env = "ASSIST_IDENTITY_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024
    )]
    pub max_concurrent_requests: usize,
    #[arg(
        long,
        env = "ASSIST_IDENTITY_SHUTDOWN_GRACE_SECS",
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
            "ASSIST_IDENTITY_KEY_ENCRYPTION_KEY",
        )?;
        database_url(&self.database_url, "ASSIST_IDENTITY_DATABASE_URL")?;
        http_url(&self.public_url, "ASSIST_IDENTITY_PUBLIC_URL")?;
        if let Some(url) = &self.smtp_url {
            mail::Mailer::from_url(url, &self.smtp_from)
                .map_err(|message| ConfigError::new("ASSIST_SMTP_URL", message))?;
        }
        if self.login_max_failures == 0 || self.login_address_max_failures == 0 {
            return Err(ConfigError::new(
                "ASSIST_IDENTITY_LOGIN_MAX_FAILURES",
                "must be greater than 0",
            ));
        }
        if self.database_pool_size == 0 {
            return Err(ConfigError::new(
                "ASSIST_IDENTITY_DATABASE_POOL_SIZE",
                "must be greater than 0",
            ));
        }
        let window = positive_secs(self.login_window_secs, "ASSIST_IDENTITY_LOGIN_WINDOW_SECS")?;
        let block = positive_secs(self.login_block_secs, "ASSIST_IDENTITY_LOGIN_BLOCK_SECS")?;
        let settings = Settings {
            issuer: self.issuer.clone(),
            audience: self.audience.clone(),
            access_token_ttl: positive_secs(
                self.access_token_ttl_secs,
                "ASSIST_IDENTITY_ACCESS_TOKEN_TTL_SECS",
            )?,
            refresh_token_ttl: positive_secs(
                self.refresh_token_ttl_secs,
                "ASSIST_IDENTITY_REFRESH_TOKEN_TTL_SECS",
            )?,
            service_token_ttl: positive_secs(
                self.service_token_ttl_secs,
                "ASSIST_IDENTITY_SERVICE_TOKEN_TTL_SECS",
            )?,
            public_url: self.public_url.clone(),
            account_throttle: ThrottlePolicy {
                max_failures: self.login_max_failures,
                window,
                block,
            },
            address_throttle: ThrottlePolicy {
                max_failures: self.login_address_max_failures,
                window,
                block,
            },
            customer_reference_prefix: self.customer_reference_prefix.clone(),
            mail_relay: self.smtp_url.is_some(),
            ..Settings::default()
        };
        let server = ServerSettings {
            metrics_listen: self.metrics_listen,
            request_timeout: positive_secs(
                self.request_timeout_secs,
                "ASSIST_IDENTITY_REQUEST_TIMEOUT_SECS",
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

/// Identity's own keys, for verifying the tokens it receives without calling itself.
struct LocalJwks(Arc<OnceCell<Arc<Identity>>>);

impl KeySource for LocalJwks {
    fn fetch(&self) -> BoxFuture<'_, assist_runtime::Result<Vec<PublicKey>>> {
        Box::pin(async move {
            let identity = self
                .0
                .get()
                .ok_or_else(|| assist_runtime::Error::Unavailable("identity is starting".into()))?;
            identity.reload_keys().await?;
            Ok(identity.jwks())
        })
    }
}

/// Connects to the database (retrying while it is unreachable), migrates, and opens the use cases.
pub async fn open(
    config: &Config,
    checked: &Checked,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Identity> {
    let db = Database::connect_and_migrate(
        &config.database_url,
        PoolSize(config.database_pool_size),
        &store::MIGRATIONS,
        shutdown,
    )
    .await?;
    Ok(Identity::new(
        Store::new(db),
        checked.settings.clone(),
        checked.kek.clone(),
    )
    .await?)
}

/// Serves identity on `listener` until `shutdown` trips. Health is NOT_SERVING until the database is
/// reachable and migrated.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let checked = config.check()?;
    let server = GrpcServer::new::<IdentityServer<api::Api>>(checked.server.clone()).await;
    let cell: Arc<OnceCell<Arc<Identity>>> = Arc::new(OnceCell::new());
    let verifier = Arc::new(TokenVerifier::new(
        &checked.settings.audience,
        vec![TrustedIssuer {
            issuer: checked.settings.issuer.clone(),
            keys: Arc::new(LocalJwks(cell.clone())),
        }],
    ));

    let health = server.health();
    let ready = cell.clone();
    let stop = shutdown.clone();
    let smtp = config
        .smtp_url
        .clone()
        .map(|url| (url, config.smtp_from.clone()));
    // A start that cannot succeed (a wrong key-encryption key, a schema from the future) ends `serve`
    // with the error, so the process exits non-zero instead of idling NOT_SERVING forever.
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
    tokio::spawn(async move {
        let identity = match open(&config, &checked, &stop).await {
            Ok(identity) => Arc::new(identity),
            Err(error) => {
                if !*stop.borrow() {
                    let _ = failed_tx.send(error);
                }
                return;
            }
        };
        drop(failed_tx);
        identity.store().principal_changes().listen(stop.clone());
        let _ = ready.set(identity.clone());
        health.serving().await;
        tracing::info!("identity serving");
        if let Some((url, from)) = smtp {
            match mail::Mailer::from_url(&url, &from) {
                Ok(mailer) => {
                    tokio::spawn(mailer.run(
                        identity.store().clone(),
                        Duration::from_secs(2),
                        stop.clone(),
                    ));
                }
                Err(error) => tracing::error!(error = %error, "mail delivery off"),
            }
        }
        housekeeping(identity, stop).await;
    });

    let auth = AuthPolicy::new(verifier, api::PUBLIC_METHODS);
    let serving = server.serve(
        listener,
        IdentityServer::new(api::Api::new(cell, shutdown.clone())),
        auth,
        shutdown,
    );
    tokio::select! {
        result = serving => result,
        Ok(error) = failed_rx => {
            tracing::error!(error = format!("{error:#}"), "identity did not start");
            Err(error.context("identity did not start"))
        }
    }
}

async fn housekeeping(identity: Arc<Identity>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(domain::keys::KEY_RELOAD) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if let Err(error) = identity.housekeeping().await {
            tracing::warn!(error = %error, "housekeeping failed");
        }
    }
}
