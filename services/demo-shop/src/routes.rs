//! The demo shop's routes: both portals, `/healthz`, and the token check in front of them all.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Extension, Router, middleware};
use http::StatusCode;

use crate::caller::{Caller, authenticate};
use crate::html::{Refusal, see_other};
use crate::{AppState, merchant, storefront};

/// Largest form body read, in bytes.
const BODY_LIMIT: usize = 16 * 1024;

type Shared = Arc<AppState>;

/// Every route of the shop, behind [`authenticate`].
pub fn router(state: Shared) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(healthz))
        .route("/", get(storefront::home))
        .route("/cart", get(storefront::cart))
        .route("/cart/items", post(storefront::add_item))
        .route("/cart/items/{sku}/remove", post(storefront::remove_item))
        .route(
            "/account",
            get(storefront::account).post(storefront::save_account),
        )
        .route(
            "/merchant-portal",
            get(|| async { see_other("/merchant-portal/") }),
        )
        .route("/merchant-portal/", get(merchant::home))
        .route("/merchant-portal/offers", get(merchant::offers))
        .route("/merchant-portal/offers/{id}", post(merchant::update_offer))
        .route(
            "/merchant-portal/profile",
            get(merchant::profile).post(merchant::save_profile),
        );
    for (path, title) in storefront::SENSITIVE_PAGES {
        router = router.route(path, storefront_sensitive(path, title));
    }
    for (path, title) in merchant::SENSITIVE_PAGES {
        router = router.route(path, merchant_sensitive(path, title));
    }
    router
        .fallback(|| async { Refusal::not_found("There is no such page.") })
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

fn storefront_sensitive(path: &'static str, title: &'static str) -> MethodRouter<Shared> {
    get(move |Extension(caller): Extension<Caller>| storefront::sensitive_form(caller, path, title))
        .post(move |Extension(caller): Extension<Caller>| storefront::sensitive_done(caller, title))
}

fn merchant_sensitive(path: &'static str, title: &'static str) -> MethodRouter<Shared> {
    get(move |Extension(caller): Extension<Caller>| merchant::sensitive_form(caller, path, title))
        .post(move |Extension(caller): Extension<Caller>| merchant::sensitive_done(caller, title))
}

/// 200 once the service token is obtained (tokens can be checked), 503 before and once shutdown begins.
async fn healthz(State(state): State<Shared>) -> Response {
    if state.ready.get().is_some() && !*state.shutdown.borrow() {
        (StatusCode::OK, "serving").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not serving").into_response()
    }
}
