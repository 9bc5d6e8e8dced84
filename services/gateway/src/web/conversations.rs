//! The console's conversation pages (docs/web.md, "Conversations"): the list with "My conversations"
//! and, for supervisors and administrators, "All conversations"; one conversation with its messages,
//! reply box, status buttons, assign/transfer control, history and "Assist this customer". Server
//! rendered; actions go through the JSON API (`crate::conversations`) from a small inline script, and
//! server-sent events keep the page current (`html::LIVE_SCRIPT`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::routing::v1 as rt;
use assist_runtime::web::escape;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::json;

use super::console::{
    LOGIN, TITLE, console_error, console_scripts, expired_form, header, name_of, signed_in_caller,
    starting, utc_text,
};
use super::{csrf, csrf_matches, html, redirect, same_origin, with_cookies};
use crate::console::Caller;
use crate::conversations::{
    BODY_MAX, conversation_id, parse_scope, routed, status_filter, status_word,
};
use crate::jsonapi::ApiError;
use crate::routes::{
    STOREFRONT, as_caller, close_session, customer_by_id, requested_page, start_session, upstreams,
};
use crate::{AppState, Upstreams};

type Shared = State<Arc<AppState>>;

pub const LIST: &str = "/console/conversations";
/// Rows of the conversations table per page; messages and history entries a conversation shows.
const TABLE_PAGE: u32 = 20;
const SHOWN: u32 = 100;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(LIST, get(list_page))
        .route("/console/conversations/{id}", get(conversation_page))
        .route("/console/conversations/{id}/assist", post(assist))
}

/// A duration in microseconds as "1h 02m", "3m 07s" or "12s".
pub(super) fn duration_text(us: i64) -> String {
    let secs = (us / 1_000_000).max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// "waiting 3m 07s, next in the queue" for a queued conversation, empty otherwise.
pub(super) fn waiting_text(c: &rt::Conversation, now_us: i64) -> String {
    if c.status != rt::ConversationStatus::Queued as i32 {
        return String::new();
    }
    let place = match c.queue_position {
        0 => "next in the queue".to_owned(),
        n => format!("{} ahead in the queue", n),
    };
    format!(
        "waiting {}, {place}",
        duration_text(now_us - c.queued_at_us.max(c.created_at_us))
    )
}

/// The newest [`SHOWN`] messages of a conversation, oldest first.
pub(super) async fn recent_messages(
    upstreams: &Upstreams,
    token: &str,
    conversation_id: &str,
) -> Result<Vec<rt::Message>, ApiError> {
    let mut routing = upstreams.routing_as_caller.clone();
    let mut offset = 0;
    loop {
        let request = rt::ListMessagesRequest {
            conversation_id: conversation_id.to_owned(),
            page: Some(requested_page(Some(offset), Some(SHOWN))?),
        };
        let reply = routed(routing.list_messages(as_caller(token, request)?).await)?;
        let total = reply.page.unwrap_or_default().total;
        let last_page = total.saturating_sub(u64::from(SHOWN));
        if offset >= last_page || reply.messages.len() < SHOWN as usize {
            return Ok(reply.messages);
        }
        offset = last_page;
    }
}

/// "First Last" of each customer of `ids`; ids identity does not know are left out.
pub(super) async fn customer_names(
    upstreams: &Upstreams,
    ids: impl IntoIterator<Item = &str>,
) -> HashMap<String, String> {
    let ids: HashSet<&str> = ids.into_iter().filter(|id| !id.is_empty()).collect();
    let found =
        futures::future::join_all(ids.into_iter().map(|id| customer_by_id(upstreams, id))).await;
    found
        .into_iter()
        .filter_map(|found| match found {
            Ok(found) => found,
            Err(error) => {
                tracing::debug!(error = %error.detail, "a customer's name could not be read");
                None
            }
        })
        .map(|customer| (customer.id, customer.name))
        .collect()
}

/// The signed-in console member with their profile and role, or the answer that sends them to sign in.
struct Member {
    caller: Caller,
    own: dir::Agent,
    role: Option<dir::Role>,
}

impl Member {
    fn sees_all(&self) -> bool {
        matches!(
            self.role,
            Some(dir::Role::Supervisor | dir::Role::Administrator)
        )
    }
}

async fn member(
    state: &AppState,
    upstreams: &Upstreams,
    headers: &HeaderMap,
    set: &mut Vec<HeaderValue>,
) -> Result<Member, Box<Response>> {
    let Some(caller) = signed_in_caller(state, upstreams, headers, set).await else {
        return Err(Box::new(with_cookies(redirect(LOGIN), std::mem::take(set))));
    };
    let rights = crate::console::rights(&mut upstreams.agents_as_caller.clone(), &caller)
        .await
        .map_err(|error| {
            Box::new(with_cookies(
                console_error(error.status, &error.detail),
                std::mem::take(set),
            ))
        })?;
    Ok(Member {
        caller,
        own: rights.own,
        role: rights.role,
    })
}

/// Active console members by id (the first 100 active; enough for names and the assign control).
async fn active_agents(upstreams: &Upstreams, token: &str) -> HashMap<String, dir::Agent> {
    let window = match crate::routes::page_of(Some(0), Some(100)) {
        Ok(window) => window,
        Err(_) => return HashMap::new(),
    };
    match crate::console::list(
        &mut upstreams.agents_as_caller.clone(),
        token,
        "",
        dir::AgentStatus::Active,
        window,
    )
    .await
    {
        Ok(listed) => listed
            .agents
            .into_iter()
            .map(|agent| (agent.id.clone(), agent))
            .collect(),
        Err(error) => {
            tracing::debug!(error = %error.detail, "agents for names could not be listed");
            HashMap::new()
        }
    }
}

/// Names of the people a page mentions.
struct Names {
    agents: HashMap<String, dir::Agent>,
    customers: HashMap<String, String>,
}

impl Names {
    fn of(&self, id: &str) -> String {
        if id.is_empty() {
            return "nobody".into();
        }
        if id == "routing" {
            return "the routing policy".into();
        }
        if let Some(agent) = self.agents.get(id) {
            return name_of(agent);
        }
        self.customers
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_owned())
    }
}

