//! The demo shop: a tiny storefront and merchant portal in one HTTP server, the upstream that `assist up`
//! puts behind the gateway. It accepts identity's tokens and the impersonation service's exactly as a
//! real downstream service would (signature, expiry, audience, the session's liveness, sensitive paths
//! refused to tokens with `act`), keeps carts, profiles and offers in memory and renders plain HTML.
//! `serve` runs it on a listener; `main.rs` is the thin binary around it.

pub mod caller;
pub mod html;
pub mod input;
pub mod merchant;
pub mod routes;
pub mod store;
pub mod storefront;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_proto::impersonation::v1::impersonation_client::ImpersonationClient;
use assist_runtime::auth::{AuthPolicy, ImpersonationJwks, TokenVerifier, TrustedIssuer};
use assist_runtime::client::{Outgoing, ServiceToken, channel};
use assist_runtime::config::{ConfigError, http_url};
use assist_runtime::sessions::SessionLiveness;
use tokio::net::TcpListener;
use tokio::sync::{OnceCell, watch};

use crate::store::Store;

/// Storefront paths refused to impersonation tokens (each covers the paths below it).
pub const STOREFRONT_SENSITIVE: &[&str] = &[
    "/account/password",
    "/account/email",
    "/account/payment-methods",
    "/account/delete",
];

/// Merchant-portal paths refused to impersonation tokens (each covers the paths below it).
pub const MERCHANT_PORTAL_SENSITIVE: &[&str] = &[
    "/merchant-portal/password",
    "/merchant-portal/email",
    "/merchant-portal/delete",
];

/// Both lists in one: the demo shop serves both portals with one policy.
static SENSITIVE: &[&str] = &[
    "/account/password",
    "/account/email",
    "/account/payment-methods",
    "/account/delete",
    "/merchant-portal/password",
    "/merchant-portal/email",
    "/merchant-portal/delete",
];

/// Upper bound of one gRPC call to identity or the impersonation service.
const GRPC_TIMEOUT: Duration = Duration::from_secs(5);
/// How long in-flight requests may drain once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

assist_runtime::caller_settings!(prefix = "ASSIST_DEMO_SHOP");

/// Configuration of the demo shop, from flags or `ASSIST_DEMO_SHOP_*` variables.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "assist-demo-shop",
    about = "Agent Assist demo shop (storefront and merchant portal upstream)"
)]
pub struct Config {
    /// HTTP listen address.
    #[arg(
        long,
        env = "ASSIST_DEMO_SHOP_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub caller: CallerArgs,
    #[arg(
        long,
        env = "ASSIST_DEMO_SHOP_IMPERSONATION_URL",
        default_value = "http://127.0.0.1:50053"
    )]
    pub impersonation_url: String,
    /// `iss` of the impersonation service's tokens.
    #[arg(
        long,
        env = "ASSIST_DEMO_SHOP_IMPERSONATION_ISSUER",
        default_value = "assist-impersonation"
    )]
    pub impersonation_issuer: String,
}

impl Config {
    /// Checks values clap cannot: URLs, credentials, non-empty names.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.caller.check()?;
        http_url(
            &self.impersonation_url,
            "ASSIST_DEMO_SHOP_IMPERSONATION_URL",
        )?;
        if self.impersonation_issuer.trim().is_empty() {
            return Err(ConfigError::new(
                "ASSIST_DEMO_SHOP_IMPERSONATION_ISSUER",
                "must not be empty",
            ));
        }
        Ok(())
    }
}

/// What needs the service token: the token policy (its session-liveness client).
pub struct Ready {
    pub policy: AuthPolicy,
}

/// What every handler shares.
pub struct AppState {
    /// Set once the service token is obtained.
    pub ready: OnceCell<Ready>,
    pub store: Mutex<Store>,
    pub shutdown: watch::Receiver<bool>,
}

impl AppState {
    /// Runs `change` on the store (held for no longer than that).
    pub fn with_store<T>(&self, change: impl FnOnce(&mut Store) -> T) -> T {
        change(&mut self.store.lock().expect("store poisoned"))
    }
}

