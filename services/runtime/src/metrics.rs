//! Prometheus metrics: one registry per process, per-RPC rate, errors and duration, and a `/metrics`
//! endpoint. Services register their domain gauges in the same registry.

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

/// The per-route metrics HTTP servers (the gateway) record.
pub struct HttpMetrics {
    pub requests: Family<HttpLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
}

/// The per-RPC metrics every server records.
pub struct RpcMetrics {
    pub requests: Family<RpcLabels, Counter>,
    pub errors: Family<RpcLabels, Counter>,
    pub duration: Family<MethodLabels, Histogram>,
}

struct Metrics {
    registry: Mutex<Registry>,
    rpc: RpcMetrics,
    http: HttpMetrics,
}

fn latency_buckets() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ])
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let mut registry = Registry::with_prefix("assist");
        let rpc = RpcMetrics {
            requests: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(latency_buckets),
        };
        let http = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_buckets),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            http.requests.clone(),
        );
        registry.register(
            "http_duration_seconds",
            "time to answer an HTTP request, by route",
            http.duration.clone(),
        );
        registry.register(
            "rpc_requests",
            "gRPC calls handled, by method and status code",
            rpc.requests.clone(),
        );
        registry.register(
            "rpc_errors",
            "gRPC calls that ended with a status other than OK",
            rpc.errors.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "time to answer a gRPC call",
            rpc.duration.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            rpc,
            http,
        }
    })
}

/// Records one finished call.
pub fn record_rpc(method: &str, code: tonic::Code, elapsed: Duration) {
    let rpc = &metrics().rpc;
    let labels = RpcLabels {
        method: method.to_owned(),
        code: format!("{code:?}"),
    };
    rpc.requests.get_or_create(&labels).inc();
    if code != tonic::Code::Ok {
        rpc.errors.get_or_create(&labels).inc();
    }
    rpc.duration
        .get_or_create(&MethodLabels {
            method: method.to_owned(),
        })
        .observe(elapsed.as_secs_f64());
}

/// Records one answered HTTP request; `route` is the route template (never the raw path).
pub fn record_http(route: &str, status: u16, elapsed: Duration) {
    let http = &metrics().http;
    http.requests
        .get_or_create(&HttpLabels {
            route: route.to_owned(),
            status,
        })
        .inc();
    http.duration
        .get_or_create(&RouteLabels {
            route: route.to_owned(),
        })
        .observe(elapsed.as_secs_f64());
}

/// Registers a domain metric (a gauge of active sessions, queue depth, …).
pub fn register(name: &str, help: &str, metric: impl prometheus_client::registry::Metric) {
    metrics()
        .registry
        .lock()
        .expect("metrics registry poisoned")
        .register(name, help, metric);
}

/// The registry in the Prometheus text format.
pub fn render() -> String {
    let mut out = String::new();
    let registry = metrics()
        .registry
        .lock()
        .expect("metrics registry poisoned");
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

/// Serves `GET /metrics` on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            (
                [(
                    http::header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                render(),
            )
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await
}

/// Binds the metrics listener, if one is configured.
pub async fn bind(addr: Option<SocketAddr>) -> std::io::Result<Option<tokio::net::TcpListener>> {
    match addr {
        Some(addr) => Ok(Some(tokio::net::TcpListener::bind(addr).await?)),
        None => Ok(None),
    }
}