/// A page of the console, framed against other sites.
fn console_page(body: &str) -> Response {
    let mut response = Html(html::page(TITLE, None, body)).into_response();
    response
        .headers_mut()
        .insert("x-frame-options", HeaderValue::from_static("DENY"));
    response.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    response
}

#[derive(Debug, Default, serde::Deserialize)]
struct ListParams {
    #[serde(default)]
    view: String,
    #[serde(default)]
    status: String,
    /// 1-based page of the table.
    page: Option<u64>,
}

/// `GET /console/conversations?view=mine|all&status=&page=`.
async fn list_page(
    State(state): Shared,
    headers: HeaderMap,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = query else {
        return console_error(StatusCode::BAD_REQUEST, "Invalid list parameters.");
    };
    let Ok(upstreams) = upstreams(&state) else {
        return starting();
    };
    let mut set = Vec::new();
    let csrf = csrf(&state, &headers, &mut set);
    let member = match member(&state, &upstreams, &headers, &mut set).await {
        Ok(member) => member,
        Err(response) => return *response,
    };
    let (Some(scope), Ok(status)) = (
        parse_scope(params.view.trim()),
        status_filter(params.status.trim()),
    ) else {
        return with_cookies(
            console_error(StatusCode::BAD_REQUEST, "Unknown view or status filter."),
            set,
        );
    };
    // "All conversations" is offered to supervisors and administrators only; routing refuses the
    // others anyway.
    let scope = if member.sees_all() {
        scope
    } else {
        rt::Scope::Mine
    };
    let page_number = params.page.unwrap_or(1).clamp(1, 10_000);
    let token = member.caller.token.clone();
    let loaded = async {
        let request = rt::ListConversationsRequest {
            page: Some(requested_page(
                Some((page_number - 1) * u64::from(TABLE_PAGE)),
                Some(TABLE_PAGE),
            )?),
            scope: scope as i32,
            status: status as i32,
            ..Default::default()
        };
        let mut routing = upstreams.routing_as_caller.clone();
        let listed = routed(
            routing
                .list_conversations(as_caller(&token, request)?)
                .await,
        )?;
        let stats = routed(
            routing
                .get_queue_stats(as_caller(&token, rt::GetQueueStatsRequest {})?)
                .await,
        )?;
        Ok::<_, ApiError>((listed, stats))
    }
    .await;
    let (listed, stats) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return with_cookies(console_error(error.status, &error.detail), set),
    };
    let names = Names {
        agents: active_agents(&upstreams, &token).await,
        customers: customer_names(
            &upstreams,
            listed.conversations.iter().map(|c| c.customer_id.as_str()),
        )
        .await,
    };
    let view = if scope == rt::Scope::All {
        "all"
    } else {
        "mine"
    };
    let status_text = if status == rt::ConversationStatus::Unspecified {
        ""
    } else {
        status_word(status as i32)
    };
    let body = list_body(&ListView {
        member: &member,
        csrf: &csrf,
        view,
        status: status_text,
        page: page_number,
        listed: &listed,
        stats: &stats,
        names: &names,
    });
    with_cookies(console_page(&body), set)
}

