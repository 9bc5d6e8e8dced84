//! The console's pages (docs/web.md): sign-in and sign-out of back-office users, and the agent
//! management page of the seed (the list with seats and presence counts; invite, remove, change role,
//! reset password for supervisors and administrators), and what every console page shares (the
//! header with the navigation and the presence toggle, the script that calls the JSON API and sends
//! the heartbeat). Actions go through the console's JSON API (`crate::console`) from a small inline
//! script; presence updates arrive as server-sent events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::identity::v1 as idp;
use assist_runtime::web::escape;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;

use super::customer::credentials;
use super::{cookies, csrf, csrf_matches, html, redirect, same_origin, signed_in, with_cookies};
use crate::AppState;
use crate::console::{self, Caller, presence_word, role_word, status_word};
use crate::routes::{client_address, page_of, sign_in, upstreams};

type Shared = State<Arc<AppState>>;
type Fields = Result<Form<HashMap<String, String>>, FormRejection>;

pub(super) const LOGIN: &str = "/console/login";
const AGENTS: &str = "/console/agents";
pub(super) const TITLE: &str = "Agent Assist console";
/// Rows of the agents table per page.
const TABLE_PAGE: u32 = 20;
const QUERY_MAX: usize = 100;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(|| async { redirect(AGENTS) }))
        .route(LOGIN, get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route(AGENTS, get(agents_page))
}

pub(super) fn console_error(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>{TITLE}</h1><p class=\"error\">{}</p><p><a href=\"{AGENTS}\">Back</a></p>",
        escape(message)
    );
    (status, Html(html::page(TITLE, None, &body))).into_response()
}

pub(super) fn expired_form() -> Response {
    console_error(
        StatusCode::FORBIDDEN,
        "The form has expired. Reload the page and try again.",
    )
}

pub(super) fn starting() -> Response {
    console_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Agent Assist is starting up. Try again in a moment.",
    )
}

fn login_form(csrf: &str, error: Option<&str>) -> String {
    let error = error.map_or(String::new(), |e| {
        format!("<p class=\"error\">{}</p>", escape(e))
    });
    let body = format!(
        "<h1>Console sign-in</h1>{error}<form method=\"post\" action=\"{LOGIN}\">{csrf}\
         <label>Email <input name=\"username\" type=\"email\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>",
        csrf = html::csrf_field(csrf),
    );
    html::page("Console sign-in", None, &body)
}

/// The console user signed in in this browser (cookie `assist_console`), renewed when needed.
pub(super) async fn signed_in_caller(
    state: &AppState,
    upstreams: &crate::Upstreams,
    headers: &HeaderMap,
    set: &mut Vec<http::HeaderValue>,
) -> Option<Caller> {
    let signed = signed_in(
        state,
        upstreams,
        headers,
        cookies::CONSOLE,
        cookies::CONSOLE_PATH,
        set,
    )
    .await?;
    if signed.claims.realm != assist_runtime::auth::Realm::BackOffice
        || signed.claims.is_delegated()
    {
        set.push(cookies::clear_at(cookies::CONSOLE, cookies::CONSOLE_PATH));
        return None;
    }
    Some(Caller {
        token: signed.token,
        claims: signed.claims,
    })
}

/// `GET /console/login`.
async fn login_page(State(state): Shared, headers: HeaderMap) -> Response {
    let mut set = Vec::new();
    let csrf = csrf(&state, &headers, &mut set);
    let Ok(upstreams) = upstreams(&state) else {
        return starting();
    };
    if signed_in_caller(&state, &upstreams, &headers, &mut set)
        .await
        .is_some()
    {
        return with_cookies(redirect(AGENTS), set);
    }
    with_cookies(Html(login_form(&csrf, None)).into_response(), set)
}

