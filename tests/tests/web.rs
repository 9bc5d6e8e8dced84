//! The gateway's pages and its proxy over real HTTP, in front of the demo shop and the real services
//! (SQLite and PostgreSQL): CSRF and same-origin checks, cookie flags, the agent's sign-in kept apart
//! from the assist session, the assist bar, sensitive paths refused while assisting (also when
//! disguised), each forwarded request in the session's audit, and ending a session everywhere. The
//! same journeys in a real browser are in `tests/browser`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use assist_proto::agentdirectory::v1::Capability;
use assist_proto::impersonation::v1 as imp;
use assist_runtime::testing::TestBackend;
use assist_tests::platform::{HttpReply, PASSWORD, Platform, authed, http};

/// One browser: its cookie jar (name → value) and the gateway it talks to.
struct Browser {
    gateway: SocketAddr,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(gateway: SocketAddr) -> Self {
        Self {
            gateway,
            cookies: Vec::new(),
        }
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Keeps the `Set-Cookie`s of an answer as a browser would (`Max-Age=0` removes).
    fn keep(&mut self, reply: &HttpReply) {
        for (name, value) in &reply.headers {
            if name != "set-cookie" {
                continue;
            }
            let pair = value.split(';').next().unwrap_or_default();
            let (cookie, content) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != cookie);
            if !value.contains("Max-Age=0") {
                self.cookies.push((cookie.to_owned(), content.to_owned()));
            }
        }
    }

    async fn get(&mut self, path: &str) -> HttpReply {
        let cookie = self.cookie_header();
        let reply = http(self.gateway, "GET", path, &[("cookie", &cookie)], None)
            .await
            .unwrap();
        self.keep(&reply);
        reply
    }

    /// A form POST from the gateway's own pages (same origin), the CSRF field added.
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> HttpReply {
        let csrf = self.cookie("assist_csrf").unwrap_or_default().to_owned();
        let mut fields = fields.to_vec();
        fields.push(("csrf", &csrf));
        let origin = format!("http://{}", self.gateway);
        self.post_raw(path, &fields, &[("origin", &origin)]).await
    }

