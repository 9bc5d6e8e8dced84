//! The agent's pages of both portals: sign-in, the search page (customers with suggestions in the
//! storefront, the merchant-users table in the merchant portal), confirm, end and log out. One set of
//! handlers serves both portals; `Surface` picks the portal.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use assist_proto::identity::v1 as idp;
use assist_runtime::web::escape;
use axum::extract::rejection::FormRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Map, Value, json};

use super::customer::credentials;
use super::{
    SignedIn, agent_of, cookies, csrf, csrf_matches, customer, html, redirect, same_origin,
    with_cookies,
};
use crate::routes::{
    MERCHANT_PORTAL, Opened, Portal, STOREFRONT, Surface, Target, agent_sign_in, client_address,
    close_session, customer_by_reference, open_session, page_of, search_customers,
    search_merchant_users, upstreams,
};
use crate::{AppState, Upstreams};

type Shared = State<Arc<AppState>>;
type Fields = Result<Form<HashMap<String, String>>, FormRejection>;

/// Rows of the merchant-users table per page; results of the customer search per page.
const TABLE_PAGE: u32 = 20;
const SUGGESTIONS: u32 = 8;
const QUERY_MAX: usize = 100;

/// The portal's page routes.
pub fn routes<P: Surface>() -> Router<Arc<AppState>> {
    let web = &P::portal().web;
    Router::new()
        .route(
            &format!("{}/login", web.pages),
            get(login_page::<P>).post(login::<P>),
        )
        .route(web.search_path, get(search_page::<P>))
        .route(&format!("{}/assist", web.pages), post(assist::<P>))
        .route(&format!("{}/assist/end", web.pages), post(end::<P>))
        .route(&format!("{}/logout", web.pages), post(logout::<P>))
}

/// A page of the portal's agent area, with a way back to the search page.
fn agent_error(portal: &Portal, status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"{}\">Back</a></p>",
        escape(portal.web.title),
        escape(message),
        portal.web.search_path
    );
    (status, Html(html::page(portal.web.title, None, &body))).into_response()
}

fn expired_form(portal: &Portal) -> Response {
    agent_error(
        portal,
        StatusCode::FORBIDDEN,
        "The form has expired. Reload the page and try again.",
    )
}

fn starting(portal: &Portal) -> Response {
    agent_error(
        portal,
        StatusCode::SERVICE_UNAVAILABLE,
        "Agent Assist is starting up. Try again in a moment.",
    )
}

fn login_form(portal: &Portal, csrf: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\">{}</p>", escape(e))
    });
    let body = format!(
        "<h1>{title} sign-in</h1>{error}<form method=\"post\" action=\"{pages}/login\">{csrf}\
         <label>Email <input name=\"username\" type=\"email\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>",
        title = escape(portal.web.title),
        pages = portal.web.pages,
        csrf = html::csrf_field(csrf),
    );
    html::page(&format!("{} sign-in", portal.web.title), None, &body)
}

/// A customer signed in in this browser may not use the storefront's agent sign-in.
async fn customer_present(
    state: &AppState,
    upstreams: &Upstreams,
    headers: &HeaderMap,
    portal: &Portal,
    set: &mut Vec<HeaderValue>,
) -> bool {
    std::ptr::eq(portal, &STOREFRONT) && customer(state, upstreams, headers, set).await.is_some()
}

fn sign_out_first(csrf: &str) -> Response {
    let body = format!(
        "<h1>Agent sign-in</h1><p class=\"error\">A customer is signed in in this browser. \
         Sign out as the customer before signing in as an agent.</p>{}",
        html::post_button("/logout", csrf, "Sign out customer")
    );
    (
        StatusCode::FORBIDDEN,
        Html(html::page("Agent sign-in", None, &body)),
    )
        .into_response()
}

/// `GET {pages}/login`.
async fn login_page<P: Surface>(State(state): Shared, headers: HeaderMap) -> Response {
    let portal = P::portal();
    let mut set = Vec::new();
    let csrf = csrf(&state, &headers, &mut set);
    let Ok(upstreams) = upstreams(&state) else {
        return starting(portal);
    };
    if customer_present(&state, &upstreams, &headers, portal, &mut set).await {
        return with_cookies(sign_out_first(&csrf), set);
    }
    if agent_of(&state, &upstreams, &headers, portal, &mut set)
        .await
        .is_some()
    {
        return with_cookies(redirect(portal.web.search_path), set);
    }
    with_cookies(Html(login_form(portal, &csrf, None)).into_response(), set)
}

