//! Token verification: EdDSA JWTs checked against the JWKS of trusted issuers (fetched over gRPC, cached,
//! refetched on an unknown `kid`), the verified claims of a call, and the tower layer that puts them in
//! each request's extensions.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
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

/// The acting party of a delegated (impersonation) token, RFC 8693 `act`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// The scope that makes a back-office user an administrator of the platform.
pub const ADMIN_SCOPE: &str = "admin";

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scope.split(' ').any(|s| s == scope)
    }

    /// A back-office administrator or a service: may call administrative RPCs.
    pub fn is_admin_or_service(&self) -> bool {
        self.act.is_none()
            && (self.realm == Realm::Service
                || (self.realm == Realm::BackOffice && self.has_scope(ADMIN_SCOPE)))
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
        let mut client = self.0.clone();
        Box::pin(async move {
            let jwks = crate::client::retry_idempotent(|| {
                let mut client = client.clone();
                async move {
                    client
                        .get_jwks(assist_proto::identity::v1::GetJwksRequest {})
                        .await
                }
            })
            .await
            .map_err(|status| Error::Unavailable(format!("jwks: {}", status.message())))?;
            let _ = &mut client;
            Ok(jwks
                .into_inner()
                .keys
                .into_iter()
                .map(|k| PublicKey { kid: k.kid, x: k.x })
                .collect())
        })
    }
}

/// One issuer whose tokens a verifier accepts.
pub struct TrustedIssuer {
    pub issuer: String,
    pub keys: Arc<dyn KeySource>,
}

struct CachedKey {
    issuer: usize,
    key: DecodingKey,
}

/// Verifies access tokens of one or more issuers for one audience.
pub struct TokenVerifier {
    issuers: Vec<(TrustedIssuer, Validation)>,
    keys: RwLock<HashMap<String, Arc<CachedKey>>>,
    refetch: tokio::sync::Mutex<Option<Instant>>,
    min_refetch_interval: Duration,
}

const TOKEN_MAX_LEN: usize = 8 * 1024;

impl TokenVerifier {
    pub fn new(audience: &str, issuers: Vec<TrustedIssuer>) -> Self {
        let issuers = issuers
            .into_iter()
            .map(|issuer| {
                let mut validation = Validation::new(Algorithm::EdDSA);
                validation.set_audience(&[audience]);
                validation.set_issuer(&[issuer.issuer.as_str()]);
                validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
                validation.validate_nbf = true;
                validation.leeway = 5;
                (issuer, validation)
            })
            .collect();
        Self {
            issuers,
            keys: RwLock::new(HashMap::new()),
            refetch: tokio::sync::Mutex::new(None),
            min_refetch_interval: Duration::from_secs(1),
        }
    }

    /// Verifies signature, algorithm, issuer, audience, expiry and not-before. Unknown `kid`s trigger one
    /// refetch of every issuer's keys (at most once a second, so forged `kid`s cannot flood the issuer).
    pub async fn verify(&self, token: &str) -> Result<Claims> {
        if let Some(claims) = self.verify_cached(token)? {
            return Ok(claims);
        }
        self.refresh_keys().await;
        self.verify_cached(token)?
            .ok_or_else(|| Error::unauthenticated("invalid access token"))
    }

    /// Verifies with the keys already cached; `Ok(None)` when the token's `kid` is not known yet.
    pub fn verify_cached(&self, token: &str) -> Result<Option<Claims>> {
        let invalid = || Error::unauthenticated("invalid access token");
        if token.len() > TOKEN_MAX_LEN {
            return Err(invalid());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.alg != Algorithm::EdDSA {
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
        let validation = &self.issuers[cached.issuer].1;
        match jsonwebtoken::decode::<Claims>(token, &cached.key, validation) {
            Ok(data) => Ok(Some(data.claims)),
            Err(error) => {
                tracing::debug!(error = %error, "token refused");
                Err(invalid())
            }
        }
    }

    /// Fetches every issuer's keys and replaces the cache (keys no longer published are dropped).
    pub async fn refresh_keys(&self) {
        let mut last = self.refetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refetch_interval) {
            return;
        }
        *last = Some(Instant::now());
        let mut fresh = HashMap::new();
        for (index, (issuer, _)) in self.issuers.iter().enumerate() {
            match issuer.keys.fetch().await {
                Ok(keys) => {
                    for key in keys {
                        match DecodingKey::from_ed_components(&key.x) {
                            Ok(decoding) => {
                                fresh.insert(
                                    key.kid,
                                    Arc::new(CachedKey {
                                        issuer: index,
                                        key: decoding,
                                    }),
                                );
                            }
                            Err(error) => {
                                tracing::warn!(kid = %key.kid, error = %error, "unusable public key skipped")
                            }
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
    }
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

/// gRPC methods any caller may use without a token: health, reflection and the ones a service names.
#[derive(Clone)]
pub struct AuthPolicy {
    pub verifier: Arc<TokenVerifier>,
    pub public_methods: &'static [&'static str],
}

impl AuthPolicy {
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
            match token {
                Some(token) => match policy.verifier.verify(&token).await {
                    Ok(claims) => {
                        request.extensions_mut().insert(Arc::new(claims));
                    }
                    Err(error) => return Ok(Status::from(error).into_http()),
                },
                None if !policy.is_public(request.uri().path()) => {
                    return Ok(Status::unauthenticated("missing access token").into_http());
                }
                None => {}
            }
            inner.call(request).await
        })
    }
}
