//! The gateway: the storefront and merchant-portal agent-assist HTTP API, compatible with the Spryker
//! Glue agent-assist endpoints (JSON:API), turned into gRPC calls to identity, agent-directory and
//! impersonation-token; the console's agent management API (`console`); conversations between
//! customers and console members over conversation-routing (`conversations`); the agents', the
//! console's and the customers' chat pages (`web`); and the proxy that fronts the shop and the merchant portal with the right
//! token (`proxy`). `serve` runs it on a listener; `main.rs` is the thin binary around it. The
//! browser-side contract is docs/web.md.

pub mod console;
pub mod conversations;
pub mod jsonapi;
pub mod openapi;
pub mod proxy;
pub mod routes;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use assist_proto::agentdirectory::v1::agent_directory_client::AgentDirectoryClient;
use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_proto::impersonation::v1::impersonation_client::ImpersonationClient;
use assist_proto::routing::v1::routing_client::RoutingClient;
use assist_runtime::auth::{
    AuthPolicy, IdentityJwks, ImpersonationJwks, TokenVerifier, TrustedIssuer,
};
use assist_runtime::client::{Outgoing, ServiceToken, channel};
use assist_runtime::config::{ConfigError, http_url, key_encryption_key, positive_secs};
use assist_runtime::keys::KeyEncryptionKey;
use assist_runtime::sessions::SessionLiveness;
use tokio::net::TcpListener;
use tokio::sync::{OnceCell, watch};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

assist_runtime::caller_settings!(prefix = "ASSIST_GATEWAY");

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
    #[command(flatten)]
    pub caller: CallerArgs,
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
    /// The conversation-routing service (conversations, messages, the queue).
    #[arg(
        long,
        env = "ASSIST_GATEWAY_ROUTING_URL",
        default_value = "http://127.0.0.1:50054"
    )]
    pub routing_url: String,
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
    /// `iss` of the impersonation service's tokens (accepted by the proxy only).
    #[arg(
        long,
        env = "ASSIST_GATEWAY_IMPERSONATION_ISSUER",
        default_value = "assist-impersonation"
    )]
    pub impersonation_issuer: String,
    /// Base URL of the shop the gateway fronts: every path that is not the gateway's own (and not
    /// under `/merchant-portal/`) is forwarded there. Unset: those paths are 404.
    #[arg(long, env = "ASSIST_GATEWAY_STOREFRONT_UPSTREAM")]
    pub storefront_upstream: Option<String>,
    /// Base URL of the merchant portal the gateway fronts (paths under `/merchant-portal/`).
    #[arg(long, env = "ASSIST_GATEWAY_MERCHANT_PORTAL_UPSTREAM")]
    pub merchant_portal_upstream: Option<String>,
    /// Paths never forwarded while assisting (credentials, email, payment methods, account deletion),
    /// comma-separated; each covers the paths below it. Compared by segments, case-insensitively, on
    /// the canonical path; a last segment with an extension (`password.json`) and a `*.php` front
    /// controller before it (`/index.php/account/password`) still match; a `*` segment matches any
    /// one segment (`/*/account/password` for localised prefixes such as `/de`).
    #[arg(
        long,
        env = "ASSIST_GATEWAY_SENSITIVE_PATHS",
        default_value = "/account/password,/account/email,/account/payment-methods,/account/delete,\
/merchant-portal/password,/merchant-portal/email,/merchant-portal/delete"
    )]
    pub sensitive_paths: String,
    /// Key that seals the browser cookies (base64 of 32 bytes); every replica needs the same one.
    /// Unset: a random key per start (sign-ins end when the gateway restarts).
    #[arg(long, env = "ASSIST_GATEWAY_COOKIE_KEY", hide_env_values = true)]
    pub cookie_key: Option<String>,
    /// Prometheus `/metrics` address; unset: no metrics listener of its own.
    #[arg(long, env = "ASSIST_GATEWAY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
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
    /// Cookies get `Secure` (the public URL is `https://`).
    pub secure_cookies: bool,
    pub storefront_upstream: Option<http::Uri>,
    pub merchant_portal_upstream: Option<http::Uri>,
    pub sensitive_paths: &'static [&'static str],
}

