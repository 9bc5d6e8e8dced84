//! W3C trace context: a call's `traceparent` becomes the parent of the server span (and the trace id in
//! its logs), and outgoing calls made inside that span carry the same trace.

use assist_runtime::telemetry;

#[test]
fn incoming_trace_context_is_continued_and_propagated() {
    let _telemetry = telemetry::init("trace-context-test");
    let mut incoming = http::HeaderMap::new();
    incoming.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let span = tracing::info_span!("rpc");
    telemetry::set_parent_from(&span, &incoming);
    assert_eq!(
        telemetry::trace_id(&span),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );

    let mut outgoing = tonic::metadata::MetadataMap::new();
    span.in_scope(|| telemetry::inject_current_metadata(&mut outgoing));
    let traceparent = outgoing
        .get("traceparent")
        .expect("traceparent sent")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("00f067aa0ba902b7"),
        "the child span has its own id: {traceparent}"
    );

    // Without incoming context a new trace starts, with a real id.
    let fresh = tracing::info_span!("rpc");
    telemetry::set_parent_from(&fresh, &http::HeaderMap::new());
    let id = telemetry::trace_id(&fresh);
    assert_eq!(id.len(), 32);
    assert_ne!(id, "00000000000000000000000000000000");
    assert_ne!(id, "4bf92f3577b34da6a3ce929d0e0e4736");
}
