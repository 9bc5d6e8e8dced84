//! Conversations through the gateway end to end: real HTTP on 127.0.0.1 in front of identity,
//! agent-directory, impersonation-token and conversation-routing. A customer's chat reaches the online
//! agent and the reply comes back (over the JSON API and as a server-sent event); the roles of
//! DESIGN.md section 4 over HTTP; bad input refused without changing anything; cookie sign-ins
//! writing only with the CSRF header from this site; and the pages of both sides.

use std::net::SocketAddr;
use std::time::Duration;

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::impersonation::v1 as imp;
use assist_runtime::testing::TestBackend;
use assist_tests::http_api::{
    FORM, api, call, events_in_background, resource, set_cookie, until_seen,
};
use assist_tests::platform::{PASSWORD, Platform, Running, Signed, authed, http};
use serde_json::{Value, json};

/// How long anything asynchronous (routing's assignment, a stream's event) may take here.
const PATIENCE: Duration = Duration::from_secs(15);

async fn start_chat(gw: SocketAddr, customer: &Signed, subject: &str, body: &str) -> (u16, Value) {
    api(
        gw,
        "POST",
        "/conversations",
        &customer.token,
        resource("conversations", json!({ "subject": subject, "body": body })),
    )
    .await
}

async fn write(
    gw: SocketAddr,
    base: &str,
    id: &str,
    token: &str,
    attributes: Value,
) -> (u16, Value) {
    api(
        gw,
        "POST",
        &format!("{base}/{id}/messages"),
        token,
        resource("conversation-messages", attributes),
    )
    .await
}

async fn assign(gw: SocketAddr, id: &str, token: &str, agent_id: &str) -> (u16, Value) {
    api(
        gw,
        "POST",
        &format!("/console/api/conversations/{id}/assignment"),
        token,
        resource("conversation-assignments", json!({ "agentId": agent_id })),
    )
    .await
}

async fn conversation(gw: SocketAddr, base: &str, id: &str, token: &str) -> Value {
    let (status, body) = api(gw, "GET", &format!("{base}/{id}"), token, None).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Polls `check` until it returns `Some`, for at most [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(found) => return found,
            Err(last) if tokio::time::Instant::now() < deadline => {
                let _ = last;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(last) => panic!("{what} within {PATIENCE:?}; last seen: {last}"),
        }
    }
}

/// Waits until conversation `id` is assigned to `agent` (read as that agent).
async fn assigned_to(gw: SocketAddr, id: &str, agent: &Signed) -> Value {
    eventually(&format!("{id} assigned to {}", agent.email), || async {
        let (status, body) = api(
            gw,
            "GET",
            "/console/api/conversations?filter[scope]=mine",
            &agent.token,
            None,
        )
        .await;
        let found = body["data"]
            .as_array()
            .and_then(|rows| rows.iter().find(|c| c["id"] == id).cloned());
        match found {
            Some(row) if status == 200 && row["attributes"]["status"] == "assigned" => Ok(row),
            _ => Err(format!("{status} {body}")),
        }
    })
    .await
}

/// The platform with a gateway in front; the platform administrator's first heartbeat makes them the
/// console's administrator.
async fn start() -> (Platform, Running) {
    let platform = Platform::start(TestBackend::Sqlite, 1, &[]).await;
    let gateway = platform.start_gateway().await;
    platform
        .presence(&platform.admin.token, dir::Presence::Online)
        .await;
    (platform, gateway)
}

async fn stop(platform: Platform, gateway: Running) {
    gateway.stop().await;
    platform.stop().await;
}

