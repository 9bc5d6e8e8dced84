//! The pages the mailed links open (docs/web.md): `/set-password?token=` (invitation) and
//! `/reset-password?token=` (password reset). The new password, typed twice, redeems the one-time
//! token at identity; nothing changes when anything is wrong.

use std::collections::HashMap;
use std::sync::Arc;

use assist_proto::identity::v1 as idp;
use assist_runtime::web::escape;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Router};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tonic::Code;

use super::{csrf, csrf_matches, html, same_origin, with_cookies};
use crate::AppState;
use crate::routes::upstreams;

type Shared = State<Arc<AppState>>;
type Fields = Result<Form<HashMap<String, String>>, FormRejection>;

/// Identity's password policy, checked here too so that a mistake is told before any call.
const PASSWORD_MIN: usize = 8;
const PASSWORD_MAX: usize = 128;
/// Longest token worth a call (identity's tokens are far shorter).
const TOKEN_MAX: usize = 512;

/// One of the two pages.
#[derive(Clone, Copy)]
struct Kind {
    path: &'static str,
    title: &'static str,
    done: &'static str,
}

const SET: Kind = Kind {
    path: "/set-password",
    title: "Set your password",
    done: "Your password is set.",
};
const RESET: Kind = Kind {
    path: "/reset-password",
    title: "Reset your password",
    done: "Your password has been changed.",
};

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            SET.path,
            get(|s, h, q| page(SET, s, h, q)).post(|s, h, f| submit(SET, s, h, f)),
        )
        .route(
            RESET.path,
            get(|s, h, q| page(RESET, s, h, q)).post(|s, h, f| submit(RESET, s, h, f)),
        )
}

#[derive(Debug, Default, serde::Deserialize)]
struct TokenParam {
    #[serde(default)]
    token: String,
}

/// The link's token must not travel to other sites (no cross-origin `Referer`) nor be kept in caches.
/// (`no-referrer` would also make browsers send `Origin: null` with the form, which the same-origin
/// check refuses.)
fn private(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    response
}

fn message(kind: Kind, status: StatusCode, text: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><p class=\"error\">{}</p>",
        escape(kind.title),
        escape(text)
    );
    private((status, Html(html::page(kind.title, None, &body))).into_response())
}

fn form(kind: Kind, token: &str, csrf: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\" id=\"password-error\">{}</p>", escape(e))
    });
    let body = format!(
        "<h1>{title}</h1>{error}<form method=\"post\" action=\"{path}\" id=\"password-form\">{csrf}\
         <input type=\"hidden\" name=\"token\" value=\"{token}\">\
         <label>New password <input id=\"new-password\" name=\"password\" type=\"password\" \
         autocomplete=\"new-password\" minlength=\"{PASSWORD_MIN}\" maxlength=\"{PASSWORD_MAX}\" required></label>\
         <label>Repeat the new password <input id=\"repeat-password\" name=\"confirm\" type=\"password\" \
         autocomplete=\"new-password\" required></label>\
         <p>At least {PASSWORD_MIN} characters.</p>\
         <button type=\"submit\">Save password</button></form>",
        title = escape(kind.title),
        path = kind.path,
        csrf = html::csrf_field(csrf),
        token = escape(token),
    );
    html::page(kind.title, None, &body)
}

fn usable_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= TOKEN_MAX
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// `GET /set-password?token=` and `/reset-password?token=`.
async fn page(
    kind: Kind,
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<TokenParam>, QueryRejection>,
) -> Response {
    let token = query.map(|Query(p)| p.token).unwrap_or_default();
    if !usable_token(token.trim()) {
        return message(
            kind,
            StatusCode::BAD_REQUEST,
            "This link is incomplete. Open the link from the mail again.",
        );
    }
    let mut set = Vec::new();
    let csrf = csrf(&state, &headers, &mut set);
    private(with_cookies(
        Html(form(kind, token.trim(), &csrf, None)).into_response(),
        set,
    ))
}

