//! The gRPC server every service runs: health (NOT_SERVING until ready), reflection v1 and v1alpha, the
//! shared tower stack, `/metrics`, and graceful shutdown.
//!
//! Stack, outermost first: tonic's deadline (the `grpc-timeout` header or the configured timeout), trace
//! context and span with per-RPC metrics, load shedding above the concurrency limit (each admitted call
//! runs to its end on its own task), authentication.
//! tonic applies its deadline outside user layers; it answers `DEADLINE_EXCEEDED` itself.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tonic::Status;
use tonic::server::NamedService;
use tonic_health::server::HealthReporter;
use tracing::Instrument;

use crate::auth::{AuthLayer, AuthPolicy};

/// How a server listens, bounds work and stops.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Where `/metrics` is served; none when unset.
    pub metrics_listen: Option<SocketAddr>,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub shutdown_grace: Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            metrics_listen: None,
            request_timeout: Duration::from_secs(10),
            max_concurrent_requests: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Health of one service: NOT_SERVING from the start, SERVING once [`Health::serving`] is called,
/// NOT_SERVING again when shutdown begins.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
    service_name: &'static str,
}

impl Health {
    pub async fn serving(&self) {
        self.set(tonic_health::ServingStatus::Serving).await;
    }

    pub async fn not_serving(&self) {
        self.set(tonic_health::ServingStatus::NotServing).await;
    }

    async fn set(&self, status: tonic_health::ServingStatus) {
        self.reporter.set_service_status("", status).await;
        self.reporter
            .set_service_status(self.service_name, status)
            .await;
    }
}

type HttpRequest = http::Request<tonic::body::Body>;
type HttpResponse = http::Response<tonic::body::Body>;

/// A gRPC server for one service, its health reported from the moment it listens.
pub struct GrpcServer {
    settings: ServerSettings,
    health: Health,
    health_service:
        tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
}

impl GrpcServer {
    /// A server for the service named `S::NAME`, NOT_SERVING until told otherwise.
    pub async fn new<S: NamedService>(settings: ServerSettings) -> Self {
        let reporter = HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        let health = Health {
            reporter,
            service_name: S::NAME,
        };
        health.not_serving().await;
        Self {
            settings,
            health,
            health_service,
        }
    }

    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Serves `service` on `listener` until `shutdown` trips, then reports NOT_SERVING, stops accepting
    /// and drains in-flight calls for up to the grace period.
    pub async fn serve<S>(
        self,
        listener: TcpListener,
        service: S,
        auth: AuthPolicy,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<()>
    where
        S: tower::Service<HttpRequest, Response = HttpResponse, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        // Reflection offers exactly what this server serves: its service, health and reflection (the
        // descriptor set holds every assist service; a generic client must not be offered the others).
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(assist_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .with_service_name(S::NAME)
                .with_service_name("grpc.health.v1.Health")
                .with_service_name("grpc.reflection.v1.ServerReflection")
                .with_service_name("grpc.reflection.v1alpha.ServerReflection")
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;

        if let Some(metrics) = crate::metrics::bind(self.settings.metrics_listen).await? {
            tracing::info!(addr = %metrics.local_addr()?, "metrics listening");
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Err(error) = crate::metrics::serve(metrics, shutdown).await {
                    tracing::error!(error = %error, "metrics server stopped");
                }
            });
        }

        let stack = tower::ServiceBuilder::new()
            .layer(TelemetryLayer)
            .layer(LoadShedLayer::new(self.settings.max_concurrent_requests))
            .layer(AuthLayer(auth))
            .into_inner();

