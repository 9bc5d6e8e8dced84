//! Conversations between customers and console members (docs/web.md, "Conversations"): the console's
//! JSON API under `/console/api/conversations…`, the customers' under `/conversations…`, and their
//! live feeds as server-sent events fed by `WatchConversations`. Every call carries the caller's own
//! token; conversation-routing decides who may do what (DESIGN.md section 4), the gateway checks the
//! input first and maps routing's statuses (section 7).

use std::sync::Arc;

use assist_proto::common::v1::PageRequest;
use assist_proto::routing::v1 as rt;
use assist_runtime::auth::Realm;
use assist_runtime::validate;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::response::sse::Event;
use axum::routing::{MethodRouter, get, patch, post};
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::console::{Audience, Call, bad, body, event_stream, open};
use crate::jsonapi::{self, ApiError, document};
use crate::routes::requested_page;
use crate::web::cookies;

type Shared = State<Arc<AppState>>;

pub use assist_proto::routing::v1::{BODY_MAX, SUBJECT_MAX};

pub const CUSTOMER_SIGN_IN: ApiError = ApiError {
    status: StatusCode::UNAUTHORIZED,
    code: "401",
    detail: std::borrow::Cow::Borrowed("Sign in as a customer."),
};
pub const CUSTOMERS_ONLY: ApiError = ApiError {
    status: StatusCode::FORBIDDEN,
    code: "403",
    detail: std::borrow::Cow::Borrowed(
        "These conversations are for customers; console members use /console/api/conversations.",
    ),
};

/// The customers' callers: customer tokens, or the storefront's customer cookie (`Path=/`).
pub const CUSTOMERS: Audience = Audience {
    realm: Realm::Customer,
    cookie: cookies::CUSTOMER,
    cookie_path: "/",
    missing: CUSTOMER_SIGN_IN,
    wrong_realm: CUSTOMERS_ONLY,
};

/// Which of the two APIs a handler serves.
pub(crate) trait Side: Send + Sync + 'static {
    const AUDIENCE: &'static Audience;
    /// Path of the conversations collection: `/console/api/conversations` or `/conversations`.
    const BASE: &'static str;
    /// Whether callers may write internal notes (console members only).
    const INTERNAL_NOTES: bool;
}

pub(crate) enum Console {}
pub(crate) enum Customers {}

impl Side for Console {
    const AUDIENCE: &'static Audience = &crate::console::CONSOLE;
    const BASE: &'static str = "/console/api/conversations";
    const INTERNAL_NOTES: bool = true;
}

impl Side for Customers {
    const AUDIENCE: &'static Audience = &CUSTOMERS;
    const BASE: &'static str = "/conversations";
    const INTERNAL_NOTES: bool = false;
}

/// The conversation routes of both APIs, for the router and the OpenAPI document (routes.rs).
pub fn table() -> Vec<(&'static str, Method, MethodRouter<Arc<AppState>>)> {
    vec![
        (
            "/console/api/conversations",
            Method::GET,
            get(list::<Console>),
        ),
        (
            "/console/api/conversations/events",
            Method::GET,
            get(watch_scope),
        ),
        (
            "/console/api/conversations/queue",
            Method::GET,
            get(queue_stats),
        ),
        (
            "/console/api/conversations/{id}",
            Method::GET,
            get(get_one::<Console>),
        ),
        (
            "/console/api/conversations/{id}/messages",
            Method::GET,
            get(messages::<Console>),
        ),
        (
            "/console/api/conversations/{id}/messages",
            Method::POST,
            post(post_message::<Console>),
        ),
        (
            "/console/api/conversations/{id}/status",
            Method::PATCH,
            patch(set_status::<Console>),
        ),
        (
            "/console/api/conversations/{id}/assignment",
            Method::POST,
            post(assign),
        ),
        (
            "/console/api/conversations/{id}/history",
            Method::GET,
            get(history),
        ),
        (
            "/console/api/conversations/{id}/assist-sessions",
            Method::POST,
            post(record_assist),
        ),
        (
            "/console/api/conversations/{id}/events",
            Method::GET,
            get(watch_one::<Console>),
        ),
        ("/conversations", Method::GET, get(list::<Customers>)),
        ("/conversations", Method::POST, post(create)),
        (
            "/conversations/{id}",
            Method::GET,
            get(get_one::<Customers>),
        ),
        (
            "/conversations/{id}/messages",
            Method::GET,
            get(messages::<Customers>),
        ),
        (
            "/conversations/{id}/messages",
            Method::POST,
            post(post_message::<Customers>),
        ),
        (
            "/conversations/{id}/status",
            Method::PATCH,
            patch(set_status::<Customers>),
        ),
        (
            "/conversations/{id}/events",
            Method::GET,
            get(watch_one::<Customers>),
        ),
    ]
}

