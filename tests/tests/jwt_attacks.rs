//! JWT attacks end to end: forged, altered and misdirected tokens against the real platform on
//! 127.0.0.1 (SQLite and PostgreSQL), through the gateway's HTTP API and over gRPC to the services.
//! Each row expects the route's own refusal, and each route first accepts a valid token and the same
//! token re-signed by hand, so that no row passes because the route or the forger is broken.

use std::net::SocketAddr;

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::identity::v1 as idp;
use assist_proto::impersonation::v1 as pb;
use assist_runtime::keys::{KeyEncryptionKey, KeyTable};
use assist_runtime::testing::TestBackend;
use assist_tests::platform::{Platform, authed, http};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tonic::Code;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    assist_runtime::time::now_us() / 1_000_000
}

/// The raw header segment, the decoded payload and the raw signature segment of a compact JWS.
fn parts(token: &str) -> (String, Value, String) {
    let mut segments = token.split('.');
    let header = segments.next().unwrap().to_owned();
    let payload = URL_SAFE_NO_PAD.decode(segments.next().unwrap()).unwrap();
    let signature = segments.next().unwrap().to_owned();
    (header, serde_json::from_slice(&payload).unwrap(), signature)
}

fn signing_input(header: &Value, payload: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    )
}

fn ed25519(key: &SigningKey, header: &Value, payload: &Value) -> String {
    let input = signing_input(header, payload);
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

/// HMAC-SHA256 (RFC 2104) written out: the algorithm-confusion row needs one MAC, not a crate.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Identity's active signing key, read from its database as an insider would hold it: forgeries
/// signed with it differ from a real token only by the defect of their row.
struct IdentityKey {
    kid: String,
    key: SigningKey,
}

impl IdentityKey {
    async fn of(platform: &Platform) -> Self {
        let db = platform
            .identity_db()
            .open(&assist_identity::store::MIGRATIONS)
            .await;
        let kek = KeyEncryptionKey::from_base64(&platform.identity_kek).unwrap();
        let stored = KeyTable(&db)
            .all()
            .await
            .unwrap()
            .into_iter()
            .find(|key| key.retired_at_us.is_none())
            .expect("identity has an active key");
        let seed: [u8; 32] = kek
            .open(&stored.kid, &stored.sealed_private_key)
            .unwrap()
            .try_into()
            .unwrap();
        Self {
            kid: stored.kid,
            key: SigningKey::from_bytes(&seed),
        }
    }

    fn header(&self) -> Value {
        json!({ "alg": "EdDSA", "typ": "JWT", "kid": self.kid })
    }

    fn sign(&self, payload: &Value) -> String {
        ed25519(&self.key, &self.header(), payload)
    }
}

/// `payload` with the members of `changes` set.
fn with(payload: &Value, changes: Value) -> Value {
    let mut changed = payload.clone();
    for (name, value) in changes.as_object().unwrap() {
        changed[name] = value.clone();
    }
    changed
}

/// The attack rows built on `base`, a valid token signed with identity's key `key`: each is refused as
/// an invalid token wherever it is presented.
fn forgeries(base: &str, key: &IdentityKey) -> Vec<(&'static str, String)> {
    let (head, payload, signature) = parts(base);
    let t = now();
    let none_input = signing_input(
        &json!({ "alg": "none", "typ": "JWT", "kid": key.kid }),
        &payload,
    );
    let hs_input = signing_input(
        &json!({ "alg": "HS256", "typ": "JWT", "kid": key.kid }),
        &payload,
    );
    let public = key.key.verifying_key().to_bytes();
    let hs_raw = format!(
        "{hs_input}.{}",
        b64(&hmac_sha256(&public, hs_input.as_bytes()))
    );
    // The JWK's `x` string is what a confused library would take for the "key bytes".
    let x = b64(&public);
    let hs_x = format!(
        "{hs_input}.{}",
        b64(&hmac_sha256(x.as_bytes(), hs_input.as_bytes()))
    );
    let stranger = SigningKey::from_bytes(&[7; 32]);
    let tampered = with(
        &payload,
        json!({ "sub": "00000000-0000-0000-0000-000000000000" }),
    );
    let escalated = with(
        &payload,
        json!({ "scope": "admin back_office", "realm": "back_office" }),
    );
    // RFC 8693 allows a chain of actors; this platform issues none, and a token carrying one is not
    // a token it issued.
    let nested_act = with(
        &payload,
        json!({ "act": {
            "sub": payload["sub"],
            "realm": "back_office",
            "act": { "sub": "00000000-0000-0000-0000-000000000000", "realm": "back_office" },
        } }),
    );
    vec![
        ("alg none, empty signature", format!("{none_input}.")),
        (
            "nested act, signed with identity's key",
            key.sign(&nested_act),
        ),
        ("HS256 keyed with the public key bytes", hs_raw),
        ("HS256 keyed with the JWK x", hs_x),
        (
            "foreign kid, our own key",
            ed25519(
                &stranger,
                &json!({ "alg": "EdDSA", "typ": "JWT", "kid": "attacker-kid" }),
                &payload,
            ),
        ),
        (
            "identity's kid, foreign key",
            ed25519(&stranger, &key.header(), &payload),
        ),
        (
            "missing kid",
            ed25519(&key.key, &json!({ "alg": "EdDSA", "typ": "JWT" }), &payload),
        ),
        (
            "expired beyond leeway",
            key.sign(&with(
                &payload,
                json!({ "exp": t - 60, "nbf": t - 3600, "iat": t - 3600 }),
            )),
        ),
        (
            "not yet valid",
            key.sign(&with(
                &payload,
                json!({ "nbf": t + 600, "iat": t, "exp": t + 3600 }),
            )),
        ),
        (
            "wrong aud",
            key.sign(&with(&payload, json!({ "aud": "another-platform" }))),
        ),
        (
            "wrong iss",
            key.sign(&with(&payload, json!({ "iss": "https://evil.example" }))),
        ),
        (
            "the other trusted issuer's name on identity's key",
            key.sign(&with(&payload, json!({ "iss": "assist-impersonation" }))),
        ),
        (
            "tampered sub, signature kept",
            format!(
                "{head}.{}.{signature}",
                b64(tampered.to_string().as_bytes())
            ),
        ),
        (
            "tampered scope and realm, signature kept",
            format!(
                "{head}.{}.{signature}",
                b64(escalated.to_string().as_bytes())
            ),
        ),
        (
            "signature cut off",
            format!("{head}.{}.", b64(payload.to_string().as_bytes())),
        ),
    ]
}

/// What a route made of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Accepted,
    /// HTTP status and JSON:API error code (empty when the answer is not a JSON:API error).
    Http(u16, String),
    Grpc(Code),
}

