//! Traces leave the real binary over OTLP: a call that carries a W3C `traceparent` is exported as a
//! server span of the same trace, child of the caller's span, to a receiver on 127.0.0.1.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::sync::mpsc;

struct Receiver(mpsc::UnboundedSender<Span>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                for span in scope.spans {
                    let _ = self.0.send(span);
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_call_is_exported_as_a_span_of_the_callers_trace() {
    let (tx, mut spans) = mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Receiver(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_assist-identity"))
        .env("ASSIST_IDENTITY_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "ASSIST_IDENTITY_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("identity.db").display()),
        )
        .env(
            "ASSIST_IDENTITY_KEY_ENCRYPTION_KEY",
            assist_identity::domain::keys::KeyEncryptionKey::generate_base64().unwrap(),
        )
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}"))
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_lazy();
    let mut client = assist_proto::identity::v1::identity_client::IdentityClient::new(channel);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let started = Instant::now();
    loop {
        let mut request = tonic::Request::new(assist_proto::common::v1::GetJwksRequest {});
        request.metadata_mut().insert(
            "traceparent",
            format!("00-{trace_id}-{parent}-01").parse().unwrap(),
        );
        match client.get_jwks(request).await {
            Ok(_) => break,
            Err(_) if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(status) => panic!("identity never answered: {status}"),
        }
    }

    // SIGTERM: the service drains and flushes its spans before it exits.
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success());

    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), spans.recv()).await {
            Ok(Some(span))
                if span.name == "/assist.identity.v1.Identity/GetJwks"
                    && hex(&span.trace_id) == trace_id =>
            {
                assert_eq!(
                    hex(&span.parent_span_id),
                    parent,
                    "child of the caller's span"
                );
                return;
            }
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => break,
        }
    }
    panic!("no GetJwks span of trace {trace_id} reached the collector");
}
