//! The client side of service-to-service calls: channels with a timeout, an interceptor that attaches the
//! service token and the trace context, retries on `UNAVAILABLE` for idempotent calls only, and
//! following another service's watch stream across reconnections.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use assist_proto::identity::v1::IssueServiceTokenRequest;
use assist_proto::identity::v1::identity_client::IdentityClient;
pub use tonic::transport::Channel;
use tonic::transport::Endpoint;
use tonic::{Code, Status};

use crate::error::{Error, Result};

/// How often an idle connection is pinged (HTTP/2 PING), and how long a ping may go unanswered before
/// the connection counts as cut: a watch stream (revocations, principal changes, agents) on a half-open
/// connection fails within about `KEEPALIVE_INTERVAL + KEEPALIVE_TIMEOUT` and is followed again, so no
/// cache is trusted while its feed is silently gone.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A lazily connected channel to `url` (`http://host:port`) whose calls time out after `timeout`, with
/// keepalive pings that detect a half-open connection (see [`KEEPALIVE_INTERVAL`]).
pub fn channel(url: &str, timeout: Duration) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|_| Error::invalid("url", "must be an http:// address"))?
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(2))
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    Ok(endpoint.connect_lazy())
}

/// Calls `call` again (up to 3 attempts, short backoff) while it answers `UNAVAILABLE`. Only for calls
/// that are safe to repeat.
pub async fn retry_idempotent<T, F, Fut>(mut call: F) -> Result<T, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let mut delay = Duration::from_millis(50);
    for _ in 0..2 {
        match call().await {
            Err(status) if status.code() == Code::Unavailable => {
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            other => return other,
        }
    }
    call().await
}

/// A service account's token, fetched from identity and renewed before it expires.
#[derive(Clone)]
pub struct ServiceToken {
    current: Arc<RwLock<String>>,
}

impl ServiceToken {
    /// [`ServiceToken::start`], retrying with backoff while identity is unreachable, starting or
    /// overloaded (a service that starts before identity); refused credentials fail at once. `None`
    /// when `shutdown` trips first.
    pub async fn start_when_reachable(
        identity: IdentityClient<Channel>,
        client_id: &str,
        client_secret: &str,
        shutdown: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<Option<Self>> {
        let mut stop = shutdown.clone();
        let mut delay = std::time::Duration::from_millis(100);
        loop {
            match Self::start(
                identity.clone(),
                client_id.to_owned(),
                client_secret.to_owned(),
            )
            .await
            {
                Ok(token) => return Ok(Some(token)),
                // Credentials identity refuses will not get better: give up at once.
                Err(
                    error @ (crate::Error::Unauthenticated(_)
                    | crate::Error::PermissionDenied(_)
                    | crate::Error::InvalidArgument { .. }
                    | crate::Error::NotFound(_)),
                ) => return Err(error),
                // Anything else (unreachable, starting, overloaded) may pass.
                Err(error) => {
                    tracing::warn!(error = %error, "no service token yet; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|stopped| *stopped) => return Ok(None),
                    }
                    delay = (delay * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
    }

    /// Fetches the first token (failing if identity refuses the credentials) and keeps renewing it in
    /// the background at two thirds of its lifetime, until the process ends.
    pub async fn start(
        identity: IdentityClient<Channel>,
        client_id: String,
        client_secret: String,
    ) -> Result<Self> {
        let request = IssueServiceTokenRequest {
            client_id,
            client_secret,
        };
        let first = fetch(&identity, &request).await?;
        let token = Self {
            current: Arc::new(RwLock::new(first.0)),
        };
        let current = Arc::downgrade(&token.current);
        tokio::spawn(async move {
            let mut renew_in = first.1;
            loop {
                tokio::time::sleep(renew_in).await;
                let Some(current) = current.upgrade() else {
                    return;
                };
                match fetch(&identity, &request).await {
                    Ok((token, lifetime)) => {
                        *current.write().expect("service token poisoned") = token;
                        renew_in = lifetime;
                    }
                    Err(error) => {
                        tracing::warn!(error = %error, "renewing the service token failed");
                        renew_in = Duration::from_secs(1);
                    }
                }
            }
        });
        Ok(token)
    }

    /// Like [`ServiceToken::start`], asked again with backoff while identity is unreachable or refuses
    /// (it may start later, and the service account may be created after this service); `None` when
    /// `shutdown` comes first. Each refusal is logged, so a wrong secret shows.
    pub async fn obtain(
        identity: IdentityClient<Channel>,
        client_id: &str,
        client_secret: &str,
        shutdown: &tokio::sync::watch::Receiver<bool>,
    ) -> Option<Self> {
        let mut stop = shutdown.clone();
        let mut delay = Duration::from_millis(100);
        loop {
            let attempt = tokio::select! {
                attempt = Self::start(
                    identity.clone(),
                    client_id.to_owned(),
                    client_secret.to_owned(),
                ) => attempt,
                _ = stop.wait_for(|s| *s) => return None,
            };
            match attempt {
                Ok(token) => return Some(token),
                Err(error) => {
                    tracing::warn!(
                        client_id,
                        error = %error,
                        retry_in_ms = delay.as_millis() as u64,
                        "no service token from identity yet"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.wait_for(|s| *s) => return None,
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The token to send now.
    pub fn get(&self) -> String {
        self.current.read().expect("service token poisoned").clone()
    }
}

/// One token and the time after which to renew it.
async fn fetch(
    identity: &IdentityClient<Channel>,
    request: &IssueServiceTokenRequest,
) -> Result<(String, Duration)> {
    let reply = retry_idempotent(|| {
        let mut identity = identity.clone();
        let request = request.clone();
        async move { identity.issue_service_token(request).await }
    })
    .await
    .map_err(|status| match status.code() {
        Code::Unauthenticated => Error::unauthenticated("service credentials refused"),
        _ => Error::Unavailable(format!("identity: {}", status.message())),
    })?
    .into_inner();
    let lifetime_us = (reply.expires_at_us - crate::time::now_us()).max(3_000_000);
    Ok((
        reply.token,
        Duration::from_micros(lifetime_us as u64 * 2 / 3),
    ))
}

/// Attaches the trace context and, when given, the service token to every outgoing call.
#[derive(Clone, Default)]
pub struct Outgoing {
    pub token: Option<ServiceToken>,
}

impl tonic::service::Interceptor for Outgoing {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        crate::telemetry::inject_current_metadata(request.metadata_mut());
        if let Some(token) = &self.token {
            let value = format!("Bearer {}", token.get())
                .parse()
                .map_err(|_| Status::internal("service token is not a valid header"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// Follows a watch stream: runs `session` again and again (it returns when its stream ends) with
/// backoff, until shutdown. `name` says whose stream it is in the log.
pub async fn follow<F, Fut>(
    name: &'static str,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut session: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        tokio::select! {
            outcome = session() => {
                if let Err(error) = outcome {
                    tracing::debug!(service = name, error = %error, "watch ended; reconnecting");
                }
            }
            _ = shutdown.wait_for(|s| *s) => return,
        }
        if started.elapsed() > Duration::from_secs(10) {
            delay = Duration::from_millis(100);
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