/// `POST {pages}/login`: an agent of the portal signs in; everyone else gets one generic message.
async fn login<P: Surface>(
    State(state): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let portal = P::portal();
    let Ok(Form(fields)) = form else {
        return agent_error(
            portal,
            StatusCode::BAD_REQUEST,
            "The form could not be read.",
        );
    };
    if !same_origin(&state, &headers, &Method::POST) || !csrf_matches(&headers, fields.get("csrf"))
    {
        return expired_form(portal);
    }
    let csrf = fields.get("csrf").cloned().unwrap_or_default();
    let Ok(upstreams) = upstreams(&state) else {
        return starting(portal);
    };
    let mut set = Vec::new();
    if customer_present(&state, &upstreams, &headers, portal, &mut set).await {
        return with_cookies(sign_out_first(&csrf), set);
    }
    let client = client_address(state.checked.trust_forwarded_for, peer, &headers);
    match agent_sign_in(&upstreams, portal, &credentials(&fields), client).await {
        Ok(pair) => {
            let tokens = cookies::Tokens {
                access: pair.access.unwrap_or_default().token,
                refresh: pair.refresh_token,
            };
            set.push(cookies::set(
                portal.web.agent_cookie,
                &tokens.value(portal.web.agent_cookie, &state.cookie_key),
                portal,
                state.checked.secure_cookies,
            ));
            with_cookies(redirect(portal.web.search_path), set)
        }
        Err(error) => {
            let page = login_form(portal, &csrf, Some(&error.detail));
            with_cookies((error.status, Html(page)).into_response(), set)
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct SearchParams {
    #[serde(default)]
    q: String,
    /// 1-based page of the table.
    page: Option<u64>,
    /// The customer reference chosen from the results (storefront, without script).
    select: Option<String>,
    /// Set when the agent was sent back because the session had ended.
    ended: Option<String>,
}

/// `GET {search_path}`: the portal's search page for a signed-in agent.
async fn search_page<P: Surface>(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<SearchParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let portal = P::portal();
    let Ok(Query(params)) = query else {
        return agent_error(
            portal,
            StatusCode::BAD_REQUEST,
            "Invalid search parameters.",
        );
    };
    let Ok(upstreams) = upstreams(&state) else {
        return starting(portal);
    };
    let mut set = Vec::new();
    let csrf = csrf(&state, &headers, &mut set);
    let Some(_agent) = agent_of(&state, &upstreams, &headers, portal, &mut set).await else {
        return with_cookies(redirect(&format!("{}/login", portal.web.pages)), set);
    };
    let q = params.q.trim();
    if q.chars().count() > QUERY_MAX {
        return agent_error(portal, StatusCode::BAD_REQUEST, "The search is too long.");
    }
    let page_number = params.page.unwrap_or(1).max(1);
    let content = match portal.target {
        Target::Customers => customers_content(&upstreams, q, page_number, &params, &csrf).await,
        Target::MerchantUsers => merchant_users_content(&upstreams, q, page_number, &csrf).await,
    };
    let content = match content {
        Ok(content) => content,
        Err(error) => return agent_error(portal, error.status, &error.detail),
    };
    let bar = cookies::assist_of(&headers, portal, &state.cookie_key)
        .map(|assist| html::bar(portal, &assist.name, &csrf));
    let notice = if params.ended.is_some() {
        "<p class=\"notice\">The assistance has ended.</p>"
    } else {
        ""
    };
    let body = format!(
        "<header><p>Signed in as an agent. {logout}</p></header>{notice}{content}",
        logout = html::post_button(&format!("{}/logout", portal.web.pages), &csrf, "Log out"),
    );
    with_cookies(
        Html(html::page(portal.web.title, bar.as_deref(), &body)).into_response(),
        set,
    )
}

/// Paging links of a table: `Previous` and `Next` where they lead somewhere.
fn pager(path: &str, q: &str, page: u64, total: u64, per_page: u32) -> String {
    let pages = total.div_ceil(u64::from(per_page)).max(1);
    let q = crate::jsonapi::encode_query_value(q);
    let mut out = format!("<nav class=\"pager\">Page {page} of {pages} ({total} in all) ");
    if page > 1 {
        out.push_str(&format!(
            "<a href=\"{path}?q={q}&amp;page={}\">Previous</a> ",
            page - 1
        ));
    }
    if page < pages {
        out.push_str(&format!(
            "<a href=\"{path}?q={q}&amp;page={}\">Next</a>",
            page + 1
        ));
    }
    out.push_str("</nav>");
    out
}

/// The storefront's search: the field with suggestions, the confirm form, and the results table.
async fn customers_content(
    upstreams: &Upstreams,
    q: &str,
    page: u64,
    params: &SearchParams,
    csrf: &str,
) -> Result<String, crate::jsonapi::ApiError> {
    let path = STOREFRONT.web.search_path;
    let selected = match params.select.as_deref().map(str::trim) {
        Some(reference) if !reference.is_empty() && reference.len() <= 64 => {
            customer_by_reference(upstreams, reference).await?
        }
        _ => None,
    };
    let (reference, text) = match &selected {
        Some(c) => (
            c.customer_reference.clone(),
            format!("Assist {} {}: {}?", c.first_name, c.last_name, c.email),
        ),
        None => (String::new(), String::new()),
    };
    let mut out = format!(
        "<h1>Customers</h1>\
         <form method=\"get\" action=\"{path}\" id=\"search-form\">\
         <input id=\"customer-search\" name=\"q\" value=\"{q}\" autocomplete=\"off\" maxlength=\"{QUERY_MAX}\" \
         placeholder=\"Name, email or customer reference\" aria-label=\"Search customers\">\
         <button type=\"submit\">Search</button></form><ul id=\"suggestions\"></ul>\
         <section id=\"confirm\"{hidden}><p id=\"confirm-text\">{text}</p>\
         <form method=\"post\" action=\"/agent/assist\">{csrf}\
         <input type=\"hidden\" name=\"customerReference\" id=\"confirm-reference\" value=\"{reference}\">\
         <button type=\"submit\">Confirm</button></form></section>",
        q = escape(q),
        hidden = if selected.is_some() { "" } else { " hidden" },
        text = escape(&text),
        csrf = html::csrf_field(csrf),
        reference = escape(&reference),
    );
    if !q.is_empty() {
        let window = page_of(Some((page - 1) * u64::from(TABLE_PAGE)), Some(TABLE_PAGE))?;
        let (_, found, info) = search_customers(upstreams, q, window).await?;
        out.push_str(
            "<table id=\"customers\"><thead><tr><th>Name</th><th>Email</th><th>Reference</th>\
             <th></th></tr></thead><tbody>",
        );
        for c in &found {
            let reference = c["customerReference"].as_str().unwrap_or_default();
            out.push_str(&format!(
                "<tr data-reference=\"{r}\"><td>{first} {last}</td><td>{email}</td><td>{r}</td>\
                 <td><a href=\"{path}?q={q}&amp;select={ref_q}\">Select</a></td></tr>",
                r = escape(reference),
                first = escape(c["firstName"].as_str().unwrap_or_default()),
                last = escape(c["lastName"].as_str().unwrap_or_default()),
                email = escape(c["email"].as_str().unwrap_or_default()),
                q = crate::jsonapi::encode_query_value(q),
                ref_q = crate::jsonapi::encode_query_value(reference),
            ));
        }
        out.push_str("</tbody></table>");
        out.push_str(&pager(path, q, page, info.total, TABLE_PAGE));
    }
    out.push_str(SUGGEST_SCRIPT);
    Ok(out)
}

/// Suggestions from the third character on; choosing one fills the confirm form.
const SUGGEST_SCRIPT: &str = r#"<script>
(() => {
  const input = document.getElementById('customer-search');
  const list = document.getElementById('suggestions');
  let latest = 0;
  function choose(item) {
    document.getElementById('confirm-reference').value = item.customerReference;
    document.getElementById('confirm-text').textContent = 'Assist ' + item.label + '?';
    document.getElementById('confirm').hidden = false;
    list.replaceChildren();
  }
  input.addEventListener('input', async () => {
    const q = input.value.trim();
    const mine = ++latest;
    if (q.length < 3) { list.replaceChildren(); return; }
    const answer = await fetch('/agent/customers/suggest?q=' + encodeURIComponent(q),
      { credentials: 'same-origin' });
    if (!answer.ok || mine !== latest) return;
    const items = await answer.json();
    list.replaceChildren(...items.map((item) => {
      const li = document.createElement('li');
      li.textContent = item.label;
      li.dataset.reference = item.customerReference;
      li.tabIndex = 0;
      li.addEventListener('click', () => choose(item));
      li.addEventListener('keydown', (e) => { if (e.key === 'Enter') choose(item); });
      return li;
    }));
  });
})();
</script>"#;

#[derive(Debug, serde::Deserialize)]
pub struct SuggestParams {
    #[serde(default)]
    q: String,
}

/// `GET /agent/customers/suggest?q=`: up to eight customers as "First Last: email", for a signed-in
/// storefront agent; nothing below three characters.
pub async fn suggest(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<SuggestParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(params)) = query else {
        return (StatusCode::BAD_REQUEST, Json(json!([]))).into_response();
    };
    let Ok(upstreams) = upstreams(&state) else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let mut set = Vec::new();
    if agent_of(&state, &upstreams, &headers, &STOREFRONT, &mut set)
        .await
        .is_none()
    {
        return with_cookies(StatusCode::UNAUTHORIZED.into_response(), set);
    }
    let q = params.q.trim();
    if q.chars().count() < 3 || q.chars().count() > QUERY_MAX {
        return with_cookies(Json(json!([])).into_response(), set);
    }
    let window = match page_of(Some(0), Some(SUGGESTIONS)) {
        Ok(window) => window,
        Err(error) => return error.into_response(),
    };
    match search_customers(&upstreams, q, window).await {
        Ok((_, found, _)) => {
            let items: Vec<Value> = found
                .iter()
                .map(|c| {
                    json!({
                        "customerReference": c["customerReference"],
                        "label": format!(
                            "{} {}: {}",
                            c["firstName"].as_str().unwrap_or_default(),
                            c["lastName"].as_str().unwrap_or_default(),
                            c["email"].as_str().unwrap_or_default(),
                        ),
                    })
                })
                .collect();
            with_cookies(Json(items).into_response(), set)
        }
        Err(error) => error.into_response(),
    }
}

/// The merchant portal's table of merchant users with the "Assist User" dialog.
async fn merchant_users_content(
    upstreams: &Upstreams,
    q: &str,
    page: u64,
    csrf: &str,
) -> Result<String, crate::jsonapi::ApiError> {
    let path = MERCHANT_PORTAL.web.search_path;
    let window = page_of(Some((page - 1) * u64::from(TABLE_PAGE)), Some(TABLE_PAGE))?;
    let (_, found, info) = search_merchant_users(upstreams, q, window).await?;
    let mut out = format!(
        "<h1>Merchant users</h1>\
         <form method=\"get\" action=\"{path}\"><input id=\"user-search\" name=\"q\" value=\"{q}\" \
         maxlength=\"{QUERY_MAX}\" placeholder=\"Merchant, name or email\" aria-label=\"Search merchant users\">\
         <button type=\"submit\">Search</button></form>\
         <table id=\"merchant-users\"><thead><tr><th>Merchant</th><th>First name</th><th>Last name</th>\
         <th>Email</th><th>Status</th><th></th></tr></thead><tbody>",
        q = escape(q),
    );
    for u in &found {
        let id = escape(u["merchantUserId"].as_str().unwrap_or_default());
        let first = escape(u["firstName"].as_str().unwrap_or_default());
        let last = escape(u["lastName"].as_str().unwrap_or_default());
        let status = u["status"].as_str().unwrap_or_default();
        // Blocked and deleted users cannot be assisted (the service refuses them anyway).
        let action = if matches!(status, "blocked" | "deleted") {
            String::new()
        } else {
            format!(
                "<button type=\"button\" class=\"assist\" data-user=\"{id}\" \
                 data-name=\"{first} {last}\">Assist User</button>"
            )
        };
        out.push_str(&format!(
            "<tr data-user=\"{id}\"><td>{merchant}</td><td>{first}</td><td>{last}</td><td>{email}</td>\
             <td>{status}</td><td>{action}</td></tr>",
            merchant = escape(u["merchantName"].as_str().unwrap_or_default()),
            email = escape(u["email"].as_str().unwrap_or_default()),
            status = escape(status),
        ));
    }
    out.push_str("</tbody></table>");
    out.push_str(&pager(path, q, page, info.total, TABLE_PAGE));
    out.push_str(&format!(
        "<dialog id=\"assist-dialog\"><p id=\"assist-text\"></p>\
         <form method=\"post\" action=\"/merchant-portal/agent/assist\">{}\
         <input type=\"hidden\" name=\"merchantUserId\" id=\"assist-user\">\
         <button type=\"submit\">Confirm</button> <button type=\"button\" id=\"assist-cancel\">Cancel</button>\
         </form></dialog>{ASSIST_DIALOG_SCRIPT}",
        html::csrf_field(csrf)
    ));
    Ok(out)
}

const ASSIST_DIALOG_SCRIPT: &str = r#"<script>
(() => {
  const dialog = document.getElementById('assist-dialog');
  document.querySelectorAll('button.assist').forEach((button) => {
    button.addEventListener('click', () => {
      document.getElementById('assist-user').value = button.dataset.user;
      document.getElementById('assist-text').textContent =
        'Assist ' + button.dataset.name + '? You will act in the merchant portal as this user.';
      dialog.showModal();
    });
  });
  document.getElementById('assist-cancel').addEventListener('click', () => dialog.close());
})();
</script>"#;

/// Checks a page form: readable, same origin, this browser's CSRF token; the fields when all hold.
fn checked_form(
    state: &AppState,
    portal: &Portal,
    headers: &HeaderMap,
    form: Fields,
) -> Result<HashMap<String, String>, Box<Response>> {
    let Ok(Form(fields)) = form else {
        return Err(Box::new(agent_error(
            portal,
            StatusCode::BAD_REQUEST,
            "The form could not be read.",
        )));
    };
    if !same_origin(state, headers, &Method::POST) || !csrf_matches(headers, fields.get("csrf")) {
        return Err(Box::new(expired_form(portal)));
    }
    Ok(fields)
}

/// The signed-in agent, or the answer that sends them to sign in.
async fn required_agent(
    state: &AppState,
    upstreams: &Upstreams,
    headers: &HeaderMap,
    portal: &Portal,
    set: &mut Vec<HeaderValue>,
) -> Result<SignedIn, Box<Response>> {
    match agent_of(state, upstreams, headers, portal, set).await {
        Some(agent) => Ok(agent),
        None => Err(Box::new(with_cookies(
            redirect(&format!("{}/login", portal.web.pages)),
            std::mem::take(set),
        ))),
    }
}

/// `POST {pages}/assist`: the agent confirmed; the session starts and the agent lands on the portal as
/// the person assisted.
async fn assist<P: Surface>(State(state): Shared, headers: HeaderMap, form: Fields) -> Response {
    let portal = P::portal();
    let fields = match checked_form(&state, portal, &headers, form) {
        Ok(fields) => fields,
        Err(response) => return *response,
    };
    let Ok(upstreams) = upstreams(&state) else {
        return starting(portal);
    };
    let mut set = Vec::new();
    let agent = match required_agent(&state, &upstreams, &headers, portal, &mut set).await {
        Ok(agent) => agent,
        Err(response) => return *response,
    };
    let key = match portal.target {
        Target::Customers => "customerReference",
        Target::MerchantUsers => "merchantUserId",
    };
    let attributes: Map<String, Value> = fields
        .get(key)
        .map(|value| (key.to_owned(), Value::String(value.clone())))
        .into_iter()
        .collect();
    match open_session(&upstreams, portal, &agent.token, &attributes).await {
        Ok(opened) => {
            tracing::info!(
                agent_id = %agent.claims.sub,
                session_id = %opened.session_id(),
                portal = portal.prefix,
                "assist session started from the agent's page"
            );
            set.push(assist_cookie(&state, portal, &opened));
            with_cookies(redirect(portal.web.assisted_home), set)
        }
        Err(error) => with_cookies(agent_error(portal, error.status, &error.detail), set),
    }
}

/// The `Set-Cookie` of `portal`'s assist cookie for a session just opened (the impersonation token,
/// the session id and the assisted person's name, sealed).
pub(super) fn assist_cookie(state: &AppState, portal: &Portal, opened: &Opened) -> HeaderValue {
    let assist = cookies::Assist {
        token: opened.started.access_token.clone(),
        session_id: opened.session_id().to_owned(),
        name: opened.target.name.clone(),
    };
    cookies::set(
        portal.web.assist_cookie,
        &assist.value(portal.web.assist_cookie, &state.cookie_key),
        portal,
        state.checked.secure_cookies,
    )
}

/// Ends this browser's assist session of `portal`, as the agent when signed in, otherwise with the
/// session's own impersonation token (which may end its session).
async fn end_assist(
    state: &AppState,
    upstreams: &Upstreams,
    headers: &HeaderMap,
    portal: &Portal,
    agent: Option<&SignedIn>,
) -> Result<(), crate::jsonapi::ApiError> {
    let Some(assist) = cookies::assist_of(headers, portal, &state.cookie_key) else {
        return Ok(());
    };
    let token = agent.map_or(assist.token.as_str(), |a| a.token.as_str());
    match close_session(upstreams, token, &assist.session_id).await {
        // Ended already, or not this browser's to end: either way nothing is left to end here.
        Err(error)
            if matches!(
                error.status,
                StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// `POST {pages}/assist/end`: ends the session; the agent stays signed in and goes back to search.
async fn end<P: Surface>(State(state): Shared, headers: HeaderMap, form: Fields) -> Response {
    let portal = P::portal();
    if let Err(response) = checked_form(&state, portal, &headers, form) {
        return *response;
    }
    let Ok(upstreams) = upstreams(&state) else {
        return starting(portal);
    };
    let mut set = Vec::new();
    let agent = agent_of(&state, &upstreams, &headers, portal, &mut set).await;
    if let Err(error) = end_assist(&state, &upstreams, &headers, portal, agent.as_ref()).await {
        return with_cookies(agent_error(portal, error.status, &error.detail), set);
    }
    set.push(cookies::clear(portal.web.assist_cookie, portal));
    set.extend(crate::proxy::jar::expire_others(&headers, portal, None));
    with_cookies(redirect(portal.web.search_path), set)
}

/// `POST {pages}/logout`: ends the session and the agent's sign-in (their refresh token is revoked).
async fn logout<P: Surface>(State(state): Shared, headers: HeaderMap, form: Fields) -> Response {
    let portal = P::portal();
    if let Err(response) = checked_form(&state, portal, &headers, form) {
        return *response;
    }
    let Ok(upstreams) = upstreams(&state) else {
        return starting(portal);
    };
    let mut set = Vec::new();
    let agent = agent_of(&state, &upstreams, &headers, portal, &mut set).await;
    if let Err(error) = end_assist(&state, &upstreams, &headers, portal, agent.as_ref()).await {
        return with_cookies(agent_error(portal, error.status, &error.detail), set);
    }
    if let Some(tokens) =
        cookies::Tokens::read(&headers, portal.web.agent_cookie, &state.cookie_key)
    {
        let request = idp::RevokeRefreshTokenRequest {
            refresh_token: tokens.refresh,
        };
        if let Err(status) = upstreams
            .identity
            .clone()
            .revoke_refresh_token(request)
            .await
        {
            tracing::warn!(error = %status.message(), "revoking an agent's refresh token failed");
        }
    }
    set.push(cookies::clear(portal.web.assist_cookie, portal));
    set.extend(crate::proxy::jar::expire_others(&headers, portal, None));
    set.push(cookies::clear(portal.web.agent_cookie, portal));
    with_cookies(redirect(&format!("{}/login", portal.web.pages)), set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pager_links_only_where_there_is_a_page() {
        let first = pager("/p", "a b", 1, 45, 20);
        assert!(first.contains("Page 1 of 3"));
        assert!(!first.contains("Previous"));
        assert!(first.contains("q=a%20b&amp;page=2\">Next"));
        let last = pager("/p", "", 3, 45, 20);
        assert!(last.contains("page=2\">Previous") && !last.contains("Next"));
        assert!(pager("/p", "", 1, 0, 20).contains("Page 1 of 1"));
    }

    #[test]
    fn merchant_status_words_are_shown_as_identity_names_them() {
        use crate::routes::principal_status;
        assert_eq!(
            principal_status(idp::PrincipalStatus::Active as i32),
            "active"
        );
    }
}