        let health = self.health.clone();
        let mut stop = shutdown.clone();
        let graceful = async move {
            let _ = stop.wait_for(|s| *s).await;
            health.not_serving().await;
        };
        let addr = listener.local_addr()?;
        tracing::info!(service = S::NAME, %addr, "grpc listening");
        let server = tonic::transport::Server::builder()
            .timeout(self.settings.request_timeout)
            .http2_keepalive_interval(Some(crate::client::KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(crate::client::KEEPALIVE_TIMEOUT))
            .tcp_nodelay(true)
            .layer(stack)
            .add_service(self.health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming(listener), graceful);

        let grace = self.settings.shutdown_grace;
        let mut stop = shutdown;
        let deadline = async move {
            let _ = stop.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => result?,
            () = deadline => tracing::warn!(service = S::NAME, "grace period over, in-flight calls dropped"),
        }
        tracing::info!(service = S::NAME, "grpc stopped");
        Ok(())
    }
}

/// Accepted connections with `TCP_NODELAY`: tonic sets it only on listeners it binds itself, and
/// without it small responses wait ~40 ms for the peer's delayed ACK (Nagle's algorithm).
fn incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        if let Ok(stream) = &accepted
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::debug!(error = %error, "TCP_NODELAY not set");
        }
        accepted
    })
}

/// Continues the caller's trace (W3C `traceparent`), opens a span per call with the trace id for the
/// logs, and records per-RPC metrics.
#[derive(Clone, Copy)]
pub struct TelemetryLayer;

impl<S> tower::Layer<S> for TelemetryLayer {
    type Service = TelemetryService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TelemetryService { inner }
    }
}

#[derive(Clone)]
pub struct TelemetryService<S> {
    inner: S,
}

impl<S> tower::Service<HttpRequest> for TelemetryService<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        let method = request.uri().path().to_owned();
        let span = tracing::info_span!(
            "rpc",
            otel.name = %method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        crate::telemetry::set_parent_from(&span, request.headers());
        span.record("trace_id", crate::telemetry::trace_id(&span));
        let started = Instant::now();
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let result = future.await;
                let code = match &result {
                    Ok(response) => grpc_code(response.headers()),
                    Err(_) => tonic::Code::Internal,
                };
                tracing::Span::current().record("rpc.grpc.status_code", code as i32);
                if !method.starts_with("/grpc.") {
                    crate::metrics::record_rpc(&method, code, started.elapsed());
                }
                result
            }
            .instrument(span),
        )
    }
}

/// The canonical name of a status code (`OK`, `NOT_FOUND`, …), as logs and audit records show it.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The status of a trailers-only (error) response; OK when the status comes later in trailers.
pub(crate) fn grpc_code(headers: &http::HeaderMap) -> tonic::Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from)
        .unwrap_or(tonic::Code::Ok)
}

/// Answers `UNAVAILABLE` at once, instead of queueing, when more calls are in flight than the limit;
/// runs each admitted call to its end on a task of its own, so that a caller who goes away (or a
/// deadline) never cuts a handler, and the transaction it holds, in half. The permit is held until the
/// handler is done, so the limit counts work really in progress.
#[derive(Clone)]
pub struct LoadShedLayer {
    permits: Arc<Semaphore>,
}

impl LoadShedLayer {
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }
}

impl<S> tower::Layer<S> for LoadShedLayer {
    type Service = LoadShedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LoadShedService {
            inner,
            permits: self.permits.clone(),
        }
    }
}

#[derive(Clone)]
pub struct LoadShedService<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S> tower::Service<HttpRequest> for LoadShedService<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: HttpRequest) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let future = self.inner.call(request);
                let handler = tokio::spawn(
                    async move {
                        let response = future.await;
                        drop(permit);
                        response
                    }
                    .in_current_span(),
                );
                Box::pin(async move {
                    match handler.await {
                        Ok(response) => response,
                        Err(error) => {
                            tracing::error!(error = %error, "handler panicked");
                            Ok(Status::internal("internal error").into_http())
                        }
                    }
                })
            }
            Err(_) => Box::pin(async {
                Ok(Status::unavailable("server overloaded, retry later").into_http())
            }),
        }
    }
}