/// Routing's reply, or its refusal as the API's error (DESIGN.md section 7: `PERMISSION_DENIED` 403,
/// `NOT_FOUND` 404, `INVALID_ARGUMENT` 400, `FAILED_PRECONDITION` 409, with routing's message).
pub(crate) fn routed<T>(reply: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ApiError> {
    reply
        .map(tonic::Response::into_inner)
        .map_err(|status| ApiError::from_status(&status))
}

/// A conversation id from a path.
pub(crate) fn conversation_id(raw: &str) -> Result<String, ApiError> {
    validate::id("id", raw)
        .map(|id| id.to_string())
        .map_err(|_| bad("id: must be a conversation id (a UUID)"))
}

/// A subject as routing takes it: trimmed, 1 to 200 characters.
pub(crate) fn subject(raw: &str) -> Result<String, ApiError> {
    Ok(validate::required("subject", raw, SUBJECT_MAX)?)
}

/// A message body as routing takes it: trimmed, 1 to 4,000 characters.
pub(crate) fn message_body(raw: &str) -> Result<String, ApiError> {
    Ok(validate::required("body", raw, BODY_MAX)?)
}

pub fn status_word(value: i32) -> &'static str {
    match rt::ConversationStatus::try_from(value) {
        Ok(rt::ConversationStatus::Queued) => "queued",
        Ok(rt::ConversationStatus::Assigned) => "assigned",
        Ok(rt::ConversationStatus::Pending) => "pending",
        Ok(rt::ConversationStatus::Resolved) => "resolved",
        Ok(rt::ConversationStatus::Closed) => "closed",
        _ => "unspecified",
    }
}

pub fn parse_status(word: &str) -> Option<rt::ConversationStatus> {
    match word {
        "queued" => Some(rt::ConversationStatus::Queued),
        "assigned" => Some(rt::ConversationStatus::Assigned),
        "pending" => Some(rt::ConversationStatus::Pending),
        "resolved" => Some(rt::ConversationStatus::Resolved),
        "closed" => Some(rt::ConversationStatus::Closed),
        _ => None,
    }
}

fn priority_word(value: i32) -> &'static str {
    match rt::Priority::try_from(value) {
        Ok(rt::Priority::Low) => "low",
        Ok(rt::Priority::High) => "high",
        Ok(rt::Priority::Urgent) => "urgent",
        _ => "normal",
    }
}

fn channel_word(value: i32) -> &'static str {
    match rt::Channel::try_from(value) {
        Ok(rt::Channel::Web) => "web",
        Ok(rt::Channel::Api) => "api",
        _ => "unspecified",
    }
}

pub fn author_word(value: i32) -> &'static str {
    match rt::AuthorKind::try_from(value) {
        Ok(rt::AuthorKind::Customer) => "customer",
        Ok(rt::AuthorKind::Agent) => "agent",
        Ok(rt::AuthorKind::System) => "system",
        _ => "unspecified",
    }
}

/// An event kind as a word (`assigned`, `message`, …): the SSE event name and the `kind` attribute.
pub fn kind_word(value: i32) -> &'static str {
    use rt::conversation_event::Kind;
    match Kind::try_from(value) {
        Ok(Kind::Watching) => "watching",
        Ok(Kind::Created) => "created",
        Ok(Kind::Assigned) => "assigned",
        Ok(Kind::Transferred) => "transferred",
        Ok(Kind::Requeued) => "requeued",
        Ok(Kind::Message) => "message",
        Ok(Kind::Pending) => "pending",
        Ok(Kind::Resumed) => "resumed",
        Ok(Kind::Resolved) => "resolved",
        Ok(Kind::Reopened) => "reopened",
        Ok(Kind::Closed) => "closed",
        Ok(Kind::AssistStarted) => "assist_started",
        _ => "unspecified",
    }
}

