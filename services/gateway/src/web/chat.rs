//! The storefront customer's chat (docs/web.md, "Conversations"): `/chat` lists the signed-in
//! customer's conversations with a form to start one; `/chat/{id}` shows one with a reply box and
//! "Resolve", kept current by server-sent events. Plain forms (POST with the CSRF field), answered
//! with a redirect, or with the page again and routing's refusal when it says no.

use std::collections::HashMap;
use std::sync::Arc;

use assist_proto::routing::v1 as rt;
use assist_runtime::web::escape;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::json;

use super::console::utc_text;
use super::conversations::{message_item, recent_messages, waiting_text};
use super::{
    SignedIn, csrf, csrf_matches, customer, html, page_error, redirect, same_origin, with_cookies,
};
use crate::conversations::{
    BODY_MAX, SUBJECT_MAX, conversation_id, message_body, routed, status_word, subject,
};
use crate::jsonapi::ApiError;
use crate::routes::{as_caller, requested_page, upstreams};
use crate::{AppState, Upstreams};

type Shared = State<Arc<AppState>>;
type Fields = Result<Form<HashMap<String, String>>, FormRejection>;

pub const CHAT: &str = "/chat";
const TITLE: &str = "Chat with us";
/// Conversations the chat page lists.
const LISTED: u32 = 50;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(CHAT, get(chat_page).post(start))
        .route("/chat/{id}", get(conversation_page))
        .route("/chat/{id}/messages", post(reply))
        .route("/chat/{id}/resolve", post(resolve))
}

/// The signed-in customer, or the answer that sends them to sign in.
async fn signed_in_customer(
    state: &AppState,
    upstreams: &Upstreams,
    headers: &HeaderMap,
    set: &mut Vec<HeaderValue>,
) -> Result<SignedIn, Box<Response>> {
    match customer(state, upstreams, headers, set).await {
        Some(signed) => Ok(signed),
        None => Err(Box::new(with_cookies(
            redirect("/login"),
            std::mem::take(set),
        ))),
    }
}

/// A chat page: the shop's link back, the customer's sign-out, then `body`.
fn chat_page_html(status: StatusCode, csrf: &str, body: &str) -> Response {
    let body = format!(
        "<header id=\"chat-header\"><p><a href=\"/\">Back to the shop</a> \
         <a id=\"chat-home\" href=\"{CHAT}\">Your conversations</a> {logout}</p></header>{body}",
        logout = html::post_button("/logout", csrf, "Sign out"),
    );
    (status, Html(html::page(TITLE, None, &body))).into_response()
}

fn error_paragraph(error: Option<&str>) -> String {
    error.map_or(String::new(), |e| {
        format!("<p class=\"error\" id=\"chat-error\">{}</p>", escape(e))
    })
}

/// What the list page shows, and what the start form had when it was refused.
struct Listing<'a> {
    csrf: &'a str,
    conversations: &'a [rt::Conversation],
    error: Option<&'a str>,
    subject: &'a str,
    body: &'a str,
}