struct ListView<'a> {
    member: &'a Member,
    csrf: &'a str,
    view: &'a str,
    status: &'a str,
    page: u64,
    listed: &'a rt::ListConversationsResponse,
    stats: &'a rt::QueueStats,
    names: &'a Names,
}

fn list_body(v: &ListView) -> String {
    let now = assist_runtime::time::now_us();
    let tab = |view: &str, id: &str, label: &str| {
        let current = if view == v.view {
            " class=\"current\" aria-current=\"page\""
        } else {
            ""
        };
        format!("<a id=\"{id}\" href=\"{LIST}?view={view}\"{current}>{label}</a>")
    };
    let mut tabs = tab("mine", "tab-mine", "My conversations");
    if v.member.sees_all() {
        tabs.push(' ');
        tabs.push_str(&tab("all", "tab-all", "All conversations"));
    }
    let status_option = |value: &str, label: &str| {
        let chosen = if value == v.status { " selected" } else { "" };
        format!("<option value=\"{value}\"{chosen}>{label}</option>")
    };
    let default_label = if v.view == "mine" {
        "Open (assigned and pending)"
    } else {
        "Every status"
    };
    let mut out = format!(
        "{header}<h1>Conversations</h1><p id=\"console-message\" role=\"status\"></p>\
         <p id=\"queue-stats\" data-live>Queue: <span id=\"queue-queued\">{queued}</span> waiting\
         {longest}; <span id=\"agents-available\">{available}</span> of \
         <span id=\"agents-online\">{online}</span> agents online have room; \
         <span id=\"open-count\">{open}</span> open.</p>\
         <nav class=\"tabs\" id=\"conversation-tabs\">{tabs}</nav>\
         <form id=\"conversation-filter\" method=\"get\" action=\"{LIST}\">\
         <input type=\"hidden\" name=\"view\" value=\"{view}\">\
         <select id=\"status-filter\" name=\"status\" aria-label=\"Status\">{all}{queued_o}{assigned}{pending}\
         {resolved}{closed}</select> <button type=\"submit\">Filter</button></form>\
         <table id=\"conversations\"><thead><tr><th>Subject</th><th>Customer</th><th>Status</th>\
         <th>Assignee</th><th>Waiting</th><th>Last activity</th></tr></thead><tbody id=\"conversation-rows\" data-live>",
        header = header(&v.member.caller, &v.member.own, v.member.role, v.csrf, LIST),
        queued = v.stats.queued,
        longest = if v.stats.queued > 0 {
            format!(
                ", the longest for <span id=\"queue-longest\">{}</span>",
                duration_text(v.stats.longest_wait_us)
            )
        } else {
            String::new()
        },
        available = v.stats.agents_available,
        online = v.stats.agents_online,
        open = v.stats.open,
        view = v.view,
        all = status_option("", default_label),
        queued_o = status_option("queued", "Queued"),
        assigned = status_option("assigned", "Assigned"),
        pending = status_option("pending", "Pending"),
        resolved = status_option("resolved", "Resolved"),
        closed = status_option("closed", "Closed"),
    );
    for c in &v.listed.conversations {
        let status = status_word(c.status);
        let assignee = if c.assignee_id.is_empty() {
            String::new()
        } else {
            v.names.of(&c.assignee_id)
        };
        out.push_str(&format!(
            "<tr data-conversation=\"{id}\" data-status=\"{status}\" data-assignee=\"{assignee_id}\">\
             <td class=\"subject\"><a href=\"{LIST}/{id}\">{subject}</a></td>\
             <td class=\"customer\">{customer}</td><td class=\"status\">{status}</td>\
             <td class=\"assignee\">{assignee}</td><td class=\"waiting\">{waiting}</td>\
             <td class=\"last-activity\">{last}</td></tr>",
            id = escape(&c.id),
            assignee_id = escape(&c.assignee_id),
            subject = escape(&c.subject),
            customer = escape(&v.names.of(&c.customer_id)),
            assignee = escape(&assignee),
            waiting = escape(&waiting_text(c, now)),
            last = utc_text(c.last_message_at_us.max(c.updated_at_us)),
        ));
    }
    out.push_str("</tbody></table>");
    let total = v.listed.page.unwrap_or_default().total;
    let pages = total.div_ceil(u64::from(TABLE_PAGE)).max(1);
    let base = format!(
        "{LIST}?view={}&amp;status={}",
        v.view,
        crate::jsonapi::encode_query_value(v.status)
    );
    out.push_str(&format!(
        "<nav class=\"pager\" id=\"conversation-pager\" data-live>Page {} of {pages} ({total} in all) ",
        v.page
    ));
    if v.page > 1 {
        out.push_str(&format!(
            "<a href=\"{base}&amp;page={}\">Previous</a> ",
            v.page - 1
        ));
    }
    if v.page < pages {
        out.push_str(&format!(
            "<a href=\"{base}&amp;page={}\">Next</a>",
            v.page + 1
        ));
    }
    out.push_str("</nav>");
    out.push_str(&console_scripts(&json!({ "csrf": v.csrf })));
    out.push_str(&html::live(&json!({
        "events": format!("/console/api/conversations/events?filter[scope]={}", v.view),
        // Waiting times and queue positions move on their own.
        "every": 15,
    })));
    out.push_str("<script>window.consoleKit.startHeartbeat();</script>");
    out
}