/// A conversation as a `conversations` resource; `base` is the API's collection path.
pub fn conversation_resource(base: &str, c: &rt::Conversation) -> Value {
    let queued = c.status == rt::ConversationStatus::Queued as i32;
    json!({
        "type": "conversations",
        "id": c.id,
        "attributes": {
            "customerId": c.customer_id,
            "channel": channel_word(c.channel),
            "subject": c.subject,
            "priority": priority_word(c.priority),
            "requiredSkills": c.required_skills,
            "status": status_word(c.status),
            "assigneeId": c.assignee_id,
            "createdAtUs": c.created_at_us,
            "assignedAtUs": c.assigned_at_us,
            "firstReplyAtUs": c.first_reply_at_us,
            "resolvedAtUs": c.resolved_at_us,
            "closedAtUs": c.closed_at_us,
            "updatedAtUs": c.updated_at_us,
            "lastMessageAtUs": c.last_message_at_us,
            "requeued": c.requeued,
            "queuedAtUs": if queued { c.queued_at_us.into() } else { Value::Null },
            "queuePosition": if queued { c.queue_position.into() } else { Value::Null },
            "version": c.version,
        },
        "links": { "self": format!("{base}/{}", c.id) },
    })
}

pub fn message_resource(m: &rt::Message) -> Value {
    json!({
        "type": "conversation-messages",
        "id": m.id,
        "attributes": {
            "conversationId": m.conversation_id,
            "authorKind": author_word(m.author_kind),
            "authorId": m.author_id,
            "body": m.body,
            "internal": m.internal,
            "atUs": m.at_us,
        },
    })
}

/// One transition as a `conversation-events` resource (history and streams).
pub fn event_resource(base: &str, e: &rt::ConversationEvent) -> Value {
    json!({
        "type": "conversation-events",
        "id": e.id,
        "attributes": {
            "kind": kind_word(e.kind),
            "conversationId": e.conversation_id,
            "actorId": e.actor_id,
            "atUs": e.at_us,
            "toAgentId": e.to_agent_id,
            "fromAgentId": e.from_agent_id,
            "capacityOverride": e.capacity_override,
            "reason": e.reason,
            "sessionId": e.session_id,
            "message": e.message.as_ref().map_or(Value::Null, message_resource),
            "conversation": e.conversation.as_ref().map_or(Value::Null, |c| conversation_resource(base, c)),
        },
    })
}

fn conversation_document(base: &str, status: StatusCode, c: &rt::Conversation) -> Response {
    document(status, &json!({ "data": conversation_resource(base, c) }))
}

/// `page` of `data` with `meta.total` and the paging links below `base` (ending in `?` or `&`).
fn paged(
    state: &AppState,
    base: &str,
    page: &PageRequest,
    data: Vec<Value>,
    info: assist_proto::common::v1::PageInfo,
) -> Response {
    let base = format!("{}{base}", state.checked.public_url);
    document(
        StatusCode::OK,
        &json!({
            "data": data,
            "meta": { "total": info.total, "totalExact": info.total_exact },
            "links": jsonapi::page_links(&base, page.offset, page.limit, info.total, info.total_exact),
        }),
    )
}

#[derive(Debug, Default, serde::Deserialize)]
struct ListParams {
    #[serde(rename = "filter[scope]")]
    scope: Option<String>,
    #[serde(rename = "filter[status]")]
    status: Option<String>,
    #[serde(rename = "filter[assignee]")]
    assignee: Option<String>,
    #[serde(rename = "filter[minQueueAgeSecs]")]
    min_queue_age_secs: Option<u32>,
    #[serde(rename = "page[offset]")]
    offset: Option<u64>,
    #[serde(rename = "page[limit]")]
    limit: Option<u32>,
}

pub fn parse_scope(word: &str) -> Option<rt::Scope> {
    match word {
        "" | "mine" => Some(rt::Scope::Mine),
        "all" => Some(rt::Scope::All),
        _ => None,
    }
}

