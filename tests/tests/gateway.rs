//! The gateway's Glue-compatible agent-assist HTTP API end to end: real HTTP on 127.0.0.1 in front of
//! identity, agent-directory and impersonation-token, on SQLite and on PostgreSQL. Each row of the table
//! in issue 4 (storefront part) has its success and each of its error codes here.

use std::net::SocketAddr;
use std::sync::Arc;

use assist_proto::agentdirectory::v1::Capability;
use assist_proto::identity::v1 as idp;
use assist_runtime::auth::{
    Claims, IdentityJwks, ImpersonationJwks, Realm, TokenVerifier, TrustedIssuer,
};
use assist_runtime::testing::TestBackend;
use assist_tests::platform::{PASSWORD, Platform, Running, authed, http};
use base64::Engine;
use serde_json::{Value, json};

/// Status and JSON body of one call (`Null` for an empty body).
async fn call(
    gateway: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let reply = http(gateway, method, path, headers, body.as_deref())
        .await
        .unwrap();
    let json = if reply.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&reply.body).unwrap_or_else(|_| panic!("not JSON: {}", reply.body))
    };
    (reply.status, json)
}

/// `(status, code, detail)` of an error object.
type ErrorObject = (u16, String, String);

/// Request headers, and what they should be refused with, and why.
type Refusal<'a> = (Vec<(&'a str, &'a str)>, ErrorObject, &'a str);

