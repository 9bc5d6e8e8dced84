//! Token verification: EdDSA JWTs checked against the JWKS of trusted issuers (fetched over gRPC, cached,
//! refetched on an unknown `kid`), the verified claims of a call, and the tower layer that puts them in
//! each request's extensions.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use assist_proto::common::v1::{GetJwksRequest, Jwks};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, VerifyingKey};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tonic::Status;

use crate::error::{Error, Result};

/// Who a principal is to the platform: the `realm` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Realm {
    BackOffice,
    Customer,
    MerchantUser,
    Service,
}

impl Realm {
    pub fn as_str(self) -> &'static str {
        match self {
            Realm::BackOffice => "back_office",
            Realm::Customer => "customer",
            Realm::MerchantUser => "merchant_user",
            Realm::Service => "service",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "back_office" => Some(Realm::BackOffice),
            "customer" => Some(Realm::Customer),
            "merchant_user" => Some(Realm::MerchantUser),
            "service" => Some(Realm::Service),
            _ => None,
        }
    }
}

/// The acting party of a delegated (impersonation) token, RFC 8693 `act`. Exactly one actor: a
/// nested `act` (a chain of delegations) or any other member makes the token invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub sub: String,
    pub realm: Realm,
}

/// The claims of every access token (DESIGN.md section 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    pub realm: Realm,
    /// Space-separated scopes.
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The subject's display name when the token was issued (OIDC `name`): what a downstream shop
    /// shows for its caller without reading identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A merchant user's merchant, by name, when the token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant_name: Option<String>,
}

/// The scope that makes a back-office user an administrator of the platform.
pub const ADMIN_SCOPE: &str = "admin";

/// What a service account may do: scopes granted when the account is created, stored with it, carried
/// in its tokens and checked per RPC. A service token is never an administrator; it may call exactly
/// the RPCs its permissions name (the table is in docs/security.md).
pub mod permission {
    /// Read principals: `GetPrincipal`, `SearchCustomers`, `SearchMerchantUsers`,
    /// `WatchPrincipalChanges`.
    pub const PRINCIPALS_READ: &str = "principals:read";
    /// Manage back-office users below the administrator: create them (never with the `admin` scope),
    /// set their status, issue their invitation and reset links.
    pub const PRINCIPALS_WRITE: &str = "principals:write";
    /// Say whose address a sign-in comes from (`Login`'s `client_address`): the gateway.
    pub const SIGNIN_RELAY: &str = "signin:relay";
    /// Read the agent directory: `GetAgent`, `ListAgents`, `WatchAgents`, `GetSeats`.
    pub const AGENTS_READ: &str = "agents:read";
    /// Accept impersonation tokens: `CheckSession`, `WatchRevocations`.
    pub const SESSIONS_CHECK: &str = "sessions:check";
    /// Read any assist session: `GetSession`.
    pub const SESSIONS_READ: &str = "sessions:read";
    /// Write the audit log: `RecordAction`, `RecordActions`.
    pub const AUDIT_WRITE: &str = "audit:write";
    /// An integration's conversations (a mail or bot bridge): start them for a customer, post system
    /// messages, read and watch them all. None of the platform's own services holds it.
    pub const CONVERSATIONS_WRITE: &str = "conversations:write";

    /// The platform's own service accounts, one per service, each granted what that service calls
    /// and nothing more (`assist up` creates them; the table in docs/security.md says why). The demo
    /// shop stands for any downstream shop: it accepts impersonation tokens and reads names.
    pub const PLATFORM_ACCOUNTS: &[(&str, &[&str])] = &[
        (
            "gateway",
            &[
                PRINCIPALS_READ,
                SIGNIN_RELAY,
                AGENTS_READ,
                SESSIONS_CHECK,
                AUDIT_WRITE,
            ],
        ),
        ("agent-directory", &[PRINCIPALS_READ, PRINCIPALS_WRITE]),
        ("impersonation-token", &[PRINCIPALS_READ, AGENTS_READ]),
        ("routing", &[AGENTS_READ, SESSIONS_READ]),
        // Only what accepting impersonation tokens takes: the names its pages show are in the tokens.
        ("demo-shop", &[SESSIONS_CHECK]),
    ];