/// `POST /console/login`: any active back-office user signs in (what they may do there is
/// agent-directory's to say); refusals read as on the other sign-ins.
async fn login(
    State(state): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Fields,
) -> Response {
    let Ok(Form(fields)) = form else {
        return console_error(StatusCode::BAD_REQUEST, "The form could not be read.");
    };
    if !same_origin(&state, &headers, &Method::POST) || !csrf_matches(&headers, fields.get("csrf"))
    {
        return expired_form();
    }
    let csrf = fields.get("csrf").cloned().unwrap_or_default();
    let Ok(upstreams) = upstreams(&state) else {
        return starting();
    };
    let client = client_address(state.checked.trust_forwarded_for, peer, &headers);
    let pair = match sign_in(
        &upstreams,
        idp::Realm::BackOffice,
        &credentials(&fields),
        client,
        crate::jsonapi::USER_LOGIN_FAILED,
    )
    .await
    {
        Ok(pair) => pair,
        Err(error) => {
            let page = login_form(&csrf, Some(&error.detail));
            return (error.status, Html(page)).into_response();
        }
    };
    let tokens = cookies::Tokens {
        access: pair.access.unwrap_or_default().token,
        refresh: pair.refresh_token,
    };
    // Signing in is being here: the first heartbeat also activates an invited agent.
    if let Err(error) = console::heartbeat(
        &mut upstreams.agents_as_caller.clone(),
        &tokens.access,
        dir::Presence::Online,
    )
    .await
    {
        tracing::debug!(error = %error.detail, "no heartbeat at console sign-in");
    }
    tracing::info!(principal_id = %pair.principal_id, "console user signed in");
    let set = vec![cookies::set_at(
        cookies::CONSOLE,
        &tokens.value(cookies::CONSOLE, &state.cookie_key),
        cookies::CONSOLE_PATH,
        state.checked.secure_cookies,
    )];
    with_cookies(redirect(AGENTS), set)
}

/// `POST /console/logout`: offline, the refresh token revoked, the cookie gone.
async fn logout(State(state): Shared, headers: HeaderMap, form: Fields) -> Response {
    let Ok(Form(fields)) = form else {
        return console_error(StatusCode::BAD_REQUEST, "The form could not be read.");
    };
    if !same_origin(&state, &headers, &Method::POST) || !csrf_matches(&headers, fields.get("csrf"))
    {
        return expired_form();
    }
    let Ok(upstreams) = upstreams(&state) else {
        return starting();
    };
    let mut set = Vec::new();
    if let Some(caller) = signed_in_caller(&state, &upstreams, &headers, &mut set).await
        && let Err(error) = console::heartbeat(
            &mut upstreams.agents_as_caller.clone(),
            &caller.token,
            dir::Presence::Offline,
        )
        .await
    {
        tracing::debug!(error = %error.detail, "no offline heartbeat at console sign-out");
    }
    // Revoking the cookie's refresh token revokes its family: a renewal made just now included.
    let tokens = cookies::Tokens::read(&headers, cookies::CONSOLE, &state.cookie_key);
    if let Some(tokens) = tokens {
        let request = idp::RevokeRefreshTokenRequest {
            refresh_token: tokens.refresh,
        };
        if let Err(status) = upstreams
            .identity
            .clone()
            .revoke_refresh_token(request)
            .await
        {
            tracing::warn!(error = %status.message(), "revoking a console user's refresh token failed");
        }
    }
    let set = vec![cookies::clear_at(cookies::CONSOLE, cookies::CONSOLE_PATH)];
    with_cookies(redirect(LOGIN), set)
}

#[derive(Debug, Default, serde::Deserialize)]
struct ListParams {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    /// 1-based page of the table.
    page: Option<u64>,
}

