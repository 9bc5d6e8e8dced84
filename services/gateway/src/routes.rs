//! The agent-assist routes of the storefront (the Glue-compatible table of issue 4) and of the merchant
//! portal (the same set under `/merchant-portal/`), and the gateway's own: each handler checks its
//! input, calls the services over gRPC and answers a JSON:API document.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::common::v1::{GetJwksRequest, PageInfo, PageRequest};
use assist_proto::identity::v1 as idp;
use assist_proto::impersonation::v1 as imp;
use assist_runtime::auth::{Claims, Realm, bearer};
use assist_runtime::validate::{self, Page};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use http::{HeaderMap, Method, StatusCode, header};
use serde_json::{Map, Value, json};
use tonic::Code;
use tracing::Instrument;

use crate::jsonapi::{self, ApiError, PageParams, attributes, document, text};
use crate::{AppState, Upstreams};

type Shared = State<Arc<AppState>>;
type Answer = Result<Response, ApiError>;

/// Longest password passed on to identity; longer ones cannot be right.
const PASSWORD_MAX: usize = 1024;
/// Longest refresh token or customer reference worth a call.
const OPAQUE_MAX: usize = 512;
const REFERENCE_MAX: usize = 64;
const QUERY_MAX: usize = 100;
const REASON_MAX: usize = 500;

/// Which agent-assist surface a route serves. The storefront's and the merchant portal's handlers are
/// the same; this says what differs between them.
pub struct Portal {
    /// Path prefix of the portal's routes: empty for the storefront.
    pub prefix: &'static str,
    /// What an agent must hold to sign in here and to call the portal's routes.
    pub(crate) capability: dir::Capability,
    pub(crate) target: Target,
    pub(crate) search_kind: &'static str,
    pub(crate) impersonation_kind: &'static str,
    pub(crate) impersonation_failed: ApiError,
    /// The portal's pages and cookies (docs/web.md).
    pub web: WebPortal,
}

/// What differs between the portals' pages.
pub struct WebPortal {
    /// Base of the agent pages: `{pages}/login`, `{pages}/assist`, `{pages}/assist/end`,
    /// `{pages}/logout`.
    pub pages: &'static str,
    /// Where a signed-in agent lands: the search page.
    pub search_path: &'static str,
    /// Where the agent lands once assisting: the upstream's home page.
    pub assisted_home: &'static str,
    pub agent_cookie: &'static str,
    pub assist_cookie: &'static str,
    pub cookie_path: &'static str,
    pub title: &'static str,
    /// "Customer: First Last" / "User: First Last" in the assist bar.
    pub target_label: &'static str,
    pub end_label: &'static str,
}

/// Who a portal's agents assist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Customers,
    MerchantUsers,
}

pub static STOREFRONT: Portal = Portal {
    prefix: "",
    capability: dir::Capability::AssistCustomers,
    target: Target::Customers,
    search_kind: "agent-customer-search",
    impersonation_kind: "agent-customer-impersonation-access-tokens",
    impersonation_failed: jsonapi::IMPERSONATION_FAILED,
    web: WebPortal {
        pages: "/agent",
        search_path: "/agent/customers",
        assisted_home: "/",
        agent_cookie: "assist_agent",
        assist_cookie: "assist_assist",
        cookie_path: "/",
        title: "Storefront agent",
        target_label: "Customer",
        end_label: "End Customer Assistance",
    },
};

pub static MERCHANT_PORTAL: Portal = Portal {
    prefix: "/merchant-portal",
    capability: dir::Capability::AssistMerchantUsers,
    target: Target::MerchantUsers,
    search_kind: "agent-merchant-user-search",
    impersonation_kind: "agent-merchant-user-impersonation-access-tokens",
    impersonation_failed: jsonapi::MERCHANT_USER_IMPERSONATION_FAILED,
    web: WebPortal {
        pages: "/merchant-portal/agent",
        search_path: "/merchant-portal/agent/users",
        assisted_home: "/merchant-portal/",
        agent_cookie: "assist_mp_agent",
        assist_cookie: "assist_mp_assist",
        cookie_path: "/merchant-portal",
        title: "Merchant-portal agent",
        target_label: "User",
        end_label: "End User Assistance",
    },
};

/// Picks the portal of a handler at compile time, so that one handler serves both.
pub(crate) trait Surface: Send + Sync + 'static {
    fn portal() -> &'static Portal;
}

pub(crate) enum Storefront {}
pub(crate) enum MerchantPortal {}

impl Surface for Storefront {
    fn portal() -> &'static Portal {
        &STOREFRONT
    }
}

impl Surface for MerchantPortal {
    fn portal() -> &'static Portal {
        &MERCHANT_PORTAL
    }
}

