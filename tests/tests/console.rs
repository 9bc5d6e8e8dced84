//! The console's JSON API end to end: real HTTP on 127.0.0.1 in front of identity and agent-directory,
//! on SQLite and on PostgreSQL. The authorization matrix of DESIGN.md section 4 is a table here, each
//! cell performed through `/console/api/…` by an agent, a supervisor and an administrator who joined
//! through the invitation mail; then bad input, the confirmation of a removal, the cookie sign-in's
//! CSRF and origin rules, and the set-password page.

use std::net::SocketAddr;
use std::time::Duration;

use assist_proto::common::v1::PageRequest;
use assist_proto::identity::v1 as idp;
use assist_runtime::testing::TestBackend;
use assist_tests::http_api::{
    FORM, api, call, events_in_background, resource, set_cookie, until_seen,
};
use assist_tests::platform::{PASSWORD, Platform, Running, Signed, authed, http};
use serde_json::{Value, json};

async fn invite(gw: SocketAddr, token: &str, email: &str, role: &str) -> (u16, Value) {
    api(
        gw,
        "POST",
        "/console/api/agents",
        token,
        resource("console-agents", json!({ "email": email, "role": role })),
    )
    .await
}

async fn heartbeat(gw: SocketAddr, token: &str) -> (u16, Value) {
    api(
        gw,
        "POST",
        "/console/api/presence",
        token,
        resource("console-presence", json!({ "presence": "online" })),
    )
    .await
}