/// `filter[status]` as routing takes it: empty for routing's default.
pub(crate) fn status_filter(word: &str) -> Result<rt::ConversationStatus, ApiError> {
    match word {
        "" => Ok(rt::ConversationStatus::Unspecified),
        word => parse_status(word).ok_or_else(|| {
            bad("filter[status]: must be queued, assigned, pending, resolved or closed")
        }),
    }
}

/// `GET {base}?filter[scope]=&filter[status]=&filter[assignee]=&filter[minQueueAgeSecs]=&page[…]`:
/// `ListConversations` (customers: their own; console members: `mine` or `all`).
async fn list<S: Side>(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let call = open!(S::AUDIENCE, state, headers, method);
    let result = async {
        let Query(params) = query.map_err(|_| jsonapi::INVALID_QUERY)?;
        let scope_word = params.scope.as_deref().unwrap_or_default().trim();
        let scope =
            parse_scope(scope_word).ok_or_else(|| bad("filter[scope]: must be mine or all"))?;
        let status_word_given = params.status.as_deref().unwrap_or_default().trim();
        let status = status_filter(status_word_given)?;
        let assignee = match params.assignee.as_deref().map(str::trim) {
            None | Some("") => String::new(),
            Some(raw) => validate::id("filter[assignee]", raw)
                .map_err(|_| bad("filter[assignee]: must be an agent id (a UUID)"))?
                .to_string(),
        };
        let min_queue_age_secs = params.min_queue_age_secs.unwrap_or(0);
        let page = requested_page(params.offset, params.limit)?;
        let request = rt::ListConversationsRequest {
            page: Some(page),
            scope: scope as i32,
            status: status as i32,
            assignee_id: assignee.clone(),
            min_queue_age_secs,
        };
        let reply = routed(
            call.routing()
                .list_conversations(call.request(request)?)
                .await,
        )?;
        let mut base = format!("{}?", S::BASE);
        if scope == rt::Scope::All {
            base.push_str("filter[scope]=all&");
        }
        if !status_word_given.is_empty() {
            base.push_str(&format!("filter[status]={}&", status_word(status as i32)));
        }
        if !assignee.is_empty() {
            base.push_str(&format!("filter[assignee]={assignee}&"));
        }
        if min_queue_age_secs > 0 {
            base.push_str(&format!("filter[minQueueAgeSecs]={min_queue_age_secs}&"));
        }
        let data = reply
            .conversations
            .iter()
            .map(|c| conversation_resource(S::BASE, c))
            .collect();
        Ok(paged(
            &state,
            &base,
            &page,
            data,
            reply.page.unwrap_or_default(),
        ))
    }
    .await;
    call.answer(result)
}

/// `GET {base}/{id}`.
async fn get_one<S: Side>(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let call = open!(S::AUDIENCE, state, headers, method);
    let result = async {
        let conversation_id = conversation_id(&id)?;
        let request = rt::GetConversationRequest { conversation_id };
        let conversation = routed(
            call.routing()
                .get_conversation(call.request(request)?)
                .await,
        )?;
        Ok(conversation_document(
            S::BASE,
            StatusCode::OK,
            &conversation,
        ))
    }
    .await;
    call.answer(result)
}

/// `POST /conversations` (`conversations`: `subject`, `body`): a customer starts a conversation.
async fn create(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = open!(&CUSTOMERS, state, headers, method);
    let result = async {
        let attributes = jsonapi::attributes(&body(raw)?, "conversations")?;
        let request = rt::CreateConversationRequest {
            subject: subject(text_attribute(&attributes, "subject")?)?,
            body: message_body(text_attribute(&attributes, "body")?)?,
            ..Default::default()
        };
        let conversation =
            routed(call.routing().create_conversation(call.request(request)?).await)?;
        tracing::info!(customer_id = %call.caller.claims.sub, conversation_id = %conversation.id, "conversation started");
        Ok(conversation_document(
            Customers::BASE,
            StatusCode::CREATED,
            &conversation,
        ))
    }
    .await;
    call.answer(result)
}

