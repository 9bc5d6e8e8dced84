//! The gateway: the storefront agent-assist HTTP API, compatible with the Spryker Glue agent-assist
//! endpoints (JSON:API), turned into gRPC calls to identity, agent-directory and impersonation-token.
//! `serve` runs it on a listener; `main.rs` is the thin binary around it.

pub mod jsonapi;
pub mod openapi;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use assist_proto::agentdirectory::v1::agent_directory_client::AgentDirectoryClient;
use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_proto::impersonation::v1::impersonation_client::ImpersonationClient;
use assist_runtime::auth::{IdentityJwks, TokenVerifier, TrustedIssuer};
use assist_runtime::client::{Outgoing, ServiceToken, channel};
use assist_runtime::config::{ConfigError, http_url, positive_secs};
use tokio::net::TcpListener;
use tokio::sync::{OnceCell, watch};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

/// Configuration of the gateway, from flags or `ASSIST_GATEWAY_*` variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "assist-gateway",
    about = "Agent Assist gateway (HTTP/JSON:API)"
)]
pub struct Config {
    /// HTTP listen address.
    #[arg(long, env = "ASSIST_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Absolute base of the JSON:API `links` (such as `https://shop.example.com`); relative when unset.
    #[arg(long, env = "ASSIST_GATEWAY_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[arg(
        long,
        env = "ASSIST_GATEWAY_IDENTITY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub identity_url: String,
    #[arg(
        long,
        env = "ASSIST_GATEWAY_AGENT_DIRECTORY_URL",
        default_value = "http://127.0.0.1:50052"
    )]
    pub agent_directory_url: String,
    #[arg(
        long,
        env = "ASSIST_GATEWAY_IMPERSONATION_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub impersonation_url: String,
    /// The service account the gateway searches and reads agent profiles with.
    #[arg(long, env = "ASSIST_GATEWAY_CLIENT_ID")]
    pub client_id: String,
    #[arg(long, env = "ASSIST_GATEWAY_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: String,
    /// `aud` of the access tokens the gateway accepts.
    #[arg(long, env = "ASSIST_GATEWAY_AUDIENCE", default_value = "agent-assist")]
    pub audience: String,
    /// `iss` of identity's access tokens.
    #[arg(
        long,
        env = "ASSIST_GATEWAY_IDENTITY_ISSUER",
        default_value = "assist-identity"
    )]
    pub identity_issuer: String,
    /// Upper bound of one HTTP request, gRPC calls included.
    #[arg(
        long,
        env = "ASSIST_GATEWAY_REQUEST_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub request_timeout_secs: u64,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "ASSIST_GATEWAY_BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,
    #[arg(long, env = "ASSIST_GATEWAY_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,
    /// Take the client address for login throttling from the last `X-Forwarded-For` entry (set it only
    /// behind a proxy that appends it, such as Envoy); otherwise the peer address is used.
    #[arg(
        long,
        env = "ASSIST_GATEWAY_TRUST_FORWARDED_FOR",
        default_value_t = false
    )]
    pub trust_forwarded_for: bool,
}

/// A configuration checked for sense, ready to serve.
#[derive(Debug, Clone)]
pub struct Checked {
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub body_limit: usize,
    /// Base of JSON:API links, without a trailing slash; empty for relative links.
    pub public_url: String,
    pub trust_forwarded_for: bool,
}

impl Config {
    /// Checks values clap cannot: URLs, credentials, positive limits.
    pub fn check(&self) -> Result<Checked, ConfigError> {
        http_url(&self.identity_url, "ASSIST_GATEWAY_IDENTITY_URL")?;
        http_url(
            &self.agent_directory_url,
            "ASSIST_GATEWAY_AGENT_DIRECTORY_URL",
        )?;
        http_url(&self.impersonation_url, "ASSIST_GATEWAY_IMPERSONATION_URL")?;
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return Err(ConfigError::new(
                "ASSIST_GATEWAY_CLIENT_ID",
                "a service account id and secret are required",
            ));
        }
        if self.audience.is_empty() {
            return Err(ConfigError::new(
                "ASSIST_GATEWAY_AUDIENCE",
                "must not be empty",
            ));
        }
        if self.identity_issuer.is_empty() {
            return Err(ConfigError::new(
                "ASSIST_GATEWAY_IDENTITY_ISSUER",
                "must not be empty",
            ));
        }
        if self.body_limit_bytes == 0 {
            return Err(ConfigError::new(
                "ASSIST_GATEWAY_BODY_LIMIT_BYTES",
                "must be greater than 0",
            ));
        }
        let public_url = match &self.public_url {
            Some(url) if !url.is_empty() => {
                http_url(url, "ASSIST_GATEWAY_PUBLIC_URL")?;
                url.trim_end_matches('/').to_owned()
            }
            _ => String::new(),
        };
        Ok(Checked {
            request_timeout: positive_secs(
                self.request_timeout_secs,
                "ASSIST_GATEWAY_REQUEST_TIMEOUT_SECS",
            )?,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            body_limit: self.body_limit_bytes,
            public_url,
            trust_forwarded_for: self.trust_forwarded_for,
        })
    }
}

