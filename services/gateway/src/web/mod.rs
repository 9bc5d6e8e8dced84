//! The gateway's pages (docs/web.md): customer sign-in and the customer's chat; for each portal the
//! agent's sign-in, search, confirm, end and log-out; the console's sign-in, agent management and
//! conversations; the set-password and reset-password pages of the mailed links. Server-rendered, no build step; forms are POST with a
//! CSRF token and same-origin checks. The handlers call the same functions as the JSON:API routes.

mod agent;
mod chat;
pub mod console;
mod conversations;
pub mod cookies;
mod customer;
pub mod html;
mod password;

use std::sync::Arc;

use assist_proto::identity::v1 as idp;
use assist_runtime::auth::{Claims, Realm};
use assist_runtime::web::{cookie, random_token, same_secret};
use axum::Router;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use crate::routes::{MerchantPortal, Portal, STOREFRONT, Storefront, holds};
use crate::{AppState, Upstreams};
use cookies::Tokens;

/// The pages' routes (merged into the gateway's router).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/login", get(customer::login_page).post(customer::login))
        .route("/logout", post(customer::logout))
        .route("/agent/customers/suggest", get(agent::suggest))
        .merge(agent::routes::<Storefront>())
        .merge(agent::routes::<MerchantPortal>())
        .merge(console::routes())
        .merge(conversations::routes())
        .merge(chat::routes())
        .merge(password::routes())
}

/// A page with one message, for errors.
pub fn page_error(status: StatusCode, message: &str) -> Response {
    page_error_with_bar(status, message, None)
}

/// A page with one message and, while assisting, the assist bar.
pub fn page_error_with_bar(status: StatusCode, message: &str, bar: Option<&str>) -> Response {
    let body = format!(
        "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/\">Home</a></p>",
        status.canonical_reason().unwrap_or("Error"),
        assist_runtime::web::escape(message)
    );
    (status, Html(html::page("Agent Assist", bar, &body))).into_response()
}

/// `303 See Other` to `path`.
pub fn redirect(path: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, path.to_owned())]).into_response()
}

