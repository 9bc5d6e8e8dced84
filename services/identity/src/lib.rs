//! The identity service: principals, credentials (argon2id), login throttling, access and refresh
//! tokens, signing keys and JWKS, one-time tokens with a mail outbox, and customer and merchant-user
//! search. `serve` runs it on a listener; `main.rs` is the thin binary around it.

pub mod api;
pub mod domain;
pub mod hashing;
pub mod mail;
pub mod service;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use assist_proto::identity::v1::identity_server::IdentityServer;
use assist_runtime::auth::{AuthPolicy, KeySource, PublicKey, TokenVerifier, TrustedIssuer};
use assist_runtime::config::{ConfigError, http_url, key_encryption_key, positive_secs};
use assist_runtime::server::ServerSettings;
use assist_runtime::startup::{Ready, Service};
use futures::future::BoxFuture;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::domain::keys::KeyEncryptionKey;
use crate::domain::throttle::ThrottlePolicy;
use crate::service::{Identity, Settings};
use crate::store::Store;

assist_runtime::server_settings!(prefix = "ASSIST_IDENTITY", listen = "127.0.0.1:50051");
assist_runtime::database_settings!(prefix = "ASSIST_IDENTITY");

/// Configuration of the identity service, from flags or `ASSIST_IDENTITY_*` variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "assist-identity", about = "Agent Assist identity service")]
pub struct Config {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
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
        self.database.check()?;
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
        let server = self.server.check()?;
        Ok(Checked {
            settings,
            kek,
            server,
        })
    }
}

/// Identity's own keys (reloaded, so a rotation elsewhere is seen), for verifying the tokens it
/// receives without calling itself.
impl KeySource for Identity {
    fn fetch(&self) -> BoxFuture<'_, assist_runtime::Result<Vec<PublicKey>>> {
        Box::pin(async move {
            self.reload_keys().await?;
            Ok(self.jwks())
        })
    }
}

/// Migrates the database and opens the use cases.
pub async fn open(
    config: &Config,
    checked: &Checked,
    ready: &Ready<Identity>,
) -> anyhow::Result<Identity> {
    let db = config.database.open(ready, &store::MIGRATIONS).await?;
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
    let service =
        Service::new::<IdentityServer<api::Api>>("identity", checked.server.clone()).await;
    let verifier = Arc::new(TokenVerifier::new(
        &checked.settings.audience,
        vec![TrustedIssuer {
            issuer: checked.settings.issuer.clone(),
            keys: Arc::new(service.local_keys()),
        }],
    ));
    let auth = AuthPolicy::new(verifier, api::PUBLIC_METHODS);
    let api = IdentityServer::new(api::Api::new(service.state(), shutdown.clone()));
    service
        .serve(listener, api, auth, shutdown, |ready| async move {
            let identity = Arc::new(open(&config, &checked, &ready).await?);
            let stop = ready.shutdown().clone();
            identity.store().principal_changes().listen(stop.clone());
            ready.serving(identity.clone()).await;
            if let Some(url) = &config.smtp_url {
                let mailer = mail::Mailer::from_url(url, &config.smtp_from)
                    .map_err(|message| anyhow::anyhow!("ASSIST_SMTP_URL: {message}"))?;
                tokio::spawn(mailer.run(
                    identity.store().clone(),
                    Duration::from_secs(2),
                    stop.clone(),
                ));
            }
            housekeeping(identity, stop).await;
            Ok(())
        })
        .await
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