/// A time in microseconds as `YYYY-MM-DD hh:mm:ss UTC`; "never" for 0.
pub fn utc_text(us: i64) -> String {
    if us <= 0 {
        return "never".into();
    }
    let secs = us.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The name column: the full name, and the nickname when there is one.
pub(super) fn name_of(agent: &dir::Agent) -> String {
    match (agent.display_name.as_str(), agent.nickname.as_str()) {
        ("", "") => agent.email.clone(),
        (full, "") => full.to_owned(),
        ("", nick) => nick.to_owned(),
        (full, nick) => format!("{full} ({nick})"),
    }
}

fn role_options(roles: &[dir::Role], selected: i32) -> String {
    roles
        .iter()
        .map(|role| {
            let word = role_word(*role as i32);
            let chosen = if *role as i32 == selected {
                " selected"
            } else {
                ""
            };
            format!("<option value=\"{word}\"{chosen}>{word}</option>")
        })
        .collect()
}

/// One member's row; the actions only where agent-directory says the caller may manage the member
/// (`grantable`: the roles the caller may give).
fn row(agent: &dir::Agent, grantable: &[dir::Role]) -> String {
    let email = escape(&agent.email);
    let name = escape(&name_of(agent));
    let mut actions = String::new();
    if agent.caller_may_manage {
        actions.push_str(&format!(
            "<select class=\"role-select\" aria-label=\"Role of {email}\">{}</select> \
             <button type=\"button\" class=\"update-access\">Update access</button> ",
            role_options(grantable, agent.role)
        ));
        if agent.status == dir::AgentStatus::Invited as i32 {
            actions.push_str(
                "<button type=\"button\" class=\"resend-invitation\">Resend invitation</button> \
                 <button type=\"button\" class=\"revoke-invitation\">Revoke invitation</button>",
            );
        } else {
            actions.push_str(
                "<button type=\"button\" class=\"reset-password\">Reset password</button> \
                 <button type=\"button\" class=\"remove-user\">Remove user</button>",
            );
        }
    }
    let role_text = role_word(agent.role);
    let status = status_word(agent.status);
    let presence = presence_word(agent.presence);
    format!(
        "<tr data-agent=\"{id}\" data-email=\"{email}\" data-name=\"{name}\" data-role=\"{role_text}\" \
         data-status=\"{status}\" data-presence=\"{presence}\">\
         <td class=\"last-seen\">{seen}</td><td class=\"name\">{name}</td><td class=\"email\">{email}</td>\
         <td class=\"role\">{role_text}</td><td class=\"presence\">{presence}</td><td class=\"status\">{status}</td>\
         <td class=\"actions\">{actions}</td></tr>",
        id = escape(&agent.id),
        seen = utc_text(agent.last_seen_at_us),
    )
}

/// Paging links: `Previous` and `Next` where they lead somewhere.
fn pager(q: &str, status: &str, page: u64, total: u64) -> String {
    let pages = total.div_ceil(u64::from(TABLE_PAGE)).max(1);
    let base = format!(
        "{AGENTS}?q={}&amp;status={}",
        crate::jsonapi::encode_query_value(q),
        crate::jsonapi::encode_query_value(status)
    );
    let mut out = format!("<nav class=\"pager\">Page {page} of {pages} ({total} in all) ");
    if page > 1 {
        out.push_str(&format!(
            "<a href=\"{base}&amp;page={}\">Previous</a> ",
            page - 1
        ));
    }
    if page < pages {
        out.push_str(&format!(
            "<a href=\"{base}&amp;page={}\">Next</a>",
            page + 1
        ));
    }
    out.push_str("</nav>");
    out
}

/// `GET /console/agents?q=&status=&page=`: the agent management page.
async fn agents_page(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = query else {
        return console_error(StatusCode::BAD_REQUEST, "Invalid search parameters.");
    };
    let Ok(upstreams) = upstreams(&state) else {
        return starting();
    };
    let mut set = Vec::new();
    let csrf = csrf(&state, &headers, &mut set);
    let Some(caller) = signed_in_caller(&state, &upstreams, &headers, &mut set).await else {
        return with_cookies(redirect(LOGIN), set);
    };
    let q = params.q.trim().to_owned();
    if q.chars().count() > QUERY_MAX {
        return with_cookies(
            console_error(StatusCode::BAD_REQUEST, "The search is too long."),
            set,
        );
    }
    let status = match params.status.as_str() {
        "" => dir::AgentStatus::Unspecified,
        "invited" => dir::AgentStatus::Invited,
        "active" => dir::AgentStatus::Active,
        "removed" => dir::AgentStatus::Removed,
        _ => {
            return with_cookies(
                console_error(StatusCode::BAD_REQUEST, "Unknown status filter."),
                set,
            );
        }
    };
    let page_number = params.page.unwrap_or(1).clamp(1, 10_000);
    let mut agents = upstreams.agents_as_caller.clone();
    let loaded = async {
        let rights = console::rights(&mut agents, &caller).await?;
        let window = page_of(
            Some((page_number - 1) * u64::from(TABLE_PAGE)),
            Some(TABLE_PAGE),
        )?;
        let listed = console::list(&mut agents, &caller.token, &q, status, window).await?;
        Ok::<_, crate::jsonapi::ApiError>((rights, listed))
    }
    .await;
    let (rights, listed) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return with_cookies(console_error(error.status, &error.detail), set),
    };
    let status_text = if status == dir::AgentStatus::Unspecified {
        ""
    } else {
        status_word(status as i32)
    };
    let body = page_body(&Page {
        caller: &caller,
        own: &rights.own,
        role: rights.role,
        grantable: &rights.grantable,
        listed: &listed,
        q: &q,
        status: status_text,
        page: page_number,
        csrf: &csrf,
    });
    let mut response = Html(html::page(TITLE, None, &body)).into_response();
    // Its buttons change who may do what: never inside another site's frame.
    response
        .headers_mut()
        .insert("x-frame-options", http::HeaderValue::from_static("DENY"));
    response.headers_mut().insert(
        "content-security-policy",
        http::HeaderValue::from_static("frame-ancestors 'none'"),
    );
    with_cookies(response, set)
}