/// `GET /console/conversations/{id}`.
async fn conversation_page(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Ok(upstreams) = upstreams(&state) else {
        return starting();
    };
    let mut set = Vec::new();
    let csrf = csrf(&state, &headers, &mut set);
    let member = match member(&state, &upstreams, &headers, &mut set).await {
        Ok(member) => member,
        Err(response) => return *response,
    };
    let token = member.caller.token.clone();
    let loaded = async {
        let id = conversation_id(&id).map_err(|_| crate::jsonapi::NOT_FOUND)?;
        let mut routing = upstreams.routing_as_caller.clone();
        let conversation = routed(
            routing
                .get_conversation(as_caller(
                    &token,
                    rt::GetConversationRequest {
                        conversation_id: id.clone(),
                    },
                )?)
                .await,
        )?;
        let messages = recent_messages(&upstreams, &token, &id).await?;
        let history = routed(
            routing
                .get_conversation_history(as_caller(
                    &token,
                    rt::GetConversationHistoryRequest {
                        conversation_id: id.clone(),
                        page: Some(requested_page(Some(0), Some(SHOWN))?),
                    },
                )?)
                .await,
        )?;
        Ok::<_, ApiError>((conversation, messages, history.events))
    }
    .await;
    let (conversation, messages, history) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return with_cookies(console_error(error.status, &error.detail), set),
    };
    let names = Names {
        agents: active_agents(&upstreams, &token).await,
        customers: customer_names(&upstreams, [conversation.customer_id.as_str()]).await,
    };
    let body = conversation_body(&ConversationView {
        member: &member,
        csrf: &csrf,
        conversation: &conversation,
        messages: &messages,
        history: &history,
        names: &names,
    });
    with_cookies(console_page(&body), set)
}

struct ConversationView<'a> {
    member: &'a Member,
    csrf: &'a str,
    conversation: &'a rt::Conversation,
    messages: &'a [rt::Message],
    history: &'a [rt::ConversationEvent],
    names: &'a Names,
}