    /// The permissions of the platform's account for `service` (none for an unknown name).
    pub fn of_service(service: &str) -> &'static [&'static str] {
        PLATFORM_ACCOUNTS
            .iter()
            .find(|(name, _)| *name == service)
            .map_or(&[], |(_, granted)| granted)
    }

    /// Every permission a service account may be granted.
    pub const ALL: &[&str] = &[
        PRINCIPALS_READ,
        PRINCIPALS_WRITE,
        SIGNIN_RELAY,
        AGENTS_READ,
        SESSIONS_CHECK,
        SESSIONS_READ,
        AUDIT_WRITE,
        CONVERSATIONS_WRITE,
    ];
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }

    /// A back-office administrator acting in their own name.
    pub fn is_admin(&self) -> bool {
        self.act.is_none() && self.realm == Realm::BackOffice && self.has_scope(ADMIN_SCOPE)
    }

    /// A service account's own token.
    pub fn is_service(&self) -> bool {
        self.act.is_none() && self.realm == Realm::Service
    }

    /// A service account granted `permission` (see [`permission`]).
    pub fn service_may(&self, permission: &str) -> bool {
        self.is_service() && self.has_scope(permission)
    }

    /// A back-office administrator, or a service account granted `permission`.
    pub fn is_admin_or_service_with(&self, permission: &str) -> bool {
        self.is_admin() || self.service_may(permission)
    }

    /// These claims keeping only the scopes that `current_scope` (what the principal holds now)
    /// still has: a right taken away since the token was issued is gone at once.
    pub fn limited_to(mut self, current_scope: &str) -> Claims {
        let current: Vec<&str> = current_scope.split(' ').collect();
        self.scope = self
            .scope
            .split(' ')
            .filter(|scope| current.contains(scope))
            .collect::<Vec<_>>()
            .join(" ");
        self
    }

    /// A token that acts for someone else (an impersonation token).
    pub fn is_delegated(&self) -> bool {
        self.act.is_some()
    }
}

/// An Ed25519 public key as published in a JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    /// base64url (no padding) of the 32-byte key, as in the JWK `x` member.
    pub x: String,
}

/// Where an issuer's current public keys come from.
pub trait KeySource: Send + Sync + 'static {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<PublicKey>>>;
}

/// The JWKS of the identity service, fetched over gRPC.
pub struct IdentityJwks(
    pub assist_proto::identity::v1::identity_client::IdentityClient<tonic::transport::Channel>,
);

impl KeySource for IdentityJwks {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<PublicKey>>> {
        Box::pin(fetch_jwks(|| {
            let mut client = self.0.clone();
            async move { client.get_jwks(GetJwksRequest {}).await }
        }))
    }
}

/// The JWKS of the impersonation-token service, fetched over gRPC.
pub struct ImpersonationJwks(
    pub  assist_proto::impersonation::v1::impersonation_client::ImpersonationClient<
        tonic::transport::Channel,
    >,
);

impl KeySource for ImpersonationJwks {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<PublicKey>>> {
        Box::pin(fetch_jwks(|| {
            let mut client = self.0.clone();
            async move { client.get_jwks(GetJwksRequest {}).await }
        }))
    }
}

async fn fetch_jwks<F, Fut>(call: F) -> Result<Vec<PublicKey>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<tonic::Response<Jwks>, Status>>,
{
    let jwks = crate::client::retry_idempotent(call)
        .await
        .map_err(|status| Error::Unavailable(format!("jwks: {}", status.message())))?;
    Ok(jwks
        .into_inner()
        .keys
        .into_iter()
        .map(|k| PublicKey { kid: k.kid, x: k.x })
        .collect())
}

/// One issuer whose tokens a verifier accepts.
pub struct TrustedIssuer {
    pub issuer: String,
    pub keys: Arc<dyn KeySource>,
}

impl TrustedIssuer {
    /// Identity, named `issuer`, its keys fetched over `identity`.
    pub fn identity(issuer: &str, identity: tonic::transport::Channel) -> Self {
        Self {
            issuer: issuer.to_owned(),
            keys: Arc::new(IdentityJwks(
                assist_proto::identity::v1::identity_client::IdentityClient::new(identity),
            )),
        }
    }
}

/// Keys of the service this server belongs to, known once its start-up has opened it: until then a
/// fetch answers UNAVAILABLE ("starting").
pub struct LocalKeys<T>(pub Arc<tokio::sync::OnceCell<Arc<T>>>);