/// `response` with `cookies` set.
pub fn with_cookies(mut response: Response, cookies: Vec<HeaderValue>) -> Response {
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Whether a request may change state: safe methods always; others only when the browser says the
/// request comes from the gateway's own pages (`Origin` equal to the public URL's origin, or to this
/// host when none is configured; `Sec-Fetch-Site` not `cross-site`). Clients that send neither (API
/// clients, curl) are not browsers acting for another site and pass.
pub fn same_origin(state: &AppState, headers: &HeaderMap, method: &Method) -> bool {
    if !crate::proxy::is_unsafe(method) {
        return true;
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|site| site == "cross-site")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    let expected = if state.checked.public_url.is_empty() {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let scheme = if state.checked.secure_cookies {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{host}")
    } else {
        origin_of(&state.checked.public_url)
    };
    origin.eq_ignore_ascii_case(&expected)
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    match url.find("://") {
        Some(at) => {
            let rest = &url[at + 3..];
            let end = rest.find('/').unwrap_or(rest.len());
            format!("{}{}", &url[..at + 3], &rest[..end])
        }
        None => url.to_owned(),
    }
}

/// This browser's CSRF token; a new one (and its cookie, pushed to `set`) when it has none.
pub fn csrf(state: &AppState, headers: &HeaderMap, set: &mut Vec<HeaderValue>) -> String {
    if let Some(token) = cookie(headers, cookies::CSRF).filter(|t| t.len() == 43) {
        return token.to_owned();
    }
    let token = random_token();
    set.push(cookies::set(
        cookies::CSRF,
        &token,
        &STOREFRONT,
        state.checked.secure_cookies,
    ));
    token
}

/// Whether a form's `csrf` field is this browser's CSRF token.
pub fn csrf_matches(headers: &HeaderMap, submitted: Option<&String>) -> bool {
    match (cookie(headers, cookies::CSRF), submitted) {
        (Some(expected), Some(submitted)) => {
            expected.len() == 43 && same_secret(expected, submitted)
        }
        _ => false,
    }
}

/// A signed-in person of this browser: their access token and its claims.
pub struct SignedIn {
    pub token: String,
    pub claims: Claims,
}

/// The sign-in kept in cookie `name` on the paths below `path`, renewed with its refresh token when the
/// access token has expired (the new cookie is pushed to `set`). `None` when there is none or it no
/// longer works (the cookie is then cleared).
pub(crate) async fn signed_in(
    state: &AppState,
    upstreams: &Upstreams,
    headers: &HeaderMap,
    name: &str,
    path: &str,
    set: &mut Vec<HeaderValue>,
) -> Option<SignedIn> {
    let tokens = Tokens::read(headers, name, &state.cookie_key)?;
    if let Ok(claims) = state.verifier.verify(&tokens.access).await {
        return Some(SignedIn {
            token: tokens.access,
            claims,
        });
    }
    let request = idp::RefreshRequest {
        refresh_token: tokens.refresh,
    };
    let renewed = match upstreams.identity.clone().refresh(request).await {
        Ok(pair) => pair.into_inner(),
        Err(_) => {
            set.push(cookies::clear_at(name, path));
            return None;
        }
    };
    let access = renewed.access.unwrap_or_default().token;
    let claims = state.verifier.verify(&access).await.ok()?;
    let tokens = Tokens {
        access,
        refresh: renewed.refresh_token,
    };
    set.push(cookies::set_at(
        name,
        &tokens.value(name, &state.cookie_key),
        path,
        state.checked.secure_cookies,
    ));
    Some(SignedIn {
        token: tokens.access,
        claims,
    })
}

/// The signed-in customer of this browser, if any.
pub async fn customer(
    state: &AppState,
    upstreams: &Upstreams,
    headers: &HeaderMap,
    set: &mut Vec<HeaderValue>,
) -> Option<SignedIn> {
    let signed = signed_in(
        state,
        upstreams,
        headers,
        cookies::CUSTOMER,
        STOREFRONT.web.cookie_path,
        set,
    )
    .await?;
    (signed.claims.realm == Realm::Customer && !signed.claims.is_delegated()).then_some(signed)
}

/// The signed-in customer's access token, for the proxy.
pub async fn customer_token(
    state: &AppState,
    upstreams: &Upstreams,
    headers: &HeaderMap,
    set: &mut Vec<HeaderValue>,
) -> Option<String> {
    customer(state, upstreams, headers, set)
        .await
        .map(|signed| signed.token)
}

/// The signed-in agent of `portal` in this browser: a back-office user who holds the portal's
/// capability now.
pub async fn agent_of(
    state: &AppState,
    upstreams: &Upstreams,
    headers: &HeaderMap,
    portal: &Portal,
    set: &mut Vec<HeaderValue>,
) -> Option<SignedIn> {
    let signed = signed_in(
        state,
        upstreams,
        headers,
        portal.web.agent_cookie,
        portal.web.cookie_path,
        set,
    )
    .await?;
    let is_agent = signed.claims.realm == Realm::BackOffice
        && !signed.claims.is_delegated()
        && holds(upstreams, &signed.claims.sub, portal.capability)
            .await
            .unwrap_or(false);
    if !is_agent {
        set.push(cookies::clear(portal.web.agent_cookie, portal));
        return None;
    }
    Some(signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_and_authority() {
        assert_eq!(
            origin_of("https://shop.example.com/base"),
            "https://shop.example.com"
        );
        assert_eq!(origin_of("http://127.0.0.1:8080"), "http://127.0.0.1:8080");
    }

    #[test]
    fn forms_need_this_browsers_csrf_token() {
        let token = random_token();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("assist_csrf={token}").parse().unwrap(),
        );
        assert!(csrf_matches(&headers, Some(&token)));
        assert!(!csrf_matches(&headers, Some(&random_token())));
        assert!(!csrf_matches(&headers, None));
        assert!(!csrf_matches(&HeaderMap::new(), Some(&token)));
    }
}