/// What one entry of the history says.
fn history_text(e: &rt::ConversationEvent, names: &Names) -> String {
    use rt::conversation_event::Kind;
    let by = names.of(&e.actor_id);
    let over = if e.capacity_override {
        " (over capacity)"
    } else {
        ""
    };
    match Kind::try_from(e.kind).unwrap_or(Kind::Unspecified) {
        Kind::Created => format!("Started by {by}"),
        Kind::Assigned => format!("Assigned to {} by {by}{over}", names.of(&e.to_agent_id)),
        Kind::Transferred => format!(
            "Transferred from {} to {} by {by}{over}",
            names.of(&e.from_agent_id),
            names.of(&e.to_agent_id),
        ),
        Kind::Requeued => format!(
            "Back to the queue from {} ({})",
            names.of(&e.from_agent_id),
            match e.reason.as_str() {
                "offline" => "offline too long",
                "removed" => "removed from the console",
                "not_assignable" => "no longer assignable",
                other => other,
            }
        ),
        Kind::Message if e.message.as_ref().is_some_and(|m| m.internal) => {
            format!("Internal note by {by}")
        }
        Kind::Message => format!("Message by {by}"),
        Kind::Pending => format!("Marked pending by {by}"),
        Kind::Resumed => format!("Back to assigned by {by}"),
        Kind::Resolved => format!("Resolved by {by}"),
        Kind::Reopened => format!("Reopened by {by}"),
        Kind::Closed => format!("Closed by {by}"),
        Kind::AssistStarted => format!("Assist session {} started by {by}", e.session_id),
        Kind::Watching | Kind::Unspecified => format!("Changed by {by}"),
    }
}