/// A string attribute that must be there.
fn text_attribute<'a>(attributes: &'a Map<String, Value>, name: &str) -> Result<&'a str, ApiError> {
    crate::console::required_text(attributes, name)
}

/// `GET {base}/{id}/messages?page[…]`: oldest first (customers never get internal notes).
async fn messages<S: Side>(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<jsonapi::PageParams>, QueryRejection>,
) -> Response {
    let call = open!(S::AUDIENCE, state, headers, method);
    let result = async {
        let conversation_id = conversation_id(&id)?;
        let Query(params) = query.map_err(|_| jsonapi::INVALID_QUERY)?;
        let page = requested_page(params.offset, params.limit)?;
        let request = rt::ListMessagesRequest {
            conversation_id: conversation_id.clone(),
            page: Some(page),
        };
        let reply = routed(call.routing().list_messages(call.request(request)?).await)?;
        let data = reply.messages.iter().map(message_resource).collect();
        let base = format!("{}/{conversation_id}/messages?", S::BASE);
        Ok(paged(
            &state,
            &base,
            &page,
            data,
            reply.page.unwrap_or_default(),
        ))
    }
    .await;
    call.answer(result)
}

/// `POST {base}/{id}/messages` (`conversation-messages`: `body`, console members also `internal`).
async fn post_message<S: Side>(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = open!(S::AUDIENCE, state, headers, method);
    let result = async {
        let conversation_id = conversation_id(&id)?;
        let attributes = jsonapi::attributes(&body(raw)?, "conversation-messages")?;
        let body = message_body(text_attribute(&attributes, "body")?)?;
        let internal = match attributes.get("internal") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => false,
            Some(Value::Bool(true)) if S::INTERNAL_NOTES => true,
            Some(Value::Bool(true)) => {
                return Err(bad("internal: only console members write internal notes"));
            }
            Some(_) => return Err(bad("internal: must be true or false")),
        };
        let request = rt::PostMessageRequest {
            conversation_id,
            body,
            internal,
        };
        let reply = routed(call.routing().post_message(call.request(request)?).await)?;
        let mut data = reply.message.as_ref().map_or(Value::Null, message_resource);
        if let Some(conversation) = &reply.conversation {
            data["relationships"] = json!({
                "conversation": { "data": conversation_resource(S::BASE, conversation) },
            });
        }
        Ok(document(StatusCode::CREATED, &json!({ "data": data })))
    }
    .await;
    call.answer(result)
}

/// `PATCH {base}/{id}/status` (`conversation-statuses`: `status` pending, assigned, resolved or
/// closed); routing says who may make which change.
async fn set_status<S: Side>(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = open!(S::AUDIENCE, state, headers, method);
    let result = async {
        let conversation_id = conversation_id(&id)?;
        let attributes = jsonapi::attributes(&body(raw)?, "conversation-statuses")?;
        let status = settable_status(text_attribute(&attributes, "status")?)?;
        let request = rt::SetConversationStatusRequest {
            conversation_id,
            status: status as i32,
        };
        let conversation = routed(
            call.routing()
                .set_conversation_status(call.request(request)?)
                .await,
        )?;
        Ok(conversation_document(
            S::BASE,
            StatusCode::OK,
            &conversation,
        ))
    }
    .await;
    call.answer(result)
}

/// A status one may set: everything but `queued`.
pub(crate) fn settable_status(word: &str) -> Result<rt::ConversationStatus, ApiError> {
    match parse_status(word.trim()) {
        Some(rt::ConversationStatus::Queued) | None => {
            Err(bad("status: must be pending, assigned, resolved or closed"))
        }
        Some(status) => Ok(status),
    }
}

/// `POST /console/api/conversations/{id}/assignment` (`conversation-assignments`: `agentId`):
/// supervisors and administrators assign a queued conversation or transfer an open one.
async fn assign(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let conversation_id = conversation_id(&id)?;
        let attributes = jsonapi::attributes(&body(raw)?, "conversation-assignments")?;
        let agent_id = validate::id("agentId", text_attribute(&attributes, "agentId")?.trim())
            .map_err(|_| bad("agentId: must be an agent id (a UUID)"))?
            .to_string();
        let request = rt::AssignConversationRequest {
            conversation_id,
            agent_id,
        };
        let conversation =
            routed(call.routing().assign_conversation(call.request(request)?).await)?;
        tracing::info!(actor_id = %call.caller.claims.sub, conversation_id = %conversation.id, assignee_id = %conversation.assignee_id, "conversation assigned from the console");
        Ok(conversation_document(Console::BASE, StatusCode::OK, &conversation))
    }
    .await;
    call.answer(result)
}