pub type Identity = IdentityClient<InterceptedService<Channel, Outgoing>>;
pub type Agents = AgentDirectoryClient<InterceptedService<Channel, Outgoing>>;
pub type Impersonation = ImpersonationClient<InterceptedService<Channel, Outgoing>>;

/// The gRPC clients, once the service token is there.
#[derive(Clone)]
pub struct Upstreams {
    /// Calls with the gateway's service token (search, agent profiles).
    pub identity_service: Identity,
    pub agents: Agents,
    /// Calls that carry the end user's own credentials or none (sign-in, refresh, revocation).
    pub identity: Identity,
    /// Calls that carry the agent's own token (StartAssist, EndAssist, ListSessions).
    pub impersonation: Impersonation,
}

/// What every handler shares.
pub struct AppState {
    pub checked: Checked,
    /// Verifies identity's access tokens (agents' and customers').
    pub verifier: TokenVerifier,
    pub upstreams: OnceCell<Upstreams>,
    pub shutdown: watch::Receiver<bool>,
}

/// Obtains the service token, retrying while identity is unreachable, and builds the clients.
async fn connect(
    config: &Config,
    checked: &Checked,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Upstreams> {
    let timeout = checked.request_timeout;
    let identity_channel = channel(&config.identity_url, timeout)?;
    let mut delay = Duration::from_millis(100);
    let token = loop {
        match ServiceToken::start(
            IdentityClient::new(identity_channel.clone()),
            config.client_id.clone(),
            config.client_secret.clone(),
        )
        .await
        {
            Ok(token) => break token,
            Err(assist_runtime::Error::Unavailable(_)) if !*shutdown.borrow() => {
                tracing::warn!("identity not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(error) => return Err(error.into()),
        }
    };
    let with_token = Outgoing { token: Some(token) };
    Ok(Upstreams {
        identity_service: IdentityClient::with_interceptor(
            identity_channel.clone(),
            with_token.clone(),
        ),
        agents: AgentDirectoryClient::with_interceptor(
            channel(&config.agent_directory_url, timeout)?,
            with_token,
        ),
        identity: IdentityClient::with_interceptor(identity_channel, Outgoing::default()),
        impersonation: ImpersonationClient::with_interceptor(
            channel(&config.impersonation_url, timeout)?,
            Outgoing::default(),
        ),
    })
}

/// Serves the gateway on `listener` until `shutdown` trips, then drains in-flight requests within the
/// grace period. `/healthz` answers 503 until the service token is obtained and once shutdown begins.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let checked = config.check()?;
    let jwks = IdentityJwks(IdentityClient::new(channel(
        &config.identity_url,
        checked.request_timeout,
    )?));
    let state = Arc::new(AppState {
        checked: checked.clone(),
        verifier: TokenVerifier::new(
            &config.audience,
            vec![TrustedIssuer {
                issuer: config.identity_issuer.clone(),
                keys: Arc::new(jwks),
            }],
        ),
        upstreams: OnceCell::new(),
        shutdown: shutdown.clone(),
    });

    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
    let ready = state.clone();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        match connect(&config, &ready.checked, &stop).await {
            Ok(upstreams) => {
                let _ = ready.upstreams.set(upstreams);
                tracing::info!("gateway serving");
            }
            Err(error) if !*stop.borrow() => {
                let _ = failed_tx.send(error);
            }
            Err(_) => {}
        }
    });

    let app = routes::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let serving = std::future::IntoFuture::into_future(
        axum::serve(listener, app)
            .with_graceful_shutdown(assist_runtime::shutdown::tripped(shutdown.clone())),
    );
    let grace = checked.shutdown_grace;
    let drain_deadline = async move {
        assist_runtime::shutdown::tripped(shutdown).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = serving => Ok(result?),
        () = drain_deadline => {
            tracing::warn!("shutdown grace elapsed with requests in flight");
            Ok(())
        }
        Ok(error) = failed_rx => {
            tracing::error!(error = format!("{error:#}"), "gateway did not start");
            Err(error.context("gateway did not start"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(extra: &[&str]) -> Config {
        let mut args = vec!["gateway", "--client-id=gw", "--client-secret=s"];
        args.extend(extra);
        Config::try_parse_from(args).unwrap()
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert!(config(&[]).check().is_ok());
        for (flag, variable) in [
            ("--identity-url=grpc://x", "ASSIST_GATEWAY_IDENTITY_URL"),
            ("--impersonation-url=x", "ASSIST_GATEWAY_IMPERSONATION_URL"),
            (
                "--request-timeout-secs=0",
                "ASSIST_GATEWAY_REQUEST_TIMEOUT_SECS",
            ),
            ("--body-limit-bytes=0", "ASSIST_GATEWAY_BODY_LIMIT_BYTES"),
            ("--public-url=shop", "ASSIST_GATEWAY_PUBLIC_URL"),
        ] {
            let error = config(&[flag]).check().unwrap_err();
            assert_eq!(error.variable, variable, "{flag}");
        }
        let mut without_secret = config(&[]);
        without_secret.client_secret.clear();
        assert_eq!(
            without_secret.check().unwrap_err().variable,
            "ASSIST_GATEWAY_CLIENT_ID"
        );
        let checked = config(&["--public-url=https://shop.example.com/"])
            .check()
            .unwrap();
        assert_eq!(checked.public_url, "https://shop.example.com");
    }
}
