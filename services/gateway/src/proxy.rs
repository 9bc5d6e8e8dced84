//! The gateway in front of the shop and the merchant portal: every path that is not the gateway's own
//! is forwarded to the configured upstream with the right token (docs/web.md, "Who serves what"):
//! the request's own `Authorization`, else the impersonation token of an assist session of this
//! browser, else the signed-in customer's token, else none. Tokens are admitted with the same
//! `assist-runtime` policy the services use (signature, expiry, the session live, sensitive paths
//! refused to impersonation tokens), and each request forwarded with an impersonation token is
//! recorded in the session's audit log.

use std::net::SocketAddr;
use std::sync::Arc;

use assist_runtime::auth::bearer;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::routes::{MERCHANT_PORTAL, Portal, STOREFRONT};
use crate::web::{self, cookies};
use crate::{AppState, jsonapi};
use jar::Jar;

pub(crate) mod jar;
mod path;

pub type HttpClient = Client<HttpConnector, Body>;

/// Largest upstream HTML page the assist bar is inserted into; larger pages are refused while
/// assisting rather than shown without the bar.
const PAGE_LIMIT: usize = 4 * 1024 * 1024;

/// The client the proxy forwards with: HTTP/1.1, pooled connections.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1): never forwarded either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request headers a client may send to make an upstream believe something only the gateway may say
/// (where the request came from, which URL or method it was): never forwarded. `X-Forwarded-*` are
/// taken out too, and the gateway sets its own.
const CLIENT_CLAIMS: &[&str] = &[
    "forwarded",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-agent-authorization",
];

/// The headers a message's `Connection` header names: hop-by-hop for this message only.
fn connection_named(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Which portal a forwarded path belongs to.
fn portal_of(path: &str) -> &'static Portal {
    if path == MERCHANT_PORTAL.prefix || path.starts_with("/merchant-portal/") {
        &MERCHANT_PORTAL
    } else {
        &STOREFRONT
    }
}

/// Where a request's token came from: it decides what a refusal looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The request's own `Authorization` header (an API client): refusals are JSON:API errors.
    Header,
    /// The browser's assist-session cookie.
    AssistCookie,
    /// The browser's customer sign-in cookie.
    CustomerCookie,
}

/// The fallback route: forwards to the upstream of the path's portal (404 when none is configured).
pub async fn forward(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    // One reading of the path for the checks below and for the upstream (`path`'s module doc).
    let path = match path::canonical(request.uri().path()) {
        Ok(path) => path,
        Err(refusal) => return jsonapi::ApiError::bad_request(refusal.detail()).into_response(),
    };
    let portal = portal_of(&path);
    let upstream = if std::ptr::eq(portal, &MERCHANT_PORTAL) {
        state.checked.merchant_portal_upstream.clone()
    } else {
        state.checked.storefront_upstream.clone()
    };
    let Some(upstream) = upstream else {
        return jsonapi::NOT_FOUND.into_response();
    };
    if !web::same_origin(&state, request.headers(), request.method()) {
        return web::page_error(StatusCode::FORBIDDEN, "Cross-site requests are refused.");
    }
    let Ok(upstreams) = crate::routes::upstreams(&state) else {
        return jsonapi::UNAVAILABLE.into_response();
    };

    let headers = request.headers();
    let assist = cookies::assist_of(headers, portal, &state.cookie_key);
    let mut set_cookies = Vec::new();
    // The assist bar's forms need this browser's CSRF token.
    let csrf = assist
        .is_some()
        .then(|| web::csrf(&state, headers, &mut set_cookies));
    let (token, source) = if headers.contains_key(header::AUTHORIZATION) {
        match bearer(headers) {
            Some(token) => (Some(token.to_owned()), Source::Header),
            None => return jsonapi::INVALID_ACCESS_TOKEN.into_response(),
        }
    } else if let Some(assist) = &assist {
        (Some(assist.token.clone()), Source::AssistCookie)
    } else if std::ptr::eq(portal, &STOREFRONT)
        && let Some(customer) =
            web::customer_token(&state, &upstreams, headers, &mut set_cookies).await
    {
        (Some(customer), Source::CustomerCookie)
    } else {
        (None, Source::CustomerCookie)
    };

    let method = request.method().clone();
    let bar = assist
        .as_ref()
        .zip(csrf.as_deref())
        .map(|(assist, csrf)| web::html::bar(portal, &assist.name, csrf));
    let mut session = None;
    if let Some(token) = &token {
        match upstreams
            .proxy_policy
            .admit(token, method.as_str(), &path)
            .await
        {
            Ok(admitted) => session = admitted.session,
            Err(error) => {
                use assist_runtime::Error;
                let from_assist = source == Source::AssistCookie;
                let ended = !matches!(error, Error::PermissionDenied(_) | Error::Unavailable(_));
                if from_assist && ended {
                    // The session is over: so is its jar.
                    set_cookies.extend(jar::expire_others(headers, portal, None));
                }
                let bar = from_assist.then_some(bar).flatten();
                return web::with_cookies(refused(portal, source, error, bar), set_cookies);
            }
        }
    }
    // The jars of sessions other than this browser's current one go.
    let browser_jar = assist.as_ref().map(|a| Jar::of(portal, &a.session_id));
    set_cookies.extend(jar::expire_others(headers, portal, browser_jar.as_ref()));

    let raw_path = request.uri().path().to_owned();
    let jar = session
        .as_deref()
        .filter(|_| source == Source::AssistCookie)
        .map(|sid| Jar::of(portal, sid));
    let assisting = jar.is_some();
    let forwarded = match outgoing(
        &upstream,
        peer,
        &state,
        request,
        token.as_deref(),
        jar.as_ref(),
    ) {
        Ok(forwarded) => forwarded,
        Err(response) => return *response,
    };
    let answer = state.http.request(forwarded).await;
    // Recorded whatever came of it: an attempt the upstream never answered is still an attempt.
    let status = answer
        .as_ref()
        .map_or(StatusCode::BAD_GATEWAY, |answer| answer.status());
    if let Some(sid) = session {
        upstreams
            .sessions
            .record(sid, method.as_str(), &raw_path, status.as_str());
    }
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => {
            tracing::warn!(error = %error, upstream = %upstream, "upstream request failed");
            return web::page_error(StatusCode::BAD_GATEWAY, "The shop is not reachable.");
        }
    };
    let mut response = incoming(answer.map(Body::new));
    jar::from_upstream(
        response.headers_mut(),
        jar.as_ref(),
        state.checked.secure_cookies,
    );
    if assisting
        && is_html(response.headers())
        && let Some(bar) = &bar
    {
        response = with_bar(response, bar).await;
    }
    web::with_cookies(response, set_cookies)
}