/// The one error object of an answer.
fn error_of(status: u16, body: &Value) -> ErrorObject {
    let error = &body["errors"][0];
    assert_eq!(
        error["status"],
        status.to_string(),
        "the error object repeats the status: {body}"
    );
    (
        status,
        error["code"].as_str().unwrap_or_default().to_owned(),
        error["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

fn sign_in_body(kind: &str, username: &str, password: &str) -> Value {
    json!({ "data": { "type": kind, "attributes": { "username": username, "password": password } } })
}

async fn agent_sign_in(gateway: SocketAddr, username: &str, password: &str) -> (u16, Value) {
    call(
        gateway,
        "POST",
        "/agent-access-tokens",
        &[],
        Some(sign_in_body("agent-access-tokens", username, password)),
    )
    .await
}

fn failed(code: &str, detail: &str) -> ErrorObject {
    (401, code.to_owned(), detail.to_owned())
}

fn agent_login_failed() -> ErrorObject {
    failed("4101", "Failed to authenticate an agent.")
}

fn agent_only() -> ErrorObject {
    failed("4103", "Action is available to agent user only.")
}

fn impersonation_failed() -> ErrorObject {
    failed("4104", "Failed to impersonate a customer.")
}

fn verifier(platform: &Platform) -> TokenVerifier {
    TokenVerifier::new(
        "agent-assist",
        vec![
            TrustedIssuer {
                issuer: "assist-identity".into(),
                keys: Arc::new(IdentityJwks(platform.identity_client())),
            },
            TrustedIssuer {
                issuer: "assist-impersonation".into(),
                keys: Arc::new(ImpersonationJwks(platform.impersonation_client(0))),
            },
        ],
    )
}

async fn claims_of(platform: &Platform, token: &str) -> Claims {
    verifier(platform).verify(token).await.expect("valid token")
}

/// A customer with the given names; answers their id and reference.
async fn customer(platform: &Platform, email: &str, first: &str, last: &str) -> (String, String) {
    let created = platform
        .identity_client()
        .create_customer(authed(
            &platform.admin.token,
            idp::CreateCustomerRequest {
                email: email.into(),
                first_name: first.into(),
                last_name: last.into(),
                password: PASSWORD.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let reference = match created.kind {
        Some(idp::principal::Kind::Customer(c)) => c.customer_reference,
        other => panic!("not a customer: {other:?}"),
    };
    (created.id, reference)
}

async fn start(backend: TestBackend) -> (Platform, Running) {
    let platform = Platform::start(backend, 1, &[]).await;
    let gateway = platform.start_gateway().await;
    (platform, gateway)
}

async fn stop(platform: Platform, gateway: Running) {
    gateway.stop().await;
    platform.stop().await;
}

#[tokio::test]
async fn agents_sign_in_and_everyone_else_gets_4101() {
    for backend in TestBackend::all() {
        let (platform, gateway) = start(backend).await;
        let gw = gateway.addr;
        let agent = platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;

        let (status, body) = agent_sign_in(gw, "agent@example.com", PASSWORD).await;
        assert_eq!(status, 201, "{body}");
        let data = &body["data"];
        assert_eq!(data["type"], "agent-access-tokens");
        assert_eq!(data["id"], Value::Null);
        let attributes = &data["attributes"];
        assert_eq!(attributes["tokenType"], "Bearer");
        assert!(attributes["expiresIn"].as_i64().unwrap() > 0);
        assert!(!attributes["refreshToken"].as_str().unwrap().is_empty());
        let claims = claims_of(&platform, attributes["accessToken"].as_str().unwrap()).await;
        assert_eq!(
            (claims.sub.as_str(), claims.realm),
            (agent.id.as_str(), Realm::BackOffice)
        );

        platform.agent("plain@example.com", &[]).await;
        platform
            .agent(
                "merchant-agent@example.com",
                &[Capability::AssistMerchantUsers],
            )
            .await;
        let blocked = platform
            .agent("blocked@example.com", &[Capability::AssistCustomers])
            .await;
        platform
            .set_status(&blocked.id, idp::PrincipalStatus::Blocked)
            .await;
        platform.customer("casey@example.com").await;
        for (username, password, why) in [
            ("agent@example.com", "wrong password", "bad password"),
            ("nobody@example.com", PASSWORD, "unknown user"),
            (
                "plain@example.com",
                PASSWORD,
                "back-office user who is no agent",
            ),
            (
                "merchant-agent@example.com",
                PASSWORD,
                "merchant-portal agent only",
            ),
            ("blocked@example.com", PASSWORD, "blocked agent"),
            ("casey@example.com", PASSWORD, "a customer"),
            ("", PASSWORD, "empty username"),
            ("agent@example.com", "", "empty password"),
        ] {
            let (status, body) = agent_sign_in(gw, username, password).await;
            assert_eq!(error_of(status, &body), agent_login_failed(), "{why}");
        }
        for attributes in [
            json!({ "username": "agent@example.com" }),
            json!({}),
            json!(null),
        ] {
            let (status, body) = call(
                gw,
                "POST",
                "/agent-access-tokens",
                &[],
                Some(
                    json!({ "data": { "type": "agent-access-tokens", "attributes": attributes } }),
                ),
            )
            .await;
            assert_eq!(
                error_of(status, &body),
                agent_login_failed(),
                "{attributes}"
            );
        }

        let (status, body) = call(
            gw,
            "POST",
            "/agent-access-tokens",
            &[],
            Some(sign_in_body("access-tokens", "agent@example.com", PASSWORD)),
        )
        .await;
        assert_eq!(
            error_of(status, &body),
            (400, "400".into(), "Invalid type.".into())
        );
        let reply = http(gw, "POST", "/agent-access-tokens", &[], Some("{not json"))
            .await
            .unwrap();
        assert_eq!(reply.status, 400);
        assert_eq!(
            reply.header("content-type"),
            Some("application/vnd.api+json")
        );
        let huge = "x".repeat(70 * 1024);
        let (status, body) = agent_sign_in(gw, "agent@example.com", &huge).await;
        assert_eq!(error_of(status, &body).0, 413, "body limit");

        // Throttling last: it blocks this client address for everyone.
        let mut last = 0;
        for _ in 0..12 {
            let (status, body) = agent_sign_in(gw, "agent@example.com", "still wrong").await;
            last = status;
            if status == 429 {
                assert_eq!(error_of(status, &body).1, "429");
                break;
            }
            assert_eq!(error_of(status, &body), agent_login_failed());
        }
        assert_eq!(last, 429, "repeated failures are throttled");
        stop(platform, gateway).await;
    }
}

async fn agent_token(gw: SocketAddr, email: &str) -> String {
    let (status, body) = agent_sign_in(gw, email, PASSWORD).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["attributes"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn references(body: &Value) -> Vec<String> {
    body["data"][0]["attributes"]["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["customerReference"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn agents_search_customers_with_paging_links() {
    for backend in TestBackend::all() {
        let (platform, gateway) = start(backend).await;
        let gw = gateway.addr;
        let agent = platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let token = agent_token(gw, "agent@example.com").await;
        let bearer = format!("Bearer {token}");
        let (_, ann) = customer(&platform, "ann.lee@example.com", "Ann", "Lee").await;
        let (_, anton) = customer(&platform, "anton@example.com", "Anton", "Berg").await;
        let (_, bob) = customer(&platform, "bob@example.com", "Bob", "Stone").await;

        let (status, body) = call(
            gw,
            "GET",
            "/agent-customer-search",
            &[("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"][0]["type"], "agent-customer-search");
        let mut all = references(&body);
        all.sort();
        let mut expected = vec![ann.clone(), anton.clone(), bob.clone()];
        expected.sort();
        assert_eq!(all, expected, "no q lists every customer");
        let ann_entry = body["data"][0]["attributes"]["customers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["customerReference"] == ann.as_str())
            .unwrap()
            .clone();
        assert_eq!(
            ann_entry,
            json!({ "customerReference": ann, "email": "ann.lee@example.com",
                    "firstName": "Ann", "lastName": "Lee" })
        );
        let links = &body["links"];
        assert_eq!(
            links["self"], "/agent-customer-search?page[offset]=0&page[limit]=10",
            "default limit 10"
        );
        assert!(links.get("next").is_none() && links.get("prev").is_none());

        let (status, body) = call(
            gw,
            "GET",
            "/agent-customer-search?q=an&page[limit]=1",
            &[("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(references(&body).len(), 1);
        let links = &body["links"];
        assert_eq!(
            links["first"],
            "/agent-customer-search?q=an&page[offset]=0&page[limit]=1"
        );
        assert_eq!(
            links["next"],
            "/agent-customer-search?q=an&page[offset]=1&page[limit]=1"
        );
        assert_eq!(
            links["last"],
            "/agent-customer-search?q=an&page[offset]=1&page[limit]=1"
        );
        assert!(links.get("prev").is_none());
        let first = references(&body);
        let (_, body) = call(
            gw,
            "GET",
            "/agent-customer-search?q=an&page%5Boffset%5D=1&page%5Blimit%5D=1",
            &[("authorization", &bearer)],
            None,
        )
        .await;
        let second = references(&body);
        let mut both = [first, second].concat();
        both.sort();
        let mut expected = vec![ann.clone(), anton.clone()];
        expected.sort();
        assert_eq!(both, expected, "the two pages hold both matches");
        assert_eq!(
            body["links"]["prev"],
            "/agent-customer-search?q=an&page[offset]=0&page[limit]=1"
        );
        assert!(body["links"].get("next").is_none());

        for (q, expected) in [
            ("bob%40example.com", &bob),
            ("ann%20lee", &ann),
            (ann.as_str(), &ann),
        ] {
            let (status, body) = call(
                gw,
                "GET",
                &format!("/agent-customer-search?q={q}"),
                &[("authorization", &bearer)],
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(references(&body).first(), Some(expected), "q={q}");
        }

        // The agent's token in X-Agent-Authorization, a customer's in Authorization.
        let casey = platform.customer("casey@example.com").await;
        let customer_bearer = format!("Bearer {}", casey.token);
        let (status, _) = call(
            gw,
            "GET",
            "/agent-customer-search?q=bob",
            &[
                ("authorization", &customer_bearer),
                ("x-agent-authorization", &bearer),
            ],
            None,
        )
        .await;
        assert_eq!(status, 200);

        let plain = platform.agent("plain@example.com", &[]).await;
        let plain_bearer = format!("Bearer {}", plain.token);
        let refusals: Vec<Refusal> = vec![
            (vec![], agent_only(), "no token"),
            (
                vec![("authorization", &customer_bearer)],
                agent_only(),
                "a customer",
            ),
            (
                vec![("authorization", &plain_bearer)],
                agent_only(),
                "not an agent",
            ),
            (
                vec![("x-agent-authorization", &customer_bearer)],
                agent_only(),
                "a customer as agent",
            ),
            (
                vec![("authorization", "Bearer not-a-token")],
                failed("001", "Invalid access token."),
                "bad token",
            ),
            (
                vec![("authorization", "Basic abc")],
                failed("001", "Invalid access token."),
                "not bearer",
            ),
            (
                vec![
                    ("authorization", &bearer),
                    ("x-agent-authorization", "Bearer not-a-token"),
                ],
                failed("4102", "Invalid agent access token."),
                "bad agent header",
            ),
        ];
        for (headers, expected, why) in refusals {
            let (status, body) = call(gw, "GET", "/agent-customer-search", &headers, None).await;
            assert_eq!(error_of(status, &body), expected, "{why}");
        }
        for bad in ["page[limit]=101", "page[offset]=abc", "page[limit]=-1"] {
            let (status, body) = call(
                gw,
                "GET",
                &format!("/agent-customer-search?{bad}"),
                &[("authorization", &bearer)],
                None,
            )
            .await;
            assert_eq!(error_of(status, &body).0, 400, "{bad}");
        }

        // The capability is checked on every call, not only at sign-in.
        platform
            .revoke(&agent.id, Capability::AssistCustomers)
            .await;
        let (status, body) = call(
            gw,
            "GET",
            "/agent-customer-search",
            &[("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(error_of(status, &body), agent_only(), "capability revoked");
        stop(platform, gateway).await;
    }
}

fn impersonation_body(attributes: Value) -> Value {
    json!({ "data": { "type": "agent-customer-impersonation-access-tokens", "attributes": attributes } })
}

#[tokio::test]
async fn agents_impersonate_customers_by_reference_and_end_the_session() {
    for backend in TestBackend::all() {
        let (platform, gateway) = start(backend).await;
        let gw = gateway.addr;
        let agent = platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let token = agent_token(gw, "agent@example.com").await;
        let bearer = format!("Bearer {token}");
        let (casey_id, reference) = customer(&platform, "casey@example.com", "Casey", "Doe").await;

        let (status, body) = call(
            gw,
            "POST",
            "/agent-customer-impersonation-access-tokens",
            &[("authorization", &bearer)],
            Some(impersonation_body(
                json!({ "customerReference": reference }),
            )),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let data = &body["data"];
        assert_eq!(data["type"], "agent-customer-impersonation-access-tokens");
        let attributes = &data["attributes"];
        assert_eq!(attributes["tokenType"], "Bearer");
        assert_eq!(attributes["refreshToken"], Value::Null, "not refreshable");
        assert!(attributes["expiresIn"].as_u64().unwrap() > 0);
        let session_id = data["id"].as_str().unwrap().to_owned();
        let claims = claims_of(&platform, attributes["accessToken"].as_str().unwrap()).await;
        assert_eq!(claims.iss, "assist-impersonation");
        assert_eq!(claims.sub, casey_id, "sub is the customer");
        assert_eq!(claims.realm, Realm::Customer);
        let act = claims.act.expect("act names the agent");
        assert_eq!(
            (act.sub.as_str(), act.realm),
            (agent.id.as_str(), Realm::BackOffice)
        );
        assert_eq!(claims.sid.as_deref(), Some(session_id.as_str()));

        let (status, body) = call(
            gw,
            "GET",
            "/agent-assist-sessions",
            &[("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let session = &body["data"][0];
        assert_eq!(session["type"], "agent-assist-sessions");
        assert_eq!(session["id"], session_id.as_str());
        assert_eq!(session["attributes"]["targetId"], casey_id.as_str());
        assert_eq!(session["attributes"]["active"], true);
        assert_eq!(
            body["links"]["self"],
            "/agent-assist-sessions?page[offset]=0&page[limit]=10"
        );

        let (status, body) = call(
            gw,
            "DELETE",
            &format!("/agent-customer-impersonation-access-tokens/{session_id}"),
            &[("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!((status, body), (204, Value::Null));
        let (_, body) = call(
            gw,
            "GET",
            "/agent-assist-sessions",
            &[("x-agent-authorization", &bearer)],
            None,
        )
        .await;
        let attributes = &body["data"][0]["attributes"];
        assert_eq!(attributes["active"], false);
        assert_eq!(attributes["endReason"], "ended_by_agent");
        let (status, body) = call(
            gw,
            "DELETE",
            "/agent-customer-impersonation-access-tokens/not-a-session",
            &[("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(error_of(status, &body).0, 404);

        // The reference in any case, and the agent's token in X-Agent-Authorization.
        let (status, body) = call(
            gw,
            "POST",
            "/agent-customer-impersonation-access-tokens",
            &[("x-agent-authorization", &bearer)],
            Some(impersonation_body(
                json!({ "customerReference": reference.to_lowercase() }),
            )),
        )
        .await;
        assert_eq!(status, 201, "{body}");

        let (blocked_id, blocked) =
            customer(&platform, "blocked@example.com", "Bo", "Blocked").await;
        platform
            .set_status(&blocked_id, idp::PrincipalStatus::Blocked)
            .await;
        for (attributes, why) in [
            (json!({ "customerReference": "DE--999999" }), "unknown"),
            (json!({ "customerReference": "" }), "empty"),
            (json!({ "customerReference": "   " }), "blank"),
            (json!({ "customerReference": "DE 1; --" }), "malformed"),
            (json!({}), "missing"),
            (json!({ "customerReference": 42 }), "not a string"),
            (json!({ "customerReference": blocked }), "refused target"),
        ] {
            let (status, body) = call(
                gw,
                "POST",
                "/agent-customer-impersonation-access-tokens",
                &[("authorization", &bearer)],
                Some(impersonation_body(attributes)),
            )
            .await;
            assert_eq!(error_of(status, &body), impersonation_failed(), "{why}");
        }
        let (status, body) = call(
            gw,
            "POST",
            "/agent-customer-impersonation-access-tokens",
            &[("authorization", &bearer)],
            Some(json!({ "data": { "type": "access-tokens",
                                    "attributes": { "customerReference": reference } } })),
        )
        .await;
        assert_eq!(
            error_of(status, &body),
            (400, "400".into(), "Invalid type.".into())
        );
        let casey = platform.customer("casey2@example.com").await;
        for headers in [
            vec![],
            vec![("authorization", format!("Bearer {}", casey.token))],
        ] {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let (status, body) = call(
                gw,
                "POST",
                "/agent-customer-impersonation-access-tokens",
                &headers,
                Some(impersonation_body(
                    json!({ "customerReference": reference }),
                )),
            )
            .await;
            assert_eq!(error_of(status, &body), agent_only());
        }
        stop(platform, gateway).await;
    }
}

async fn refresh(gw: SocketAddr, token: &str) -> (u16, Value) {
    call(
        gw,
        "POST",
        "/refresh-tokens",
        &[],
        Some(json!({ "data": { "type": "refresh-tokens", "attributes": { "refreshToken": token } } })),
    )
    .await
}

async fn customer_sign_in(gw: SocketAddr, email: &str) -> (String, String) {
    let (status, body) = call(
        gw,
        "POST",
        "/access-tokens",
        &[],
        Some(sign_in_body("access-tokens", email, PASSWORD)),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let attributes = &body["data"]["attributes"];
    (
        attributes["accessToken"].as_str().unwrap().to_owned(),
        attributes["refreshToken"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn customers_sign_in_refresh_and_revoke() {
    for backend in TestBackend::all() {
        let (platform, gateway) = start(backend).await;
        let gw = gateway.addr;
        let casey = platform.customer("casey@example.com").await;

        let (status, body) = call(
            gw,
            "POST",
            "/access-tokens",
            &[],
            Some(sign_in_body("access-tokens", "casey@example.com", PASSWORD)),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["data"]["type"], "access-tokens");
        let attributes = &body["data"]["attributes"];
        assert_eq!(attributes["tokenType"], "Bearer");
        let claims = claims_of(&platform, attributes["accessToken"].as_str().unwrap()).await;
        assert_eq!(
            (claims.sub.as_str(), claims.realm),
            (casey.id.as_str(), Realm::Customer)
        );
        let first_refresh = attributes["refreshToken"].as_str().unwrap().to_owned();

        platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        for (username, password, why) in [
            ("casey@example.com", "wrong password", "bad password"),
            ("agent@example.com", PASSWORD, "not a customer"),
            ("", PASSWORD, "empty username"),
        ] {
            let (status, body) = call(
                gw,
                "POST",
                "/access-tokens",
                &[],
                Some(sign_in_body("access-tokens", username, password)),
            )
            .await;
            assert_eq!(
                error_of(status, &body),
                failed("003", "Failed to authenticate user."),
                "{why}"
            );
        }
        let (status, body) = call(
            gw,
            "POST",
            "/access-tokens",
            &[],
            Some(sign_in_body(
                "agent-access-tokens",
                "casey@example.com",
                PASSWORD,
            )),
        )
        .await;
        assert_eq!(error_of(status, &body).2, "Invalid type.");

        // Refresh rotates; presenting the spent token fails with 004.
        let (status, body) = refresh(gw, &first_refresh).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["data"]["type"], "refresh-tokens");
        let second = body["data"]["attributes"]["refreshToken"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_ne!(second, first_refresh);
        let refresh_failed = failed("004", "Failed to refresh token.");
        let (status, body) = refresh(gw, &first_refresh).await;
        assert_eq!(error_of(status, &body), refresh_failed, "spent token");
        for attributes in [json!({}), json!({ "refreshToken": "" })] {
            let (status, body) = call(
                gw,
                "POST",
                "/refresh-tokens",
                &[],
                Some(json!({ "data": { "type": "refresh-tokens", "attributes": attributes } })),
            )
            .await;
            assert_eq!(error_of(status, &body).1, "901", "{attributes}");
        }

        // DELETE one token.
        let (_, third) = customer_sign_in(gw, "casey@example.com").await;
        let (status, _) = call(gw, "DELETE", &format!("/refresh-tokens/{third}"), &[], None).await;
        assert_eq!(status, 204);
        let (status, body) = refresh(gw, &third).await;
        assert_eq!(error_of(status, &body), refresh_failed, "revoked token");

        // DELETE mine: every token of the caller.
        let (access, fourth) = customer_sign_in(gw, "casey@example.com").await;
        let (_, fifth) = customer_sign_in(gw, "casey@example.com").await;
        let (status, body) = call(gw, "DELETE", "/refresh-tokens/mine", &[], None).await;
        assert_eq!(
            error_of(status, &body),
            (403, "002".into(), "Missing access token.".into())
        );
        let (status, body) = call(
            gw,
            "DELETE",
            "/refresh-tokens/mine",
            &[("authorization", "Bearer forged")],
            None,
        )
        .await;
        assert_eq!(
            error_of(status, &body),
            failed("001", "Invalid access token.")
        );
        let (status, _) = call(
            gw,
            "DELETE",
            "/refresh-tokens/mine",
            &[("authorization", &format!("Bearer {access}"))],
            None,
        )
        .await;
        assert_eq!(status, 204);
        for token in [fourth, fifth] {
            let (status, body) = refresh(gw, &token).await;
            assert_eq!(error_of(status, &body), refresh_failed, "revoked by mine");
        }
        stop(platform, gateway).await;
    }
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: Value = serde_json::from_slice(&bytes).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn jwks_holds_both_issuers_keys_and_the_gateway_stops_cleanly() {
    for backend in TestBackend::all() {
        let (platform, gateway) = start(backend).await;
        let gw = gateway.addr;
        platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let token = agent_token(gw, "agent@example.com").await;
        let (reference_id, reference) =
            customer(&platform, "casey@example.com", "Casey", "Doe").await;
        let (status, body) = call(
            gw,
            "POST",
            "/agent-customer-impersonation-access-tokens",
            &[("authorization", &format!("Bearer {token}"))],
            Some(impersonation_body(
                json!({ "customerReference": reference }),
            )),
        )
        .await;
        assert_eq!(status, 201, "{body} {reference_id}");
        let impersonation_token = body["data"]["attributes"]["accessToken"].as_str().unwrap();

        let reply = http(gw, "GET", "/.well-known/jwks.json", &[], None)
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        let jwks: Value = serde_json::from_str(&reply.body).unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                assert_eq!(
                    (k["kty"].as_str(), k["crv"].as_str()),
                    (Some("OKP"), Some("Ed25519"))
                );
                k["kid"].as_str().unwrap()
            })
            .collect();
        assert!(kids.contains(&kid_of(&token).as_str()), "identity's key");
        assert!(
            kids.contains(&kid_of(impersonation_token).as_str()),
            "impersonation's key"
        );

        let (status, body) = call(gw, "GET", "/healthz", &[], None).await;
        assert_eq!((status, body), (200, json!({ "status": "serving" })));
        let (status, body) = call(gw, "GET", "/no-such-route", &[], None).await;
        assert_eq!(error_of(status, &body).0, 404);

        gateway.stop().await;
        assert!(
            http(gw, "GET", "/healthz", &[], None).await.is_err(),
            "stopped: no longer listening"
        );
        platform.stop().await;
    }
}

// The merchant portal: the same set under `/merchant-portal/`, for merchant-portal agents.

const MP_SIGN_IN: &str = "/merchant-portal/agent-access-tokens";
const MP_SEARCH: &str = "/merchant-portal/agent-merchant-user-search";
const MP_IMPERSONATION: &str = "/merchant-portal/agent-merchant-user-impersonation-access-tokens";

fn merchant_impersonation_failed() -> ErrorObject {
    failed("4104", "Failed to impersonate a merchant user.")
}

async fn merchant_agent_sign_in(gw: SocketAddr, username: &str, password: &str) -> (u16, Value) {
    call(
        gw,
        "POST",
        MP_SIGN_IN,
        &[],
        Some(sign_in_body("agent-access-tokens", username, password)),
    )
    .await
}

async fn merchant_agent_token(gw: SocketAddr, email: &str) -> String {
    let (status, body) = merchant_agent_sign_in(gw, email, PASSWORD).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["attributes"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A merchant user of `merchant`; answers their id.
async fn merchant_user(
    platform: &Platform,
    merchant: &str,
    approval: idp::MerchantApproval,
    email: &str,
    first: &str,
    last: &str,
) -> String {
    platform
        .identity_client()
        .create_merchant_user(authed(
            &platform.admin.token,
            idp::CreateMerchantUserRequest {
                merchant_id: merchant.to_lowercase().replace(' ', "-"),
                merchant_name: merchant.into(),
                merchant_approval: approval as i32,
                email: email.into(),
                first_name: first.into(),
                last_name: last.into(),
                password: PASSWORD.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .id
}

#[tokio::test]
async fn merchant_portal_agents_sign_in_and_each_portal_refuses_the_others_agents() {
    for backend in TestBackend::all() {
        let (platform, gateway) = start(backend).await;
        let gw = gateway.addr;
        let merchant_agent = platform
            .agent("mp-agent@example.com", &[Capability::AssistMerchantUsers])
            .await;
        platform
            .agent("shop-agent@example.com", &[Capability::AssistCustomers])
            .await;
        platform
            .agent(
                "both@example.com",
                &[Capability::AssistCustomers, Capability::AssistMerchantUsers],
            )
            .await;
        platform.agent("plain@example.com", &[]).await;
        platform.customer("casey@example.com").await;

        let (status, body) = merchant_agent_sign_in(gw, "mp-agent@example.com", PASSWORD).await;
        assert_eq!(status, 201, "{body}");
        let data = &body["data"];
        assert_eq!(data["type"], "agent-access-tokens");
        assert_eq!(data["id"], Value::Null);
        assert_eq!(data["links"]["self"], MP_SIGN_IN);
        let attributes = &data["attributes"];
        assert_eq!(attributes["tokenType"], "Bearer");
        assert!(!attributes["refreshToken"].as_str().unwrap().is_empty());
        let claims = claims_of(&platform, attributes["accessToken"].as_str().unwrap()).await;
        assert_eq!(
            (claims.sub.as_str(), claims.realm),
            (merchant_agent.id.as_str(), Realm::BackOffice)
        );
        merchant_agent_token(gw, "both@example.com").await;
        agent_token(gw, "both@example.com").await;

        for (username, password, why) in [
            ("shop-agent@example.com", PASSWORD, "storefront agent only"),
            ("plain@example.com", PASSWORD, "no agent"),
            ("casey@example.com", PASSWORD, "a customer"),
            ("mp-agent@example.com", "wrong password", "bad password"),
            ("", PASSWORD, "empty username"),
        ] {
            let (status, body) = merchant_agent_sign_in(gw, username, password).await;
            assert_eq!(error_of(status, &body), agent_login_failed(), "{why}");
        }
        let (status, body) = agent_sign_in(gw, "mp-agent@example.com", PASSWORD).await;
        assert_eq!(
            error_of(status, &body),
            agent_login_failed(),
            "a merchant-portal agent on the storefront"
        );
        let (status, body) = call(
            gw,
            "POST",
            MP_SIGN_IN,
            &[],
            Some(sign_in_body(
                "access-tokens",
                "mp-agent@example.com",
                PASSWORD,
            )),
        )
        .await;
        assert_eq!(
            error_of(status, &body),
            (400, "400".into(), "Invalid type.".into())
        );

        // Each portal's routes refuse the other portal's agents, whose tokens are valid.
        let merchant_bearer = format!(
            "Bearer {}",
            merchant_agent_token(gw, "mp-agent@example.com").await
        );
        let shop_bearer = format!("Bearer {}", agent_token(gw, "shop-agent@example.com").await);
        let (status, body) = call(
            gw,
            "GET",
            "/agent-customer-search",
            &[("authorization", &merchant_bearer)],
            None,
        )
        .await;
        assert_eq!(
            error_of(status, &body),
            agent_only(),
            "merchant agent in the shop"
        );
        let (status, body) = call(
            gw,
            "GET",
            MP_SEARCH,
            &[("authorization", &shop_bearer)],
            None,
        )
        .await;
        assert_eq!(
            error_of(status, &body),
            agent_only(),
            "shop agent in the portal"
        );
        stop(platform, gateway).await;
    }
}

fn merchant_user_ids(body: &Value) -> Vec<String> {
    body["data"][0]["attributes"]["merchantUsers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["merchantUserId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn merchant_portal_agents_search_merchant_users_with_paging_links() {
    for backend in TestBackend::all() {
        let (platform, gateway) = start(backend).await;
        let gw = gateway.addr;
        platform
            .agent("mp-agent@example.com", &[Capability::AssistMerchantUsers])
            .await;
        let bearer = format!(
            "Bearer {}",
            merchant_agent_token(gw, "mp-agent@example.com").await
        );
        let waiting = idp::MerchantApproval::Waiting;
        let approved = idp::MerchantApproval::Approved;
        let mia = merchant_user(
            &platform,
            "Spryker Shoes",
            waiting,
            "mia@shoes.example",
            "Mia",
            "Moss",
        )
        .await;
        let sam = merchant_user(
            &platform,
            "Spryker Socks",
            approved,
            "sam@socks.example",
            "Sam",
            "Stone",
        )
        .await;
        let olga = merchant_user(
            &platform,
            "Office Goods",
            approved,
            "olga@office.example",
            "Olga",
            "Nord",
        )
        .await;
        platform
            .set_status(&olga, idp::PrincipalStatus::Blocked)
            .await;

        let (status, body) = call(gw, "GET", MP_SEARCH, &[("authorization", &bearer)], None).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"][0]["type"], "agent-merchant-user-search");
        let mut all = merchant_user_ids(&body);
        all.sort();
        let mut expected = vec![mia.clone(), sam.clone(), olga.clone()];
        expected.sort();
        assert_eq!(all, expected, "no q lists every merchant user");
        let entry = |id: &str| {
            body["data"][0]["attributes"]["merchantUsers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["merchantUserId"] == id)
                .unwrap()
                .clone()
        };
        assert_eq!(
            entry(&mia),
            json!({ "merchantUserId": mia, "merchantName": "Spryker Shoes", "firstName": "Mia",
                    "lastName": "Moss", "email": "mia@shoes.example", "status": "active" })
        );
        assert_eq!(entry(&olga)["status"], "blocked", "status shown");
        assert_eq!(
            body["links"]["self"],
            format!("{MP_SEARCH}?page[offset]=0&page[limit]=10"),
            "default limit 10"
        );
        assert!(body["links"].get("next").is_none() && body["links"].get("prev").is_none());

        for (q, expected, why) in [
            ("spryker%20sh", vec![&mia], "merchant name"),
            ("sam", vec![&sam], "first name"),
            ("nord", vec![&olga], "last name"),
            ("mia%40shoes.example", vec![&mia], "email"),
        ] {
            let (status, body) = call(
                gw,
                "GET",
                &format!("{MP_SEARCH}?q={q}"),
                &[("x-agent-authorization", &bearer)],
                None,
            )
            .await;
            assert_eq!(status, 200, "{body}");
            let expected: Vec<String> = expected.into_iter().cloned().collect();
            assert_eq!(merchant_user_ids(&body), expected, "{why}");
        }

        let (status, body) = call(
            gw,
            "GET",
            &format!("{MP_SEARCH}?q=spryker&page[limit]=1"),
            &[("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let first = merchant_user_ids(&body);
        assert_eq!(first.len(), 1);
        let links = &body["links"];
        assert_eq!(
            links["first"],
            format!("{MP_SEARCH}?q=spryker&page[offset]=0&page[limit]=1")
        );
        assert_eq!(
            links["next"],
            format!("{MP_SEARCH}?q=spryker&page[offset]=1&page[limit]=1")
        );
        assert_eq!(
            links["last"],
            format!("{MP_SEARCH}?q=spryker&page[offset]=1&page[limit]=1")
        );
        assert!(links.get("prev").is_none());
        let (_, body) = call(
            gw,
            "GET",
            &format!("{MP_SEARCH}?q=spryker&page[offset]=1&page[limit]=1"),
            &[("authorization", &bearer)],
            None,
        )
        .await;
        let mut both = [first, merchant_user_ids(&body)].concat();
        both.sort();
        let mut expected = vec![mia.clone(), sam.clone()];
        expected.sort();
        assert_eq!(both, expected, "the two pages hold both matches");
        assert_eq!(
            body["links"]["prev"],
            format!("{MP_SEARCH}?q=spryker&page[offset]=0&page[limit]=1")
        );
        assert!(body["links"].get("next").is_none());

        let casey = platform.customer("casey@example.com").await;
        let customer_bearer = format!("Bearer {}", casey.token);
        let refusals: Vec<Refusal> = vec![
            (vec![], agent_only(), "no token"),
            (
                vec![("authorization", &customer_bearer)],
                agent_only(),
                "a customer",
            ),
            (
                vec![("authorization", "Bearer not-a-token")],
                failed("001", "Invalid access token."),
                "bad token",
            ),
            (
                vec![
                    ("authorization", &bearer),
                    ("x-agent-authorization", "Bearer not-a-token"),
                ],
                failed("4102", "Invalid agent access token."),
                "bad agent header",
            ),
        ];
        for (headers, expected, why) in refusals {
            let (status, body) = call(gw, "GET", MP_SEARCH, &headers, None).await;
            assert_eq!(error_of(status, &body), expected, "{why}");
        }
        for bad in ["page[limit]=101", "page[offset]=abc"] {
            let (status, body) = call(
                gw,
                "GET",
                &format!("{MP_SEARCH}?{bad}"),
                &[("authorization", &bearer)],
                None,
            )
            .await;
            assert_eq!(error_of(status, &body).0, 400, "{bad}");
        }
        stop(platform, gateway).await;
    }
}

fn merchant_impersonation_body(attributes: Value) -> Value {
    json!({ "data": { "type": "agent-merchant-user-impersonation-access-tokens", "attributes": attributes } })
}

#[tokio::test]
async fn merchant_portal_agents_impersonate_merchant_users_and_end_the_session() {
    for backend in TestBackend::all() {
        let (platform, gateway) = start(backend).await;
        let gw = gateway.addr;
        let agent = platform
            .agent(
                "both@example.com",
                &[Capability::AssistCustomers, Capability::AssistMerchantUsers],
            )
            .await;
        platform
            .agent("shop-agent@example.com", &[Capability::AssistCustomers])
            .await;
        let bearer = format!(
            "Bearer {}",
            merchant_agent_token(gw, "both@example.com").await
        );
        // The merchant still awaits approval: its users cannot sign in, but may be assisted.
        let mia = platform.merchant_user("mia@shoes.example").await;

        let (status, body) = call(
            gw,
            "POST",
            MP_IMPERSONATION,
            &[("authorization", &bearer)],
            Some(merchant_impersonation_body(
                json!({ "merchantUserId": mia }),
            )),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let data = &body["data"];
        assert_eq!(
            data["type"],
            "agent-merchant-user-impersonation-access-tokens"
        );
        assert_eq!(data["links"]["self"], MP_IMPERSONATION);
        let attributes = &data["attributes"];
        assert_eq!(attributes["tokenType"], "Bearer");
        assert_eq!(attributes["refreshToken"], Value::Null, "not refreshable");
        assert!(attributes["expiresIn"].as_u64().unwrap() > 0);
        let session_id = data["id"].as_str().unwrap().to_owned();
        let claims = claims_of(&platform, attributes["accessToken"].as_str().unwrap()).await;
        assert_eq!(claims.iss, "assist-impersonation");
        assert_eq!(claims.sub, mia, "sub is the merchant user");
        assert_eq!(claims.realm, Realm::MerchantUser);
        let act = claims.act.expect("act names the agent");
        assert_eq!(
            (act.sub.as_str(), act.realm),
            (agent.id.as_str(), Realm::BackOffice)
        );
        assert_eq!(claims.sid.as_deref(), Some(session_id.as_str()));

        // Only a merchant-portal agent ends it here.
        let shop_bearer = format!("Bearer {}", agent_token(gw, "shop-agent@example.com").await);
        let end = format!("{MP_IMPERSONATION}/{session_id}");
        let (status, body) =
            call(gw, "DELETE", &end, &[("authorization", &shop_bearer)], None).await;
        assert_eq!(error_of(status, &body), agent_only());
        let (status, body) = call(gw, "DELETE", &end, &[], None).await;
        assert_eq!(error_of(status, &body), agent_only());
        let (status, body) = call(gw, "DELETE", &end, &[("authorization", &bearer)], None).await;
        assert_eq!((status, body), (204, Value::Null));
        let (status, body) = call(
            gw,
            "GET",
            "/agent-assist-sessions",
            &[(
                "authorization",
                &format!("Bearer {}", agent_token(gw, "both@example.com").await),
            )],
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let session = &body["data"][0];
        assert_eq!(session["id"], session_id.as_str());
        assert_eq!(session["attributes"]["targetRealm"], "merchant_user");
        assert_eq!(session["attributes"]["endReason"], "ended_by_agent");
        // The merchant portal lists them too, for its agents only, with links under its prefix.
        let (status, body) = call(
            gw,
            "GET",
            "/merchant-portal/agent-assist-sessions?page[limit]=5",
            &[("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"][0]["id"], session_id.as_str());
        assert_eq!(
            body["links"]["self"],
            "/merchant-portal/agent-assist-sessions?page[offset]=0&page[limit]=5"
        );
        let (status, body) = call(
            gw,
            "GET",
            "/merchant-portal/agent-assist-sessions",
            &[("authorization", &shop_bearer)],
            None,
        )
        .await;
        assert_eq!(error_of(status, &body), agent_only());
        let (status, body) = call(
            gw,
            "DELETE",
            &format!("{MP_IMPERSONATION}/not-a-session"),
            &[("authorization", &bearer)],
            None,
        )
        .await;
        assert_eq!(error_of(status, &body).0, 404);

        // A customer is no merchant user, even for an agent who may assist customers too.
        let (casey, _) = customer(&platform, "casey@example.com", "Casey", "Doe").await;
        let sam = merchant_user(
            &platform,
            "Spryker Socks",
            idp::MerchantApproval::Approved,
            "sam@socks.example",
            "Sam",
            "Stone",
        )
        .await;
        platform
            .set_status(&sam, idp::PrincipalStatus::Blocked)
            .await;
        for (attributes, why) in [
            (
                json!({ "merchantUserId": "0190a5d2-0000-7000-8000-000000000000" }),
                "unknown",
            ),
            (json!({ "merchantUserId": "" }), "empty"),
            (json!({ "merchantUserId": "not a uuid" }), "malformed"),
            (json!({}), "missing"),
            (json!({ "merchantUserId": 42 }), "not a string"),
            (json!({ "merchantUserId": casey }), "a customer"),
            (json!({ "merchantUserId": agent.id }), "a back-office user"),
            (json!({ "merchantUserId": sam }), "refused target"),
        ] {
            let (status, body) = call(
                gw,
                "POST",
                MP_IMPERSONATION,
                &[("authorization", &bearer)],
                Some(merchant_impersonation_body(attributes)),
            )
            .await;
            assert_eq!(
                error_of(status, &body),
                merchant_impersonation_failed(),
                "{why}"
            );
        }
        let (status, body) = call(
            gw,
            "POST",
            MP_IMPERSONATION,
            &[("authorization", &bearer)],
            Some(impersonation_body(json!({ "merchantUserId": mia }))),
        )
        .await;
        assert_eq!(
            error_of(status, &body),
            (400, "400".into(), "Invalid type.".into())
        );
        for headers in [vec![], vec![("authorization", shop_bearer.as_str())]] {
            let (status, body) = call(
                gw,
                "POST",
                MP_IMPERSONATION,
                &headers,
                Some(merchant_impersonation_body(
                    json!({ "merchantUserId": mia }),
                )),
            )
            .await;
            assert_eq!(error_of(status, &body), agent_only());
        }
        stop(platform, gateway).await;
    }
}

#[tokio::test]
async fn openapi_describes_every_route_the_router_serves() {
    let (platform, gateway) = start(TestBackend::Sqlite).await;
    let gw = gateway.addr;
    let reply = http(gw, "GET", "/openapi.json", &[], None).await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let document: Value = serde_json::from_str(&reply.body).expect("the document is JSON");
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();

    let served = assist_gateway::routes::served();
    for (path, method) in &served {
        let operation = &paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"))[method.as_str().to_lowercase()];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let responses = operation["responses"].as_object().unwrap();
        assert!(!responses.is_empty(), "{method} {path} has responses");
        // Error examples match the status they are filed under.
        for (status, response) in responses {
            let examples = &response["content"]["application/vnd.api+json"]["examples"];
            for example in examples.as_object().into_iter().flat_map(|e| e.values()) {
                assert_eq!(
                    &example["value"]["errors"][0]["status"], status,
                    "{method} {path}"
                );
            }
        }
        // Every path template parameter is described.
        for name in path.split('/').filter_map(|s| s.strip_prefix('{')) {
            let name = name.trim_end_matches('}');
            let described = operation["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["in"] == "path" && p["name"] == name);
            assert!(described, "{method} {path}: parameter {name}");
        }
    }
    // Nothing is documented that is not served.
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            assert!(
                served
                    .iter()
                    .any(|(p, m)| p == path && m.as_str().eq_ignore_ascii_case(method)),
                "{method} {path} is documented but not served"
            );
        }
    }
    for expected in [
        "/merchant-portal/agent-access-tokens",
        "/merchant-portal/agent-merchant-user-search",
        "/merchant-portal/agent-merchant-user-impersonation-access-tokens/{sessionId}",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(expected), "{expected}");
    }
    let codes = serde_json::to_string(
        &paths["/merchant-portal/agent-merchant-user-impersonation-access-tokens"]["post"]["responses"]
            ["401"],
    )
    .unwrap();
    assert!(
        codes.contains("Failed to impersonate a merchant user."),
        "{codes}"
    );
    stop(platform, gateway).await;
}

/// One customer sign-in through the gateway from client `address` (sent as `X-Forwarded-For`, which
/// this gateway trusts): its status.
async fn sign_in_from(gateway: SocketAddr, address: &str, username: &str, password: &str) -> u16 {
    call(
        gateway,
        "POST",
        "/access-tokens",
        &[("x-forwarded-for", address)],
        Some(sign_in_body("access-tokens", username, password)),
    )
    .await
    .0
}

#[tokio::test]
async fn a_strangers_failed_sign_ins_block_that_stranger_only() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let customer = "casey-throttle@example.com";
        platform.customer(customer).await;
        let gateway = platform
            .start_gateway_with(&["--trust-forwarded-for".to_owned()])
            .await;
        let gw = gateway.addr;
        let stranger = "203.0.113.7";
        for n in 0..10 {
            let email = format!("nobody-{n}@example.com");
            let status = sign_in_from(gw, stranger, &email, "wrong password 1").await;
            assert!(status == 401 || status == 429, "{status}");
        }
        // Another client signs in as ever: the gateway passes each client's own address.
        assert_eq!(
            sign_in_from(gw, "198.51.100.9", customer, PASSWORD).await,
            201,
            "a stranger's failures must not block another client"
        );
        // The stranger is blocked, even with good credentials.
        assert_eq!(sign_in_from(gw, stranger, customer, PASSWORD).await, 429);
        // A named account failing from one address is blocked for that address only.
        let guesser = "203.0.113.8";
        for _ in 0..9 {
            sign_in_from(gw, guesser, customer, "wrong password 1").await;
        }
        assert_eq!(sign_in_from(gw, guesser, customer, PASSWORD).await, 429);
        assert_eq!(
            sign_in_from(gw, "198.51.100.10", customer, PASSWORD).await,
            201,
            "a stranger cannot lock a named account out for everyone"
        );
        stop(platform, gateway).await;
    }
}