impl Config {
    /// Checks values clap cannot: URLs, credentials, positive limits.
    pub fn check(&self) -> Result<Checked, ConfigError> {
        self.caller.check()?;
        http_url(
            &self.agent_directory_url,
            "ASSIST_GATEWAY_AGENT_DIRECTORY_URL",
        )?;
        http_url(&self.impersonation_url, "ASSIST_GATEWAY_IMPERSONATION_URL")?;
        http_url(&self.routing_url, "ASSIST_GATEWAY_ROUTING_URL")?;
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
        let upstream = |value: &Option<String>, variable| -> Result<_, ConfigError> {
            match value {
                Some(url) if !url.is_empty() => {
                    http_url(url, variable)?;
                    let uri: http::Uri = url
                        .trim_end_matches('/')
                        .parse()
                        .map_err(|_| ConfigError::new(variable, "not a URL"))?;
                    Ok(Some(uri))
                }
                _ => Ok(None),
            }
        };
        let sensitive_paths = sensitive_paths(&self.sensitive_paths)?;
        if let Some(key) = &self.cookie_key {
            key_encryption_key(key, "ASSIST_GATEWAY_COOKIE_KEY")?;
        }
        Ok(Checked {
            secure_cookies: public_url.starts_with("https://"),
            storefront_upstream: upstream(
                &self.storefront_upstream,
                "ASSIST_GATEWAY_STOREFRONT_UPSTREAM",
            )?,
            merchant_portal_upstream: upstream(
                &self.merchant_portal_upstream,
                "ASSIST_GATEWAY_MERCHANT_PORTAL_UPSTREAM",
            )?,
            sensitive_paths,
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

/// The sensitive-path list, checked (each entry absolute; its segments plain, or `*`) and kept for
/// the life of the process (the auth policy holds `'static` lists; this is built once at start).
fn sensitive_paths(list: &str) -> Result<&'static [&'static str], ConfigError> {
    let mut paths = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        // A segment as a canonical path has it (an entry with anything else would never match), or
        // `*` for any one segment.
        let plain = |segment: &str| {
            segment == "*"
                || (!segment.is_empty()
                    && !segment.ends_with('.')
                    && !segment.chars().any(|c| {
                        matches!(c, '%' | ';' | '\\' | '*') || c.is_whitespace() || c.is_control()
                    }))
        };
        let valid = entry.len() > 1 && entry.starts_with('/') && entry[1..].split('/').all(plain);
        if !valid {
            return Err(ConfigError::new(
                "ASSIST_GATEWAY_SENSITIVE_PATHS",
                "each entry must be an absolute path such as /account/password, with `*` only as a \
                 whole segment (/*/account/password)",
            ));
        }
        let entry: &'static str = Box::leak(entry.to_ascii_lowercase().into_boxed_str());
        paths.push(entry);
    }
    Ok(Box::leak(paths.into_boxed_slice()))
}

pub type Identity = IdentityClient<InterceptedService<Channel, Outgoing>>;
pub type Agents = AgentDirectoryClient<InterceptedService<Channel, Outgoing>>;
pub type Impersonation = ImpersonationClient<InterceptedService<Channel, Outgoing>>;
pub type Routing = RoutingClient<InterceptedService<Channel, Outgoing>>;

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
    /// Agent-directory with the console user's own token (agent management, presence, the watch).
    pub agents_as_caller: Agents,
    /// Conversation-routing with the caller's own token (console members and customers).
    pub routing_as_caller: Routing,
    /// Who may go through the proxy: identity's and the impersonation service's tokens, sessions
    /// checked live (`WatchRevocations`), sensitive paths refused to impersonation tokens.
    pub proxy_policy: AuthPolicy,
    pub sessions: Arc<SessionLiveness>,
}

/// What every handler shares.
pub struct AppState {
    pub checked: Checked,
    /// Verifies identity's access tokens (agents' and customers').
    pub verifier: TokenVerifier,
    /// Verifies what the proxy forwards: identity's tokens and impersonation tokens.
    pub proxy_verifier: Arc<TokenVerifier>,
    pub upstreams: OnceCell<Upstreams>,
    /// Forwards proxied requests.
    pub http: proxy::HttpClient,
    /// Seals the sign-in and session cookies.
    pub cookie_key: KeyEncryptionKey,
    pub shutdown: watch::Receiver<bool>,
}

/// The configured cookie key, or a random one for this start.
fn cookie_key(config: &Config) -> anyhow::Result<KeyEncryptionKey> {
    let encoded = match &config.cookie_key {
        Some(key) => key.clone(),
        None => {
            tracing::warn!(
                "no ASSIST_GATEWAY_COOKIE_KEY: browser sign-ins end when the gateway restarts and \
                 replicas cannot share them"
            );
            KeyEncryptionKey::generate_base64()?
        }
    };
    Ok(key_encryption_key(&encoded, "ASSIST_GATEWAY_COOKIE_KEY")?)
}

/// Obtains the service token, retrying while identity is unreachable, and builds the clients.
async fn connect(
    config: &Config,
    checked: &Checked,
    proxy_verifier: Arc<TokenVerifier>,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Upstreams> {
    let timeout = checked.request_timeout;
    let identity_channel = channel(&config.caller.identity_url, timeout)?;
    let token = ServiceToken::start_when_reachable(
        IdentityClient::new(identity_channel.clone()),
        &config.caller.client_id,
        &config.caller.client_secret,
        shutdown,
    )
    .await?
    .ok_or_else(|| anyhow::anyhow!("stopped before identity was reachable"))?;
    let with_token = Outgoing { token: Some(token) };
    let impersonation_channel = channel(&config.impersonation_url, timeout)?;
    let agents_channel = channel(&config.agent_directory_url, timeout)?;
    let routing_channel = channel(&config.routing_url, timeout)?;
    let sessions = SessionLiveness::start(
        ImpersonationClient::with_interceptor(impersonation_channel.clone(), with_token.clone()),
        shutdown.clone(),
    );
    Ok(Upstreams {
        proxy_policy: AuthPolicy::new(proxy_verifier, &[])
            .accepting_impersonation(sessions.clone(), checked.sensitive_paths),
        sessions,
        identity_service: IdentityClient::with_interceptor(
            identity_channel.clone(),
            with_token.clone(),
        ),
        agents: AgentDirectoryClient::with_interceptor(agents_channel.clone(), with_token),
        agents_as_caller: AgentDirectoryClient::with_interceptor(
            agents_channel,
            Outgoing::default(),
        ),
        routing_as_caller: RoutingClient::with_interceptor(routing_channel, Outgoing::default()),
        identity: IdentityClient::with_interceptor(identity_channel, Outgoing::default()),
        impersonation: ImpersonationClient::with_interceptor(
            impersonation_channel,
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
    let identity_jwks = Arc::new(IdentityJwks(IdentityClient::new(channel(
        &config.caller.identity_url,
        checked.request_timeout,
    )?)));
    let impersonation_jwks = Arc::new(ImpersonationJwks(ImpersonationClient::new(channel(
        &config.impersonation_url,
        checked.request_timeout,
    )?)));
    let identity_issuer = || TrustedIssuer {
        issuer: config.caller.identity_issuer.clone(),
        keys: identity_jwks.clone(),
    };
    let proxy_verifier = Arc::new(TokenVerifier::new(
        &config.caller.audience,
        vec![
            identity_issuer(),
            TrustedIssuer {
                issuer: config.impersonation_issuer.clone(),
                keys: impersonation_jwks,
            },
        ],
    ));
    let state = Arc::new(AppState {
        checked: checked.clone(),
        verifier: TokenVerifier::new(&config.caller.audience, vec![identity_issuer()]),
        proxy_verifier: proxy_verifier.clone(),
        upstreams: OnceCell::new(),
        http: proxy::client(),
        cookie_key: cookie_key(&config)?,
        shutdown: shutdown.clone(),
    });
    if let Some(listener) = assist_runtime::metrics::bind(config.metrics_listen).await? {
        tokio::spawn(assist_runtime::metrics::serve(listener, shutdown.clone()));
    }

    let ready = state.clone();
    let stop = shutdown.clone();
    let started = tokio::spawn(async move {
        let upstreams = connect(&config, &ready.checked, proxy_verifier, &stop).await?;
        let _ = ready.upstreams.set(upstreams);
        tracing::info!("gateway serving");
        Ok(())
    });

    let app = routes::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let serving = std::future::IntoFuture::into_future(
        axum::serve(listener, app)
            .with_graceful_shutdown(assist_runtime::shutdown::tripped(shutdown.clone())),
    );
    assist_runtime::web::serve_until_drained(
        serving,
        shutdown,
        checked.shutdown_grace,
        started,
        "gateway",
    )
    .await
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
            (
                "--storefront-upstream=ftp://x",
                "ASSIST_GATEWAY_STOREFRONT_UPSTREAM",
            ),
            (
                "--sensitive-paths=account",
                "ASSIST_GATEWAY_SENSITIVE_PATHS",
            ),
            (
                "--sensitive-paths=/a/../b",
                "ASSIST_GATEWAY_SENSITIVE_PATHS",
            ),
            (
                "--sensitive-paths=/account/pass*",
                "ASSIST_GATEWAY_SENSITIVE_PATHS",
            ),
            (
                "--sensitive-paths=/account/password;x",
                "ASSIST_GATEWAY_SENSITIVE_PATHS",
            ),
            (
                "--sensitive-paths=/account/p%61ssword",
                "ASSIST_GATEWAY_SENSITIVE_PATHS",
            ),
            ("--cookie-key=short", "ASSIST_GATEWAY_COOKIE_KEY"),
        ] {
            let error = config(&[flag]).check().unwrap_err();
            assert_eq!(error.variable, variable, "{flag}");
        }
        let mut without_secret = config(&[]);
        without_secret.caller.client_secret.clear();
        assert_eq!(
            without_secret.check().unwrap_err().variable,
            "ASSIST_GATEWAY_CLIENT_SECRET"
        );
        let checked = config(&["--public-url=https://shop.example.com/"])
            .check()
            .unwrap();
        assert_eq!(checked.public_url, "https://shop.example.com");
        assert!(checked.secure_cookies);
        assert!(
            checked.sensitive_paths.contains(&"/account/password"),
            "{:?}",
            checked.sensitive_paths
        );
        let localised = config(&["--sensitive-paths=/account/password,/*/Account/Password"])
            .check()
            .unwrap();
        assert_eq!(
            localised.sensitive_paths,
            ["/account/password", "/*/account/password"]
        );
    }
}
