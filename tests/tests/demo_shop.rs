//! The demo shop end to end: real HTTP to the shop on 127.0.0.1 in front of identity and
//! impersonation-token, on SQLite and on PostgreSQL. Guests, customers, an agent assisting a customer
//! (same cart, sensitive pages refused, the token dead once the session ends), merchant users and the
//! input checks.

use std::time::{Duration, Instant};

use assist_proto::agentdirectory::v1::Capability;
use assist_proto::impersonation::v1 as pb;
use assist_runtime::testing::TestBackend;
use assist_tests::platform::{HttpReply, Platform, Running, Signed, authed, http};

/// The demo shop of a platform, and the requests the tests make to it.
struct Shop(Running);

/// Content type of the forms the tests post.
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

impl Shop {
    async fn start(platform: &Platform) -> Self {
        Self(platform.start_demo_shop().await)
    }

    async fn stop(self) {
        self.0.stop().await;
    }

    /// `GET path` with `token` (none for a guest).
    async fn get(&self, path: &str, token: Option<&str>) -> HttpReply {
        self.send("GET", path, token, &[], None).await
    }

    /// `POST path` of a form (`name=value&…`, already encoded) with `token`.
    async fn post(&self, path: &str, token: Option<&str>, form: &str) -> HttpReply {
        self.send("POST", path, token, &[], Some(form)).await
    }

    /// One request; a body is sent as an HTML form.
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        extra: &[(&str, &str)],
        form: Option<&str>,
    ) -> HttpReply {
        let authorization = token.map(|token| format!("Bearer {token}"));
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(value) = &authorization {
            headers.push(("authorization", value));
        }
        if form.is_some() {
            headers.push(FORM);
        }
        http(self.0.addr, method, path, &headers, form)
            .await
            .unwrap()
    }
}

/// Asserts a 303 back to `location`.
fn redirected(reply: &HttpReply, location: &str) {
    assert_eq!(reply.status, 303, "{}", reply.body);
    assert_eq!(reply.header("location"), Some(location));
}

fn whoami(reply: &HttpReply) -> &str {
    let start =
        reply.body.find("<span id=\"whoami\">").expect("a #whoami") + "<span id=\"whoami\">".len();
    let end = start + reply.body[start..].find("</span>").unwrap();
    &reply.body[start..end]
}

/// The `tr[data-sku]` rows of a cart page as (sku, quantity).
fn cart_rows(reply: &HttpReply) -> Vec<(String, u32)> {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .body
        .split("<tr data-sku=\"")
        .skip(1)
        .map(|row| {
            let (sku, rest) = row.split_once('"').unwrap();
            let quantity = rest
                .split("<td class=\"quantity\">")
                .nth(1)
                .and_then(|q| q.split('<').next())
                .unwrap()
                .parse()
                .unwrap();
            (sku.to_owned(), quantity)
        })
        .collect()
}

fn rows(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    pairs.iter().map(|(s, q)| (s.to_string(), *q)).collect()
}