/// The header of every console page: who is signed in with which role, the navigation (`current`
/// marked), the presence toggle and `Log out`.
pub(super) fn header(
    caller: &Caller,
    own: &dir::Agent,
    role: Option<dir::Role>,
    csrf: &str,
    current: &str,
) -> String {
    let role_text = role.map_or("no console role", |r| role_word(r as i32));
    let who = if own.email.is_empty() {
        name_of(own)
    } else {
        format!("{} ({})", name_of(own), own.email)
    };
    let link = |path: &str, id: &str, label: &str| {
        let here = if path == current {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!("<a id=\"{id}\" href=\"{path}\"{here}>{label}</a>")
    };
    format!(
        "<header id=\"console-header\"><nav id=\"console-nav\">{agents} {conversations}</nav>\
         <p>Signed in as <span id=\"me\" data-agent=\"{id}\">{who}</span>, \
         <span id=\"my-role\">{role_text}</span>. \
         <label class=\"inline\">Presence <select id=\"presence-toggle\" aria-label=\"Presence\">\
         <option value=\"online\">online</option><option value=\"away\">away</option></select></label> \
         <span id=\"my-presence\"></span> {logout}</p></header>",
        agents = link(AGENTS, "nav-agents", "Agents"),
        conversations = link(
            super::conversations::LIST,
            "nav-conversations",
            "Conversations"
        ),
        id = escape(&caller.claims.sub),
        who = escape(&who),
        logout = html::post_button("/console/logout", csrf, "Log out"),
    )
}

/// `config` as the page's `#console-config` (read by [`CONSOLE_COMMON_SCRIPT`]), then that script.
pub(super) fn console_scripts(config: &serde_json::Value) -> String {
    format!(
        "{}{CONSOLE_COMMON_SCRIPT}",
        html::json_script("console-config", config)
    )
}

/// What every console page's script shares, as `window.consoleKit`: the page's config, `api` (JSON
/// API calls with the CSRF header; 401 goes to the sign-in), `resource`, `say` (the outcome in
/// `#console-message`), and the heartbeat: `POST /console/api/presence` now, on each visibility
/// change and every third of the answered timeout, with the presence of `#presence-toggle` (kept in
/// `localStorage`; `away` while the page is hidden); `onBeat(doc)` runs after each.
const CONSOLE_COMMON_SCRIPT: &str = r#"<script>
(() => {
  const config = JSON.parse(document.getElementById('console-config').textContent);
  const message = document.getElementById('console-message');
  const say = (text, error) => {
    if (!message) return;
    message.textContent = text;
    message.className = error ? 'error' : 'notice';
  };
  const kept = sessionStorage.getItem('console-notice');
  if (kept) { sessionStorage.removeItem('console-notice'); say(kept, false); }
  async function api(method, path, body) {
    const headers = { accept: 'application/vnd.api+json', 'x-csrf-token': config.csrf };
    if (body) headers['content-type'] = 'application/vnd.api+json';
    const response = await fetch(path, { method, headers, credentials: 'same-origin',
      body: body ? JSON.stringify(body) : undefined });
    if (response.status === 401) { location.href = '/console/login'; throw new Error('Signed out.'); }
    const text = await response.text();
    let doc = null;
    try { doc = text ? JSON.parse(text) : null; } catch { doc = null; }
    if (!response.ok) throw new Error(doc?.errors?.[0]?.detail || ('HTTP ' + response.status));
    return doc;
  }
  const resource = (type, attributes) => ({ data: { type, attributes } });
  const toggle = document.getElementById('presence-toggle');
  const shown = document.getElementById('my-presence');
  const chosen = () => localStorage.getItem('console-presence') === 'away' ? 'away' : 'online';
  if (toggle) toggle.value = chosen();
  let every = 20;
  let next = null;
  let onBeat = () => {};
  async function heartbeat() {
    clearTimeout(next);
    const presence = document.hidden ? 'away' : chosen();
    try {
      const doc = await api('POST', '/console/api/presence', resource('console-presence', { presence }));
      every = Math.max(1, Math.floor((doc.data.attributes.timeoutSeconds || 60) / 3));
      if (shown) shown.textContent = '(' + doc.data.attributes.presence + ')';
      onBeat(doc);
    } catch (error) {
      every = 20;
      onBeat(null);
    }
    next = setTimeout(heartbeat, every * 1000);
  }
  if (toggle) toggle.addEventListener('change', () => {
    localStorage.setItem('console-presence', toggle.value);
    heartbeat();
  });
  document.addEventListener('visibilitychange', heartbeat);
  window.consoleKit = {
    config, api, resource, say,
    /** Starts the heartbeat; `beat(doc)` runs after each (`doc` null when it failed). */
    startHeartbeat(beat) { if (beat) onBeat = beat; heartbeat(); },
  };
})();
</script>"#;

/// What the agents page shows.
struct Page<'a> {
    caller: &'a Caller,
    own: &'a dir::Agent,
    role: Option<dir::Role>,
    grantable: &'a [dir::Role],
    listed: &'a dir::ListAgentsResponse,
    q: &'a str,
    status: &'a str,
    page: u64,
    csrf: &'a str,
}