fn conversation_body(v: &ConversationView) -> String {
    let c = v.conversation;
    let me = &v.member.caller.claims.sub;
    let status = status_word(c.status);
    let mine = &c.assignee_id == me;
    let open = matches!(
        rt::ConversationStatus::try_from(c.status),
        Ok(rt::ConversationStatus::Queued
            | rt::ConversationStatus::Assigned
            | rt::ConversationStatus::Pending)
    );
    let manages = v.member.sees_all();
    let now = assist_runtime::time::now_us();
    let base = format!("/console/api/conversations/{}", c.id);
    let mut out = format!(
        "{header}<p><a id=\"back-to-list\" href=\"{LIST}\">All my conversations</a></p>\
         <h1 id=\"conversation-subject\">{subject}</h1><p id=\"console-message\" role=\"status\"></p>\
         <dl id=\"conversation-meta\" data-live data-status=\"{status}\" data-assignee=\"{assignee_id}\">\
         <dt>Status</dt><dd id=\"conversation-status\">{status}</dd>\
         <dt>Customer</dt><dd id=\"conversation-customer\">{customer}</dd>\
         <dt>Assignee</dt><dd id=\"conversation-assignee\">{assignee}</dd>\
         <dt>Started</dt><dd>{created}</dd><dt>Waiting</dt><dd id=\"conversation-waiting\">{waiting}</dd></dl>",
        header = header(&v.member.caller, &v.member.own, v.member.role, v.csrf, LIST),
        subject = escape(&c.subject),
        assignee_id = escape(&c.assignee_id),
        customer = escape(&v.names.of(&c.customer_id)),
        assignee = escape(&if c.assignee_id.is_empty() {
            "nobody yet".to_owned()
        } else {
            v.names.of(&c.assignee_id)
        }),
        created = utc_text(c.created_at_us),
        waiting = escape(&match waiting_text(c, now) {
            text if text.is_empty() => "no".to_owned(),
            text => text,
        }),
    );

    // Status buttons: the assignee parks and resumes; the assignee, supervisors and administrators
    // resolve and close. Routing refuses anything else regardless.
    out.push_str("<div id=\"status-actions\" data-live>");
    let button = |id: &str, status: &str, label: &str| {
        format!(
            "<button type=\"button\" id=\"{id}\" class=\"set-status\" data-status=\"{status}\">{label}</button> "
        )
    };
    match rt::ConversationStatus::try_from(c.status) {
        Ok(rt::ConversationStatus::Assigned) if mine => {
            out.push_str(&button("set-pending", "pending", "Pending"));
        }
        Ok(rt::ConversationStatus::Pending) if mine => {
            out.push_str(&button("set-assigned", "assigned", "Back to assigned"));
        }
        _ => {}
    }
    let may_close = mine || manages;
    match rt::ConversationStatus::try_from(c.status) {
        Ok(rt::ConversationStatus::Assigned | rt::ConversationStatus::Pending) if may_close => {
            out.push_str(&button("set-resolved", "resolved", "Resolve"));
        }
        Ok(rt::ConversationStatus::Resolved) if may_close => {
            out.push_str(&button("set-closed", "closed", "Close"));
        }
        _ => {}
    }
    out.push_str("</div>");

    // Assign or transfer: supervisors (to agents, supervisors, themselves) and administrators (to
    // agents and supervisors), DESIGN.md section 4.
    if manages && open {
        let mut options = String::new();
        if v.member.role == Some(dir::Role::Supervisor) && !mine {
            options.push_str(&format!("<option value=\"{}\">Me</option>", escape(me)));
        }
        let mut candidates: Vec<&dir::Agent> = v
            .names
            .agents
            .values()
            .filter(|a| {
                matches!(
                    dir::Role::try_from(a.role),
                    Ok(dir::Role::Agent | dir::Role::Supervisor)
                ) && &a.id != me
                    && a.id != c.assignee_id
            })
            .collect();
        candidates.sort_by_key(|a| name_of(a).to_lowercase());
        for agent in candidates {
            options.push_str(&format!(
                "<option value=\"{}\">{} ({}, {})</option>",
                escape(&agent.id),
                escape(&name_of(agent)),
                crate::console::role_word(agent.role),
                crate::console::presence_word(agent.presence),
            ));
        }
        let label = if c.status == rt::ConversationStatus::Queued as i32 {
            "Assign"
        } else {
            "Transfer"
        };
        out.push_str(&format!(
            "<form id=\"assign-form\"><label class=\"inline\">{label} to \
             <select id=\"assign-agent\" name=\"agentId\" required>{options}</select></label> \
             <button type=\"submit\" id=\"assign-submit\">{label}</button></form>"
        ));
    }

    // Assisting the customer in the storefront: agents holding the capability, on their own
    // conversations, and supervisors and administrators who hold it.
    let assists = v
        .member
        .own
        .capabilities
        .contains(&(dir::Capability::AssistCustomers as i32));
    if assists && (mine || manages) && !c.customer_id.is_empty() {
        out.push_str(&format!(
            "<form id=\"assist-form\" method=\"post\" action=\"{LIST}/{id}/assist\">{csrf}\
             <button type=\"submit\">Assist this customer</button></form>",
            id = escape(&c.id),
            csrf = html::csrf_field(v.csrf),
        ));
    }

    out.push_str("<h2>Messages</h2><ol id=\"messages\" class=\"messages\" data-live>");
    for m in v.messages {
        out.push_str(&message_item(m, &v.names.of(&m.author_id)));
    }
    out.push_str("</ol>");
    if c.status != rt::ConversationStatus::Closed as i32 {
        out.push_str(&format!(
            "<form id=\"reply-form\"><label for=\"reply-body\">Reply</label>\
             <textarea id=\"reply-body\" name=\"body\" rows=\"4\" maxlength=\"{BODY_MAX}\" required></textarea>\
             <label class=\"inline\"><input type=\"checkbox\" id=\"reply-internal\" name=\"internal\"> \
             Internal note (console members only)</label> <button type=\"submit\" id=\"reply-submit\">Send</button>\
             <span id=\"reply-count\" class=\"meta\"></span></form>"
        ));
    }
    out.push_str("<h2>History</h2><ol id=\"history\" data-live>");
    for e in v.history {
        out.push_str(&format!(
            "<li data-kind=\"{kind}\"><span class=\"meta\">{at}</span> {text}</li>",
            kind = crate::conversations::kind_word(e.kind),
            at = utc_text(e.at_us),
            text = escape(&history_text(e, v.names)),
        ));
    }
    out.push_str("</ol>");
    out.push_str(&console_scripts(&json!({ "csrf": v.csrf, "base": base })));
    out.push_str(&html::live(&json!({
        "events": format!("{base}/events"),
        "gone": "This conversation is no longer yours to see: it was transferred or went back to the queue.",
    })));
    out.push_str(CONVERSATION_SCRIPT);
    out
}