/// Starts an assist session of `agent` for `target`; answers the token and the session id.
async fn assist(platform: &Platform, agent: &Signed, target: &str) -> (String, String) {
    let started = platform
        .impersonation_client(0)
        .start_assist(authed(
            &agent.token,
            pb::StartAssistRequest {
                target_id: target.into(),
                reason: "customer asked for help with an order".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    (started.access_token, started.session.unwrap().id)
}

#[tokio::test]
async fn guests_customers_and_assisting_agents_share_the_shop() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let shop = Shop::start(&platform).await;

        // A guest: the catalogue, and a cart in a cookie.
        let home = shop.get("/", None).await;
        assert_eq!(home.status, 200);
        assert_eq!(whoami(&home), "Guest");
        assert!(home.body.contains("<h1>Demo shop</h1>"));
        assert!(home.body.contains("<body>"));
        assert!(
            home.body
                .contains(r#"class="product" data-sku="espresso-cup""#)
        );
        assert!(home.body.contains("Add to cart"));
        let added = shop
            .post("/cart/items", None, "sku=espresso-cup&quantity=2")
            .await;
        redirected(&added, "/cart");
        let cookie = added.header("set-cookie").unwrap();
        assert!(cookie.starts_with("demo_cart=espresso-cup:2;"), "{cookie}");
        let cookie = cookie.split(';').next().unwrap();
        let guest_cart = shop
            .send("GET", "/cart", None, &[("cookie", cookie)], None)
            .await;
        assert_eq!(cart_rows(&guest_cart), rows(&[("espresso-cup", 2)]));
        for garbage in ["demo_cart=espresso-cup:500", "demo_cart=<b>", "demo_cart="] {
            let cart = shop
                .send("GET", "/cart", None, &[("cookie", garbage)], None)
                .await;
            assert!(cart.body.contains("id=\"cart-empty\""), "{garbage}");
        }
        assert_eq!(shop.get("/account", None).await.status, 401);

        // A customer: their name, and a cart the shop keeps.
        let customer = platform.customer("casey@example.com").await;
        let own = Some(customer.token.as_str());
        assert_eq!(whoami(&shop.get("/", own).await), "Casey Customer");
        assert!(
            shop.get("/cart", own)
                .await
                .body
                .contains("id=\"cart-empty\"")
        );
        let added = shop
            .post("/cart/items", own, "sku=french-press&quantity=1")
            .await;
        redirected(&added, "/cart");
        assert_eq!(added.header("set-cookie"), None);
        assert_eq!(
            cart_rows(&shop.get("/cart", own).await),
            rows(&[("french-press", 1)])
        );

        // An agent assisting them sees and edits the same cart.
        let agent = platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let (assisting, session) = assist(&platform, &agent, &customer.id).await;
        let assisting = Some(assisting.as_str());
        assert_eq!(whoami(&shop.get("/", assisting).await), "Casey Customer");
        assert_eq!(
            cart_rows(&shop.get("/cart", assisting).await),
            rows(&[("french-press", 1)])
        );
        redirected(
            &shop
                .post("/cart/items", assisting, "sku=travel-mug&quantity=3")
                .await,
            "/cart",
        );
        let both = rows(&[("french-press", 1), ("travel-mug", 3)]);
        assert_eq!(cart_rows(&shop.get("/cart", own).await), both);
        redirected(
            &shop
                .post(
                    "/account",
                    assisting,
                    "displayName=Casey&phone=%2B49+30+1234",
                )
                .await,
            "/account",
        );
        assert!(
            shop.get("/account", own)
                .await
                .body
                .contains(r#"name="phone" value="+49 30 1234""#)
        );

        // Sensitive pages: refused to the agent, open to the customer.
        for path in [
            "/account/password",
            "/account/email",
            "/account/payment-methods",
            "/account/delete",
        ] {
            for method in ["GET", "POST"] {
                let refused = shop.send(method, path, assisting, &[], Some("")).await;
                assert_eq!(refused.status, 403, "{method} {path}");
                assert!(refused.body.contains("Not available while assisting"));
                let own_reply = shop.send(method, path, own, &[], Some("")).await;
                assert_eq!(own_reply.status, 200, "{method} {path}: {}", own_reply.body);
            }
        }
        assert_eq!(
            shop.get("/account/password/reset", assisting).await.status,
            403,
            "an entry covers the paths below it"
        );
        assert!(
            shop.post("/account/delete", own, "")
                .await
                .body
                .contains("Done.")
        );

        // Customers are no merchant users.
        for token in [own, assisting, None] {
            let refused = shop.get("/merchant-portal/", token).await;
            assert_eq!(refused.status, 401);
            assert!(refused.body.contains("Sign in to the merchant portal"));
        }

        // Bad input is a 400 and changes nothing.
        for form in [
            "sku=french-press&quantity=0",
            "sku=french-press&quantity=100",
            "sku=french-press&quantity=abc",
            "sku=french-press&quantity=",
            "sku=french-press&quantity=99",
            "sku=no-such-product&quantity=1",
            "sku=french-press",
            "quantity=1",
        ] {
            let refused = shop.post("/cart/items", own, form).await;
            assert_eq!(refused.status, 400, "{form}");
            assert!(refused.body.contains("class=\"error\""), "{form}");
        }
        assert_eq!(cart_rows(&shop.get("/cart", own).await), both);
        let long_name = format!("displayName={}&phone=1", "x".repeat(101));
        for form in [long_name.as_str(), "displayName=Casey&phone=call+me"] {
            assert_eq!(shop.post("/account", own, form).await.status, 400);
        }
        let account = shop.get("/account", own).await;
        assert!(account.body.contains(r#"name="displayName" value="Casey""#));

        // What people type is escaped.
        redirected(
            &shop
                .post("/account", own, "displayName=%3Cscript%3Ex%3C%2Fscript%3E")
                .await,
            "/account",
        );
        let account = shop.get("/account", own).await;
        assert!(account.body.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!account.body.contains("<script>"));

        redirected(
            &shop
                .post("/cart/items/french-press/remove", assisting, "")
                .await,
            "/cart",
        );
        assert_eq!(
            cart_rows(&shop.get("/cart", own).await),
            rows(&[("travel-mug", 3)])
        );

        // Once the session ends, its token is refused; the customer's own is not.
        platform
            .impersonation_client(0)
            .end_assist(authed(
                &agent.token,
                pb::EndAssistRequest {
                    session_id: session.clone(),
                },
            ))
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let status = shop.get("/cart", assisting).await.status;
            if status == 401 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ended session still admitted: {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(shop.get("/", assisting).await.status, 401);
        assert_eq!(shop.get("/cart", own).await.status, 200);
        assert_eq!(shop.get("/", Some("not-a-token")).await.status, 401);
        let basic = shop
            .send("GET", "/", None, &[("authorization", "Basic eDp5")], None)
            .await;
        assert_eq!(basic.status, 401);

        shop.stop().await;
        platform.stop().await;
    }
}

#[tokio::test]
async fn an_agent_assisting_a_merchant_user_edits_offers() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let shop = Shop::start(&platform).await;
        let merchant_user = platform.merchant_user("mia@example.com").await;
        let agent = platform
            .agent("portal@example.com", &[Capability::AssistMerchantUsers])
            .await;
        let (token, _session) = assist(&platform, &agent, &merchant_user).await;
        let assisting = Some(token.as_str());

        let home = shop.get("/merchant-portal/", assisting).await;
        assert_eq!(home.status, 200, "{}", home.body);
        assert!(home.body.contains("<h1>Merchant portal</h1>"));
        assert_eq!(whoami(&home), "Mia Merchant (Spryker Shoes)");

        let offers = shop.get("/merchant-portal/offers", assisting).await;
        assert_eq!(offers.status, 200);
        assert!(offers.body.contains("<table id=\"offers\">"));
        for offer in ["espresso-machine", "milk-frother", "coffee-beans-1kg"] {
            assert!(
                offers
                    .body
                    .contains(&format!("<tr data-offer=\"{offer}\">")),
                "{offer}"
            );
        }
        assert!(offers.body.contains("<td class=\"price\">34.50</td>"));

        redirected(
            &shop
                .post(
                    "/merchant-portal/offers/milk-frother",
                    assisting,
                    "price=12.34&stock=5",
                )
                .await,
            "/merchant-portal/offers",
        );
        let changed = shop.get("/merchant-portal/offers", assisting).await.body;
        assert!(changed.contains("<td class=\"price\">12.34</td><td class=\"stock\">5</td>"));

        for form in [
            "price=0&stock=5",
            "price=100000.01&stock=5",
            "price=12.345&stock=5",
            "price=abc&stock=5",
            "price=12.34&stock=-1",
            "price=12.34&stock=1000001",
            "price=12.34",
        ] {
            let refused = shop
                .post("/merchant-portal/offers/milk-frother", assisting, form)
                .await;
            assert_eq!(refused.status, 400, "{form}");
        }
        let unknown = shop
            .post(
                "/merchant-portal/offers/no-such-offer",
                assisting,
                "price=1&stock=1",
            )
            .await;
        assert_eq!(unknown.status, 404);
        assert_eq!(
            shop.get("/merchant-portal/offers", assisting).await.body,
            changed,
            "refused input changed nothing"
        );

        redirected(
            &shop
                .post("/merchant-portal/profile", assisting, "displayName=Mia")
                .await,
            "/merchant-portal/profile",
        );
        for path in [
            "/merchant-portal/password",
            "/merchant-portal/email",
            "/merchant-portal/delete",
        ] {
            let refused = shop.get(path, assisting).await;
            assert_eq!(refused.status, 403, "{path}");
        }
        // The storefront treats a merchant user as a guest and keeps no account for them.
        assert_eq!(whoami(&shop.get("/", assisting).await), "Guest");
        assert_eq!(shop.get("/account", assisting).await.status, 401);

        shop.stop().await;
        platform.stop().await;
    }
}