fn page_body(p: &Page) -> String {
    let seats = p.listed.seats.unwrap_or_default();
    let counts = p.listed.presence.unwrap_or_default();
    let total = p.listed.page.unwrap_or_default().total;
    let manages = !p.grantable.is_empty();
    let mut out = format!(
        "{header}<h1>Agents</h1>\
         <section id=\"summary\">\
         <p id=\"seat-counter\"><span id=\"seats-free\">{free}</span> free / \
         <span id=\"seats-occupied\">{occupied}</span> occupied \
         (<span id=\"seats-licensed\">{licensed}</span> seats)</p>\
         <p id=\"presence-counts\"><span id=\"online-count\">{online}</span> online, \
         <span id=\"away-count\">{away}</span> away, <span id=\"offline-count\">{offline}</span> offline</p>\
         </section><p id=\"console-message\" role=\"status\"></p>",
        header = header(p.caller, p.own, p.role, p.csrf, AGENTS),
        free = seats.free,
        occupied = seats.occupied,
        licensed = seats.licensed,
        online = counts.online,
        away = counts.away,
        offline = counts.offline,
    );
    if p.role == Some(dir::Role::Administrator) {
        out.push_str(&format!(
            "<form id=\"seats-form\"><label>Licensed seats <input id=\"seats-input\" name=\"licensed\" \
             type=\"number\" min=\"1\" max=\"100000\" value=\"{}\" required></label> \
             <button type=\"submit\">Set seats</button></form>",
            seats.licensed
        ));
    }
    if manages {
        out.push_str(&format!(
            "<form id=\"add-agent\"><h2>Add agent</h2>\
             <label>Email <input id=\"invite-email\" name=\"email\" type=\"email\" maxlength=\"254\" required></label>\
             <label>Role <select id=\"invite-role\" name=\"role\">{}</select></label>\
             <button type=\"submit\">Add agent</button></form>",
            role_options(p.grantable, dir::Role::Agent as i32)
        ));
    }
    let status_option = |value: &str, label: &str| {
        let chosen = if value == p.status { " selected" } else { "" };
        format!("<option value=\"{value}\"{chosen}>{label}</option>")
    };
    out.push_str(&format!(
        "<form id=\"agent-search-form\" method=\"get\" action=\"{AGENTS}\">\
         <input id=\"agent-search\" name=\"q\" value=\"{q}\" maxlength=\"{QUERY_MAX}\" \
         placeholder=\"Name, nickname or email\" aria-label=\"Search agents\"> \
         <select id=\"status-filter\" name=\"status\" aria-label=\"Status\">{all}{invited}{active}{removed}</select> \
         <button type=\"submit\">Search</button></form>\
         <table id=\"agents\"><thead><tr><th>Last seen</th><th>Name</th><th>Email</th><th>Role</th>\
         <th>Presence</th><th>Status</th><th></th></tr></thead><tbody>",
        q = escape(p.q),
        all = status_option("", "Invited and active"),
        invited = status_option("invited", "Invited"),
        active = status_option("active", "Active"),
        removed = status_option("removed", "Removed"),
    ));
    for agent in &p.listed.agents {
        out.push_str(&row(agent, p.grantable));
    }
    out.push_str("</tbody></table>");
    out.push_str(&pager(p.q, p.status, p.page, total));
    out.push_str(
        "<dialog id=\"remove-dialog\"><p id=\"remove-text\"></p>\
         <label>Type the agent's email to confirm <input id=\"remove-confirm\" type=\"email\" autocomplete=\"off\"></label>\
         <p><button type=\"button\" id=\"remove-submit\" disabled>Remove</button> \
         <button type=\"button\" id=\"remove-cancel\">Cancel</button></p></dialog>",
    );
    let mut list_path = format!(
        "/console/api/agents?page[offset]={}&page[limit]={TABLE_PAGE}",
        (p.page - 1) * u64::from(TABLE_PAGE)
    );
    if !p.q.is_empty() {
        list_path.push_str(&format!(
            "&filter[query]={}",
            crate::jsonapi::encode_query_value(p.q)
        ));
    }
    if !p.status.is_empty() {
        list_path.push_str(&format!("&filter[status]={}", p.status));
    }
    let config = json!({
        "csrf": p.csrf,
        "listPath": list_path,
        // Supervisors and administrators may watch; agents poll.
        "live": manages,
    });
    out.push_str(&console_scripts(&config));
    out.push_str(CONSOLE_SCRIPT);
    out
}