impl<T: KeySource> KeySource for LocalKeys<T> {
    fn fetch(&self) -> BoxFuture<'_, Result<Vec<PublicKey>>> {
        Box::pin(async move {
            match self.0.get() {
                Some(service) => service.fetch().await,
                None => Err(Error::Unavailable("the service is starting".into())),
            }
        })
    }
}

struct CachedKey {
    issuer: usize,
    key: VerifyingKey,
}

/// The JOSE header fields a verifier looks at.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    kid: Option<String>,
}

/// Verifies access tokens of one or more issuers for one audience.
///
/// Tokens are compact JWS with `alg: EdDSA`. The public keys are decoded once, when fetched, and each
/// verification is one strict Ed25519 check (no malleable signatures, no weak keys) plus the claim
/// checks, so it runs close to the raw signature rate (see `benches/verify.rs`).
pub struct TokenVerifier {
    audience: String,
    issuers: Vec<TrustedIssuer>,
    keys: RwLock<HashMap<String, Arc<CachedKey>>>,
    refetch: tokio::sync::Mutex<Option<Instant>>,
    min_refetch_interval: Duration,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    leeway: i64,
    /// Tokens verified already, with their claims: a service presents the same token on every call
    /// for minutes, and a verified token stays verified while its key is published and it has not
    /// expired. Cleared whenever the keys are refetched.
    verified: RwLock<HashMap<String, Claims>>,
}

const TOKEN_MAX_LEN: usize = 8 * 1024;
/// Past this many remembered tokens the memory starts over.
const VERIFIED_MAX: usize = 10_000;

impl TokenVerifier {
    pub fn new(audience: &str, issuers: Vec<TrustedIssuer>) -> Self {
        Self {
            audience: audience.to_owned(),
            issuers,
            keys: RwLock::new(HashMap::new()),
            refetch: tokio::sync::Mutex::new(None),
            min_refetch_interval: Duration::from_secs(1),
            leeway: 5,
            verified: RwLock::new(HashMap::new()),
        }
    }

    /// Verifies signature, algorithm, issuer, audience, expiry and not-before. Unknown `kid`s trigger one
    /// refetch of every issuer's keys (at most once a second, so forged `kid`s cannot flood the issuer).
    pub async fn verify(&self, token: &str) -> Result<Claims> {
        if let Some(claims) = self.recently_verified(token) {
            return Ok(claims);
        }
        let claims = match self.verify_cached(token)? {
            Some(claims) => claims,
            None => {
                self.refresh_keys().await;
                self.verify_cached(token)?
                    .ok_or_else(|| Error::unauthenticated("invalid access token"))?
            }
        };
        let mut verified = self.verified.write().expect("verified cache poisoned");
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }

    /// The claims of a token verified before, while they are still in force.
    fn recently_verified(&self, token: &str) -> Option<Claims> {
        let verified = self.verified.read().expect("verified cache poisoned");
        let claims = verified.get(token)?;
        let now = crate::time::now_us() / 1_000_000;
        (claims.exp > now - self.leeway && claims.nbf <= now + self.leeway).then(|| claims.clone())
    }