/// `GET /console/api/conversations/{id}/history?page[…]`: every transition, oldest first.
async fn history(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<jsonapi::PageParams>, QueryRejection>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let conversation_id = conversation_id(&id)?;
        let Query(params) = query.map_err(|_| jsonapi::INVALID_QUERY)?;
        let page = requested_page(params.offset, params.limit)?;
        let request = rt::GetConversationHistoryRequest {
            conversation_id: conversation_id.clone(),
            page: Some(page),
        };
        let reply = routed(
            call.routing()
                .get_conversation_history(call.request(request)?)
                .await,
        )?;
        let data = reply
            .events
            .iter()
            .map(|e| event_resource(Console::BASE, e))
            .collect();
        let base = format!("{}/{conversation_id}/history?", Console::BASE);
        Ok(paged(
            &state,
            &base,
            &page,
            data,
            reply.page.unwrap_or_default(),
        ))
    }
    .await;
    call.answer(result)
}

/// Records in the conversation's history that assist session `session_id` was started for its
/// customer (the caller's own token).
pub(crate) async fn record_assist_session(
    call: &Call,
    conversation_id: String,
    session_id: String,
) -> Result<rt::Conversation, ApiError> {
    let request = rt::RecordAssistSessionRequest {
        conversation_id,
        session_id,
    };
    routed(
        call.routing()
            .record_assist_session(call.request(request)?)
            .await,
    )
}

/// `POST /console/api/conversations/{id}/assist-sessions` (`conversation-assist-sessions`:
/// `sessionId`): records an assist session started for the conversation's customer.
async fn record_assist(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let conversation_id = conversation_id(&id)?;
        let attributes = jsonapi::attributes(&body(raw)?, "conversation-assist-sessions")?;
        let session_id = validate::id(
            "sessionId",
            text_attribute(&attributes, "sessionId")?.trim(),
        )
        .map_err(|_| bad("sessionId: must be an assist session id (a UUID)"))?
        .to_string();
        let conversation = record_assist_session(&call, conversation_id, session_id).await?;
        Ok(conversation_document(
            Console::BASE,
            StatusCode::OK,
            &conversation,
        ))
    }
    .await;
    call.answer(result)
}

/// `GET /console/api/conversations/queue`: queue depth, longest wait, agents online and available.
async fn queue_stats(State(state): Shared, method: Method, headers: HeaderMap) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let stats = routed(
            call.routing()
                .get_queue_stats(call.request(rt::GetQueueStatsRequest {})?)
                .await,
        )?;
        Ok(document(
            StatusCode::OK,
            &json!({ "data": {
                "type": "conversation-queue-stats",
                "id": "queue",
                "attributes": queue_stats_json(&stats),
            } }),
        ))
    }
    .await;
    call.answer(result)
}

pub fn queue_stats_json(stats: &rt::QueueStats) -> Value {
    json!({
        "queued": stats.queued,
        "longestWaitUs": stats.longest_wait_us,
        "agentsOnline": stats.agents_online,
        "agentsAvailable": stats.agents_available,
        "open": stats.open,
    })
}

#[derive(Debug, Default, serde::Deserialize)]
struct WatchParams {
    #[serde(rename = "filter[scope]")]
    scope: Option<String>,
}

/// `GET /console/api/conversations/events?filter[scope]=mine|all`: the caller's conversations (or all,
/// for supervisors and administrators) as server-sent events.
async fn watch_scope(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<WatchParams>, QueryRejection>,
) -> Response {
    let call = open!(state, headers, method);
    let scope = match query {
        Ok(Query(params)) => parse_scope(params.scope.as_deref().unwrap_or_default().trim())
            .ok_or_else(|| bad("filter[scope]: must be mine or all")),
        Err(_) => Err(jsonapi::INVALID_QUERY),
    };
    match scope {
        Ok(scope) => {
            let request = rt::WatchConversationsRequest {
                scope: scope as i32,
                conversation_id: String::new(),
            };
            watch(&state, call, Console::BASE, request).await
        }
        Err(error) => call.answer(Err(error)),
    }
}