/// What a refused token gets: an API client a JSON:API error; a browser whose assist session ended
/// is sent back to the agent's page with the session cookie cleared; a sensitive page a 403 page (with
/// the assist bar when it is the browser's session).
fn refused(
    portal: &'static Portal,
    source: Source,
    error: assist_runtime::Error,
    bar: Option<String>,
) -> Response {
    use assist_runtime::Error;
    match (source, &error) {
        (_, Error::PermissionDenied(_)) => web::page_error_with_bar(
            StatusCode::FORBIDDEN,
            "Not available while assisting: this page touches the account's credentials, email, \
             payment methods or deletion.",
            bar.as_deref(),
        ),
        (_, Error::Unavailable(_)) => jsonapi::UNAVAILABLE.into_response(),
        (Source::Header, _) => jsonapi::INVALID_ACCESS_TOKEN.into_response(),
        (Source::AssistCookie, _) => {
            let mut response = web::redirect(&format!("{}?ended=1", portal.web.search_path));
            response.headers_mut().append(
                header::SET_COOKIE,
                cookies::clear(portal.web.assist_cookie, portal),
            );
            response
        }
        (Source::CustomerCookie, _) => {
            let mut response = web::redirect("/login");
            response.headers_mut().append(
                header::SET_COOKIE,
                cookies::clear(cookies::CUSTOMER, &STOREFRONT),
            );
            response
        }
    }
}

/// The request as the upstream gets it: its URI, the token as `Authorization`, the cookies it may see
/// (`jar`), hop-by-hop headers and headers only the gateway may set taken out, `X-Forwarded-*`
/// added.
fn outgoing(
    upstream: &Uri,
    peer: SocketAddr,
    state: &AppState,
    request: Request,
    token: Option<&str>,
    jar: Option<&Jar>,
) -> Result<http::Request<Body>, Box<Response>> {
    let (mut parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let base_path = upstream.path().trim_end_matches('/');
    let uri = Uri::builder()
        .scheme(upstream.scheme_str().unwrap_or("http"))
        .authority(upstream.authority().map_or("", |a| a.as_str()))
        .path_and_query(format!("{base_path}{path_and_query}"))
        .build()
        .map_err(|_| {
            Box::new(web::page_error(
                StatusCode::BAD_REQUEST,
                "This address is not valid.",
            ))
        })?;
    let named = connection_named(&parts.headers);
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 4);
    for (name, value) in parts.headers.iter() {
        if HOP_BY_HOP.contains(&name.as_str())
            || CLIENT_CLAIMS.contains(&name.as_str())
            || named.iter().any(|named| named == name.as_str())
            || name == header::HOST
            || name == header::AUTHORIZATION
            || name == header::COOKIE
            || name == header::ACCEPT_ENCODING
            || name.as_str().starts_with("x-forwarded-")
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    if let Some(cookie) = jar::forwarded(&parts.headers, jar) {
        headers.insert(header::COOKIE, cookie);
    }
    if let Some(token) = token
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        headers.insert(header::AUTHORIZATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&peer.ip().to_string()) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    let proto = if state.checked.secure_cookies {
        "https"
    } else {
        "http"
    };
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(proto),
    );
    // The host the browser was told, not whatever `Host` a client sent.
    if let Some(host) = public_host(&state.checked.public_url) {
        headers.insert(HeaderName::from_static("x-forwarded-host"), host);
    }
    parts.uri = uri;
    parts.headers = headers;
    parts.version = http::Version::HTTP_11;
    Ok(http::Request::from_parts(parts, body))
}

/// The host (and port) of the configured public URL, for `X-Forwarded-Host`; `None` when unset.
fn public_host(public_url: &str) -> Option<HeaderValue> {
    let uri: Uri = public_url.parse().ok()?;
    HeaderValue::from_str(uri.authority()?.as_str()).ok()
}

/// The upstream's answer as the browser gets it: hop-by-hop headers taken out, also those its
/// `Connection` header names.
fn incoming(mut answer: http::Response<Body>) -> Response {
    let headers = answer.headers_mut();
    for name in connection_named(headers) {
        headers.remove(name.as_str());
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    answer
}

fn is_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/html"))
}

/// The page with the assist bar inserted after its `<body…>` tag.
async fn with_bar(response: Response, bar: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, PAGE_LIMIT).await else {
        return web::page_error(
            StatusCode::BAD_GATEWAY,
            "The shop's page is too large to show while assisting.",
        );
    };
    let page = web::html::insert_after_body(&bytes, bar);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    Response::from_parts(parts, Body::from(page))
}

/// Whether `method` changes state (and so needs a same-origin request).
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}