    /// Verifies with the keys already cached; `Ok(None)` when the token's `kid` is not known yet.
    pub fn verify_cached(&self, token: &str) -> Result<Option<Claims>> {
        let invalid = || Error::unauthenticated("invalid access token");
        if token.len() > TOKEN_MAX_LEN {
            return Err(invalid());
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        // The signature covers "header.payload", the token up to its last dot.
        let signing_input = &token[..header.len() + 1 + payload.len()];
        let header: JoseHeader = decode_json(header).ok_or_else(invalid)?;
        if header.alg != "EdDSA" {
            return Err(invalid());
        }
        let kid = header.kid.ok_or_else(invalid)?;
        let Some(cached) = self
            .keys
            .read()
            .expect("key cache poisoned")
            .get(&kid)
            .cloned()
        else {
            return Ok(None);
        };
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .ok_or_else(invalid)?;
        if cached
            .key
            .verify_strict(signing_input.as_bytes(), &signature)
            .is_err()
        {
            tracing::debug!(kid = %kid, "token signature refused");
            return Err(invalid());
        }
        let claims: Claims = decode_json(payload).ok_or_else(invalid)?;
        let now = crate::time::now_us() / 1_000_000;
        let issuer = &self.issuers[cached.issuer].issuer;
        if claims.iss != *issuer
            || claims.aud != self.audience
            || claims.exp <= now - self.leeway
            || claims.nbf > now + self.leeway
        {
            tracing::debug!(kid = %kid, "token claims refused");
            return Err(invalid());
        }
        Ok(Some(claims))
    }

    /// Fetches every issuer's keys and replaces the cache (keys no longer published are dropped).
    pub async fn refresh_keys(&self) {
        let mut last = self.refetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refetch_interval) {
            return;
        }
        *last = Some(Instant::now());
        let mut fresh = HashMap::new();
        for (index, issuer) in self.issuers.iter().enumerate() {
            match issuer.keys.fetch().await {
                Ok(keys) => {
                    for key in keys {
                        match decode_public_key(&key.x) {
                            Some(decoded) => {
                                fresh.insert(
                                    key.kid,
                                    Arc::new(CachedKey {
                                        issuer: index,
                                        key: decoded,
                                    }),
                                );
                            }
                            None => tracing::warn!(kid = %key.kid, "unusable public key skipped"),
                        }
                    }
                }
                Err(error) => {
                    // Keep what we had for this issuer: a passing outage must not log everybody out.
                    tracing::warn!(issuer = %issuer.issuer, error = %error, "fetching keys failed");
                    let cache = self.keys.read().expect("key cache poisoned");
                    for (kid, key) in cache.iter().filter(|(_, k)| k.issuer == index) {
                        fresh.insert(kid.clone(), key.clone());
                    }
                }
            }
        }
        *self.keys.write().expect("key cache poisoned") = fresh;
        // A key no longer published must stop verifying the tokens it signed.
        self.verified
            .write()
            .expect("verified cache poisoned")
            .clear();
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn decode_public_key(x: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(x).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

/// The bearer token of a request: `authorization: Bearer <token>`.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The verified claims of a call, put there by [`AuthLayer`].
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Arc<Claims>> {
    request
        .extensions()
        .get::<Arc<Claims>>()
        .cloned()
        .ok_or_else(|| Error::unauthenticated("missing access token"))
}

/// The claims, when the call carried a valid token.
pub fn optional_caller<T>(request: &tonic::Request<T>) -> Option<Arc<Claims>> {
    request.extensions().get::<Arc<Claims>>().cloned()
}

/// Who may call a server: the verifier of bearer tokens, the methods any caller may use without a
/// token (besides health and reflection), and whether impersonation tokens are accepted.
#[derive(Clone)]
pub struct AuthPolicy {
    pub verifier: Arc<TokenVerifier>,
    pub public_methods: &'static [&'static str],
    /// Whether impersonation tokens are accepted, and how.
    pub delegated: Delegated,
}

/// What a server does with impersonation tokens (tokens carrying `act` and `sid`).
#[derive(Clone)]
pub enum Delegated {
    /// Refused on every method.
    Refuse,
    /// Accepted while their session is live; each call is recorded in the session's audit log, and
    /// sensitive methods are refused to them.
    Check(ImpersonationPolicy),
    /// Handed to the service as they are: only for the impersonation service, which owns the sessions.
    PassThrough,
}

/// How a server checks impersonation tokens (see [`Delegated::Check`]).
#[derive(Clone)]
pub struct ImpersonationPolicy {
    pub sessions: Arc<crate::sessions::SessionLiveness>,
    /// Methods (or HTTP paths) that touch credentials, email, payment methods or account deletion:
    /// never for a token that carries `act`, whatever its scope. An entry covers itself and every path
    /// below it (`/account/password` covers `/account/password/reset`).
    pub sensitive_methods: &'static [&'static str],
    /// Whether refusals are written to the session's audit log: by the gateway, which holds
    /// `audit:write`; a downstream shop refuses without writing (its account may not).
    pub audits: bool,
}

impl ImpersonationPolicy {
    pub fn is_sensitive(&self, path: &str) -> bool {
        is_sensitive_path(self.sensitive_methods, path)
    }
}

/// Whether `path` is one of `sensitive` or below one of them, compared segment by segment (`/a/b` is
/// below `/a`, `/ab` is not):
/// - segments are compared ignoring case (Unicode case folded, so `/ACCOUNT/PASSWORD` and
///   `/account/paſsword` are `/account/password`);
/// - a path segment that is the entry's segment followed by an extension matches it
///   (`/account/password.json`, `/account/password.html`);
/// - an entry matches at the path's start or right after any `*.php` segment, a front controller
///   (`/index.php/account/password`);
/// - an entry segment `*` matches any one segment (`/*/account/password` covers `/de/account/password`).
///
/// Paths are compared as given: callers pass a canonical path (decoded once; no `..`, `//`, `;`).
pub fn is_sensitive_path(sensitive: &[&str], path: &str) -> bool {
    let path: Vec<String> = segments(path).map(fold_case).collect();
    // Where an entry may start: the path's start, and after each front-controller segment.
    let mut starts = std::iter::once(0).chain(
        path.iter()
            .enumerate()
            .filter(|(_, segment)| segment.ends_with(".php"))
            .map(|(index, _)| index + 1),
    );
    let entries: Vec<Vec<String>> = sensitive
        .iter()
        .map(|entry| segments(entry).map(fold_case).collect())
        .collect();
    starts.any(|start| {
        entries.iter().any(|entry| {
            path.len() >= start + entry.len()
                && entry
                    .iter()
                    .zip(&path[start..])
                    .all(|(wanted, segment)| segment_matches(wanted, segment))
        })
    })
}

/// The segments of `/a/b` (`a`, `b`); gRPC method paths split the same way.
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.strip_prefix('/').unwrap_or(path).split('/')
}