/// `GET {base}/{id}/events`: one conversation as server-sent events.
async fn watch_one<S: Side>(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let call = open!(S::AUDIENCE, state, headers, method);
    match conversation_id(&id) {
        Ok(conversation_id) => {
            let request = rt::WatchConversationsRequest {
                scope: rt::Scope::Unspecified as i32,
                conversation_id,
            };
            watch(&state, call, S::BASE, request).await
        }
        Err(error) => call.answer(Err(error)),
    }
}

/// Opens `WatchConversations` with the caller's token and forwards it: first `watching`, then each
/// event named by its kind with a `conversation-events` document as data. When routing's stream ends
/// (`UNAVAILABLE` on a restart) the events end too; the browser's `EventSource` reconnects and the
/// page reloads what it shows at the next `watching`.
async fn watch(
    state: &AppState,
    call: Call,
    base: &'static str,
    request: rt::WatchConversationsRequest,
) -> Response {
    let opened = match call.request(request) {
        Ok(request) => routed(call.routing().watch_conversations(request).await),
        Err(error) => Err(error),
    };
    let stream = match opened {
        Ok(stream) => stream,
        Err(error) => return call.answer(Err(error)),
    };
    let response = event_stream(
        stream,
        state.shutdown.clone(),
        "conversation watch",
        move |event: rt::ConversationEvent| {
            Some(
                Event::default()
                    .event(kind_word(event.kind))
                    .data(json!({ "data": event_resource(base, &event) }).to_string()),
            )
        },
    );
    call.answer(Ok(response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for status in [
            rt::ConversationStatus::Queued,
            rt::ConversationStatus::Assigned,
            rt::ConversationStatus::Pending,
            rt::ConversationStatus::Resolved,
            rt::ConversationStatus::Closed,
        ] {
            assert_eq!(parse_status(status_word(status as i32)), Some(status));
        }
        assert_eq!(parse_status("open"), None);
        assert_eq!(parse_scope(""), Some(rt::Scope::Mine));
        assert_eq!(parse_scope("all"), Some(rt::Scope::All));
        assert_eq!(parse_scope("everyone"), None);
        assert_eq!(
            kind_word(rt::conversation_event::Kind::AssistStarted as i32),
            "assist_started"
        );
    }

    #[test]
    fn nobody_sets_a_conversation_back_to_the_queue() {
        assert!(settable_status("queued").is_err());
        assert!(settable_status("bogus").is_err());
        assert_eq!(
            settable_status(" resolved ").unwrap(),
            rt::ConversationStatus::Resolved
        );
    }

    #[test]
    fn lengths_are_routings() {
        assert!(subject("   ").is_err());
        assert!(subject(&"s".repeat(SUBJECT_MAX)).is_ok());
        assert!(subject(&"s".repeat(SUBJECT_MAX + 1)).is_err());
        assert!(message_body(&"ä".repeat(BODY_MAX)).is_ok());
        let long = message_body(&"b".repeat(BODY_MAX + 1)).unwrap_err();
        assert_eq!(long.status, StatusCode::BAD_REQUEST);
        assert!(long.detail.starts_with("body:"), "{}", long.detail);
    }

    #[test]
    fn queue_position_only_while_queued() {
        let mut c = rt::Conversation {
            id: "c1".into(),
            status: rt::ConversationStatus::Queued as i32,
            queue_position: 0,
            queued_at_us: 5,
            ..Default::default()
        };
        let queued = conversation_resource("/conversations", &c);
        assert_eq!(queued["attributes"]["queuePosition"], 0);
        assert_eq!(queued["links"]["self"], "/conversations/c1");
        c.status = rt::ConversationStatus::Assigned as i32;
        let assigned = conversation_resource("/conversations", &c);
        assert!(assigned["attributes"]["queuePosition"].is_null());
    }
}