    async fn post_raw(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> HttpReply {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let cookie = self.cookie_header();
        let mut headers = vec![
            ("cookie", cookie.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        headers.extend_from_slice(extra);
        let reply = http(self.gateway, "POST", path, &headers, Some(&body))
            .await
            .unwrap();
        self.keep(&reply);
        reply
    }
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn location(reply: &HttpReply) -> &str {
    assert_eq!(reply.status, 303, "{reply:?}");
    reply.header("location").unwrap()
}

/// The session's recorded actions, once at least `count` are there (records are written in the
/// background).
async fn actions(platform: &Platform, session_id: &str, count: usize) -> Vec<imp::Action> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let session = platform
            .impersonation_client(0)
            .get_session(authed(
                &platform.admin.token,
                imp::GetSessionRequest {
                    session_id: session_id.into(),
                    actions: Some(assist_proto::common::v1::PageRequest {
                        limit: 100,
                        offset: 0,
                    }),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        if session.actions.len() >= count || Instant::now() > deadline {
            return session.actions;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_storefront_agent_assists_a_customer_through_the_pages_and_the_proxy() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let (shop, gateway) = platform.start_fronted_shop().await;
        platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let customer = platform.customer("casey@example.com").await;
        let mut agent = Browser::new(gateway.addr);

        // The sign-in page sets the CSRF cookie; a form without it, or from another site, changes
        // nothing.
        let page = agent.get("/agent/login").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("name=\"csrf\""));
        let credentials = [("username", "agent@example.com"), ("password", PASSWORD)];
        let forged = agent.post_raw("/agent/login", &credentials, &[]).await;
        assert_eq!(forged.status, 403, "no CSRF field");
        let csrf = agent.cookie("assist_csrf").unwrap().to_owned();
        let mut with_csrf = credentials.to_vec();
        with_csrf.push(("csrf", &csrf));
        let cross_site = agent
            .post_raw(
                "/agent/login",
                &with_csrf,
                &[("origin", "http://evil.example")],
            )
            .await;
        assert_eq!(cross_site.status, 403, "another site's form");
        assert!(agent.cookie("assist_agent").is_none());

        // A customer's credentials get the one generic message.
        let refused = agent
            .post(
                "/agent/login",
                &[("username", "casey@example.com"), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(refused.status, 401);
        assert!(refused.body.contains("Failed to authenticate an agent."));

        let signed_in = agent.post("/agent/login", &credentials).await;
        assert_eq!(location(&signed_in), "/agent/customers");
        let set_cookie = signed_in.header("set-cookie").unwrap();
        assert!(
            set_cookie.starts_with("assist_agent=")
                && set_cookie.contains("HttpOnly")
                && set_cookie.contains("SameSite=Lax")
                && !set_cookie.contains("Secure"),
            "{set_cookie}"
        );

        // Suggestions from three characters, as "First Last: email".
        let none = agent.get("/agent/customers/suggest?q=ca").await;
        assert_eq!(none.body, "[]");
        let suggested = agent.get("/agent/customers/suggest?q=cas").await;
        let items: serde_json::Value = serde_json::from_str(&suggested.body).unwrap();
        assert_eq!(items[0]["label"], "Casey Customer: casey@example.com");
        let reference = items[0]["customerReference"].as_str().unwrap().to_owned();
        let results = agent.get("/agent/customers?q=casey").await;
        assert!(results.body.contains(&reference), "{}", results.body);

        // Confirm: the session starts and the agent lands on the shop as the customer.
        let confirmed = agent
            .post("/agent/assist", &[("customerReference", &reference)])
            .await;
        assert_eq!(location(&confirmed), "/");
        let sealed = agent.cookie("assist_assist").unwrap().to_owned();
        let session_id = platform
            .impersonation_client(0)
            .list_sessions(authed(
                &platform.admin.token,
                imp::ListSessionsRequest {
                    target_id: customer.id.clone(),
                    active_only: true,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .sessions[0]
            .id
            .clone();
        assert!(
            !sealed.contains(&session_id),
            "the session cookie is sealed: {sealed}"
        );
        let home = agent.get("/").await;
        assert_eq!(home.status, 200);
        assert!(home.body.contains("id=\"assist-bar\""), "{}", home.body);
        assert!(home.body.contains("Customer: Casey Customer"));
        assert!(home.body.contains("End Customer Assistance"));
        let added = agent
            .post("/cart/items", &[("sku", "french-press"), ("quantity", "2")])
            .await;
        assert_eq!(added.status, 303, "{added:?}");
        let cart = agent.get("/cart").await;
        assert!(cart.body.contains("data-sku=\"french-press\""));

        // Sensitive pages are refused, also when the path is disguised; the refusal is audited.
        for path in [
            "/account/password",
            "/Account/Password",
            "/account/p%61ssword",
            "/account/payment-methods/1",
        ] {
            let refused = agent.get(path).await;
            assert_eq!(refused.status, 403, "{path}");
            assert!(refused.body.contains("Not available while assisting"));
            assert!(
                refused.body.contains("End Customer Assistance"),
                "the bar stays"
            );
        }
        for path in ["/account//password", "/account/../account/password"] {
            assert_eq!(agent.get(path).await.status, 400, "{path}");
        }
        let recorded = actions(&platform, &session_id, 7).await;
        let seen: Vec<(String, String, String)> = recorded
            .iter()
            .map(|a| (a.method.clone(), a.target.clone(), a.outcome.clone()))
            .collect();
        assert!(
            seen.contains(&("POST".into(), "/cart/items".into(), "303".into())),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .any(|(m, t, o)| m == "GET" && t == "/account/password" && o != "200"),
            "{seen:?}"
        );

        // Ending returns the agent to the search page, still signed in; the token is dead everywhere.
        let ended = agent.post("/agent/assist/end", &[]).await;
        assert_eq!(location(&ended), "/agent/customers");
        assert!(agent.cookie("assist_assist").is_none());
        assert!(agent.cookie("assist_agent").is_some());
        assert_eq!(agent.get("/agent/customers").await.status, 200);
        // The ended session's cookie, kept by someone, is worth nothing: sent back to search.
        let mut replay = Browser::new(gateway.addr);
        replay
            .cookies
            .push(("assist_assist".into(), sealed.clone()));
        let stale = replay.get("/cart").await;
        assert_eq!(location(&stale), "/agent/customers?ended=1");
        assert!(
            replay.cookie("assist_assist").is_none(),
            "and it is cleared"
        );
        // A forged one is no session at all: the shop sees a guest.
        let mut forged = Browser::new(gateway.addr);
        forged.cookies.push((
            "assist_assist".into(),
            format!("{}x", &sealed[..sealed.len() - 1]),
        ));
        let guest = forged.get("/").await;
        assert_eq!(guest.status, 200);
        assert!(!guest.body.contains("assist-bar"));
        let home = agent.get("/").await;
        assert!(!home.body.contains("assist-bar"));

        // The customer signs in in their own browser and sees what the agent put in the cart; a
        // customer cannot use the agent sign-in.
        let mut own = Browser::new(gateway.addr);
        own.get("/login").await;
        let signed = own
            .post(
                "/login",
                &[("username", &customer.email), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(location(&signed), "/");
        let cart = own.get("/cart").await;
        assert!(
            cart.body.contains("data-sku=\"french-press\""),
            "{}",
            cart.body
        );
        let agent_login = own.get("/agent/login").await;
        assert_eq!(agent_login.status, 403);
        assert!(!agent_login.body.contains("name=\"password\""));
        // The customer's own token may open the sensitive page.
        assert_eq!(own.get("/account/password").await.status, 200);

        gateway.stop().await;
        shop.stop().await;
        platform.stop().await;
    }
}

#[tokio::test]
async fn a_merchant_portal_agent_assists_a_merchant_user_and_logs_out() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let (shop, gateway) = platform.start_fronted_shop().await;
        platform
            .agent("operator@example.com", &[Capability::AssistMerchantUsers])
            .await;
        let user_id = platform.merchant_user("mia@example.com").await;
        let mut agent = Browser::new(gateway.addr);

        // A storefront-only page refuses a merchant-portal agent.
        agent.get("/merchant-portal/agent/login").await;
        let credentials = [("username", "operator@example.com"), ("password", PASSWORD)];
        let refused = agent.post("/agent/login", &credentials).await;
        assert_eq!(refused.status, 401, "not a storefront agent");
        let signed = agent
            .post("/merchant-portal/agent/login", &credentials)
            .await;
        assert_eq!(location(&signed), "/merchant-portal/agent/users");
        assert!(
            signed
                .header("set-cookie")
                .unwrap()
                .contains("Path=/merchant-portal;")
        );

        let table = agent.get("/merchant-portal/agent/users?q=Spryker").await;
        assert_eq!(table.status, 200);
        assert!(
            table.body.contains(&format!("data-user=\"{user_id}\"")),
            "{}",
            table.body
        );
        assert!(table.body.contains("Spryker Shoes"));
        assert!(table.body.contains("Assist User"));
        // A blocked user is listed, but offers no Assist User.
        platform
            .set_status(
                &user_id,
                assist_proto::identity::v1::PrincipalStatus::Blocked,
            )
            .await;
        let blocked = agent.get("/merchant-portal/agent/users?q=Spryker").await;
        assert!(blocked.body.contains("blocked"));
        assert!(!blocked.body.contains("Assist User"));
        platform
            .set_status(
                &user_id,
                assist_proto::identity::v1::PrincipalStatus::Active,
            )
            .await;

        let confirmed = agent
            .post(
                "/merchant-portal/agent/assist",
                &[("merchantUserId", &user_id)],
            )
            .await;
        assert_eq!(location(&confirmed), "/merchant-portal/");
        let home = agent.get("/merchant-portal/").await;
        assert_eq!(home.status, 200, "{home:?}");
        assert!(home.body.contains("User: Mia Merchant"));
        let offers = agent.get("/merchant-portal/offers").await;
        assert_eq!(offers.status, 200, "{offers:?}");
        assert!(offers.body.contains("User: Mia Merchant"));
        assert!(offers.body.contains("Log out Agent"));
        let refused = agent.get("/merchant-portal/password").await;
        assert_eq!(refused.status, 403);

        // Log out Agent ends both the session and the sign-in.
        let out = agent.post("/merchant-portal/agent/logout", &[]).await;
        assert_eq!(location(&out), "/merchant-portal/agent/login");
        assert!(agent.cookie("assist_mp_assist").is_none());
        assert!(agent.cookie("assist_mp_agent").is_none());
        let after = agent.get("/merchant-portal/agent/users").await;
        assert_eq!(location(&after), "/merchant-portal/agent/login");
        let sessions = platform
            .impersonation_client(0)
            .list_sessions(authed(
                &platform.admin.token,
                imp::ListSessionsRequest {
                    target_id: user_id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(sessions.sessions.len(), 1);
        assert!(!sessions.sessions[0].active, "ended by Log out Agent");

        gateway.stop().await;
        shop.stop().await;
        platform.stop().await;
    }
}

/// Every request forwarded while assisting is in the session's audit, whatever its path or method:
/// long ones are recorded cut to the audit's limits (with the marker) and take nothing else of
/// their batch down with them.
#[tokio::test]
async fn every_forwarded_request_is_audited_even_with_a_long_path_or_method() {
    use assist_runtime::audit::{METHOD_MAX, TARGET_MAX, TRUNCATED};
    for backend in TestBackend::all() {
        let name = backend.name();
        let platform = Platform::start(backend, 1, &[]).await;
        let (shop, gateway) = platform.start_fronted_shop().await;
        let agent = platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let customer = platform.customer("casey@example.com").await;
        let started = platform
            .impersonation_client(0)
            .start_assist(authed(
                &agent.token,
                imp::StartAssistRequest {
                    target_id: customer.id.clone(),
                    reason: "customer asked for help with an order".into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let session_id = started.session.unwrap().id;
        let bearer = format!("Bearer {}", started.access_token);
        let origin = format!("http://{}", gateway.addr);
        let long_path = format!("/{}?q=1", "p".repeat(600));
        let long_method = "VERYLONGEXTENSIONMETHOD";
        let mut sent = 0;
        for _ in 0..20 {
            for (method, path) in [
                ("GET", "/cart"),
                ("GET", long_path.as_str()),
                (long_method, "/cart"),
                ("GET", long_path.as_str()),
                ("POST", "/cart"),
            ] {
                let reply = http(
                    gateway.addr,
                    method,
                    path,
                    &[("authorization", &bearer), ("origin", &origin)],
                    None,
                )
                .await
                .unwrap();
                assert!(
                    reply.status != 503 && reply.status != 401,
                    "{method} {}: {}",
                    &path[..20.min(path.len())],
                    reply.status
                );
                sent += 1;
            }
        }
        assert_eq!(sent, 100);
        let recorded = actions(&platform, &session_id, sent).await;
        assert_eq!(recorded.len(), sent, "{name}: every forwarded request");
        let cut_path: Vec<&imp::Action> = recorded
            .iter()
            .filter(|a| a.target.starts_with("/pppp"))
            .collect();
        assert_eq!(cut_path.len(), 40);
        for action in cut_path {
            assert!(action.target.ends_with(TRUNCATED), "{}", action.target);
            assert_eq!(action.target.chars().count(), TARGET_MAX);
        }
        let cut_method = recorded
            .iter()
            .filter(|a| a.method == format!("VERY{TRUNCATED}"))
            .count();
        assert_eq!(cut_method, 20);
        assert!(
            recorded
                .iter()
                .all(|a| a.method.chars().count() <= METHOD_MAX)
        );
        assert_eq!(
            recorded.iter().filter(|a| a.target == "/cart").count(),
            60,
            "the ordinary requests of the same batches"
        );
        gateway.stop().await;
        shop.stop().await;
        platform.stop().await;
    }
}