const INVALID_HTTP: fn() -> Verdict = || Verdict::Http(401, "001".into());
const INVALID_GRPC: Verdict = Verdict::Grpc(Code::Unauthenticated);

/// A route that takes a bearer token.
#[derive(Debug)]
enum Route {
    /// Gateway `GET /agent-customer-search`: an agent's identity token.
    AgentSearch,
    /// Gateway `GET /console/api/me`: the console's browser API, a back-office identity token.
    ConsoleMe,
    /// The gateway's reverse proxy to the shop (`GET /`): takes impersonation tokens.
    Proxy,
    /// Identity `GetPrincipal` of this id.
    GetPrincipal(String),
    /// Agent-directory `ListAgents`.
    ListAgents,
    /// Impersonation-token `StartAssist` for this customer: an agent's identity token.
    StartAssist(String),
}

impl Route {
    fn invalid(&self) -> Verdict {
        match self {
            Route::AgentSearch | Route::ConsoleMe | Route::Proxy => INVALID_HTTP(),
            _ => INVALID_GRPC,
        }
    }
}

async fn attempt(platform: &Platform, gateway: SocketAddr, route: &Route, token: &str) -> Verdict {
    let path = match route {
        Route::AgentSearch => "/agent-customer-search",
        Route::ConsoleMe => "/console/api/me",
        Route::Proxy => "/",
        Route::GetPrincipal(id) => {
            let request = idp::GetPrincipalRequest { id: id.clone() };
            let answer = platform
                .identity_client()
                .get_principal(authed(token, request))
                .await;
            return grpc(answer.map(drop));
        }
        Route::ListAgents => {
            let answer = platform
                .agents_client()
                .list_agents(authed(token, dir::ListAgentsRequest::default()))
                .await;
            return grpc(answer.map(drop));
        }
        Route::StartAssist(customer) => {
            let request = pb::StartAssistRequest {
                target_id: customer.clone(),
                reason: "customer asked for help with an order".into(),
                ..Default::default()
            };
            let answer = platform
                .impersonation_client(0)
                .start_assist(authed(token, request))
                .await;
            return grpc(answer.map(drop));
        }
    };
    let bearer = format!("Bearer {token}");
    let reply = http(gateway, "GET", path, &[("authorization", &bearer)], None)
        .await
        .unwrap();
    if (200..300).contains(&reply.status) {
        return Verdict::Accepted;
    }
    let code = serde_json::from_str::<Value>(&reply.body)
        .ok()
        .and_then(|body| body["errors"][0]["code"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Verdict::Http(reply.status, code)
}

fn grpc(answer: Result<(), tonic::Status>) -> Verdict {
    match answer {
        Ok(()) => Verdict::Accepted,
        Err(status) => Verdict::Grpc(status.code()),
    }
}

#[tokio::test]
async fn forged_and_misdirected_tokens_are_refused_on_every_route() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let (shop, gateway) = platform.start_fronted_shop().await;
        let gw = gateway.addr;
        let key = IdentityKey::of(&platform).await;
        let agent = platform
            .console_member("agent@example.com", dir::Role::Agent, 1)
            .await;
        let customer = platform.customer("casey@example.com").await;
        let other = platform.customer("olga@example.com").await;
        let service = platform.service_token().await;
        let started = platform
            .impersonation_client(0)
            .start_assist(authed(
                &agent.token,
                pb::StartAssistRequest {
                    target_id: customer.id.clone(),
                    reason: "customer asked for help with an order".into(),
                    ..Default::default()
                },
            ))
            .await
            .expect("an agent starts an assist session")
            .into_inner();
        let impersonation = started.access_token;
        // The impersonation token's claims under identity's key: the proxy's control and base.
        let (_, delegated, _) = parts(&impersonation);
        let delegated = key.sign(&with(&delegated, json!({ "iss": "assist-identity" })));

        let routes = [
            (Route::AgentSearch, agent.token.clone()),
            (Route::ConsoleMe, agent.token.clone()),
            (Route::Proxy, delegated.clone()),
            (
                Route::GetPrincipal(agent.id.clone()),
                platform.admin.token.clone(),
            ),
            (Route::ListAgents, platform.admin.token.clone()),
            (Route::StartAssist(other.id.clone()), agent.token.clone()),
        ];
        for (route, base) in &routes {
            let (_, payload, _) = parts(base);
            let mut rows = vec![
                ("control: a valid token", base.clone(), Verdict::Accepted),
                (
                    "control: the same claims re-signed by hand",
                    key.sign(&payload),
                    Verdict::Accepted,
                ),
            ];
            rows.extend(
                forgeries(base, &key)
                    .into_iter()
                    .map(|(name, token)| (name, token, route.invalid())),
            );
            for (name, token, expected) in rows {
                let verdict = attempt(&platform, gw, route, &token).await;
                assert_eq!(verdict, expected, "{route:?}: {name}");
            }
        }

        // Valid tokens of the wrong kind. The gateway, identity and agent-directory refuse a real
        // impersonation token as an invalid token (401 `001` / UNAUTHENTICATED), not as a token of the
        // wrong kind: the rows assert that refusal as observed.
        let wrong_kind = [
            (
                Route::AgentSearch,
                "an impersonation token for an identity token (refused as invalid here)",
                impersonation.clone(),
                INVALID_HTTP(),
            ),
            (
                Route::ConsoleMe,
                "an impersonation token for an identity token (refused as invalid here)",
                impersonation.clone(),
                INVALID_HTTP(),
            ),
            (
                Route::GetPrincipal(agent.id.clone()),
                "an impersonation token for an identity token (refused as invalid here)",
                impersonation.clone(),
                INVALID_GRPC,
            ),
            (
                Route::ListAgents,
                "an impersonation token for an identity token (refused as invalid here)",
                impersonation.clone(),
                INVALID_GRPC,
            ),
            (
                Route::StartAssist(other.id.clone()),
                "an impersonation token for an agent's token",
                impersonation.clone(),
                Verdict::Grpc(Code::PermissionDenied),
            ),
            (
                Route::ConsoleMe,
                "a service token at the console's browser API",
                service.clone(),
                Verdict::Http(403, "403".into()),
            ),
            (
                Route::AgentSearch,
                "a service token for an agent's token",
                service.clone(),
                Verdict::Http(401, "4103".into()),
            ),
            (
                Route::StartAssist(other.id.clone()),
                "a customer's token for an agent's token",
                customer.token.clone(),
                Verdict::Grpc(Code::PermissionDenied),
            ),
        ];
        let mut wrong = Vec::new();
        for (route, name, token, expected) in wrong_kind {
            let verdict = attempt(&platform, gw, &route, &token).await;
            if verdict != expected {
                wrong.push(format!(
                    "{route:?}: {name}: {verdict:?}, expected {expected:?}"
                ));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");

        gateway.stop().await;
        shop.stop().await;
        platform.stop().await;
    }
}