/// One message of a conversation page: `li.message` with the author's kind as a class, `internal`
/// for internal notes (marked "Internal note").
pub(super) fn message_item(m: &rt::Message, author: &str) -> String {
    let kind = crate::conversations::author_word(m.author_kind);
    let (class, marker) = if m.internal {
        (
            " internal",
            "<span class=\"internal-marker\">Internal note</span> ",
        )
    } else {
        ("", "")
    };
    let author = if m.author_kind == rt::AuthorKind::System as i32 {
        "System"
    } else {
        author
    };
    format!(
        "<li class=\"message {kind}{class}\" data-message=\"{id}\">{marker}\
         <span class=\"meta\"><span class=\"author\">{author}</span>, {at}</span>\
         <div class=\"body\">{body}</div></li>",
        id = escape(&m.id),
        author = escape(author),
        at = utc_text(m.at_us),
        body = escape(&m.body),
    )
}

/// The conversation page's actions: reply (or internal note), status buttons, assign/transfer; each
/// refreshes the page's live parts, and the heartbeat keeps the member's presence.
const CONVERSATION_SCRIPT: &str = r#"<script>
(() => {
  const { config, api, resource, say } = window.consoleKit;
  const reply = document.getElementById('reply-form');
  if (reply) {
    const text = document.getElementById('reply-body');
    const count = document.getElementById('reply-count');
    const counted = () => { count.textContent = text.value.length + ' / ' + text.maxLength; };
    text.addEventListener('input', counted);
    reply.addEventListener('submit', async (event) => {
      event.preventDefault();
      const body = text.value.trim();
      if (!body) { say('Write a message first.', true); return; }
      const internal = document.getElementById('reply-internal').checked;
      try {
        await api('POST', config.base + '/messages', resource('conversation-messages', { body, internal }));
        text.value = '';
        counted();
        say(internal ? 'Internal note added.' : 'Reply sent.', false);
        window.assistRefresh();
      } catch (error) {
        say(error.message, true);
      }
    });
  }
  document.addEventListener('click', async (event) => {
    const button = event.target.closest('button.set-status');
    if (!button) return;
    try {
      await api('PATCH', config.base + '/status', resource('conversation-statuses', { status: button.dataset.status }));
      say('The conversation is ' + button.dataset.status + ' now.', false);
      window.assistRefresh();
    } catch (error) {
      say(error.message, true);
    }
  });
  const assign = document.getElementById('assign-form');
  if (assign) assign.addEventListener('submit', async (event) => {
    event.preventDefault();
    const select = document.getElementById('assign-agent');
    const agentId = select.value;
    if (!agentId) { say('Choose someone to assign it to.', true); return; }
    const label = select.options[select.selectedIndex].textContent;
    try {
      await api('POST', config.base + '/assignment', resource('conversation-assignments', { agentId }));
      sessionStorage.setItem('console-notice', 'Assigned to ' + label + '.');
      location.reload();
    } catch (error) {
      say(error.message, true);
    }
  });
  window.consoleKit.startHeartbeat();
})();
</script>"#;

type Fields = Result<Form<HashMap<String, String>>, FormRejection>;