#[tokio::test]
async fn a_chat_reaches_the_online_agent_and_the_reply_comes_back() {
    let (platform, gateway) = start().await;
    let gw = gateway.addr;
    let agent = platform
        .console_member("ann.agent@example.com", dir::Role::Agent, 5)
        .await;
    let customer = platform.customer("casey@example.com").await;

    let (status, created) =
        start_chat(gw, &customer, "Where is my order?", "It has not arrived.").await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created["data"]["attributes"]["subject"],
        "Where is my order?"
    );
    assert_eq!(created["data"]["attributes"]["customerId"], customer.id);
    assert_eq!(created["data"]["attributes"]["channel"], "web");
    assert_eq!(
        created["data"]["links"]["self"],
        format!("/conversations/{id}")
    );

    // Routing gives it to the only online agent, who finds it under "mine".
    let row = assigned_to(gw, &id, &agent).await;
    assert_eq!(row["attributes"]["assigneeId"], agent.id, "{row}");
    assert!(row["attributes"]["queuePosition"].is_null(), "{row}");

    // The customer watches the conversation; the agent's reply arrives as an event.
    let bearer = format!("Bearer {}", customer.token);
    let seen = events_in_background(
        gw,
        &format!("/conversations/{id}/events"),
        &[("authorization", &bearer)],
    );
    until_seen(
        &seen,
        "the customer's stream says watching",
        PATIENCE,
        |s| s.contains("text/event-stream") && s.contains("event: watching"),
    )
    .await;
    let (status, reply) = write(
        gw,
        "/console/api/conversations",
        &id,
        &agent.token,
        json!({ "body": "Hello Casey, let me check." }),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(reply["data"]["attributes"]["authorKind"], "agent");
    assert_eq!(reply["data"]["attributes"]["internal"], false);
    until_seen(&seen, "a message event with the reply", PATIENCE, |s| {
        s.split("event: message")
            .skip(1)
            .any(|event| event.contains("Hello Casey, let me check."))
    })
    .await;

    // An internal note: the agent reads it, the customer neither reads nor is sent it.
    let (status, note) = write(
        gw,
        "/console/api/conversations",
        &id,
        &agent.token,
        json!({ "body": "Carrier says lost.", "internal": true }),
    )
    .await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(note["data"]["attributes"]["internal"], true);
    let (status, theirs) = api(
        gw,
        "GET",
        &format!("/conversations/{id}/messages"),
        &customer.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{theirs}");
    let bodies: Vec<&str> = theirs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["attributes"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        ["It has not arrived.", "Hello Casey, let me check."],
        "{theirs}"
    );
    assert_eq!(theirs["meta"]["total"], 2, "{theirs}");
    let (status, ours) = api(
        gw,
        "GET",
        &format!("/console/api/conversations/{id}/messages"),
        &agent.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{ours}");
    let internal: Vec<&Value> = ours["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["attributes"]["internal"] == true)
        .collect();
    assert_eq!(internal.len(), 1, "{ours}");
    assert!(!seen.lock().unwrap().contains("Carrier says lost."));

    // Pending while waiting for the customer; the customer's answer gives it back to the agent.
    let (status, pending) = api(
        gw,
        "PATCH",
        &format!("/console/api/conversations/{id}/status"),
        &agent.token,
        resource("conversation-statuses", json!({ "status": "pending" })),
    )
    .await;
    assert_eq!(status, 200, "{pending}");
    assert_eq!(pending["data"]["attributes"]["status"], "pending");
    let (status, answer) = write(
        gw,
        "/conversations",
        &id,
        &customer.token,
        json!({ "body": "Thanks!" }),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let now = conversation(gw, "/console/api/conversations", &id, &agent.token).await;
    assert_eq!(now["attributes"]["status"], "assigned", "{now}");

    // An assist session for the customer, recorded in the history.
    let session = platform
        .impersonation_client(0)
        .start_assist(authed(
            &agent.token,
            imp::StartAssistRequest {
                target_id: customer.id.clone(),
                conversation_id: id.clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let (status, recorded) = api(
        gw,
        "POST",
        &format!("/console/api/conversations/{id}/assist-sessions"),
        &agent.token,
        resource(
            "conversation-assist-sessions",
            json!({ "sessionId": session.id }),
        ),
    )
    .await;
    assert_eq!(status, 200, "{recorded}");

    // The customer resolves it; the customer's list and the agent's history say so.
    let (status, resolved) = api(
        gw,
        "PATCH",
        &format!("/conversations/{id}/status"),
        &customer.token,
        resource("conversation-statuses", json!({ "status": "resolved" })),
    )
    .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["data"]["attributes"]["status"], "resolved");
    let (status, mine) = api(gw, "GET", "/conversations", &customer.token, None).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["data"][0]["id"], id.as_str(), "{mine}");
    assert_eq!(
        mine["data"][0]["attributes"]["status"], "resolved",
        "{mine}"
    );
    let (status, history) = api(
        gw,
        "GET",
        &format!("/console/api/conversations/{id}/history"),
        &agent.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{history}");
    let kinds: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["attributes"]["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "created",
        "assigned",
        "message",
        "pending",
        "resumed",
        "assist_started",
        "resolved",
    ] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
    let assist = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["attributes"]["kind"] == "assist_started")
        .unwrap();
    assert_eq!(assist["attributes"]["sessionId"], session.id.as_str());
    assert_eq!(assist["attributes"]["actorId"], agent.id.as_str());

    let (status, stats) = api(
        gw,
        "GET",
        "/console/api/conversations/queue",
        &agent.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{stats}");
    assert_eq!(stats["data"]["attributes"]["queued"], 0, "{stats}");
    stop(platform, gateway).await;
}

#[tokio::test]
async fn who_may_see_and_assign_follows_the_console_roles() {
    let (platform, gateway) = start().await;
    let gw = gateway.addr;
    let admin = platform.admin.clone();
    let ann = platform
        .console_member("ann@example.com", dir::Role::Agent, 5)
        .await;
    // Only Ann is online when the chat arrives: the others are away.
    let bob = platform
        .console_member("bob@example.com", dir::Role::Agent, 5)
        .await;
    let sue = platform
        .console_member("sue@example.com", dir::Role::Supervisor, 5)
        .await;
    for away in [&bob, &sue] {
        platform.presence(&away.token, dir::Presence::Away).await;
    }
    let customer = platform.customer("carla@example.com").await;
    let other_customer = platform.customer("otto@example.com").await;
    platform.until_routing_sees_online(1).await;
    let (status, created) = start_chat(gw, &customer, "Refund", "Please refund order 7.").await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    assigned_to(gw, &id, &ann).await;
    let base = "/console/api/conversations";

    // Agents: their own only; no list of all, no assigning.
    let (status, body) = api(
        gw,
        "GET",
        &format!("{base}?filter[scope]=all"),
        &ann.token,
        None,
    )
    .await;
    assert_eq!(status, 403, "an agent lists all: {body}");
    assert!(
        !body["errors"][0]["detail"].as_str().unwrap().is_empty(),
        "{body}"
    );
    let (status, body) = assign(gw, &id, &ann.token, &bob.id).await;
    assert_eq!(status, 403, "an agent assigns: {body}");
    let (status, body) = api(gw, "GET", &format!("{base}/{id}"), &bob.token, None).await;
    assert!(
        matches!(status, 403 | 404),
        "another agent reads it: {status} {body}"
    );
    let (status, body) = write(gw, base, &id, &bob.token, json!({ "body": "Not mine" })).await;
    assert!(
        matches!(status, 403 | 404),
        "another agent replies: {status} {body}"
    );
    let (status, body) = api(
        gw,
        "GET",
        &format!("{base}/events?filter[scope]=all"),
        &ann.token,
        None,
    )
    .await;
    assert_eq!(status, 403, "an agent watches all: {body}");

    // Supervisors: all, assign to others and to themselves.
    let (status, body) = api(
        gw,
        "GET",
        &format!("{base}?filter[scope]=all"),
        &sue.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == id.as_str()),
        "{body}"
    );
    let (status, body) = assign(gw, &id, &sue.token, &bob.id).await;
    assert_eq!(status, 200, "a supervisor transfers to Bob: {body}");
    assert_eq!(body["data"]["attributes"]["assigneeId"], bob.id.as_str());
    let (status, body) = assign(gw, &id, &sue.token, &sue.id).await;
    assert_eq!(status, 200, "a supervisor takes it: {body}");
    assert_eq!(body["data"]["attributes"]["assigneeId"], sue.id.as_str());
    let (status, body) = api(
        gw,
        "GET",
        &format!("{base}?filter[scope]=all&filter[assignee]={}", sue.id),
        &sue.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "{body}");

    // Administrators: all, assign to agents, never to themselves.
    let (status, body) = api(
        gw,
        "GET",
        &format!("{base}?filter[scope]=all"),
        &admin.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = assign(gw, &id, &admin.token, &ann.id).await;
    assert_eq!(status, 200, "an administrator gives it to Ann: {body}");
    let (status, body) = assign(gw, &id, &admin.token, &admin.id).await;
    assert!(
        matches!(status, 403 | 409),
        "an administrator as assignee: {status} {body}"
    );
    assert!(
        !body["errors"][0]["detail"].as_str().unwrap().is_empty(),
        "{body}"
    );
    let now = conversation(gw, base, &id, &admin.token).await;
    assert_eq!(
        now["attributes"]["assigneeId"],
        ann.id.as_str(),
        "unchanged: {now}"
    );
    let (status, body) = api(
        gw,
        "GET",
        &format!("{base}/{id}/history"),
        &admin.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let transfers = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["attributes"]["kind"] == "transferred")
        .count();
    assert_eq!(transfers, 3, "Bob, Sue, Ann: {body}");

    // Customers: their own only, and never the console's API; console members never the customers'.
    let (status, body) = api(
        gw,
        "GET",
        &format!("/conversations/{id}"),
        &other_customer.token,
        None,
    )
    .await;
    assert!(
        matches!(status, 403 | 404),
        "another customer reads it: {status} {body}"
    );
    let (status, body) = api(gw, "GET", "/conversations", &other_customer.token, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!([]), "{body}");
    let (status, body) = api(gw, "GET", base, &customer.token, None).await;
    assert_eq!(status, 403, "a customer on the console's API: {body}");
    let (status, body) = api(gw, "GET", "/conversations", &ann.token, None).await;
    assert_eq!(status, 403, "an agent on the customers' API: {body}");
    let (status, body) = call(gw, "GET", "/conversations", &[], None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = call(gw, "GET", base, &[], None).await;
    assert_eq!(status, 401, "{body}");
    stop(platform, gateway).await;
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let (platform, gateway) = start().await;
    let gw = gateway.addr;
    let agent = platform
        .console_member("ada.agent@example.com", dir::Role::Agent, 5)
        .await;
    let customer = platform.customer("cleo@example.com").await;
    let long_body = "x".repeat(4001);
    let long_subject = "s".repeat(201);
    for (subject, body, field) in [
        ("", "hello", "subject"),
        ("   ", "hello", "subject"),
        (long_subject.as_str(), "hello", "subject"),
        ("Hi", "", "body"),
        ("Hi", long_body.as_str(), "body"),
    ] {
        let (status, answer) = start_chat(gw, &customer, subject, body).await;
        assert_eq!(status, 400, "{field}: {answer}");
        let detail = answer["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.starts_with(field), "{field}: {detail}");
    }
    let (status, answer) = api(
        gw,
        "POST",
        "/conversations",
        &customer.token,
        resource(
            "conversation-messages",
            json!({ "subject": "a", "body": "b" }),
        ),
    )
    .await;
    assert_eq!(status, 400, "the wrong type: {answer}");
    let (status, mine) = api(gw, "GET", "/conversations", &customer.token, None).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["meta"]["total"], 0, "nothing was started: {mine}");

    let (status, created) = start_chat(gw, &customer, "Sizes", "Do you have size 44?").await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    assigned_to(gw, &id, &agent).await;
    let refusals = [
        ("/conversations", json!({ "body": "" })),
        ("/conversations", json!({ "body": long_body })),
        (
            "/conversations",
            json!({ "body": "a note", "internal": true }),
        ),
        ("/conversations", json!({ "body": 42 })),
        ("/console/api/conversations", json!({ "body": "   " })),
        (
            "/console/api/conversations",
            json!({ "body": long_body, "internal": true }),
        ),
        (
            "/console/api/conversations",
            json!({ "body": "x", "internal": "yes" }),
        ),
    ];
    for (base, attributes) in refusals {
        let token = if base == "/conversations" {
            &customer.token
        } else {
            &agent.token
        };
        let (status, answer) = write(gw, base, &id, token, attributes.clone()).await;
        assert_eq!(status, 400, "{base} {attributes}: {answer}");
    }
    let (status, messages) = api(
        gw,
        "GET",
        &format!("/console/api/conversations/{id}/messages"),
        &agent.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{messages}");
    assert_eq!(
        messages["meta"]["total"], 1,
        "only the first message: {messages}"
    );

    // Unknown and malformed ids; statuses nobody sets; filters that do not exist.
    let unknown = uuid::Uuid::now_v7().to_string();
    for (token, path) in [
        (&customer.token, format!("/conversations/{unknown}")),
        (
            &agent.token,
            format!("/console/api/conversations/{unknown}"),
        ),
        (
            &agent.token,
            format!("/console/api/conversations/{unknown}/history"),
        ),
    ] {
        let (status, answer) = api(gw, "GET", &path, token, None).await;
        assert!(matches!(status, 403 | 404), "{path}: {status} {answer}");
    }
    let (status, answer) = write(
        gw,
        "/conversations",
        &unknown,
        &customer.token,
        json!({ "body": "hi" }),
    )
    .await;
    assert!(matches!(status, 403 | 404), "{status} {answer}");
    let checks: [(&str, &str, Option<Value>); 7] = [
        ("GET", "/conversations/not-an-id", None),
        (
            "GET",
            "/console/api/conversations?filter[scope]=everyone",
            None,
        ),
        (
            "GET",
            "/console/api/conversations?filter[status]=open",
            None,
        ),
        (
            "GET",
            "/console/api/conversations?filter[assignee]=bob",
            None,
        ),
        ("GET", "/console/api/conversations?page[limit]=1000", None),
        (
            "PATCH",
            "/console/api/conversations/{id}/status",
            resource("conversation-statuses", json!({ "status": "queued" })),
        ),
        (
            "POST",
            "/console/api/conversations/{id}/assignment",
            resource("conversation-assignments", json!({ "agentId": "bob" })),
        ),
    ];
    for (method, path, body) in checks {
        let path = path.replace("{id}", &id);
        let token = if path.starts_with("/console") {
            &agent.token
        } else {
            &customer.token
        };
        let (status, answer) = api(gw, method, &path, token, body).await;
        assert_eq!(status, 400, "{method} {path}: {answer}");
    }
    let now = conversation(gw, "/conversations", &id, &customer.token).await;
    assert_eq!(now["attributes"]["status"], "assigned", "{now}");
    stop(platform, gateway).await;
}

/// Signs in through the gateway's form at `login` (`/login` or `/console/login`): the CSRF cookie
/// and token, and the sign-in cookie `cookie`, as one `Cookie` header value.
async fn browser_sign_in(
    gw: SocketAddr,
    login: &str,
    email: &str,
    cookie: &str,
) -> (String, String) {
    let page = http(gw, "GET", login, &[], None).await.unwrap();
    let csrf = set_cookie(&page, "assist_csrf").expect("a CSRF cookie");
    let token = csrf.trim_start_matches("assist_csrf=").to_owned();
    let origin = format!("http://{gw}");
    let signed = http(
        gw,
        "POST",
        login,
        &[("cookie", &csrf), FORM, ("origin", &origin)],
        Some(&format!(
            "username={}&password={}&csrf={token}",
            email.replace('@', "%40"),
            PASSWORD.replace(' ', "+")
        )),
    )
    .await
    .unwrap();
    assert_eq!(signed.status, 303, "{login}: {}", signed.body);
    let session = set_cookie(&signed, cookie).expect("the sign-in cookie");
    (format!("{csrf}; {session}"), token)
}

#[tokio::test]
async fn browsers_write_only_with_the_csrf_header_from_this_site() {
    let (platform, gateway) = start().await;
    let gw = gateway.addr;
    let origin = format!("http://{gw}");
    let agent = platform
        .console_member("cora.agent@example.com", dir::Role::Agent, 5)
        .await;
    platform.customer("chris@example.com").await;
    let (cookies, csrf) =
        browser_sign_in(gw, "/login", "chris@example.com", "assist_customer").await;

    // The customer's cookie reads; writing needs the header and this site's Origin.
    let (status, body) = call(gw, "GET", "/conversations", &[("cookie", &cookies)], None).await;
    assert_eq!(status, 200, "{body}");
    let document = json!({ "data": { "type": "conversations",
        "attributes": { "subject": "Cookie chat", "body": "Started in the browser" } } })
    .to_string();
    let refusals: [&[(&str, &str)]; 3] = [
        &[("cookie", &cookies)],
        &[("cookie", &cookies), ("x-csrf-token", &csrf)],
        &[
            ("cookie", &cookies),
            ("x-csrf-token", &csrf),
            ("origin", "http://evil.example"),
        ],
    ];
    for headers in refusals {
        let (status, body) = call(gw, "POST", "/conversations", headers, Some(&document)).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
    }
    let (status, body) = call(gw, "GET", "/conversations", &[("cookie", &cookies)], None).await;
    assert_eq!(
        body["meta"]["total"], 0,
        "nothing was started: {status} {body}"
    );
    let (status, body) = call(
        gw,
        "POST",
        "/conversations",
        &[
            ("cookie", &cookies),
            ("x-csrf-token", &csrf),
            ("origin", &origin),
        ],
        Some(&document),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let first = body["data"]["id"].as_str().unwrap().to_owned();

    // The chat page's form: refused without this browser's token, otherwise a new conversation.
    let chat = http(gw, "GET", "/chat", &[("cookie", &cookies)], None)
        .await
        .unwrap();
    assert_eq!(chat.status, 200, "{}", chat.body);
    assert!(chat.body.contains("Cookie chat"), "{}", chat.body);
    assert!(chat.body.contains("id=\"start-chat\""), "{}", chat.body);
    let form = "subject=From+the+form&body=Hello+there&csrf=";
    let forged = http(
        gw,
        "POST",
        "/chat",
        &[("cookie", &cookies), FORM, ("origin", &origin)],
        Some(&format!("{form}forged")),
    )
    .await
    .unwrap();
    assert_eq!(forged.status, 403, "{}", forged.body);
    let too_long = http(
        gw,
        "POST",
        "/chat",
        &[("cookie", &cookies), FORM, ("origin", &origin)],
        Some(&format!("subject={}&body=x&csrf={csrf}", "s".repeat(201))),
    )
    .await
    .unwrap();
    assert_eq!(too_long.status, 400, "{}", too_long.body);
    assert!(
        too_long.body.contains("class=\"error\""),
        "{}",
        too_long.body
    );
    let started = http(
        gw,
        "POST",
        "/chat",
        &[("cookie", &cookies), FORM, ("origin", &origin)],
        Some(&format!("{form}{csrf}")),
    )
    .await
    .unwrap();
    assert_eq!(started.status, 303, "{}", started.body);
    let location = started.header("location").unwrap().to_owned();
    assert!(location.starts_with("/chat/"), "{location}");
    let (_, body) = call(gw, "GET", "/conversations", &[("cookie", &cookies)], None).await;
    assert_eq!(body["meta"]["total"], 2, "{body}");
    let anonymous = http(gw, "GET", "/chat", &[], None).await.unwrap();
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.header("location"), Some("/login"));

    // The console member's cookie: the same rule on the console's API.
    assigned_to(gw, &first, &agent).await;
    let (console, console_csrf) =
        browser_sign_in(gw, "/console/login", &agent.email, "assist_console").await;
    let reply = json!({ "data": { "type": "conversation-messages",
        "attributes": { "body": "Answered from the console" } } })
    .to_string();
    let path = format!("/console/api/conversations/{first}/messages");
    let (status, body) = call(gw, "POST", &path, &[("cookie", &console)], Some(&reply)).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = call(
        gw,
        "POST",
        &path,
        &[
            ("cookie", &console),
            ("x-csrf-token", &console_csrf),
            ("origin", &origin),
        ],
        Some(&reply),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Both sides' pages show the conversation; the customer's never the console's notes.
    let list = http(
        gw,
        "GET",
        "/console/conversations",
        &[("cookie", &console)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.body
            .contains(&format!("data-conversation=\"{first}\"")),
        "{}",
        list.body
    );
    assert!(list.body.contains("My conversations"), "{}", list.body);
    assert!(
        !list.body.contains("id=\"tab-all\""),
        "an agent has no All tab"
    );
    let page = http(
        gw,
        "GET",
        &format!("/console/conversations/{first}"),
        &[("cookie", &console)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    for needle in [
        "id=\"reply-form\"",
        "Answered from the console",
        "id=\"history\"",
        "Assist this customer",
    ] {
        assert!(page.body.contains(needle), "{needle} in {}", page.body);
    }
    assert!(
        !page.body.contains("id=\"assign-form\""),
        "an agent cannot assign"
    );

    // "Assist this customer": a storefront session for the conversation's customer, in its history.
    let assist_path = format!("/console/conversations/{first}/assist");
    let forged = http(
        gw,
        "POST",
        &assist_path,
        &[("cookie", &console), FORM, ("origin", &origin)],
        Some("csrf=forged"),
    )
    .await
    .unwrap();
    assert_eq!(forged.status, 403, "{}", forged.body);
    let assisting = http(
        gw,
        "POST",
        &assist_path,
        &[("cookie", &console), FORM, ("origin", &origin)],
        Some(&format!("csrf={console_csrf}")),
    )
    .await
    .unwrap();
    assert_eq!(assisting.status, 303, "{}", assisting.body);
    assert_eq!(assisting.header("location"), Some("/"));
    assert!(
        set_cookie(&assisting, "assist_assist").is_some(),
        "the assist cookie"
    );
    let (status, history) = api(
        gw,
        "GET",
        &format!("/console/api/conversations/{first}/history"),
        &agent.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{history}");
    let started = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["attributes"]["kind"] == "assist_started")
        .count();
    assert_eq!(started, 1, "one recorded session: {history}");
    let (status, _) = api(
        gw,
        "POST",
        &path,
        &agent.token,
        resource(
            "conversation-messages",
            json!({ "body": "Secret note", "internal": true }),
        ),
    )
    .await;
    assert_eq!(status, 201);
    let chat = http(
        gw,
        "GET",
        &format!("/chat/{first}"),
        &[("cookie", &cookies)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(chat.status, 200, "{}", chat.body);
    assert!(
        chat.body.contains("Answered from the console"),
        "{}",
        chat.body
    );
    assert!(!chat.body.contains("Secret note"), "{}", chat.body);
    stop(platform, gateway).await;
}

/// What customers and members type is text on every page: a subject and a message full of markup
/// come back escaped on both sides' pages, never as markup.
#[tokio::test]
async fn pages_show_what_people_typed_as_text() {
    let (platform, gateway) = start().await;
    let gw = gateway.addr;
    let agent = platform
        .console_member("esc.agent@example.com", dir::Role::Agent, 5)
        .await;
    let customer = platform.customer("esc.customer@example.com").await;
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let (status, body) = start_chat(gw, &customer, hostile, hostile).await;
    assert_eq!(status, 201, "{body}");
    let id = body["data"]["id"].as_str().unwrap().to_owned();
    assigned_to(gw, &id, &agent).await;
    let (status, body) = write(
        gw,
        "/console/api/conversations",
        &id,
        &agent.token,
        json!({ "body": hostile }),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let (console, _) = browser_sign_in(gw, "/console/login", &agent.email, "assist_console").await;
    let (shop, _) = browser_sign_in(gw, "/login", &customer.email, "assist_customer").await;
    for (path, cookie) in [
        ("/console/conversations".to_owned(), &console),
        (format!("/console/conversations/{id}"), &console),
        ("/chat".to_owned(), &shop),
        (format!("/chat/{id}"), &shop),
    ] {
        let page = http(gw, "GET", &path, &[("cookie", cookie)], None)
            .await
            .unwrap();
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert!(
            page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path} shows the text: {}",
            page.body
        );
        assert!(
            !page.body.contains("<script>alert(1)") && !page.body.contains("<img src=x"),
            "{path} must not carry the markup: {}",
            page.body
        );
    }
    stop(platform, gateway).await;
}