/// A verifier that trusts identity's tokens and the impersonation service's.
fn verifier(config: &Config) -> anyhow::Result<Arc<TokenVerifier>> {
    let identity = channel(&config.caller.identity_url, GRPC_TIMEOUT)?;
    let impersonation = ImpersonationJwks(ImpersonationClient::new(channel(
        &config.impersonation_url,
        GRPC_TIMEOUT,
    )?));
    Ok(Arc::new(TokenVerifier::new(
        &config.caller.audience,
        vec![
            config.caller.identity_issuer(identity),
            TrustedIssuer {
                issuer: config.impersonation_issuer.clone(),
                keys: Arc::new(impersonation),
            },
        ],
    )))
}

/// Obtains the service token, retrying while identity is unreachable; `None` when shutdown comes first.
async fn service_token(
    config: &Config,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Option<ServiceToken>> {
    let identity = IdentityClient::new(channel(&config.caller.identity_url, GRPC_TIMEOUT)?);
    Ok(ServiceToken::start_when_reachable(
        identity,
        &config.caller.client_id,
        &config.caller.client_secret,
        shutdown,
    )
    .await?)
}

/// Builds what needs the service token: the token policy and the name lookups.
async fn connect(
    config: &Config,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<Option<Ready>> {
    let verifier = verifier(config)?;
    let Some(token) = service_token(config, shutdown).await? else {
        return Ok(None);
    };
    let with_token = Outgoing { token: Some(token) };
    let sessions = SessionLiveness::start(
        ImpersonationClient::with_interceptor(
            channel(&config.impersonation_url, GRPC_TIMEOUT)?,
            with_token,
        ),
        shutdown.clone(),
    );
    let policy = AuthPolicy::new(verifier, &[])
        .accepting_impersonation(sessions, SENSITIVE)
        .without_audit();
    Ok(Some(Ready { policy }))
}

/// Serves the demo shop on `listener` until `shutdown` trips, then drains in-flight requests for a
/// short grace period. `/healthz` answers 503 until the service token is obtained and once shutdown
/// begins; pages that need a token check answer 503 until then too.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    config.check()?;
    let state = Arc::new(AppState {
        ready: OnceCell::new(),
        store: Mutex::new(Store::default()),
        shutdown: shutdown.clone(),
    });

    let ready = state.clone();
    let stop = shutdown.clone();
    let started = tokio::spawn(async move {
        if let Some(connected) = connect(&config, &stop).await? {
            let _ = ready.ready.set(connected);
            tracing::info!("demo shop serving");
        }
        Ok(())
    });

    let app = routes::router(state);
    let serving = std::future::IntoFuture::into_future(
        axum::serve(listener, app)
            .with_graceful_shutdown(assist_runtime::shutdown::tripped(shutdown.clone())),
    );
    assist_runtime::web::serve_until_drained(
        serving,
        shutdown,
        SHUTDOWN_GRACE,
        started,
        "demo shop",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(extra: &[&str]) -> Config {
        let mut args = vec!["demo-shop", "--client-id=shop", "--client-secret=s"];
        args.extend(extra);
        Config::try_parse_from(args).unwrap()
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert!(config(&[]).check().is_ok());
        for (flag, variable) in [
            ("--identity-url=grpc://x", "ASSIST_DEMO_SHOP_IDENTITY_URL"),
            (
                "--impersonation-url=x",
                "ASSIST_DEMO_SHOP_IMPERSONATION_URL",
            ),
            ("--audience=", "ASSIST_DEMO_SHOP_AUDIENCE"),
            (
                "--impersonation-issuer=",
                "ASSIST_DEMO_SHOP_IMPERSONATION_ISSUER",
            ),
        ] {
            let error = config(&[flag]).check().unwrap_err();
            assert_eq!(error.variable, variable, "{flag}");
        }
        let mut without_secret = config(&[]);
        without_secret.caller.client_secret.clear();
        assert_eq!(
            without_secret.check().unwrap_err().variable,
            "ASSIST_DEMO_SHOP_CLIENT_SECRET"
        );
    }

    #[test]
    fn one_policy_covers_both_portals() {
        let both: Vec<&str> = STOREFRONT_SENSITIVE
            .iter()
            .chain(MERCHANT_PORTAL_SENSITIVE)
            .copied()
            .collect();
        assert_eq!(SENSITIVE, both.as_slice());
    }
}