/// The token of the newest link mailed to `email`.
async fn mailed_token(platform: &Platform, email: &str, link: &str) -> String {
    let reply = platform
        .identity_client()
        .list_outbox(authed(
            &platform.admin.token,
            idp::ListOutboxRequest {
                page: Some(PageRequest {
                    limit: 1,
                    offset: 0,
                }),
                recipient: email.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let body = &reply
        .messages
        .first()
        .unwrap_or_else(|| panic!("no mail to {email}"))
        .body;
    let at = body
        .find(link)
        .unwrap_or_else(|| panic!("no {link} link: {body}"))
        + link.len();
    body[at..].split_whitespace().next().unwrap().to_owned()
}

async fn login(platform: &Platform, email: &str) -> Signed {
    let pair = platform
        .identity_client()
        .login(idp::LoginRequest {
            realm: idp::Realm::BackOffice as i32,
            email: email.into(),
            password: PASSWORD.into(),
            client_address: String::new(),
        })
        .await
        .unwrap_or_else(|status| panic!("{email} signs in: {status:?}"))
        .into_inner();
    Signed {
        id: pair.principal_id,
        email: email.into(),
        token: pair.access.unwrap().token,
    }
}

/// Someone the platform administrator invites as `role`, who follows the mailed link, sets a
/// password, signs in and sends a heartbeat (which makes them an active member).
async fn join(platform: &Platform, gw: SocketAddr, email: &str, role: &str) -> Signed {
    let (status, body) = invite(gw, &platform.admin.token, email, role).await;
    assert_eq!(status, 201, "inviting {email}: {body}");
    assert_eq!(body["data"]["attributes"]["status"], "invited", "{body}");
    let token = mailed_token(platform, email, "/set-password?token=").await;
    platform
        .identity_client()
        .redeem_one_time_token(idp::RedeemOneTimeTokenRequest {
            token,
            new_password: PASSWORD.into(),
        })
        .await
        .unwrap();
    let signed = login(platform, email).await;
    let (status, body) = heartbeat(gw, &signed.token).await;
    assert_eq!(status, 200, "first heartbeat of {email}: {body}");
    let (status, body) = api(
        gw,
        "GET",
        &format!("/console/api/agents/{}", signed.id),
        &platform.admin.token,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["attributes"]["status"], "active", "{body}");
    assert_eq!(body["data"]["attributes"]["role"], role, "{body}");
    signed
}

/// The status of `GET /console/api/agents/events`; for a 200 also that the stream says `synced`.
async fn watch(gw: SocketAddr, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(gw).await.unwrap();
        let request = format!(
            "GET /console/api/agents/events HTTP/1.1\r\nhost: {gw}\r\naccept: text/event-stream\r\n\
             authorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(
                n > 0,
                "the stream ended: {}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&seen);
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
            if status != 200 {
                return status;
            }
            assert!(head.contains("text/event-stream"), "{head}");
            if body.contains("event: synced") {
                return status;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .expect("the watch answered within 10 s")
}

/// `(action, allowed for [agent, supervisor, administrator])`: DESIGN.md section 4. Invite, remove,
/// change role and reset password: supervisors for agents and supervisors, administrators for
/// everyone, agents never; nobody changes their own role; seats are the administrators'; supervisors
/// and administrators watch the agents.
const MATRIX: &[(&str, [bool; 3])] = &[
    ("invite an agent", [false, true, true]),
    ("invite a supervisor", [false, true, true]),
    ("invite an administrator", [false, false, true]),
    ("reset the password of an agent", [false, true, true]),
    ("reset the password of a supervisor", [false, true, true]),
    (
        "reset the password of an administrator",
        [false, false, true],
    ),
    ("change the role of an agent", [false, true, true]),
    ("change the role of a supervisor", [false, true, true]),
    ("change the role of an administrator", [false, false, true]),
    ("remove an agent", [false, true, true]),
    ("remove a supervisor", [false, true, true]),
    ("remove an administrator", [false, false, true]),
    ("change own role", [false, false, false]),
    ("set seats", [false, false, true]),
    ("watch", [false, true, true]),
];

const ROLES: [&str; 3] = ["agent", "supervisor", "administrator"];

/// The role named at the end of an action ("… an agent").
fn target_role(action: &str) -> &'static str {
    ROLES
        .into_iter()
        .find(|role| action.ends_with(role))
        .unwrap_or_else(|| panic!("no role in {action:?}"))
}

struct Matrix<'a> {
    platform: &'a Platform,
    gw: SocketAddr,
    /// Numbers the emails of the people each cell needs.
    next: std::cell::Cell<u32>,
}

impl Matrix<'_> {
    fn email(&self, what: &str) -> String {
        let n = self.next.get() + 1;
        self.next.set(n);
        format!("{what}-{n}@example.com")
    }

    /// The profile of `id` as the platform administrator sees it.
    async fn profile(&self, id: &str) -> Value {
        let (status, body) = api(
            self.gw,
            "GET",
            &format!("/console/api/agents/{id}"),
            &self.platform.admin.token,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        body["data"]["attributes"].clone()
    }

    /// Performs `action` as `caller`; answers the HTTP status, and checks that a refusal changed
    /// nothing.
    async fn perform(&self, caller: &Signed, caller_role: &str, action: &str) -> u16 {
        let gw = self.gw;
        let token = caller.token.as_str();
        if let Some(role) = action.strip_prefix("invite ") {
            let role = target_role(role);
            let email = self.email(&format!("invited-{role}-by-{caller_role}"));
            let (status, body) = invite(gw, token, &email, role).await;
            if status == 201 {
                assert_eq!(
                    body["data"]["attributes"]["email"],
                    email.as_str(),
                    "{body}"
                );
                assert_eq!(body["data"]["attributes"]["role"], role, "{body}");
            }
            return status;
        }
        if action == "set seats" {
            let (status, body) = api(
                gw,
                "PUT",
                "/console/api/seats",
                token,
                resource("console-seats", json!({ "licensed": 200 })),
            )
            .await;
            if status == 200 {
                assert_eq!(body["data"]["attributes"]["licensed"], 200, "{body}");
            }
            return status;
        }
        if action == "watch" {
            return watch(gw, token).await;
        }
        if action == "change own role" {
            let other = if caller_role == "agent" {
                "supervisor"
            } else {
                "agent"
            };
            let (status, _) = api(
                gw,
                "PATCH",
                &format!("/console/api/agents/{}/role", caller.id),
                token,
                resource("console-agent-roles", json!({ "role": other })),
            )
            .await;
            assert_eq!(self.profile(&caller.id).await["role"], caller_role);
            return status;
        }
        let role = target_role(action);
        let target = join(
            self.platform,
            gw,
            &self.email(&format!("{role}-for-{caller_role}")),
            role,
        )
        .await;
        let path = format!("/console/api/agents/{}", target.id);
        let (status, body) = if action.starts_with("reset the password") {
            api(gw, "POST", &format!("{path}/password-reset"), token, None).await
        } else if action.starts_with("change the role") {
            let new_role = if role == "agent" {
                "supervisor"
            } else {
                "agent"
            };
            let answer = api(
                gw,
                "PATCH",
                &format!("{path}/role"),
                token,
                resource("console-agent-roles", json!({ "role": new_role })),
            )
            .await;
            let expected = if answer.0 == 200 { new_role } else { role };
            assert_eq!(self.profile(&target.id).await["role"], expected, "{action}");
            answer
        } else {
            let answer = api(
                gw,
                "POST",
                &format!("{path}/remove"),
                token,
                resource(
                    "console-agent-removals",
                    json!({ "confirmEmail": target.email.to_uppercase() }),
                ),
            )
            .await;
            let expected = if answer.0 == 200 { "removed" } else { "active" };
            assert_eq!(
                self.profile(&target.id).await["status"],
                expected,
                "{action}"
            );
            answer
        };
        if status >= 400 {
            assert_eq!(body["errors"][0]["status"], status.to_string(), "{body}");
        }
        status
    }
}

fn success_status(action: &str) -> u16 {
    if action.starts_with("invite") {
        201
    } else if action.starts_with("reset the password") {
        202
    } else {
        200
    }
}

async fn start(backend: TestBackend) -> (Platform, Running) {
    let platform = Platform::start(backend, 1, &[]).await;
    let gateway = platform.start_gateway().await;
    // The platform administrator's first heartbeat makes them the console's first administrator.
    let (status, body) = heartbeat(gateway.addr, &platform.admin.token).await;
    assert_eq!(status, 200, "{body}");
    (platform, gateway)
}

async fn stop(platform: Platform, gateway: Running) {
    gateway.stop().await;
    platform.stop().await;
}

#[tokio::test]
async fn the_authorization_matrix_holds_through_http() {
    for backend in TestBackend::all() {
        let started = std::time::Instant::now();
        let name = backend.name();
        let (platform, gateway) = start(backend).await;
        let gw = gateway.addr;
        // Enough seats for every person the cells need.
        let (status, body) = api(
            gw,
            "PUT",
            "/console/api/seats",
            &platform.admin.token,
            resource("console-seats", json!({ "licensed": 100 })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let matrix = Matrix {
            platform: &platform,
            gw,
            next: std::cell::Cell::new(0),
        };
        let mut callers = Vec::new();
        for role in ROLES {
            callers.push(
                join(
                    &platform,
                    gw,
                    &matrix.email(&format!("caller-{role}")),
                    role,
                )
                .await,
            );
        }
        let mut wrong = Vec::new();
        for (action, allowed) in MATRIX {
            for (index, caller) in callers.iter().enumerate() {
                let caller_role = ROLES[index];
                let expected = if allowed[index] {
                    success_status(action)
                } else {
                    403
                };
                let status = matrix.perform(caller, caller_role, action).await;
                if status != expected {
                    wrong.push(format!(
                        "{caller_role} / {action}: expected {expected}, got {status}"
                    ));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "{name}: cells that differ:\n{}",
            wrong.join("\n")
        );

        // The list: everyone above, with seats and presence counts.
        let (status, body) = api(
            gw,
            "GET",
            "/console/api/agents?page[limit]=5&filter[status]=active",
            &callers[0].token,
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"].as_array().unwrap().len(), 5, "{body}");
        assert!(
            body["meta"]["seats"]["occupied"].as_u64().unwrap() > 3,
            "{body}"
        );
        assert!(
            body["meta"]["presence"]["online"].as_u64().unwrap() >= 3,
            "{body}"
        );
        assert!(body["links"]["next"].is_string(), "{body}");
        eprintln!("{name}: matrix in {:?}", started.elapsed());
        stop(platform, gateway).await;
    }
}

#[tokio::test]
async fn bad_input_is_refused_before_it_reaches_the_directory() {
    let (platform, gateway) = start(TestBackend::Sqlite).await;
    let gw = gateway.addr;
    let admin = platform.admin.token.clone();
    let agent = join(&platform, gw, "ann@example.com", "agent").await;
    let id = agent.id.as_str();
    let long = "x".repeat(101);
    let big = format!(
        "{{\"data\":{{\"type\":\"console-agents\",\"attributes\":{{\"email\":\"{}\"}}}}}}",
        "a".repeat(70 * 1024)
    );
    let cases: Vec<(&str, String, Option<String>, u16)> = vec![
        ("POST", "/console/api/agents".into(), Some("nope".into()), 400),
        (
            "POST",
            "/console/api/agents".into(),
            Some(r#"{"data":{"type":"agents","attributes":{"email":"a@example.com","role":"agent"}}}"#.into()),
            400,
        ),
        (
            "POST",
            "/console/api/agents".into(),
            Some(r#"{"data":{"type":"console-agents","attributes":{"role":"agent"}}}"#.into()),
            400,
        ),
        (
            "POST",
            "/console/api/agents".into(),
            Some(r#"{"data":{"type":"console-agents","attributes":{"email":"not-an-email","role":"agent"}}}"#.into()),
            400,
        ),
        (
            "POST",
            "/console/api/agents".into(),
            Some(r#"{"data":{"type":"console-agents","attributes":{"email":"b@example.com","role":"owner"}}}"#.into()),
            400,
        ),
        (
            "POST",
            "/console/api/agents".into(),
            Some(r#"{"data":{"type":"console-agents","attributes":{"email":"b@example.com","role":"agent","fullName":7}}}"#.into()),
            400,
        ),
        ("POST", "/console/api/agents".into(), Some(big), 413),
        (
            "PATCH",
            "/console/api/agents/not-a-uuid/role".into(),
            Some(r#"{"data":{"type":"console-agent-roles","attributes":{"role":"agent"}}}"#.into()),
            400,
        ),
        (
            "PATCH",
            format!("/console/api/agents/{id}/role"),
            Some(r#"{"data":{"type":"console-agent-roles","attributes":{"role":7}}}"#.into()),
            400,
        ),
        (
            "PUT",
            "/console/api/seats".into(),
            Some(r#"{"data":{"type":"console-seats","attributes":{"licensed":0}}}"#.into()),
            400,
        ),
        (
            "PUT",
            "/console/api/seats".into(),
            Some(r#"{"data":{"type":"console-seats","attributes":{"licensed":"many"}}}"#.into()),
            400,
        ),
        (
            "GET",
            "/console/api/agents?filter[status]=gone".into(),
            None,
            400,
        ),
        (
            "GET",
            format!("/console/api/agents?filter[query]={long}"),
            None,
            400,
        ),
        ("GET", "/console/api/agents?page[limit]=1000".into(), None, 400),
        ("GET", "/console/api/agents?page[offset]=-1".into(), None, 400),
        (
            "POST",
            "/console/api/presence".into(),
            Some(r#"{"data":{"type":"console-presence","attributes":{"presence":"busy"}}}"#.into()),
            400,
        ),
        (
            "PATCH",
            format!("/console/api/agents/{id}/routing"),
            Some(r#"{"data":{"type":"console-agent-routing","attributes":{"capacity":0}}}"#.into()),
            400,
        ),
        (
            "PATCH",
            format!("/console/api/agents/{id}/routing"),
            Some(r#"{"data":{"type":"console-agent-routing","attributes":{"skills":["Bad Skill"]}}}"#.into()),
            400,
        ),
        (
            "POST",
            format!("/console/api/agents/{id}/remove"),
            Some(r#"{"data":{"type":"console-agent-removals","attributes":{}}}"#.into()),
            400,
        ),
        // Refused by the directory: the email repeated wrongly; seats below what is occupied.
        (
            "POST",
            format!("/console/api/agents/{id}/remove"),
            Some(r#"{"data":{"type":"console-agent-removals","attributes":{"confirmEmail":"someone@example.com"}}}"#.into()),
            400,
        ),
        (
            "PUT",
            "/console/api/seats".into(),
            Some(r#"{"data":{"type":"console-seats","attributes":{"licensed":1}}}"#.into()),
            409,
        ),
        (
            "GET",
            "/console/api/agents/0199aaaa-0000-7000-8000-000000000000".into(),
            None,
            404,
        ),
    ];
    for (method, path, body, expected) in cases {
        let bearer = format!("Bearer {admin}");
        let (status, answer) = call(
            gw,
            method,
            &path,
            &[("authorization", &bearer)],
            body.as_deref(),
        )
        .await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        assert_eq!(
            answer["errors"][0]["status"],
            expected.to_string(),
            "{answer}"
        );
        assert!(
            !answer["errors"][0]["detail"].as_str().unwrap().is_empty(),
            "{answer}"
        );
    }
    // Nothing was removed by the wrong confirmation; the right one (any case) removes.
    let (_, body) = api(
        gw,
        "GET",
        &format!("/console/api/agents/{id}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(body["data"]["attributes"]["status"], "active", "{body}");
    let (status, body) = api(
        gw,
        "POST",
        &format!("/console/api/agents/{id}/remove"),
        &admin,
        resource(
            "console-agent-removals",
            json!({ "confirmEmail": "ANN@example.com" }),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["attributes"]["status"], "removed", "{body}");
    // The removed agent cannot sign in any more.
    let refused = platform
        .identity_client()
        .login(idp::LoginRequest {
            realm: idp::Realm::BackOffice as i32,
            email: "ann@example.com".into(),
            password: PASSWORD.into(),
            client_address: String::new(),
        })
        .await;
    assert!(refused.is_err(), "a removed agent signs in: {refused:?}");

    // No token, a bad one, a customer's.
    let (status, body) = call(gw, "GET", "/console/api/agents", &[], None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = api(gw, "GET", "/console/api/agents", "not.a.token", None).await;
    assert_eq!(status, 401, "{body}");
    let customer = platform.customer("casey@example.com").await;
    let (status, body) = api(gw, "GET", "/console/api/me", &customer.token, None).await;
    assert_eq!(status, 403, "{body}");

    // `me` tells the platform administrator what they may grant.
    let (status, body) = api(gw, "GET", "/console/api/me", &admin, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["attributes"]["consoleRole"], "administrator");
    assert_eq!(
        body["data"]["attributes"]["grantableRoles"],
        json!(["agent", "supervisor", "administrator"])
    );
    stop(platform, gateway).await;
}

fn form_value(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn cookie_sign_ins_need_csrf_and_the_same_origin() {
    let (platform, gateway) = start(TestBackend::Sqlite).await;
    let gw = gateway.addr;
    let origin = format!("http://{gw}");

    // An invited supervisor sets a password on the page of the mailed link.
    let (status, body) = invite(gw, &platform.admin.token, "sue@example.com", "supervisor").await;
    assert_eq!(status, 201, "{body}");
    let token = mailed_token(&platform, "sue@example.com", "/set-password?token=").await;
    let page = http(
        gw,
        "GET",
        &format!("/set-password?token={token}"),
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.header("referrer-policy"), Some("same-origin"));
    let csrf = set_cookie(&page, "assist_csrf").expect("a CSRF cookie");
    let csrf_value = csrf.trim_start_matches("assist_csrf=").to_owned();
    let submit = |password: &str, confirm: &str| {
        format!(
            "token={token}&password={}&confirm={}&csrf={csrf_value}",
            form_value(password),
            form_value(confirm)
        )
    };
    let with_csrf = [("cookie", csrf.as_str()), FORM, ("origin", origin.as_str())];
    let mismatch = http(
        gw,
        "POST",
        "/set-password",
        &with_csrf,
        Some(&submit(PASSWORD, "something else")),
    )
    .await
    .unwrap();
    assert_eq!(mismatch.status, 400);
    assert!(mismatch.body.contains("do not match"), "{}", mismatch.body);
    let short = http(
        gw,
        "POST",
        "/set-password",
        &with_csrf,
        Some(&submit("short", "short")),
    )
    .await
    .unwrap();
    assert_eq!(short.status, 400);
    assert!(short.body.contains("at least 8"), "{}", short.body);
    let foreign = http(
        gw,
        "POST",
        "/set-password",
        &[
            ("cookie", csrf.as_str()),
            FORM,
            ("origin", "http://evil.example"),
        ],
        Some(&submit(PASSWORD, PASSWORD)),
    )
    .await
    .unwrap();
    assert_eq!(foreign.status, 403);
    let done = http(
        gw,
        "POST",
        "/set-password",
        &with_csrf,
        Some(&submit(PASSWORD, PASSWORD)),
    )
    .await
    .unwrap();
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("console-login-link"), "{}", done.body);
    let again = http(
        gw,
        "POST",
        "/set-password",
        &with_csrf,
        Some(&submit(PASSWORD, PASSWORD)),
    )
    .await
    .unwrap();
    assert_eq!(again.status, 410, "a link works once: {}", again.body);

    // The supervisor signs in at /console/login.
    let wrong = http(
        gw,
        "POST",
        "/console/login",
        &with_csrf,
        Some(&format!(
            "username=sue%40example.com&password=wrong-password&csrf={csrf_value}"
        )),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("class=\"error\""), "{}", wrong.body);
    let signed = http(
        gw,
        "POST",
        "/console/login",
        &with_csrf,
        Some(&format!(
            "username=sue%40example.com&password={}&csrf={csrf_value}",
            form_value(PASSWORD)
        )),
    )
    .await
    .unwrap();
    assert_eq!(signed.status, 303, "{}", signed.body);
    assert_eq!(signed.header("location"), Some("/console/agents"));
    let console = set_cookie(&signed, "assist_console").expect("the console cookie");
    let line = signed
        .headers
        .iter()
        .find(|(n, v)| n == "set-cookie" && v.starts_with("assist_console="))
        .unwrap()
        .1
        .clone();
    assert!(
        line.contains("Path=/console") && line.contains("HttpOnly"),
        "{line}"
    );
    let cookies = format!("{csrf}; {console}");

    // Reading needs the cookie only.
    let (status, body) = call(gw, "GET", "/console/api/me", &[("cookie", &cookies)], None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["attributes"]["consoleRole"], "supervisor",
        "{body}"
    );
    assert_eq!(
        body["data"]["attributes"]["grantableRoles"],
        json!(["agent", "supervisor"])
    );
    let page = http(gw, "GET", "/console/agents", &[("cookie", &cookies)], None)
        .await
        .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    for id in [
        "seat-counter",
        "seats-free",
        "online-count",
        "add-agent",
        "agents",
    ] {
        assert!(
            page.body.contains(&format!("id=\"{id}\"")),
            "#{id} in {}",
            page.body
        );
    }
    assert!(
        !page.body.contains("value=\"administrator\""),
        "a supervisor is not offered the administrator role"
    );
    // Searching narrows the table; an unknown status filter is refused.
    let searched = http(
        gw,
        "GET",
        "/console/agents?q=SUE",
        &[("cookie", &cookies)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(searched.status, 200);
    assert_eq!(
        searched.body.matches("<tr data-agent=").count(),
        1,
        "{}",
        searched.body
    );
    assert!(searched.body.contains("data-email=\"sue@example.com\""));
    let bogus = http(
        gw,
        "GET",
        "/console/agents?status=bogus",
        &[("cookie", &cookies)],
        None,
    )
    .await
    .unwrap();
    assert_eq!(bogus.status, 400);
    let anonymous = http(gw, "GET", "/console/agents", &[], None).await.unwrap();
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.header("location"), Some("/console/login"));

    // Changing state with the cookie needs the CSRF header and this site's Origin.
    let presence = r#"{"data":{"type":"console-presence","attributes":{"presence":"away"}}}"#;
    let refusals: [&[(&str, &str)]; 4] = [
        &[("cookie", &cookies)],
        &[("cookie", &cookies), ("x-csrf-token", &csrf_value)],
        &[
            ("cookie", &cookies),
            ("x-csrf-token", &csrf_value),
            ("origin", "http://evil.example"),
        ],
        &[
            ("cookie", &cookies),
            (
                "x-csrf-token",
                "forged-token-forged-token-forged-token-1234",
            ),
            ("origin", &origin),
        ],
    ];
    for headers in refusals {
        let (status, body) =
            call(gw, "POST", "/console/api/presence", headers, Some(presence)).await;
        assert_eq!(status, 403, "{headers:?}: {body}");
    }
    let (status, body) = call(
        gw,
        "POST",
        "/console/api/presence",
        &[
            ("cookie", &cookies),
            ("x-csrf-token", &csrf_value),
            ("origin", &origin),
        ],
        Some(presence),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["attributes"]["presence"], "away", "{body}");
    assert!(
        body["data"]["attributes"]["timeoutSeconds"]
            .as_u64()
            .unwrap()
            > 0
    );

    // Signing out: offline, and the cookie cleared.
    let out = http(
        gw,
        "POST",
        "/console/logout",
        &[("cookie", &cookies), FORM, ("origin", &origin)],
        Some(&format!("csrf={csrf_value}")),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), Some("/console/login"));
    assert_eq!(
        set_cookie(&out, "assist_console").as_deref(),
        Some("assist_console=")
    );
    let (_, body) = api(
        gw,
        "GET",
        "/console/api/agents?filter[query]=sue",
        &platform.admin.token,
        None,
    )
    .await;
    assert_eq!(
        body["data"][0]["attributes"]["presence"], "offline",
        "{body}"
    );
    stop(platform, gateway).await;
}

#[tokio::test]
async fn the_watch_streams_presence_and_the_reset_link_sets_a_new_password() {
    let (platform, gateway) = start(TestBackend::Sqlite).await;
    let gw = gateway.addr;
    let agent = join(&platform, gw, "wes@example.com", "agent").await;

    // An administrator's watch learns of the agent going away without asking.
    let bearer = format!("Bearer {}", platform.admin.token);
    let seen = events_in_background(
        gw,
        "/console/api/agents/events",
        &[("authorization", &bearer)],
    );
    until_seen(&seen, "the watch is synced", Duration::from_secs(10), |s| {
        s.contains("event: synced")
    })
    .await;
    let (status, body) = api(
        gw,
        "POST",
        "/console/api/presence",
        &agent.token,
        resource("console-presence", json!({ "presence": "away" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    until_seen(
        &seen,
        "a changed event with the agent away",
        Duration::from_secs(10),
        |s| {
            s.split("event: changed")
                .skip(1)
                .any(|event| event.contains(&agent.id) && event.contains("\"presence\":\"away\""))
        },
    )
    .await;

    // A password reset mails a /reset-password link; its page sets the new password.
    let (status, body) = api(
        gw,
        "POST",
        &format!("/console/api/agents/{}/password-reset", agent.id),
        &platform.admin.token,
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert!(body["data"]["attributes"]["expiresAtUs"].as_i64().unwrap() > 0);
    // Listing the outbox hands the link over (mailed_token asserts it is a reset link's token).
    let token = mailed_token(&platform, "wes@example.com", "/reset-password?token=").await;
    let page = http(
        gw,
        "GET",
        &format!("/reset-password?token={token}"),
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = set_cookie(&page, "assist_csrf").expect("a CSRF cookie");
    let csrf_value = csrf.trim_start_matches("assist_csrf=").to_owned();
    let origin = format!("http://{gw}");
    let new_password = "a brand new password";
    let done = http(
        gw,
        "POST",
        "/reset-password",
        &[("cookie", &csrf), FORM, ("origin", &origin)],
        Some(&format!(
            "token={token}&password={p}&confirm={p}&csrf={csrf_value}",
            p = form_value(new_password)
        )),
    )
    .await
    .unwrap();
    assert_eq!(done.status, 200, "{}", done.body);
    let signed = platform
        .identity_client()
        .login(idp::LoginRequest {
            realm: idp::Realm::BackOffice as i32,
            email: "wes@example.com".into(),
            password: new_password.into(),
            client_address: String::new(),
        })
        .await;
    assert!(signed.is_ok(), "the new password works: {signed:?}");
    // An incomplete link gets no form.
    let bare = http(gw, "GET", "/reset-password", &[], None).await.unwrap();
    assert_eq!(bare.status, 400);
    assert!(!bare.body.contains("password-form"));
    stop(platform, gateway).await;
}