/// Every route the gateway serves: path (in OpenAPI's template syntax, which axum reads too), method
/// and handler. The router and the OpenAPI document are both built from this one list.
fn table() -> Vec<(String, Method, MethodRouter<Arc<AppState>>)> {
    let mut routes = Vec::new();
    for (prefix, portal) in [
        (STOREFRONT.prefix, portal_routes::<Storefront>()),
        (MERCHANT_PORTAL.prefix, portal_routes::<MerchantPortal>()),
    ] {
        routes.extend(
            portal
                .into_iter()
                .map(|(path, method, handler)| (format!("{prefix}{path}"), method, handler)),
        );
    }
    let own: [(&str, Method, MethodRouter<Arc<AppState>>); 6] = [
        ("/access-tokens", Method::POST, post(customer_access_token)),
        ("/refresh-tokens", Method::POST, post(refresh)),
        (
            "/refresh-tokens/{token}",
            Method::DELETE,
            delete(revoke_refresh),
        ),
        ("/.well-known/jwks.json", Method::GET, get(jwks)),
        ("/openapi.json", Method::GET, get(openapi)),
        ("/healthz", Method::GET, get(healthz)),
    ];
    routes.extend(
        own.into_iter()
            .chain(crate::console::table())
            .chain(crate::conversations::table())
            .map(|(path, method, handler)| (path.to_owned(), method, handler)),
    );
    routes
}

/// The agent-assist routes every portal has, relative to its prefix.
fn portal_routes<P: Surface>() -> Vec<(String, Method, MethodRouter<Arc<AppState>>)> {
    let portal = P::portal();
    vec![
        (
            "/agent-access-tokens".to_owned(),
            Method::POST,
            post(agent_access_token::<P>),
        ),
        (
            format!("/{}", portal.search_kind),
            Method::GET,
            get(agent_search::<P>),
        ),
        (
            format!("/{}", portal.impersonation_kind),
            Method::POST,
            post(start_impersonation::<P>),
        ),
        (
            format!("/{}/{{sessionId}}", portal.impersonation_kind),
            Method::DELETE,
            delete(end_impersonation::<P>),
        ),
        (
            "/agent-assist-sessions".to_owned(),
            Method::GET,
            get(list_sessions::<P>),
        ),
    ]
}

/// The path and method of every route the gateway serves.
pub fn served() -> Vec<(String, Method)> {
    table()
        .into_iter()
        .map(|(path, method, _)| (path, method))
        .collect()
}

/// Every route, behind the request span, the deadline and the body limit.
pub fn router(state: Arc<AppState>) -> Router {
    let timeout = state.checked.request_timeout;
    let body_limit = state.checked.body_limit;
    let mut router = Router::new();
    for (path, _, handler) in table() {
        // Routes on one path with different methods merge.
        router = router.route(&path, handler);
    }
    router
        .merge(crate::web::routes())
        .fallback(crate::proxy::forward)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(timeout, deadline))
        .layer(middleware::from_fn(trace))
        .with_state(state)
}

/// One span per request, a child of the caller's `traceparent`, named by route (never by the raw path,
/// which may carry a refresh token).
async fn trace(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("upstream", |path| path.as_str())
        .to_owned();
    let span = tracing::info_span!("http", method = %request.method(), route = %route);
    assist_runtime::telemetry::set_parent_from(&span, request.headers());
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    assist_runtime::metrics::record_http(&route, response.status().as_u16(), started.elapsed());
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "request served"
        )
    });
    response
}

async fn deadline(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => jsonapi::TIMEOUT.into_response(),
    }
}

pub(crate) fn upstreams(state: &AppState) -> Result<Upstreams, ApiError> {
    state.upstreams.get().cloned().ok_or(jsonapi::UNAVAILABLE)
}

fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            jsonapi::BODY_TOO_LARGE
        } else {
            jsonapi::INVALID_BODY
        }
    })
}

/// A request that carries `token` as its bearer token.
pub(crate) fn as_caller<T>(token: &str, message: T) -> Result<tonic::Request<T>, ApiError> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| jsonapi::INVALID_ACCESS_TOKEN)?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

fn expires_in(expires_at_us: i64) -> i64 {
    ((expires_at_us - assist_runtime::time::now_us()) / 1_000_000).max(0)
}

fn link(state: &AppState, path: &str) -> String {
    format!("{}{path}", state.checked.public_url)
}

/// A 201 token resource as Glue writes it; `prefix` is the portal's.
fn token_created(
    state: &AppState,
    prefix: &str,
    kind: &str,
    id: Value,
    attributes: Value,
) -> Response {
    document(
        StatusCode::CREATED,
        &json!({
            "data": {
                "type": kind,
                "id": id,
                "attributes": attributes,
                "links": { "self": link(state, &format!("{prefix}/{kind}")) },
            }
        }),
    )
}

