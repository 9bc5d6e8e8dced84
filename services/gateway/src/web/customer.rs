//! The customer's sign-in and sign-out pages of the storefront.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use assist_proto::identity::v1 as idp;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, State};
use axum::response::{Html, IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value};

use super::{cookies, csrf, csrf_matches, html, page_error, redirect, same_origin, with_cookies};
use crate::AppState;
use crate::routes::{STOREFRONT, client_address, sign_in, upstreams};

type Fields = Result<Form<HashMap<String, String>>, FormRejection>;

/// The sign-in form, with `error` above it when the last attempt failed.
fn login_form(csrf: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\">{}</p>", assist_runtime::web::escape(e))
    });
    let body = format!(
        "<h1>Sign in</h1>{error}<form method=\"post\" action=\"/login\">{}\
         <label>Email <input name=\"username\" type=\"email\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>",
        html::csrf_field(csrf)
    );
    html::page("Sign in", None, &body)
}

/// `GET /login`.
pub async fn login_page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let mut set = Vec::new();
    let csrf = csrf(&state, &headers, &mut set);
    with_cookies(Html(login_form(&csrf, None)).into_response(), set)
}

/// The attributes the JSON:API sign-in reads, from a form.
pub fn credentials(fields: &HashMap<String, String>) -> Map<String, Value> {
    ["username", "password"]
        .into_iter()
        .filter_map(|name| {
            fields
                .get(name)
                .map(|v| (name.to_owned(), Value::String(v.clone())))
        })
        .collect()
}

/// `POST /login`: the customer signs in and lands on the shop.
pub async fn login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let Ok(Form(fields)) = form else {
        return page_error(StatusCode::BAD_REQUEST, "The form could not be read.");
    };
    if !same_origin(&state, &headers, &Method::POST) || !csrf_matches(&headers, fields.get("csrf"))
    {
        return page_error(
            StatusCode::FORBIDDEN,
            "The form has expired. Reload the page and try again.",
        );
    }
    let Ok(upstreams) = upstreams(&state) else {
        return page_error(StatusCode::SERVICE_UNAVAILABLE, "Sign-in is starting up.");
    };
    let client = client_address(state.checked.trust_forwarded_for, peer, &headers);
    let failed = crate::jsonapi::USER_LOGIN_FAILED;
    match sign_in(
        &upstreams,
        idp::Realm::Customer,
        &credentials(&fields),
        client,
        failed.clone(),
    )
    .await
    {
        Ok(pair) => {
            let tokens = cookies::Tokens {
                access: pair.access.unwrap_or_default().token,
                refresh: pair.refresh_token,
            };
            let cookie = cookies::set(
                cookies::CUSTOMER,
                &tokens.value(cookies::CUSTOMER, &state.cookie_key),
                &STOREFRONT,
                state.checked.secure_cookies,
            );
            with_cookies(redirect("/"), vec![cookie])
        }
        Err(error) => {
            let csrf = fields.get("csrf").cloned().unwrap_or_default();
            let status = error.status;
            (status, Html(login_form(&csrf, Some(&error.detail)))).into_response()
        }
    }
}

/// `POST /logout`: the customer signs out (their refresh token is revoked).
pub async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let Ok(Form(fields)) = form else {
        return page_error(StatusCode::BAD_REQUEST, "The form could not be read.");
    };
    if !same_origin(&state, &headers, &Method::POST) || !csrf_matches(&headers, fields.get("csrf"))
    {
        return page_error(
            StatusCode::FORBIDDEN,
            "The form has expired. Reload the page and try again.",
        );
    }
    if let (Some(tokens), Ok(upstreams)) = (
        cookies::Tokens::read(&headers, cookies::CUSTOMER, &state.cookie_key),
        upstreams(&state),
    ) {
        let request = idp::RevokeRefreshTokenRequest {
            refresh_token: tokens.refresh,
        };
        if let Err(status) = upstreams
            .identity
            .clone()
            .revoke_refresh_token(request)
            .await
        {
            tracing::warn!(error = %status.message(), "revoking a customer's refresh token failed");
        }
    }
    with_cookies(
        redirect("/login"),
        vec![cookies::clear(cookies::CUSTOMER, &STOREFRONT)],
    )
}