/// `segment` as case-insensitive comparisons see it (upper then lower case, so that characters such
/// as `ſ` or the Kelvin sign fold to the ASCII letter an upstream may take them for).
fn fold_case(segment: &str) -> String {
    segment
        .chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether a (folded) path segment stands for a (folded) entry segment: `*`, the same, or the same
/// with an extension.
fn segment_matches(wanted: &str, segment: &str) -> bool {
    wanted == "*"
        || segment
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// A token admitted by [`AuthPolicy::admit`]: its claims, and for an impersonation token the session
/// each call must be recorded under.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub claims: Claims,
    pub session: Option<String>,
}

impl AuthPolicy {
    /// A policy that refuses impersonation tokens.
    pub fn new(verifier: Arc<TokenVerifier>, public_methods: &'static [&'static str]) -> Self {
        Self {
            verifier,
            public_methods,
            delegated: Delegated::Refuse,
        }
    }

    /// Accepts impersonation tokens while their session is live, refusing them `sensitive_methods`.
    pub fn accepting_impersonation(
        mut self,
        sessions: Arc<crate::sessions::SessionLiveness>,
        sensitive_methods: &'static [&'static str],
    ) -> Self {
        self.delegated = Delegated::Check(ImpersonationPolicy {
            sessions,
            sensitive_methods,
            audits: true,
        });
        self
    }

    /// Refusals of impersonation tokens are not written to the audit log (a downstream shop: the
    /// gateway in front of it records every assisted request, and the shop may not write the audit).
    pub fn without_audit(mut self) -> Self {
        if let Delegated::Check(policy) = &mut self.delegated {
            policy.audits = false;
        }
        self
    }

    /// Verifies `token` and checks it against this policy for a call to `path` (a gRPC method path, or
    /// an HTTP path for services that speak HTTP): what the call may go on with. An impersonation token
    /// is admitted only while its session is live and never for a sensitive path (that refusal is
    /// recorded in the session's audit log).
    /// `method` is what the audit log records the call as: `GRPC`, or the HTTP method.
    pub async fn admit(&self, token: &str, method: &str, path: &str) -> Result<Admitted> {
        let claims = self.verifier.verify(token).await?;
        let session = self.admit_delegated(&claims, method, path).await?;
        Ok(Admitted { claims, session })
    }

    /// Checks a delegated token against this policy: `Ok(Some(sid))` when the call may go on and must
    /// be recorded under that session.
    async fn admit_delegated(
        &self,
        claims: &Claims,
        method: &str,
        path: &str,
    ) -> Result<Option<String>> {
        if claims.act.is_none() && claims.sid.is_none() {
            return Ok(None);
        }
        let policy = match &self.delegated {
            Delegated::Refuse => {
                return Err(Error::denied("impersonation tokens are not accepted here"));
            }
            Delegated::PassThrough => return Ok(None),
            Delegated::Check(policy) => policy,
        };
        let (Some(_), Some(sid)) = (&claims.act, &claims.sid) else {
            return Err(Error::unauthenticated("invalid access token"));
        };
        policy.sessions.check(sid).await?;
        // Before anything is done for the token: a call the audit could not record in time is not
        // carried out (a 503), rather than carried out unaudited.
        policy.sessions.audit_keeps_up()?;
        if policy.is_sensitive(path) {
            if policy.audits {
                let denied = crate::server::code_name(tonic::Code::PermissionDenied);
                policy.sessions.record(sid.clone(), method, path, denied);
            }
            return Err(Error::denied("not allowed while assisting"));
        }
        Ok(Some(sid.clone()))
    }

    fn is_public(&self, path: &str) -> bool {
        path.starts_with("/grpc.health.v1.")
            || path.starts_with("/grpc.reflection.")
            || self.public_methods.contains(&path)
    }
}