fn pair_attributes(pair: &idp::TokenPair) -> Value {
    let access = pair.access.clone().unwrap_or_default();
    json!({
        "tokenType": "Bearer",
        "expiresIn": expires_in(access.expires_at_us),
        "accessToken": access.token,
        "refreshToken": pair.refresh_token,
    })
}

/// The end user's address for login throttling: the peer, or behind a trusted proxy the last
/// `X-Forwarded-For` entry (the one that proxy appended; earlier ones are the client's to forge).
pub(crate) fn client_address(
    trust_forwarded_for: bool,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> String {
    if trust_forwarded_for
        && let Some(forwarded) = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .next_back()
            .and_then(|entry| entry.trim().parse::<std::net::IpAddr>().ok())
    {
        return forwarded.to_string();
    }
    peer.ip().to_string()
}

/// Signs in with `username` and `password` of a request document; every refusal is `failed`, except
/// throttling (429) and an unreachable identity.
pub(crate) async fn sign_in(
    upstreams: &Upstreams,
    realm: idp::Realm,
    attributes: &Map<String, Value>,
    client_address: String,
    failed: ApiError,
) -> Result<idp::TokenPair, ApiError> {
    let email = validate::email("username", text(attributes, "username").unwrap_or_default())
        .map_err(|_| failed.clone())?;
    // Passwords are taken as typed: no trimming.
    let password = text(attributes, "password").unwrap_or_default();
    if password.is_empty()
        || password.chars().count() > PASSWORD_MAX
        || password.chars().any(char::is_control)
    {
        return Err(failed);
    }
    let request = idp::LoginRequest {
        realm: realm as i32,
        email,
        password: password.to_owned(),
        client_address,
    };
    // With the service token: identity takes `client_address` only from a service granted
    // `signin:relay`, so each client is throttled by its own address, not all by the gateway's.
    match upstreams.identity_service.clone().login(request).await {
        Ok(reply) => Ok(reply.into_inner()),
        Err(status) => Err(match status.code() {
            Code::ResourceExhausted => jsonapi::TOO_MANY_REQUESTS,
            Code::Unauthenticated
            | Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::FailedPrecondition => failed,
            _ => ApiError::from_status(&status),
        }),
    }
}

/// Whether the back-office principal `id` holds `capability` now.
pub(crate) async fn holds(
    upstreams: &Upstreams,
    id: &str,
    capability: dir::Capability,
) -> Result<bool, ApiError> {
    let request = dir::GetAgentRequest { id: id.to_owned() };
    match upstreams.agents.clone().get_agent(request).await {
        Ok(agent) => Ok(agent
            .into_inner()
            .capabilities
            .contains(&(capability as i32))),
        Err(status) if matches!(status.code(), Code::NotFound | Code::PermissionDenied) => {
            Ok(false)
        }
        Err(status) => Err(ApiError::from_status(&status)),
    }
}

/// A back-office user holding `portal`'s agent capability signs in with `username` and `password` of
/// `attributes`; anyone else (an agent of the other portal only, too) is refused like a wrong password.
pub(crate) async fn agent_sign_in(
    upstreams: &Upstreams,
    portal: &Portal,
    attributes: &Map<String, Value>,
    client_address: String,
) -> Result<idp::TokenPair, ApiError> {
    let pair = sign_in(
        upstreams,
        idp::Realm::BackOffice,
        attributes,
        client_address,
        jsonapi::AGENT_LOGIN_FAILED,
    )
    .await?;
    if !holds(upstreams, &pair.principal_id, portal.capability).await? {
        // Signed in, but not as an agent: the pair is spent at once and the answer is the same as for
        // a wrong password.
        let revoke = idp::RevokeRefreshTokenRequest {
            refresh_token: pair.refresh_token.clone(),
        };
        if let Err(status) = upstreams
            .identity
            .clone()
            .revoke_refresh_token(revoke)
            .await
        {
            tracing::warn!(error = %status.message(), "revoking a non-agent's refresh token failed");
        }
        return Err(jsonapi::AGENT_LOGIN_FAILED);
    }
    tracing::info!(agent_id = %pair.principal_id, portal = portal.prefix, "agent signed in");
    Ok(pair)
}

/// `POST /agent-access-tokens`: an agent of the portal signs in.
async fn agent_access_token<P: Surface>(
    State(state): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let attributes = attributes(&body(raw)?, "agent-access-tokens")?;
    let client = client_address(state.checked.trust_forwarded_for, peer, &headers);
    let portal = P::portal();
    let pair = agent_sign_in(&upstreams(&state)?, portal, &attributes, client).await?;
    Ok(token_created(
        &state,
        portal.prefix,
        "agent-access-tokens",
        Value::Null,
        pair_attributes(&pair),
    ))
}

/// `POST /access-tokens`: a customer signs in.
async fn customer_access_token(
    State(state): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let attributes = attributes(&body(raw)?, "access-tokens")?;
    let client = client_address(state.checked.trust_forwarded_for, peer, &headers);
    let upstreams = upstreams(&state)?;
    let pair = sign_in(
        &upstreams,
        idp::Realm::Customer,
        &attributes,
        client,
        jsonapi::USER_LOGIN_FAILED,
    )
    .await?;
    Ok(token_created(
        &state,
        "",
        "access-tokens",
        Value::Null,
        pair_attributes(&pair),
    ))
}

/// `POST /refresh-tokens`: a new pair for a refresh token, which is spent.
async fn refresh(State(state): Shared, raw: Result<Bytes, BytesRejection>) -> Answer {
    let attributes = attributes(&body(raw)?, "refresh-tokens")?;
    let token = text(&attributes, "refreshToken").unwrap_or_default().trim();
    if token.is_empty() {
        return Err(jsonapi::REFRESH_TOKEN_MISSING);
    }
    if token.len() > OPAQUE_MAX || token.chars().any(char::is_control) {
        return Err(jsonapi::REFRESH_FAILED);
    }
    let request = idp::RefreshRequest {
        refresh_token: token.to_owned(),
    };
    match upstreams(&state)?.identity.refresh(request).await {
        Ok(pair) => Ok(token_created(
            &state,
            "",
            "refresh-tokens",
            Value::Null,
            pair_attributes(&pair.into_inner()),
        )),
        Err(status) => Err(match status.code() {
            Code::ResourceExhausted => jsonapi::TOO_MANY_REQUESTS,
            Code::Unauthenticated
            | Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::FailedPrecondition => jsonapi::REFRESH_FAILED,
            _ => ApiError::from_status(&status),
        }),
    }
}

/// `DELETE /refresh-tokens/{token}`: revokes one refresh token (and its family); `mine` revokes every
/// refresh token of the caller, who must present an access token.
async fn revoke_refresh(
    State(state): Shared,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let upstreams = upstreams(&state)?;
    if token == "mine" {
        if !headers.contains_key(header::AUTHORIZATION) {
            return Err(jsonapi::MISSING_ACCESS_TOKEN);
        }
        let access = bearer(&headers).ok_or(jsonapi::INVALID_ACCESS_TOKEN)?;
        let claims = verify(&state, access, jsonapi::INVALID_ACCESS_TOKEN).await?;
        let request = idp::RevokeAllRefreshTokensRequest {
            principal_id: claims.sub,
        };
        upstreams
            .identity
            .clone()
            .revoke_all_refresh_tokens(as_caller(access, request)?)
            .await
            .map_err(|status| ApiError::from_status(&status))?;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if token.len() > OPAQUE_MAX || token.chars().any(char::is_control) {
        return Err(jsonapi::REFRESH_FAILED);
    }
    let request = idp::RevokeRefreshTokenRequest {
        refresh_token: token,
    };
    match upstreams
        .identity
        .clone()
        .revoke_refresh_token(request)
        .await
    {
        Ok(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(status) if status.code() == Code::InvalidArgument => Err(jsonapi::REFRESH_FAILED),
        Err(status) => Err(ApiError::from_status(&status)),
    }
}

/// Verifies one of identity's access tokens; `invalid` when it does not verify.
pub(crate) async fn verify(
    state: &AppState,
    token: &str,
    invalid: ApiError,
) -> Result<Claims, ApiError> {
    match state.verifier.verify(token).await {
        Ok(claims) => Ok(claims),
        Err(assist_runtime::Error::Unavailable(_)) => Err(jsonapi::UNAVAILABLE),
        Err(_) => Err(invalid),
    }
}

/// An agent of a portal, and the token they called with.
struct CallingAgent {
    token: String,
    claims: Claims,
}

/// The agent behind a request, as Glue finds them: `X-Agent-Authorization` when present (4102 when it
/// does not verify), otherwise `Authorization` (4103 when missing, 001 when it does not verify). A
/// token that verifies but is not that of an agent holding `capability` is 4103 either way.
async fn calling_agent(
    state: &AppState,
    upstreams: &Upstreams,
    headers: &HeaderMap,
    capability: dir::Capability,
) -> Result<CallingAgent, ApiError> {
    let (token, invalid) = match headers.get("x-agent-authorization") {
        Some(value) => {
            // The same `Bearer <token>` syntax as `Authorization`, read by the same parser.
            let mut only = HeaderMap::new();
            only.insert(header::AUTHORIZATION, value.clone());
            (
                bearer(&only).map(str::to_owned),
                jsonapi::INVALID_AGENT_TOKEN,
            )
        }
        None if headers.contains_key(header::AUTHORIZATION) => (
            bearer(headers).map(str::to_owned),
            jsonapi::INVALID_ACCESS_TOKEN,
        ),
        None => return Err(jsonapi::AGENT_ONLY),
    };
    let token = token
        .filter(|token| !token.is_empty())
        .ok_or_else(|| invalid.clone())?;
    let claims = verify(state, &token, invalid).await?;
    if claims.realm != Realm::BackOffice
        || claims.is_delegated()
        || !holds(upstreams, &claims.sub, capability).await?
    {
        return Err(jsonapi::AGENT_ONLY);
    }
    Ok(CallingAgent { token, claims })
}

pub(crate) fn page_of(offset: Option<u64>, limit: Option<u32>) -> Result<Page, ApiError> {
    // Over gRPC a limit of 0 means "the default"; over HTTP one gives no limit for that.
    if limit == Some(0) {
        return Err(ApiError::bad_request("page[limit]: must be from 1 to 100"));
    }
    Ok(Page::new(limit.unwrap_or(0), offset.unwrap_or(0))?)
}

/// A checked page as the services' `PageRequest`.
fn page_request(page: Page) -> PageRequest {
    PageRequest {
        limit: page.limit,
        offset: page.offset,
    }
}

/// `page[offset]` and `page[limit]` checked, as the services' `PageRequest`.
pub(crate) fn requested_page(
    offset: Option<u64>,
    limit: Option<u32>,
) -> Result<PageRequest, ApiError> {
    Ok(page_request(page_of(offset, limit)?))
}

#[derive(Debug, Default, serde::Deserialize)]
struct SearchParams {
    q: Option<String>,
    #[serde(rename = "page[offset]")]
    offset: Option<u64>,
    #[serde(rename = "page[limit]")]
    limit: Option<u32>,
}

/// `GET /agent-customer-search` and `/merchant-portal/agent-merchant-user-search`: the portal's targets
/// by name, email (and customer reference), paged, for an agent.
async fn agent_search<P: Surface>(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<SearchParams>, QueryRejection>,
) -> Answer {
    let portal = P::portal();
    let upstreams = upstreams(&state)?;
    calling_agent(&state, &upstreams, &headers, portal.capability).await?;
    let Query(params) = query.map_err(|_| jsonapi::INVALID_QUERY)?;
    let q = validate::optional("q", params.q.as_deref().unwrap_or_default(), QUERY_MAX)?;
    let page = page_of(params.offset, params.limit)?;
    let (key, found, info) = match portal.target {
        Target::Customers => search_customers(&upstreams, &q, page).await?,
        Target::MerchantUsers => search_merchant_users(&upstreams, &q, page).await?,
    };
    let path = format!("{}/{}", portal.prefix, portal.search_kind);
    let base = if q.is_empty() {
        link(&state, &format!("{path}?"))
    } else {
        link(
            &state,
            &format!("{path}?q={}&", jsonapi::encode_query_value(&q)),
        )
    };
    let links = jsonapi::page_links(&base, page.offset, page.limit, info.total, info.total_exact);
    Ok(document(
        StatusCode::OK,
        &json!({
            "data": [{
                "type": portal.search_kind,
                "id": null,
                "attributes": { key: found },
                "links": { "self": links["self"] },
            }],
            "links": links,
        }),
    ))
}

pub(crate) type Found = (&'static str, Vec<Value>, PageInfo);

pub(crate) async fn search_customers(
    upstreams: &Upstreams,
    q: &str,
    page: Page,
) -> Result<Found, ApiError> {
    let request = idp::SearchCustomersRequest {
        query: q.to_owned(),
        page: Some(page_request(page)),
    };
    let reply = upstreams
        .identity_service
        .clone()
        .search_customers(request)
        .await
        .map_err(|status| ApiError::from_status(&status))?
        .into_inner();
    let customers = reply
        .customers
        .iter()
        .map(|c| {
            json!({
                "customerReference": c.customer_reference,
                "email": c.email,
                "firstName": c.first_name,
                "lastName": c.last_name,
            })
        })
        .collect();
    Ok(("customers", customers, reply.page.unwrap_or_default()))
}

pub(crate) async fn search_merchant_users(
    upstreams: &Upstreams,
    q: &str,
    page: Page,
) -> Result<Found, ApiError> {
    let request = idp::SearchMerchantUsersRequest {
        query: q.to_owned(),
        page: Some(page_request(page)),
        status: 0,
    };
    let reply = upstreams
        .identity_service
        .clone()
        .search_merchant_users(request)
        .await
        .map_err(|status| ApiError::from_status(&status))?
        .into_inner();
    let users = reply
        .merchant_users
        .iter()
        .map(|u| {
            json!({
                "merchantUserId": u.id,
                "merchantName": u.merchant_name,
                "firstName": u.first_name,
                "lastName": u.last_name,
                "email": u.email,
                "status": principal_status(u.status),
            })
        })
        .collect();
    Ok(("merchantUsers", users, reply.page.unwrap_or_default()))
}

/// A principal status as a word: `active`, `invited`, `blocked`, `inactive`, `deleted`.
pub(crate) fn principal_status(value: i32) -> String {
    idp::PrincipalStatus::try_from(value)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("PRINCIPAL_STATUS_")
        .to_ascii_lowercase()
}

/// The customer whose reference is exactly `reference` (references are case-insensitive).
pub(crate) async fn customer_by_reference(
    upstreams: &Upstreams,
    reference: &str,
) -> Result<Option<idp::CustomerSummary>, ApiError> {
    // Identity answers the exact reference first, ahead of prefix matches.
    let request = idp::SearchCustomersRequest {
        query: reference.to_owned(),
        page: Some(PageRequest {
            limit: 1,
            offset: 0,
        }),
    };
    let reply = upstreams
        .identity_service
        .clone()
        .search_customers(request)
        .await
        .map_err(|status| ApiError::from_status(&status))?
        .into_inner();
    Ok(reply
        .customers
        .into_iter()
        .find(|c| c.customer_reference.eq_ignore_ascii_case(reference)))
}

fn valid_reference(reference: &str) -> bool {
    !reference.is_empty()
        && reference.len() <= REFERENCE_MAX
        && reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The merchant user whose id is `id`, with their name; `None` for an unknown id or another kind of
/// principal (which the merchant portal must not start a session on, whatever the agent may do in the
/// storefront).
async fn merchant_user(upstreams: &Upstreams, id: &str) -> Result<Option<Assisted>, ApiError> {
    Ok(principal(upstreams, id).await?.and_then(|p| match p.kind {
        Some(idp::principal::Kind::MerchantUser(user)) => Some(Assisted {
            id: p.id,
            name: idp::person_name(&user.first_name, &user.last_name),
        }),
        _ => None,
    }))
}

/// The customer whose principal id is `id`, with their name; `None` for an unknown id or another kind
/// of principal.
pub(crate) async fn customer_by_id(
    upstreams: &Upstreams,
    id: &str,
) -> Result<Option<Assisted>, ApiError> {
    Ok(principal(upstreams, id).await?.and_then(|p| match p.kind {
        Some(idp::principal::Kind::Customer(customer)) => Some(Assisted {
            id: p.id,
            name: idp::person_name(&customer.first_name, &customer.last_name),
        }),
        _ => None,
    }))
}

/// The principal `id` as identity has it (the gateway's service token); `None` when there is none.
pub(crate) async fn principal(
    upstreams: &Upstreams,
    id: &str,
) -> Result<Option<idp::Principal>, ApiError> {
    let request = idp::GetPrincipalRequest { id: id.to_owned() };
    match upstreams
        .identity_service
        .clone()
        .get_principal(request)
        .await
    {
        Ok(reply) => Ok(Some(reply.into_inner())),
        Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => Ok(None),
        Err(status) => Err(ApiError::from_status(&status)),
    }
}

/// Who a session assists: their principal id and their name, as the assist bar shows it.
pub(crate) struct Assisted {
    pub id: String,
    pub name: String,
}

/// A session just started.
pub(crate) struct Opened {
    pub started: imp::StartAssistResponse,
    pub target: Assisted,
}

impl Opened {
    pub fn session_id(&self) -> &str {
        self.started.session.as_ref().map_or("", |s| s.id.as_str())
    }
}

/// The agent (signed in with `agent_token`) starts assisting the portal's target named in
/// `attributes`: a customer by `customerReference`, a merchant user by `merchantUserId`; `reason` is
/// optional. Every refusal about the target is the portal's `impersonation_failed`.
pub(crate) async fn open_session(
    upstreams: &Upstreams,
    portal: &Portal,
    agent_token: &str,
    attributes: &Map<String, Value>,
) -> Result<Opened, ApiError> {
    let failed = || portal.impersonation_failed.clone();
    let reason = validate::optional(
        "reason",
        text(attributes, "reason").unwrap_or_default(),
        REASON_MAX,
    )?;
    let target = match portal.target {
        Target::Customers => {
            let reference = text(attributes, "customerReference")
                .unwrap_or_default()
                .trim();
            if !valid_reference(reference) {
                return Err(failed());
            }
            let customer = customer_by_reference(upstreams, reference)
                .await?
                .ok_or_else(failed)?;
            Assisted {
                id: customer.id,
                name: idp::person_name(&customer.first_name, &customer.last_name),
            }
        }
        Target::MerchantUsers => {
            let id = text(attributes, "merchantUserId")
                .unwrap_or_default()
                .trim();
            let id = validate::id("merchantUserId", id).map_err(|_| failed())?;
            merchant_user(upstreams, &id.to_string())
                .await?
                .ok_or_else(failed)?
        }
    };
    start_session(
        upstreams,
        portal,
        agent_token,
        target,
        reason,
        String::new(),
    )
    .await
}

/// The agent (signed in with `agent_token`) starts assisting `target` in `portal`, for `reason` and
/// conversation `conversation_id` (either may be empty). Refusals about the target are the portal's
/// `impersonation_failed`.
pub(crate) async fn start_session(
    upstreams: &Upstreams,
    portal: &Portal,
    agent_token: &str,
    target: Assisted,
    reason: String,
    conversation_id: String,
) -> Result<Opened, ApiError> {
    let failed = || portal.impersonation_failed.clone();
    let request = imp::StartAssistRequest {
        target_id: target.id.clone(),
        reason,
        conversation_id,
        ..Default::default()
    };
    match upstreams
        .impersonation
        .clone()
        .start_assist(as_caller(agent_token, request)?)
        .await
    {
        Ok(reply) => Ok(Opened {
            started: reply.into_inner(),
            target,
        }),
        Err(status) => Err(match status.code() {
            Code::ResourceExhausted
            | Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Internal
            | Code::Unknown => ApiError::from_status(&status),
            _ => failed(),
        }),
    }
}

/// `POST /agent-customer-impersonation-access-tokens` and
/// `/merchant-portal/agent-merchant-user-impersonation-access-tokens`: the agent starts assisting a
/// customer or a merchant user and gets an impersonation token (not refreshable; the resource id is
/// the session id).
async fn start_impersonation<P: Surface>(
    State(state): Shared,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Answer {
    let portal = P::portal();
    let upstreams = upstreams(&state)?;
    let agent = calling_agent(&state, &upstreams, &headers, portal.capability).await?;
    let attributes = attributes(&body(raw)?, portal.impersonation_kind)?;
    let opened = open_session(&upstreams, portal, &agent.token, &attributes).await?;
    let session_id = opened.session_id().to_owned();
    let started = opened.started;
    tracing::info!(
        agent_id = %agent.claims.sub,
        session_id = %session_id,
        portal = portal.prefix,
        "assist session started"
    );
    Ok(token_created(
        &state,
        portal.prefix,
        portal.impersonation_kind,
        Value::String(session_id),
        json!({
            "tokenType": "Bearer",
            "expiresIn": started.expires_in,
            "accessToken": started.access_token,
            "refreshToken": null,
        }),
    ))
}

/// Ends session `session_id` as the agent signed in with `agent_token` (idempotent).
pub(crate) async fn close_session(
    upstreams: &Upstreams,
    agent_token: &str,
    session_id: &str,
) -> Result<(), ApiError> {
    let session_id = validate::id("sessionId", session_id).map_err(|_| jsonapi::NOT_FOUND)?;
    let request = imp::EndAssistRequest {
        session_id: session_id.to_string(),
    };
    upstreams
        .impersonation
        .clone()
        .end_assist(as_caller(agent_token, request)?)
        .await
        .map_err(|status| ApiError::from_status(&status))?;
    // This replica refuses the session's token from now on, not only once the end comes back
    // through the revocation watch.
    upstreams.sessions.mark_ended(&session_id.to_string());
    tracing::info!(session_id = %session_id, "assist session ended");
    Ok(())
}

/// `DELETE /agent-customer-impersonation-access-tokens/{sessionId}` (and the merchant portal's): the
/// agent ends a session.
async fn end_impersonation<P: Surface>(
    State(state): Shared,
    headers: HeaderMap,
    Path(session_id): Path<String>,
) -> Answer {
    let upstreams = upstreams(&state)?;
    let agent = calling_agent(&state, &upstreams, &headers, P::portal().capability).await?;
    close_session(&upstreams, &agent.token, &session_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn target_realm(value: i32) -> &'static str {
    match imp::TargetRealm::try_from(value) {
        Ok(imp::TargetRealm::Customer) => "customer",
        Ok(imp::TargetRealm::MerchantUser) => "merchant_user",
        _ => "unspecified",
    }
}

fn end_reason(value: i32) -> Value {
    match imp::EndReason::try_from(value) {
        Ok(imp::EndReason::Unspecified) | Err(_) => Value::Null,
        Ok(reason) => {
            let name = reason.as_str_name();
            Value::String(name.trim_start_matches("END_REASON_").to_ascii_lowercase())
        }
    }
}

/// `GET /agent-assist-sessions` (and the merchant portal's): the calling agent's sessions in both
/// portals, newest first, paged (`targetRealm` tells them apart).
async fn list_sessions<P: Surface>(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<PageParams>, QueryRejection>,
) -> Answer {
    let upstreams = upstreams(&state)?;
    let portal = P::portal();
    let agent = calling_agent(&state, &upstreams, &headers, portal.capability).await?;
    let Query(params) = query.map_err(|_| jsonapi::INVALID_QUERY)?;
    let page = page_of(params.offset, params.limit)?;
    let request = imp::ListSessionsRequest {
        page: Some(page_request(page)),
        agent_id: agent.claims.sub.clone(),
        ..Default::default()
    };
    let reply = upstreams
        .impersonation
        .clone()
        .list_sessions(as_caller(&agent.token, request)?)
        .await
        .map_err(|status| ApiError::from_status(&status))?
        .into_inner();
    let info = reply.page.unwrap_or_default();
    let sessions: Vec<Value> = reply
        .sessions
        .iter()
        .map(|s| {
            json!({
                "type": "agent-assist-sessions",
                "id": s.id,
                "attributes": {
                    "targetId": s.target_id,
                    "targetRealm": target_realm(s.target_realm),
                    "reason": s.reason,
                    "active": s.active,
                    "startedAtUs": s.started_at_us,
                    "expiresAtUs": s.expires_at_us,
                    "endedAtUs": if s.active { Value::Null } else { s.ended_at_us.into() },
                    "endReason": end_reason(s.end_reason),
                    "actionCount": s.action_count,
                },
            })
        })
        .collect();
    let base = link(&state, &format!("{}/agent-assist-sessions?", portal.prefix));
    Ok(document(
        StatusCode::OK,
        &json!({
            "data": sessions,
            "links": jsonapi::page_links(&base, page.offset, page.limit, info.total, info.total_exact),
        }),
    ))
}

/// `GET /.well-known/jwks.json`: identity's and impersonation-token's public keys in one set.
async fn jwks(State(state): Shared) -> Answer {
    let upstreams = upstreams(&state)?;
    let mut identity = upstreams.identity.clone();
    let mut impersonation = upstreams.impersonation.clone();
    let (own, delegated) = tokio::join!(
        identity.get_jwks(GetJwksRequest {}),
        impersonation.get_jwks(GetJwksRequest {}),
    );
    let mut keys = Vec::new();
    for set in [own, delegated] {
        let set = set.map_err(|status| ApiError::from_status(&status))?;
        keys.extend(set.into_inner().keys.into_iter().map(|k| {
            json!({ "kid": k.kid, "kty": k.kty, "crv": k.crv, "x": k.x, "alg": k.alg, "use": k.r#use })
        }));
    }
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "public, max-age=60"),
        ],
        json!({ "keys": keys }).to_string(),
    )
        .into_response())
}

/// `GET /openapi.json`: the OpenAPI document of every route above.
async fn openapi(State(state): Shared) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::document(&state.checked.public_url).to_string(),
    )
        .into_response()
}

/// `GET /healthz`: 200 once the gateway can reach the services with its token, 503 before and while
/// shutting down.
async fn healthz(State(state): Shared) -> Response {
    let status = if *state.shutdown.borrow() {
        "stopping"
    } else if state.upstreams.get().is_none() {
        "starting"
    } else {
        "serving"
    };
    let code = if status == "serving" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "status": status }).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_checked_before_any_call() {
        assert!(valid_reference("DE--42"));
        for bad in ["", "DE 42", "DE--42;", &"A".repeat(REFERENCE_MAX + 1)] {
            assert!(!valid_reference(bad), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_addresses_only_when_trusted() {
        let peer: SocketAddr = "10.0.0.9:4000".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "1.2.3.4, 5.6.7.8".parse().unwrap());
        assert_eq!(client_address(false, peer, &headers), "10.0.0.9");
        assert_eq!(
            client_address(true, peer, &headers),
            "5.6.7.8",
            "the proxy's entry"
        );
        headers.insert("x-forwarded-for", "not an address".parse().unwrap());
        assert_eq!(client_address(true, peer, &headers), "10.0.0.9");
    }

    #[test]
    fn end_reasons_read_as_words() {
        assert_eq!(
            end_reason(imp::EndReason::EndedByAgent as i32),
            "ended_by_agent"
        );
        assert_eq!(end_reason(0), Value::Null);
    }
}