/// `POST` of either page (fields `token`, `password`, `confirm`, `csrf`).
async fn submit(
    kind: Kind,
    State(state): Shared,
    headers: HeaderMap,
    form_fields: Fields,
) -> Response {
    let Ok(Form(fields)) = form_fields else {
        return message(kind, StatusCode::BAD_REQUEST, "The form could not be read.");
    };
    if !same_origin(&state, &headers, &Method::POST) || !csrf_matches(&headers, fields.get("csrf"))
    {
        return message(
            kind,
            StatusCode::FORBIDDEN,
            "The form has expired. Open the link from the mail again.",
        );
    }
    let csrf = fields.get("csrf").cloned().unwrap_or_default();
    let token = fields.get("token").map(|t| t.trim()).unwrap_or_default();
    if !usable_token(token) {
        return message(
            kind,
            StatusCode::BAD_REQUEST,
            "This link is incomplete. Open the link from the mail again.",
        );
    }
    // Passwords are taken as typed: no trimming.
    let password = fields
        .get("password")
        .map(String::as_str)
        .unwrap_or_default();
    let confirm = fields
        .get("confirm")
        .map(String::as_str)
        .unwrap_or_default();
    let again = |status: StatusCode, error: &str| {
        private((status, Html(form(kind, token, &csrf, Some(error)))).into_response())
    };
    if password != confirm {
        return again(StatusCode::BAD_REQUEST, "The two passwords do not match.");
    }
    let length = password.chars().count();
    if length < PASSWORD_MIN {
        return again(
            StatusCode::BAD_REQUEST,
            "The password must be at least 8 characters.",
        );
    }
    if length > PASSWORD_MAX || password.chars().any(char::is_control) {
        return again(
            StatusCode::BAD_REQUEST,
            "The password must be at most 128 characters, without control characters.",
        );
    }
    let Ok(upstreams) = upstreams(&state) else {
        return message(
            kind,
            StatusCode::SERVICE_UNAVAILABLE,
            "Agent Assist is starting up. Try again in a moment.",
        );
    };
    let request = idp::RedeemOneTimeTokenRequest {
        token: token.to_owned(),
        new_password: password.to_owned(),
    };
    match upstreams
        .identity
        .clone()
        .redeem_one_time_token(request)
        .await
    {
        Ok(reply) => {
            tracing::info!(principal_id = %reply.into_inner().principal_id, "password set from a mailed link");
            let body = format!(
                "<h1>{}</h1><p class=\"notice\" id=\"password-done\">{}</p>\
                 <p><a id=\"console-login-link\" href=\"/console/login\">Sign in to the console</a></p>",
                escape(kind.title),
                escape(kind.done)
            );
            private(Html(html::page(kind.title, None, &body)).into_response())
        }
        Err(status) => match status.code() {
            Code::InvalidArgument => again(
                StatusCode::BAD_REQUEST,
                &format!("The password was refused: {}.", status.message()),
            ),
            Code::FailedPrecondition | Code::NotFound | Code::Unauthenticated => message(
                kind,
                StatusCode::GONE,
                "This link is invalid or has expired, or was used already. Ask for a new one.",
            ),
            Code::ResourceExhausted => again(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts. Try again later.",
            ),
            _ => {
                let error = crate::jsonapi::ApiError::from_status(&status);
                message(
                    kind,
                    error.status,
                    "The password could not be saved. Try again.",
                )
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_before_any_call() {
        assert!(usable_token("AbC-123_x"));
        for bad in ["", "a b", "a\"b", &"a".repeat(TOKEN_MAX + 1)] {
            assert!(!usable_token(bad), "{bad:?}");
        }
        let page = form(SET, "tok<", "c", Some("<b>"));
        assert!(page.contains("value=\"tok&lt;\"") && page.contains("&lt;b&gt;"));
    }
}