/// Verifies the bearer token of every call; refuses calls without one unless the method is public.
#[derive(Clone)]
pub struct AuthLayer(pub AuthPolicy);

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            policy: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    policy: AuthPolicy,
}

type HttpRequest = http::Request<tonic::body::Body>;
type HttpResponse = http::Response<tonic::body::Body>;

impl<S> tower::Service<HttpRequest> for AuthService<S>
where
    S: tower::Service<HttpRequest, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<HttpResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: HttpRequest) -> Self::Future {
        // Take the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy.clone();
        Box::pin(async move {
            let token = bearer(request.headers()).map(str::to_owned);
            // Set for calls made with an impersonation token: its session and the path to record.
            let mut session = None;
            match token {
                Some(token) => match policy.admit(&token, "GRPC", request.uri().path()).await {
                    Ok(admitted) => {
                        let path = request.uri().path().to_owned();
                        session = admitted.session.map(|sid| (sid, path));
                        request.extensions_mut().insert(Arc::new(admitted.claims));
                    }
                    Err(error) => return Ok(Status::from(error).into_http()),
                },
                None if !policy.is_public(request.uri().path()) => {
                    return Ok(Status::unauthenticated("missing access token").into_http());
                }
                None => {}
            }
            let response = inner.call(request).await;
            if let (Some((sid, path)), Delegated::Check(impersonation), Ok(response)) =
                (session, &policy.delegated, &response)
            {
                let code = crate::server::grpc_code(response.headers());
                impersonation
                    .sessions
                    .record(sid, "GRPC", &path, crate::server::code_name(code));
            }
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::EncodePrivateKey;

    #[test]
    fn sensitive_entries_cover_their_subpaths_only() {
        let sensitive = [
            "/account/password",
            "/assist.identity.v1.Identity/ChangePassword",
        ];
        for path in [
            "/account/password",
            "/account/password/reset",
            "/assist.identity.v1.Identity/ChangePassword",
        ] {
            assert!(is_sensitive_path(&sensitive, path), "{path}");
        }
        for path in [
            "/account/passwords",
            "/account",
            "/",
            "/assist.identity.v1.Identity/Login",
        ] {
            assert!(!is_sensitive_path(&sensitive, path), "{path}");
        }
    }

    #[test]
    fn sensitive_entries_match_whatever_case_extension_or_front_controller() {
        let sensitive = ["/account/password", "/*/account/email"];
        for path in [
            "/ACCOUNT/Password",
            "/account/paſsword",
            "/account/password/",
            "/account/password.json",
            "/account/password.html",
            "/account/PASSWORD.tar.gz/x",
            "/index.php/account/password",
            "/app_dev.PHP/account/password",
            "/de/index.php/account/password",
            "/de/account/email",
            "/en-gb/account/email/change",
            "/index.php/fr/account/email",
        ] {
            assert!(is_sensitive_path(&sensitive, path), "{path}");
        }
        for path in [
            "/account/password-help",
            "/account/passwordx.json",
            "/account/email",
            "/shop/account/password",
            "/index.php",
            "/index.php/account",
            "/de/account/emails",
            "/",
        ] {
            assert!(!is_sensitive_path(&sensitive, path), "{path}");
        }
    }

    struct Fixed(Vec<PublicKey>);

    impl KeySource for Fixed {
        fn fetch(&self) -> BoxFuture<'_, Result<Vec<PublicKey>>> {
            let keys = self.0.clone();
            Box::pin(async move { Ok(keys) })
        }
    }

    fn claims(exp_offset: i64) -> Claims {
        let now = crate::time::now_us() / 1_000_000;
        Claims {
            iss: "issuer".into(),
            sub: "someone".into(),
            aud: "audience".into(),
            exp: now + exp_offset,
            iat: now - 10,
            nbf: now - 10,
            jti: "j".into(),
            realm: Realm::Customer,
            scope: "customer".into(),
            act: None,
            sid: None,
            name: None,
            merchant_name: None,
        }
    }

    fn sign(key: &SigningKey, kid: &str, claims: &Claims) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(kid.into());
        let der = key.to_pkcs8_der().unwrap();
        jsonwebtoken::encode(
            &header,
            claims,
            &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
        )
        .unwrap()
    }

    fn b64(value: &str) -> String {
        URL_SAFE_NO_PAD.encode(value)
    }

    async fn verifier(key: &SigningKey) -> TokenVerifier {
        let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        let verifier = TokenVerifier::new(
            "audience",
            vec![TrustedIssuer {
                issuer: "issuer".into(),
                keys: Arc::new(Fixed(vec![PublicKey {
                    kid: "k1".into(),
                    x,
                }])),
            }],
        );
        verifier.refresh_keys().await;
        verifier
    }

    /// Keys that can be withdrawn, as rotation does.
    struct Changing(std::sync::Mutex<Vec<PublicKey>>);

    impl KeySource for Changing {
        fn fetch(&self) -> BoxFuture<'_, Result<Vec<PublicKey>>> {
            let keys = self.0.lock().unwrap().clone();
            Box::pin(async move { Ok(keys) })
        }
    }

    #[tokio::test]
    async fn a_remembered_token_expires_and_falls_with_its_key() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let public = PublicKey {
            kid: "k1".into(),
            x: URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        };
        let source = Arc::new(Changing(std::sync::Mutex::new(vec![public])));
        let mut verifier = TokenVerifier::new(
            "audience",
            vec![TrustedIssuer {
                issuer: "issuer".into(),
                keys: source.clone(),
            }],
        );
        verifier.min_refetch_interval = Duration::ZERO;
        verifier.leeway = 0;
        let short = sign(&key, "k1", &claims(1));
        verifier.verify(&short).await.unwrap();
        verifier.verify(&short).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(
            verifier.verify(&short).await.is_err(),
            "remembered, but expired"
        );

        let token = sign(&key, "k1", &claims(60));
        verifier.verify(&token).await.unwrap();
        source.0.lock().unwrap().clear();
        verifier.refresh_keys().await;
        assert!(
            verifier.verify(&token).await.is_err(),
            "its key is no longer published"
        );
    }

    #[tokio::test]
    async fn accepts_a_good_token_and_refuses_each_defect() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let verifier = verifier(&key).await;
        let good = sign(&key, "k1", &claims(60));
        assert_eq!(verifier.verify(&good).await.unwrap(), claims(60));

        let refused = |token: String| {
            let verifier = &verifier;
            async move { verifier.verify(&token).await.unwrap_err().code() }
        };
        assert_eq!(
            refused(sign(&key, "k1", &claims(-60))).await,
            tonic::Code::Unauthenticated,
            "expired"
        );
        let mut wrong_aud = claims(60);
        wrong_aud.aud = "other".into();
        assert_eq!(
            refused(sign(&key, "k1", &wrong_aud)).await,
            tonic::Code::Unauthenticated,
            "audience"
        );
        let mut wrong_iss = claims(60);
        wrong_iss.iss = "other".into();
        assert_eq!(
            refused(sign(&key, "k1", &wrong_iss)).await,
            tonic::Code::Unauthenticated,
            "issuer"
        );
        let mut early = claims(600);
        early.nbf += 300;
        assert_eq!(
            refused(sign(&key, "k1", &early)).await,
            tonic::Code::Unauthenticated,
            "not yet valid"
        );
        let stranger = SigningKey::from_bytes(&[2; 32]);
        assert_eq!(
            refused(sign(&stranger, "k1", &claims(60))).await,
            tonic::Code::Unauthenticated,
            "other key, same kid"
        );
        assert_eq!(
            refused(sign(&key, "unknown", &claims(60))).await,
            tonic::Code::Unauthenticated,
            "unknown kid"
        );

        let (head, rest) = good.split_once('.').unwrap();
        let (payload, signature) = rest.split_once('.').unwrap();
        let none = format!("{}.{payload}.", b64(r#"{"alg":"none","kid":"k1"}"#));
        assert_eq!(
            refused(none).await,
            tonic::Code::Unauthenticated,
            "alg none"
        );
        let hs = format!(
            "{}.{payload}.{signature}",
            b64(r#"{"alg":"HS256","kid":"k1"}"#)
        );
        assert_eq!(
            refused(hs).await,
            tonic::Code::Unauthenticated,
            "algorithm confusion"
        );
        assert_eq!(
            refused(format!("{good}.extra")).await,
            tonic::Code::Unauthenticated,
            "four segments"
        );
        assert_eq!(
            refused(format!("{head}.{payload}")).await,
            tonic::Code::Unauthenticated,
            "no signature"
        );
        let mut swapped = claims(60);
        swapped.sub = "someone-else".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&swapped).unwrap());
        assert_eq!(
            refused(format!("{head}.{forged_payload}.{signature}")).await,
            tonic::Code::Unauthenticated,
            "payload swapped under a valid signature"
        );
    }

    #[test]
    fn bearer_header_parsing() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(http::header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(http::header::AUTHORIZATION, "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(http::header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn admin_needs_the_scope_and_no_delegation() {
        let mut claims = claims(60);
        claims.realm = Realm::BackOffice;
        claims.scope = "back_office".into();
        assert!(!claims.is_admin());
        claims.scope = "admin back_office".into();
        assert!(claims.is_admin());
        claims.act = Some(Actor {
            sub: "agent".into(),
            realm: Realm::BackOffice,
        });
        assert!(
            !claims.is_admin(),
            "an impersonation token is never an admin"
        );
    }

    #[test]
    fn services_hold_only_their_permissions_and_are_never_admins() {
        let mut claims = claims(60);
        claims.realm = Realm::Service;
        claims.scope = "admin audit:write service".into();
        assert!(
            !claims.is_admin(),
            "a service token is never an administrator"
        );
        assert!(claims.service_may(permission::AUDIT_WRITE));
        assert!(claims.is_admin_or_service_with(permission::AUDIT_WRITE));
        assert!(!claims.is_admin_or_service_with(permission::PRINCIPALS_WRITE));
        claims.realm = Realm::BackOffice;
        claims.scope = "audit:write back_office".into();
        assert!(
            !claims.service_may(permission::AUDIT_WRITE),
            "only a service account's token carries permissions"
        );
    }

    /// Property tests (proptest; cargo-fuzz needs nightly on every machine that runs CI, proptest
    /// does not): no string verifies unless it is the token that was signed, whatever is changed,
    /// cut or added, and nothing panics. CI runs the default 256 cases per property; a long search:
    /// `PROPTEST_CASES=100000 cargo test -p assist-runtime --lib auth::tests::properties`.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn verifier_now(key: &SigningKey) -> TokenVerifier {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(verifier(key))
        }

        proptest! {
            #[test]
            fn arbitrary_strings_never_verify(token in prop_oneof![
                "[A-Za-z0-9_.-]{0,300}",
                any::<String>(),
            ]) {
                let verifier = verifier_now(&SigningKey::from_bytes(&[1; 32]));
                prop_assert!(!matches!(verifier.verify_cached(&token), Ok(Some(_))));
            }

            #[test]
            fn an_altered_token_never_verifies(
                at in any::<prop::sample::Index>(),
                by in "[A-Za-z0-9_.=-]",
                how in 0..3u8,
            ) {
                let key = SigningKey::from_bytes(&[1; 32]);
                let verifier = verifier_now(&key);
                let token = sign(&key, "k1", &claims(600));
                prop_assert!(matches!(verifier.verify_cached(&token), Ok(Some(_))));
                let i = at.index(token.len());
                let altered = match how {
                    0 => format!("{}{by}{}", &token[..i], &token[i + 1..]),
                    1 => token[..i].to_owned(),
                    _ => format!("{}{by}{}", &token[..i], &token[i..]),
                };
                if altered != token {
                    prop_assert!(
                        !matches!(verifier.verify_cached(&altered), Ok(Some(_))),
                        "{} verified", altered
                    );
                }
            }

            #[test]
            fn re_encoded_claims_never_verify_with_the_old_signature(
                sub in "[a-z0-9-]{1,36}",
                scope in "[a-z _:]{0,40}",
            ) {
                let key = SigningKey::from_bytes(&[1; 32]);
                let verifier = verifier_now(&key);
                let token = sign(&key, "k1", &claims(600));
                let mut parts = token.split('.');
                let (head, original, signature) =
                    (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
                let mut changed = claims(600);
                changed.sub = sub;
                changed.scope = scope;
                let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&changed).unwrap());
                prop_assume!(payload != original);
                let forged = format!("{head}.{payload}.{signature}");
                prop_assert!(!matches!(verifier.verify_cached(&forged), Ok(Some(_))));
            }
        }
    }
}
