//! HTTP helpers of the gateway tests: JSON:API calls with a bearer token, cookies from replies, and
//! server-sent events read in the background.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::platform::{HttpReply, http};

/// The content type of a form post.
pub const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// Status and JSON body of one call (`Null` for an empty body).
pub async fn call(
    gateway: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, Value) {
    let reply = http(gateway, method, path, headers, body).await.unwrap();
    let json = if reply.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&reply.body)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON: {}", reply.body))
    };
    (reply.status, json)
}

/// A call with `token` as the bearer token and `body` as JSON.
pub async fn api(
    gateway: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let bearer = format!("Bearer {token}");
    let body = body.map(|b| b.to_string());
    call(
        gateway,
        method,
        path,
        &[("authorization", &bearer)],
        body.as_deref(),
    )
    .await
}

/// A JSON:API document of one resource of `kind` with `attributes`.
pub fn resource(kind: &str, attributes: Value) -> Option<Value> {
    Some(json!({ "data": { "type": kind, "attributes": attributes } }))
}

/// `name=value` of a `Set-Cookie` line of `reply` for cookie `name`.
pub fn set_cookie(reply: &HttpReply, name: &str) -> Option<String> {
    reply
        .headers
        .iter()
        .filter(|(n, _)| n == "set-cookie")
        .find_map(|(_, v)| {
            let pair = v.split(';').next()?.trim();
            pair.starts_with(&format!("{name}="))
                .then(|| pair.to_owned())
        })
}

/// Everything a server-sent events response at `path` streams, as it arrives (the task ends with the
/// test).
pub fn events_in_background(
    gateway: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Arc<Mutex<String>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen = Arc::new(Mutex::new(String::new()));
    let into = seen.clone();
    let mut request =
        format!("GET {path} HTTP/1.1\r\nhost: {gateway}\r\naccept: text/event-stream\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(gateway).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    seen
}

/// Waits until what `seen` holds passes `check`, for at most `patience`.
pub async fn until_seen(
    seen: &Mutex<String>,
    what: &str,
    patience: Duration,
    check: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + patience;
    while !check(&seen.lock().unwrap()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {patience:?}; the stream so far: {}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