/// The agents page's actions through the JSON API and live presence (server-sent events for those who
/// may watch, polling for the others); the heartbeat refreshes the list.
const CONSOLE_SCRIPT: &str = r#"<script>
(() => {
  const { config, api, resource, say } = window.consoleKit;
  async function act(call, done) {
    try {
      await call();
      sessionStorage.setItem('console-notice', done);
      location.reload();
    } catch (error) {
      say(error.message, true);
    }
  }
  const rowOf = (el) => el.closest('tr[data-agent]');
  const agentPath = (row) => '/console/api/agents/' + encodeURIComponent(row.dataset.agent);

  const add = document.getElementById('add-agent');
  if (add) add.addEventListener('submit', (event) => {
    event.preventDefault();
    const email = document.getElementById('invite-email').value.trim();
    const role = document.getElementById('invite-role').value;
    act(() => api('POST', '/console/api/agents', resource('console-agents', { email, role })),
      'Invited ' + email + ' as ' + role + '.');
  });
  const seatsForm = document.getElementById('seats-form');
  if (seatsForm) seatsForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const licensed = Number(document.getElementById('seats-input').value);
    act(() => api('PUT', '/console/api/seats', resource('console-seats', { licensed })),
      'Seats set to ' + licensed + '.');
  });
  const on = (selector, handler) => document.querySelectorAll(selector)
    .forEach((button) => button.addEventListener('click', () => handler(rowOf(button), button)));
  on('button.update-access', (row) => {
    const role = row.querySelector('select.role-select').value;
    act(() => api('PATCH', agentPath(row) + '/role', resource('console-agent-roles', { role })),
      'Access of ' + row.dataset.email + ' updated: ' + role + '.');
  });
  on('button.reset-password', (row) => act(() => api('POST', agentPath(row) + '/password-reset'),
    'A password-reset link was mailed to ' + row.dataset.email + '.'));
  on('button.resend-invitation', (row) => act(() => api('POST', agentPath(row) + '/invitation/resend'),
    'The invitation to ' + row.dataset.email + ' was sent again.'));
  on('button.revoke-invitation', (row) => act(() => api('DELETE', agentPath(row) + '/invitation'),
    'The invitation to ' + row.dataset.email + ' was revoked.'));

  const dialog = document.getElementById('remove-dialog');
  const confirmInput = document.getElementById('remove-confirm');
  const removeButton = document.getElementById('remove-submit');
  let removing = null;
  on('button.remove-user', (row) => {
    removing = row;
    document.getElementById('remove-text').textContent = 'Remove ' + row.dataset.name + ' (' +
      row.dataset.email + ')? Their sign-ins end at once and their seat is freed; the history stays.';
    confirmInput.value = '';
    removeButton.disabled = true;
    dialog.showModal();
  });
  confirmInput.addEventListener('input', () => {
    removeButton.disabled = !removing ||
      confirmInput.value.trim().toLowerCase() !== removing.dataset.email.toLowerCase();
  });
  removeButton.addEventListener('click', () => {
    const row = removing;
    const confirmEmail = confirmInput.value.trim();
    dialog.close();
    act(() => api('POST', agentPath(row) + '/remove', resource('console-agent-removals', { confirmEmail })),
      row.dataset.email + ' was removed.');
  });
  document.getElementById('remove-cancel').addEventListener('click', () => dialog.close());

  const lastSeen = (us) => us > 0
    ? new Date(us / 1000).toISOString().slice(0, 19).replace('T', ' ') + ' UTC' : 'never';
  const setText = (id, value) => { const el = document.getElementById(id); if (el) el.textContent = String(value); };
  function updateRow(agent) {
    const row = document.querySelector('tr[data-agent="' + CSS.escape(agent.id) + '"]');
    if (!row) return;
    const a = agent.attributes;
    // The buttons were chosen for the role and status the page was rendered with.
    const actions = row.querySelector('.actions');
    if ((a.role !== row.dataset.role || a.status !== row.dataset.status) && actions.querySelector('button')) {
      const reload = document.createElement('a');
      reload.href = location.href;
      reload.className = 'reload';
      reload.textContent = 'Changed: reload to manage';
      actions.replaceChildren(reload);
    }
    row.dataset.presence = a.presence;
    row.dataset.role = a.role;
    row.dataset.status = a.status;
    row.querySelector('.presence').textContent = a.presence;
    row.querySelector('.last-seen').textContent = lastSeen(a.lastSeenAtUs);
    row.querySelector('.role').textContent = a.role;
    row.querySelector('.status').textContent = a.status;
  }
  function updateCounts(meta) {
    if (!meta) return;
    setText('seats-free', meta.seats.free);
    setText('seats-occupied', meta.seats.occupied);
    setText('seats-licensed', meta.seats.licensed);
    setText('online-count', meta.presence.online);
    setText('away-count', meta.presence.away);
    setText('offline-count', meta.presence.offline);
  }
  async function refresh() {
    const doc = await api('GET', config.listPath);
    doc.data.forEach(updateRow);
    updateCounts(doc.meta);
  }
  let pending = null;
  const soon = () => {
    if (pending) return;
    pending = setTimeout(() => { pending = null; refresh().catch(() => {}); }, 300);
  };

  // The list is refreshed with each heartbeat, so agents going offline by timeout show even without
  // a watch.
  window.consoleKit.startHeartbeat(soon);

  let polling = null;
  const poll = () => { if (!polling) polling = setInterval(soon, 5000); };
  if (config.live && window.EventSource) {
    const source = new EventSource('/console/api/agents/events');
    source.addEventListener('changed', (event) => {
      try { updateRow(JSON.parse(event.data).data); } catch (error) { /* a malformed event is skipped */ }
      soon();
    });
    source.addEventListener('synced', soon);
    source.addEventListener('error', () => { if (source.readyState === EventSource.CLOSED) poll(); });
  } else {
    poll();
  }
})();
</script>"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc() {
        assert_eq!(utc_text(0), "never");
        assert_eq!(utc_text(1_700_000_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_text(951_782_400_000_000), "2000-02-29 00:00:00 UTC");
    }

    fn agent(id: &str, role: dir::Role, status: dir::AgentStatus) -> dir::Agent {
        dir::Agent {
            id: id.into(),
            email: format!("{id}@example.com"),
            display_name: "<Ann>".into(),
            role: role as i32,
            status: status as i32,
            ..Default::default()
        }
    }

    #[test]
    fn rows_offer_what_agent_directory_allows() {
        use dir::AgentStatus::{Active, Invited};
        use dir::Role::{Agent, Supervisor};
        let grantable = [Agent, Supervisor];
        let manageable = |agent: dir::Agent| dir::Agent {
            caller_may_manage: true,
            ..agent
        };
        let html = row(&manageable(agent("a", Agent, Active)), &grantable);
        assert!(html.contains("&lt;Ann&gt;"), "{html}");
        assert!(html.contains("Update access") && html.contains("Remove user"));
        assert!(!html.contains("value=\"administrator\""), "{html}");
        let invited = row(&manageable(agent("i", Agent, Invited)), &grantable);
        assert!(invited.contains("Resend invitation") && !invited.contains("Remove user"));
        let read_only = row(&agent("a", Agent, Active), &grantable);
        assert!(!read_only.contains("<button"), "{read_only}");
    }
}