/// `POST /console/conversations/{id}/assist` (field `csrf`): starts a storefront assist session for
/// the conversation's customer (with the conversation's id), records it in the conversation's
/// history, and lands on the shop as that customer with the assist bar.
async fn assist(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Fields,
) -> Response {
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
    let Some(caller) = signed_in_caller(&state, &upstreams, &headers, &mut set).await else {
        return with_cookies(redirect(LOGIN), set);
    };
    let started = async {
        let conversation_id = conversation_id(&id).map_err(|_| crate::jsonapi::NOT_FOUND)?;
        let conversation = routed(
            upstreams
                .routing_as_caller
                .clone()
                .get_conversation(as_caller(
                    &caller.token,
                    rt::GetConversationRequest {
                        conversation_id: conversation_id.clone(),
                    },
                )?)
                .await,
        )?;
        let customer = customer_by_id(&upstreams, &conversation.customer_id)
            .await?
            .ok_or_else(|| STOREFRONT.impersonation_failed.clone())?;
        let opened = start_session(
            &upstreams,
            &STOREFRONT,
            &caller.token,
            customer,
            String::new(),
            conversation_id.clone(),
        )
        .await?;
        let session_id = opened.session_id().to_owned();
        let recorded = routed(
            upstreams
                .routing_as_caller
                .clone()
                .record_assist_session(as_caller(
                    &caller.token,
                    rt::RecordAssistSessionRequest {
                        conversation_id,
                        session_id: session_id.clone(),
                    },
                )?)
                .await,
        );
        if let Err(error) = recorded {
            // A session the conversation does not know of is not kept.
            if let Err(ended) = close_session(&upstreams, &caller.token, &session_id).await {
                tracing::warn!(session_id = %session_id, error = %ended.detail, "ending an unrecorded assist session failed");
            }
            return Err(error);
        }
        Ok(opened)
    }
    .await;
    match started {
        Ok(opened) => {
            tracing::info!(
                agent_id = %caller.claims.sub,
                session_id = %opened.session_id(),
                "assist session started from a conversation"
            );
            set.push(super::agent::assist_cookie(&state, &STOREFRONT, &opened));
            with_cookies(redirect(STOREFRONT.web.assisted_home), set)
        }
        Err(error) => with_cookies(console_error(error.status, &error.detail), set),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_short() {
        assert_eq!(duration_text(0), "0s");
        assert_eq!(duration_text(59_999_999), "59s");
        assert_eq!(duration_text(187_000_000), "3m 07s");
        assert_eq!(duration_text(3_720_000_000), "1h 02m");
        assert_eq!(duration_text(-5), "0s");
    }

    #[test]
    fn only_queued_conversations_wait() {
        let mut c = rt::Conversation {
            status: rt::ConversationStatus::Queued as i32,
            created_at_us: 1_000_000,
            queued_at_us: 1_000_000,
            queue_position: 0,
            ..Default::default()
        };
        assert_eq!(
            waiting_text(&c, 31_000_000),
            "waiting 30s, next in the queue"
        );
        c.queue_position = 2;
        assert!(waiting_text(&c, 31_000_000).ends_with("2 ahead in the queue"));
        c.status = rt::ConversationStatus::Assigned as i32;
        assert_eq!(waiting_text(&c, 31_000_000), "");
    }

    #[test]
    fn internal_notes_are_marked_and_bodies_escaped() {
        let note = rt::Message {
            id: "m1".into(),
            author_kind: rt::AuthorKind::Agent as i32,
            body: "<b>check the refund</b>".into(),
            internal: true,
            ..Default::default()
        };
        let item = message_item(&note, "Ann");
        assert!(item.contains("class=\"message agent internal\""), "{item}");
        assert!(item.contains("Internal note"));
        assert!(item.contains("&lt;b&gt;check the refund&lt;/b&gt;"));
        let system = rt::Message {
            author_kind: rt::AuthorKind::System as i32,
            ..note
        };
        assert!(message_item(&system, "x").contains(">System<"));
    }

    #[test]
    fn history_names_who_did_what() {
        let names = Names {
            agents: HashMap::from([(
                "a1".to_owned(),
                dir::Agent {
                    id: "a1".into(),
                    display_name: "Ann Agent".into(),
                    ..Default::default()
                },
            )]),
            customers: HashMap::from([("c1".to_owned(), "Casey Customer".to_owned())]),
        };
        let assigned = rt::ConversationEvent {
            kind: rt::conversation_event::Kind::Assigned as i32,
            actor_id: "routing".into(),
            to_agent_id: "a1".into(),
            ..Default::default()
        };
        assert_eq!(
            history_text(&assigned, &names),
            "Assigned to Ann Agent by the routing policy"
        );
        let created = rt::ConversationEvent {
            kind: rt::conversation_event::Kind::Created as i32,
            actor_id: "c1".into(),
            ..Default::default()
        };
        assert_eq!(history_text(&created, &names), "Started by Casey Customer");
    }
}