fn list_body(l: &Listing) -> String {
    let mut out = format!(
        "<h1>Chat with us</h1>{error}\
         <form id=\"start-chat\" method=\"post\" action=\"{CHAT}\">{csrf}\
         <h2>Start a conversation</h2>\
         <label>Subject <input id=\"chat-subject\" name=\"subject\" maxlength=\"{SUBJECT_MAX}\" required \
         value=\"{subject}\"></label>\
         <label>Message <textarea id=\"chat-body\" name=\"body\" rows=\"4\" maxlength=\"{BODY_MAX}\" \
         required>{body}</textarea></label>\
         <button type=\"submit\">Start a conversation</button></form>\
         <h2>Your conversations</h2>",
        error = error_paragraph(l.error),
        csrf = html::csrf_field(l.csrf),
        subject = escape(l.subject),
        body = escape(l.body),
    );
    if l.conversations.is_empty() {
        out.push_str("<p id=\"no-chats\">None yet.</p>");
        return out;
    }
    out.push_str(
        "<table id=\"chats\"><thead><tr><th>Subject</th><th>Status</th><th>Last activity</th></tr>\
         </thead><tbody>",
    );
    for c in l.conversations {
        out.push_str(&format!(
            "<tr data-conversation=\"{id}\"><td class=\"subject\"><a href=\"{CHAT}/{id}\">{subject}</a></td>\
             <td class=\"status\">{status}</td><td class=\"last-activity\">{last}</td></tr>",
            id = escape(&c.id),
            subject = escape(&c.subject),
            status = status_word(c.status),
            last = utc_text(c.last_message_at_us.max(c.updated_at_us)),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

async fn own_conversations(
    upstreams: &Upstreams,
    token: &str,
) -> Result<Vec<rt::Conversation>, ApiError> {
    let request = rt::ListConversationsRequest {
        page: Some(requested_page(Some(0), Some(LISTED))?),
        scope: rt::Scope::Mine as i32,
        ..Default::default()
    };
    Ok(routed(
        upstreams
            .routing_as_caller
            .clone()
            .list_conversations(as_caller(token, request)?)
            .await,
    )?
    .conversations)
}

/// The list page, with `error` and the refused input when a start was refused.
async fn render_list(
    upstreams: &Upstreams,
    customer: &SignedIn,
    csrf: &str,
    refused: Option<(&ApiError, &str, &str)>,
) -> Response {
    match own_conversations(upstreams, &customer.token).await {
        Ok(conversations) => {
            let (status, error, subject, body) = match refused {
                Some((error, subject, body)) => {
                    (error.status, Some(error.detail.as_ref()), subject, body)
                }
                None => (StatusCode::OK, None, "", ""),
            };
            chat_page_html(
                status,
                csrf,
                &list_body(&Listing {
                    csrf,
                    conversations: &conversations,
                    error,
                    subject,
                    body,
                }),
            )
        }
        Err(error) => page_error(error.status, &error.detail),
    }
}

/// `GET /chat`.
async fn chat_page(State(state): Shared, headers: HeaderMap) -> Response {
    let Ok(upstreams) = upstreams(&state) else {
        return page_error(StatusCode::SERVICE_UNAVAILABLE, "The chat is starting up.");
    };
    let mut set = Vec::new();
    let csrf = csrf(&state, &headers, &mut set);
    let customer = match signed_in_customer(&state, &upstreams, &headers, &mut set).await {
        Ok(customer) => customer,
        Err(response) => return *response,
    };
    with_cookies(render_list(&upstreams, &customer, &csrf, None).await, set)
}

/// A chat form, checked: readable, same origin, this browser's CSRF token.
fn checked(
    state: &AppState,
    headers: &HeaderMap,
    form: Fields,
) -> Result<HashMap<String, String>, Box<Response>> {
    let Ok(Form(fields)) = form else {
        return Err(Box::new(page_error(
            StatusCode::BAD_REQUEST,
            "The form could not be read.",
        )));
    };
    if !same_origin(state, headers, &Method::POST) || !csrf_matches(headers, fields.get("csrf")) {
        return Err(Box::new(page_error(
            StatusCode::FORBIDDEN,
            "The form has expired. Reload the page and try again.",
        )));
    }
    Ok(fields)
}

/// What a chat form handler starts with: the checked fields, the clients, the customer.
struct ChatForm {
    fields: HashMap<String, String>,
    upstreams: Upstreams,
    customer: SignedIn,
}

async fn form_call(
    state: &AppState,
    headers: &HeaderMap,
    form: Fields,
    set: &mut Vec<HeaderValue>,
) -> Result<ChatForm, Box<Response>> {
    let fields = checked(state, headers, form)?;
    let Ok(upstreams) = upstreams(state) else {
        return Err(Box::new(page_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "The chat is starting up.",
        )));
    };
    let customer = signed_in_customer(state, &upstreams, headers, set).await?;
    Ok(ChatForm {
        fields,
        upstreams,
        customer,
    })
}

/// `POST /chat` (fields `subject`, `body`, `csrf`): starts a conversation and opens it.
async fn start(State(state): Shared, headers: HeaderMap, form: Fields) -> Response {
    let mut set = Vec::new();
    let ChatForm {
        fields,
        upstreams,
        customer,
    } = match form_call(&state, &headers, form, &mut set).await {
        Ok(call) => call,
        Err(response) => return *response,
    };
    let raw_subject = fields.get("subject").map_or("", String::as_str);
    let raw_body = fields.get("body").map_or("", String::as_str);
    let created = async {
        let request = rt::CreateConversationRequest {
            subject: subject(raw_subject)?,
            body: message_body(raw_body)?,
            ..Default::default()
        };
        routed(
            upstreams
                .routing_as_caller
                .clone()
                .create_conversation(as_caller(&customer.token, request)?)
                .await,
        )
    }
    .await;
    let csrf = fields.get("csrf").cloned().unwrap_or_default();
    match created {
        Ok(conversation) => {
            tracing::info!(customer_id = %customer.claims.sub, conversation_id = %conversation.id, "chat started");
            with_cookies(redirect(&format!("{CHAT}/{}", conversation.id)), set)
        }
        Err(error) => with_cookies(
            render_list(
                &upstreams,
                &customer,
                &csrf,
                Some((&error, raw_subject, raw_body)),
            )
            .await,
            set,
        ),
    }
}

/// One conversation's page, with `error` and the refused reply when one was refused.
async fn render_conversation(
    upstreams: &Upstreams,
    customer: &SignedIn,
    csrf: &str,
    id: &str,
    refused: Option<(&ApiError, &str)>,
) -> Response {
    let loaded = async {
        let id = conversation_id(id).map_err(|_| crate::jsonapi::NOT_FOUND)?;
        let conversation = routed(
            upstreams
                .routing_as_caller
                .clone()
                .get_conversation(as_caller(
                    &customer.token,
                    rt::GetConversationRequest {
                        conversation_id: id.clone(),
                    },
                )?)
                .await,
        )?;
        let messages = recent_messages(upstreams, &customer.token, &id).await?;
        Ok::<_, ApiError>((conversation, messages))
    }
    .await;
    let (c, messages) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => return page_error(error.status, &error.detail),
    };
    let (status, error, draft) = match refused {
        Some((error, draft)) => (error.status, Some(error.detail.as_ref()), draft),
        None => (StatusCode::OK, None, ""),
    };
    let state_text = match rt::ConversationStatus::try_from(c.status) {
        Ok(rt::ConversationStatus::Queued) => format!(
            "Waiting for the next free agent ({}).",
            waiting_text(&c, assist_runtime::time::now_us())
        ),
        Ok(rt::ConversationStatus::Assigned) => "An agent is with you.".to_owned(),
        Ok(rt::ConversationStatus::Pending) => "The agent is waiting for your answer.".to_owned(),
        Ok(rt::ConversationStatus::Resolved) => "Resolved. Write again to reopen it.".to_owned(),
        Ok(rt::ConversationStatus::Closed) => "Closed.".to_owned(),
        _ => String::new(),
    };
    let mut body = format!(
        "<h1 id=\"conversation-subject\">{subject}</h1>{error}\
         <p id=\"conversation-state\" data-live data-status=\"{status}\">\
         <span id=\"conversation-status\">{status}</span>: {state_text}</p>\
         <ol id=\"messages\" class=\"messages\" data-live>",
        subject = escape(&c.subject),
        error = error_paragraph(error),
        status = status_word(c.status),
        state_text = escape(&state_text),
    );
    for m in &messages {
        let author = match rt::AuthorKind::try_from(m.author_kind) {
            Ok(rt::AuthorKind::Customer) => "You",
            _ => "Support",
        };
        body.push_str(&message_item(m, author));
    }
    body.push_str("</ol>");
    let path = format!("{CHAT}/{}", escape(&c.id));
    if c.status != rt::ConversationStatus::Closed as i32 {
        body.push_str(&format!(
            "<form id=\"reply-form\" method=\"post\" action=\"{path}/messages\">{csrf}\
             <label>Your message <textarea id=\"reply-body\" name=\"body\" rows=\"3\" \
             maxlength=\"{BODY_MAX}\" required>{draft}</textarea></label>\
             <button type=\"submit\">Send</button></form>",
            csrf = html::csrf_field(csrf),
            draft = escape(draft),
        ));
    }
    body.push_str("<div id=\"chat-actions\" data-live>");
    if matches!(
        rt::ConversationStatus::try_from(c.status),
        Ok(rt::ConversationStatus::Queued
            | rt::ConversationStatus::Assigned
            | rt::ConversationStatus::Pending)
    ) {
        body.push_str(&html::post_button(
            &format!("{path}/resolve"),
            csrf,
            "Resolve",
        ));
    }
    body.push_str("</div>");
    body.push_str(&html::live(&json!({
        "events": format!("/conversations/{}/events", c.id),
    })));
    chat_page_html(status, csrf, &body)
}

/// `GET /chat/{id}`.
async fn conversation_page(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Ok(upstreams) = upstreams(&state) else {
        return page_error(StatusCode::SERVICE_UNAVAILABLE, "The chat is starting up.");
    };
    let mut set = Vec::new();
    let csrf = csrf(&state, &headers, &mut set);
    let customer = match signed_in_customer(&state, &upstreams, &headers, &mut set).await {
        Ok(customer) => customer,
        Err(response) => return *response,
    };
    with_cookies(
        render_conversation(&upstreams, &customer, &csrf, &id, None).await,
        set,
    )
}

/// The answer to a form that changed conversation `id`: its page, or the page again with routing's
/// refusal and the customer's `draft`.
async fn back_to_conversation<T>(
    call: ChatForm,
    set: Vec<HeaderValue>,
    id: &str,
    outcome: Result<T, ApiError>,
    draft: &str,
) -> Response {
    let ChatForm {
        fields,
        upstreams,
        customer,
    } = call;
    match outcome {
        // Routing took it, so `id` is a conversation id.
        Ok(_) => with_cookies(redirect(&format!("{CHAT}/{id}")), set),
        Err(error) => {
            let csrf = fields.get("csrf").cloned().unwrap_or_default();
            let page =
                render_conversation(&upstreams, &customer, &csrf, id, Some((&error, draft))).await;
            with_cookies(page, set)
        }
    }
}

/// `POST /chat/{id}/messages` (fields `body`, `csrf`).
async fn reply(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Fields,
) -> Response {
    let mut set = Vec::new();
    let call = match form_call(&state, &headers, form, &mut set).await {
        Ok(call) => call,
        Err(response) => return *response,
    };
    let draft = call.fields.get("body").cloned().unwrap_or_default();
    let posted = async {
        let request = rt::PostMessageRequest {
            conversation_id: conversation_id(&id)?,
            body: message_body(&draft)?,
            internal: false,
        };
        routed(
            call.upstreams
                .routing_as_caller
                .clone()
                .post_message(as_caller(&call.customer.token, request)?)
                .await,
        )
    }
    .await;
    back_to_conversation(call, set, &id, posted, &draft).await
}

/// `POST /chat/{id}/resolve` (field `csrf`): the customer resolves the conversation.
async fn resolve(
    State(state): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Fields,
) -> Response {
    let mut set = Vec::new();
    let call = match form_call(&state, &headers, form, &mut set).await {
        Ok(call) => call,
        Err(response) => return *response,
    };
    let resolved = async {
        let request = rt::SetConversationStatusRequest {
            conversation_id: conversation_id(&id)?,
            status: rt::ConversationStatus::Resolved as i32,
        };
        routed(
            call.upstreams
                .routing_as_caller
                .clone()
                .set_conversation_status(as_caller(&call.customer.token, request)?)
                .await,
        )
    }
    .await;
    back_to_conversation(call, set, &id, resolved, "").await
}
