//! The start-up every service shares: the server listens at once (health NOT_SERVING), a start task
//! opens what the service needs (database, service token, its use cases), and [`Ready::serving`]
//! makes it ready. One failure policy for all: a start that fails before shutdown ends the service
//! with its error, so the process exits non-zero instead of idling NOT_SERVING forever.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{OnceCell, watch};
use tokio::task::JoinHandle;
use tonic::server::NamedService;

use crate::auth::{AuthPolicy, LocalKeys};
use crate::client::{Channel, ServiceToken};
use crate::db::{Database, Migrations, PoolSize};
use crate::server::{GrpcServer, Health, ServerSettings};

/// Why a start failed (a shutdown that came first counts too; [`until_failed`] ignores it then).
pub type StartError = anyhow::Error;

/// The service's use cases once start-up has opened them; the API answers UNAVAILABLE until then.
pub type State<T> = Arc<OnceCell<Arc<T>>>;

/// A gRPC service being built: its server (listening from the start) and the state its start task
/// will fill.
pub struct Service<T> {
    name: &'static str,
    server: GrpcServer,
    state: State<T>,
}

impl<T: Send + Sync + 'static> Service<T> {
    /// A service named `name` in logs, serving the gRPC service `S`.
    pub async fn new<S: NamedService>(name: &'static str, settings: ServerSettings) -> Self {
        Self {
            name,
            server: GrpcServer::new::<S>(settings).await,
            state: Arc::new(OnceCell::new()),
        }
    }

    /// The state the API reads.
    pub fn state(&self) -> State<T> {
        self.state.clone()
    }

    /// The service's own keys, for the tokens it issued and receives back, once it is open.
    pub fn local_keys(&self) -> LocalKeys<T> {
        LocalKeys(self.state.clone())
    }

    /// Serves `api` on `listener` until `shutdown` trips, with `start` running beside it. `start` opens
    /// the service, calls [`Ready::serving`], and may go on with background work until shutdown.
    pub async fn serve<S, F, Fut>(
        self,
        listener: TcpListener,
        api: S,
        auth: AuthPolicy,
        shutdown: watch::Receiver<bool>,
        start: F,
    ) -> anyhow::Result<()>
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        F: FnOnce(Ready<T>) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let ready = Ready {
            name: self.name,
            state: self.state,
            health: Some(self.server.health()),
            shutdown: shutdown.clone(),
        };
        let started = tokio::spawn(start(ready));
        let serving = self.server.serve(listener, api, auth, shutdown.clone());
        until_failed(self.name, serving, started, shutdown).await
    }
}

/// What a start task gets: the way to say the service is ready, and helpers for the steps every
/// service takes, each retried until it works or shutdown comes.
pub struct Ready<T> {
    name: &'static str,
    state: State<T>,
    health: Option<Health>,
    shutdown: watch::Receiver<bool>,
}

impl<T> Ready<T> {
    /// A start for a server without gRPC health (the gateway reports readiness on `/healthz` from
    /// `state`).
    pub fn without_health(
        name: &'static str,
        state: State<T>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            name,
            state,
            health: None,
            shutdown,
        }
    }

    pub fn shutdown(&self) -> &watch::Receiver<bool> {
        &self.shutdown
    }

    /// The database at `url`, migrated (retried while unreachable).
    pub async fn database(
        &self,
        url: &str,
        size: PoolSize,
        migrations: &Migrations,
    ) -> anyhow::Result<Database> {
        Ok(Database::connect_and_migrate(url, size, migrations, &self.shutdown).await?)
    }

    /// This service's token from identity (retried while identity is unreachable).
    pub async fn service_token(
        &self,
        identity: Channel,
        client_id: &str,
        client_secret: &str,
    ) -> anyhow::Result<ServiceToken> {
        ServiceToken::obtain(
            assist_proto::identity::v1::identity_client::IdentityClient::new(identity),
            client_id,
            client_secret,
            &self.shutdown,
        )
        .await
        .ok_or_else(|| anyhow::anyhow!("shut down before identity issued a service token"))
    }

    /// Makes `service` the state the API reads and reports SERVING (unless shutdown has begun).
    pub async fn serving(&self, service: Arc<T>) {
        let _ = self.state.set(service);
        if *self.shutdown.borrow() {
            return;
        }
        if let Some(health) = &self.health {
            health.serving().await;
        }
        tracing::info!(service = self.name, "serving");
    }
}

/// Runs `serving` until it ends, or until `started` fails before shutdown: then the error ends the
/// service (and the process, non-zero). A start that ends well leaves the server running.
pub async fn until_failed(
    name: &str,
    serving: impl Future<Output = anyhow::Result<()>>,
    started: JoinHandle<anyhow::Result<()>>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let failed = async move {
        let error = match started.await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(joined) => Some(anyhow::anyhow!("start-up task failed: {joined}")),
        };
        match error {
            Some(error) if !*shutdown.borrow() => error,
            _ => std::future::pending().await,
        }
    };
    tokio::select! {
        result = serving => result,
        error = failed => {
            tracing::error!(service = name, error = format!("{error:#}"), "did not start");
            Err(error.context(format!("{name} did not start")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_start_ends_the_service_with_its_error() {
        let (_tx, shutdown) = watch::channel(false);
        let started = tokio::spawn(async { Err(anyhow::anyhow!("schema from the future")) });
        let serving = std::future::pending::<anyhow::Result<()>>();
        let error = until_failed("test", serving, started, shutdown)
            .await
            .unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "test did not start: schema from the future"
        );
    }

    #[tokio::test]
    async fn a_start_that_fails_because_of_shutdown_is_no_failure() {
        let (tx, shutdown) = watch::channel(false);
        tx.send(true).unwrap();
        let started = tokio::spawn(async { Err(anyhow::anyhow!("shut down")) });
        let serving = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Ok(())
        };
        until_failed("test", serving, started, shutdown)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_start_that_ends_well_leaves_the_server_running() {
        let (_tx, shutdown) = watch::channel(false);
        let started = tokio::spawn(async { Ok(()) });
        let serving = async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            Ok(())
        };
        until_failed("test", serving, started, shutdown)
            .await
            .unwrap();
    }
}
