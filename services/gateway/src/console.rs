//! The console's JSON API (`/console/api/…`, docs/web.md): agent management, seats, presence and the
//! live agent feed for back-office users. Every call carries the caller's own token (a bearer token,
//! or the console cookie plus the CSRF header for unsafe methods); agent-directory decides who may do
//! what (DESIGN.md section 4), the gateway checks the input first and maps statuses (section 7).

use std::convert::Infallible;
use std::sync::Arc;

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::common::v1::PageRequest;
use assist_runtime::auth::{Claims, Realm, bearer};
use assist_runtime::validate::{self, Page};
use assist_runtime::web::{cookie, same_secret};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value, json};
use tonic::Code;

use crate::jsonapi::{self, ApiError, document};
use crate::routes::{as_caller, upstreams};
use crate::web::{cookies, same_origin, signed_in, with_cookies};
use crate::{Agents as AgentsClient, AppState, Upstreams};

type Shared = State<Arc<AppState>>;

/// The header that carries the CSRF token of a cookie-authenticated unsafe call.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Longest search text (agent-directory's limit).
const QUERY_MAX: usize = 100;
const FULL_NAME_MAX: usize = 200;
const SKILLS_MAX: usize = 20;

pub const MISSING_TOKEN: ApiError = ApiError {
    status: StatusCode::UNAUTHORIZED,
    code: "401",
    detail: std::borrow::Cow::Borrowed("Sign in to the console."),
};
pub const BACK_OFFICE_ONLY: ApiError = ApiError {
    status: StatusCode::FORBIDDEN,
    code: "403",
    detail: std::borrow::Cow::Borrowed("The console is for back-office users only."),
};
pub const CSRF_REFUSED: ApiError = ApiError {
    status: StatusCode::FORBIDDEN,
    code: "403",
    detail: std::borrow::Cow::Borrowed(
        "Cookie sign-ins need a same-origin request with the X-CSRF-Token header.",
    ),
};

/// The console's routes, for the router and the OpenAPI document (routes.rs).
pub fn table() -> Vec<(&'static str, Method, MethodRouter<Arc<AppState>>)> {
    vec![
        ("/console/api/me", Method::GET, get(me)),
        ("/console/api/agents", Method::GET, get(list_agents)),
        ("/console/api/agents", Method::POST, post(invite)),
        ("/console/api/agents/events", Method::GET, get(events)),
        ("/console/api/agents/{id}", Method::GET, get(get_agent)),
        (
            "/console/api/agents/{id}/invitation/resend",
            Method::POST,
            post(resend_invitation),
        ),
        (
            "/console/api/agents/{id}/invitation",
            Method::DELETE,
            delete(revoke_invitation),
        ),
        (
            "/console/api/agents/{id}/remove",
            Method::POST,
            post(remove),
        ),
        (
            "/console/api/agents/{id}/role",
            Method::PATCH,
            patch(change_role),
        ),
        (
            "/console/api/agents/{id}/password-reset",
            Method::POST,
            post(reset_password),
        ),
        (
            "/console/api/agents/{id}/routing",
            Method::PATCH,
            patch(update_routing),
        ),
        (
            "/console/api/agents/{id}/history",
            Method::GET,
            get(history),
        ),
        ("/console/api/seats", Method::GET, get(get_seats)),
        ("/console/api/seats", Method::PUT, put(set_seats)),
        ("/console/api/presence", Method::POST, post(presence)),
    ]
}

/// A signed-in caller (a console user, or a customer of the conversations API) and their token.
pub struct Caller {
    pub token: String,
    pub claims: Claims,
}

/// Whether `headers` carry this browser's CSRF token in [`CSRF_HEADER`].
fn csrf_header_matches(headers: &HeaderMap) -> bool {
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    match (cookie(headers, cookies::CSRF), sent) {
        (Some(expected), Some(sent)) => expected.len() == 43 && same_secret(expected, sent),
        _ => false,
    }
}

/// Who a JSON API serves: the realm of its callers, the cookie their browser signs in with, and the
/// refusals when there is no sign-in or one of another realm.
pub struct Audience {
    pub realm: Realm,
    pub cookie: &'static str,
    pub cookie_path: &'static str,
    pub missing: ApiError,
    pub wrong_realm: ApiError,
}

/// The console's callers: back-office users, with the console cookie.
pub const CONSOLE: Audience = Audience {
    realm: Realm::BackOffice,
    cookie: cookies::CONSOLE,
    cookie_path: cookies::CONSOLE_PATH,
    missing: MISSING_TOKEN,
    wrong_realm: BACK_OFFICE_ONLY,
};

/// The caller of an API call of `audience` (the console's, the customers'): `Authorization: Bearer`
/// when present, otherwise `audience`'s cookie (renewed when its access token has expired; the new
/// cookie goes to `set`). A cookie sign-in may change state only from the gateway's own pages: an
/// `Origin` of this site and the CSRF header. Only `audience`'s realm, never an impersonation token.
pub async fn caller(
    audience: &Audience,
    state: &AppState,
    upstreams: &Upstreams,
    headers: &HeaderMap,
    method: &Method,
    set: &mut Vec<HeaderValue>,
) -> Result<Caller, ApiError> {
    let (token, claims) = if headers.contains_key(header::AUTHORIZATION) {
        let token = bearer(headers)
            .filter(|t| !t.is_empty())
            .ok_or(jsonapi::INVALID_ACCESS_TOKEN)?
            .to_owned();
        let claims = crate::routes::verify(state, &token, jsonapi::INVALID_ACCESS_TOKEN).await?;
        (token, claims)
    } else {
        let signed = signed_in(
            state,
            upstreams,
            headers,
            audience.cookie,
            audience.cookie_path,
            set,
        )
        .await
        .ok_or_else(|| audience.missing.clone())?;
        let unsafe_method = crate::proxy::is_unsafe(method);
        if unsafe_method
            && (!headers.contains_key(header::ORIGIN)
                || !same_origin(state, headers, method)
                || !csrf_header_matches(headers))
        {
            return Err(CSRF_REFUSED);
        }
        (signed.token, signed.claims)
    };
    if claims.realm != audience.realm || claims.is_delegated() {
        return Err(audience.wrong_realm.clone());
    }
    Ok(Caller { token, claims })
}

/// One API call in progress: the clients, the caller, and the cookies to set on the answer.
pub(crate) struct Call {
    pub upstreams: Upstreams,
    pub caller: Caller,
    pub set: Vec<HeaderValue>,
}

impl Call {
    /// A call of `audience`'s API.
    pub async fn open_for(
        audience: &Audience,
        state: &AppState,
        headers: &HeaderMap,
        method: &Method,
    ) -> Result<Self, Response> {
        let upstreams = upstreams(state).map_err(IntoResponse::into_response)?;
        let mut set = Vec::new();
        match caller(audience, state, &upstreams, headers, method, &mut set).await {
            Ok(caller) => Ok(Self {
                upstreams,
                caller,
                set,
            }),
            Err(error) => Err(with_cookies(error.into_response(), set)),
        }
    }

    pub fn request<T>(&self, message: T) -> Result<tonic::Request<T>, ApiError> {
        as_caller(&self.caller.token, message)
    }

    pub fn agents(&self) -> AgentsClient {
        self.upstreams.agents_as_caller.clone()
    }

    pub fn routing(&self) -> crate::Routing {
        self.upstreams.routing_as_caller.clone()
    }

    /// The answer, with the renewed cookie when there is one.
    pub fn answer(self, result: Result<Response, ApiError>) -> Response {
        with_cookies(result.unwrap_or_else(IntoResponse::into_response), self.set)
    }
}

/// Opens the call (of the console, or of the audience given) or answers the refusal.
macro_rules! open {
    ($state:expr, $headers:expr, $method:expr) => {
        open!(&$crate::console::CONSOLE, $state, $headers, $method)
    };
    ($audience:expr, $state:expr, $headers:expr, $method:expr) => {
        match $crate::console::Call::open_for($audience, &$state, &$headers, &$method).await {
            Ok(call) => call,
            Err(response) => return response,
        }
    };
}
pub(crate) use open;

/// The answer to a refusal of agent-directory. Seats running out (`RESOURCE_EXHAUSTED`) is a
/// conflict with the licence, not throttling: 409 with the service's message.
pub fn refused(status: tonic::Status) -> ApiError {
    match status.code() {
        Code::ResourceExhausted => ApiError {
            status: StatusCode::CONFLICT,
            code: "409",
            detail: status.message().to_owned().into(),
        },
        _ => ApiError::from_status(&status),
    }
}

pub(crate) fn bad(detail: &str) -> ApiError {
    ApiError::bad_request(detail.to_owned())
}

pub(crate) fn body(raw: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    raw.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            jsonapi::BODY_TOO_LARGE
        } else {
            jsonapi::INVALID_BODY
        }
    })
}

fn agent_id(raw: &str) -> Result<String, ApiError> {
    validate::id("id", raw)
        .map(|id| id.to_string())
        .map_err(|_| bad("id: must be an agent id (a UUID)"))
}

/// A required string attribute.
pub(crate) fn required_text<'a>(
    attributes: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a str, ApiError> {
    match attributes.get(name) {
        Some(Value::String(text)) => Ok(text),
        None | Some(Value::Null) => Err(bad(&format!("{name}: is required"))),
        Some(_) => Err(bad(&format!("{name}: must be a string"))),
    }
}

pub fn role_word(value: i32) -> &'static str {
    match dir::Role::try_from(value) {
        Ok(dir::Role::Agent) => "agent",
        Ok(dir::Role::Supervisor) => "supervisor",
        Ok(dir::Role::Administrator) => "administrator",
        _ => "none",
    }
}

pub fn parse_role(word: &str) -> Option<dir::Role> {
    match word {
        "agent" => Some(dir::Role::Agent),
        "supervisor" => Some(dir::Role::Supervisor),
        "administrator" => Some(dir::Role::Administrator),
        _ => None,
    }
}

fn role_attribute(attributes: &Map<String, Value>) -> Result<dir::Role, ApiError> {
    parse_role(required_text(attributes, "role")?)
        .ok_or_else(|| bad("role: must be agent, supervisor or administrator"))
}

pub fn status_word(value: i32) -> &'static str {
    match dir::AgentStatus::try_from(value) {
        Ok(dir::AgentStatus::Invited) => "invited",
        Ok(dir::AgentStatus::Active) => "active",
        Ok(dir::AgentStatus::Removed) => "removed",
        _ => "none",
    }
}

fn parse_status(word: &str) -> Option<dir::AgentStatus> {
    match word {
        "" => Some(dir::AgentStatus::Unspecified),
        "invited" => Some(dir::AgentStatus::Invited),
        "active" => Some(dir::AgentStatus::Active),
        "removed" => Some(dir::AgentStatus::Removed),
        _ => None,
    }
}

pub fn presence_word(value: i32) -> &'static str {
    match dir::Presence::try_from(value) {
        Ok(dir::Presence::Online) => "online",
        Ok(dir::Presence::Away) => "away",
        _ => "offline",
    }
}

fn parse_presence(word: &str) -> Option<dir::Presence> {
    match word {
        "online" => Some(dir::Presence::Online),
        "away" => Some(dir::Presence::Away),
        "offline" => Some(dir::Presence::Offline),
        _ => None,
    }
}

fn capability_word(value: &i32) -> &'static str {
    match dir::Capability::try_from(*value) {
        Ok(dir::Capability::AssistCustomers) => "assist_customers",
        Ok(dir::Capability::AssistMerchantUsers) => "assist_merchant_users",
        _ => "unspecified",
    }
}

/// An agent as a `console-agents` resource.
pub fn agent_resource(agent: &dir::Agent) -> Value {
    json!({
        "type": "console-agents",
        "id": agent.id,
        "attributes": {
            "email": agent.email,
            "fullName": agent.display_name,
            "nickname": agent.nickname,
            "role": role_word(agent.role),
            "status": status_word(agent.status),
            "presence": presence_word(agent.presence),
            "lastSeenAtUs": agent.last_seen_at_us,
            "invitationExpiresAtUs": agent.invitation_expires_at_us,
            "capacity": agent.capacity,
            "skills": agent.skills,
            "capabilities": agent.capabilities.iter().map(capability_word).collect::<Vec<_>>(),
            "version": agent.version,
            "createdAtUs": agent.created_at_us,
            "updatedAtUs": agent.updated_at_us,
        },
        "links": { "self": format!("/console/api/agents/{}", agent.id) },
    })
}

pub fn seats_json(seats: &dir::Seats) -> Value {
    json!({ "licensed": seats.licensed, "occupied": seats.occupied, "free": seats.free })
}

pub fn presence_counts_json(counts: &dir::PresenceCounts) -> Value {
    json!({ "online": counts.online, "away": counts.away, "offline": counts.offline })
}

fn agent_document(status: StatusCode, agent: &dir::Agent) -> Response {
    document(status, &json!({ "data": agent_resource(agent) }))
}

/// What the caller may do in the console, as agent-directory answers it (DESIGN.md section 4): the
/// gateway computes no rights of its own.
pub struct Rights {
    /// The caller's own profile (empty when it is not a console member).
    pub own: dir::Agent,
    /// The console role it acts with now; `None` for no active member.
    pub role: Option<dir::Role>,
    pub platform_administrator: bool,
    /// The roles it may give (invite with, change to), least powerful first.
    pub grantable: Vec<dir::Role>,
}

/// The caller's console rights, from agent-directory's `GetConsoleRights`.
pub async fn rights(agents: &mut AgentsClient, caller: &Caller) -> Result<Rights, ApiError> {
    let request = as_caller(&caller.token, dir::GetConsoleRightsRequest {})?;
    let reply = agents
        .get_console_rights(request)
        .await
        .map_err(refused)?
        .into_inner();
    let role = |value: i32| {
        dir::Role::try_from(value)
            .ok()
            .filter(|r| *r != dir::Role::Unspecified)
    };
    Ok(Rights {
        own: reply.profile.unwrap_or_else(|| dir::Agent {
            id: caller.claims.sub.clone(),
            ..Default::default()
        }),
        role: role(reply.role),
        platform_administrator: reply.platform_administrator,
        grantable: reply.grantable_roles.into_iter().filter_map(role).collect(),
    })
}

/// `GET /console/api/me`: who is signed in, with which console role, and what they may grant.
async fn me(State(state): Shared, method: Method, headers: HeaderMap) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let rights = rights(&mut call.agents(), &call.caller).await?;
        let mut resource = agent_resource(&rights.own);
        resource["type"] = "console-me".into();
        resource["attributes"]["consoleRole"] =
            rights.role.map_or("none", |r| role_word(r as i32)).into();
        resource["attributes"]["platformAdministrator"] = rights.platform_administrator.into();
        resource["attributes"]["grantableRoles"] = rights
            .grantable
            .iter()
            .map(|r| role_word(*r as i32))
            .collect::<Vec<_>>()
            .into();
        resource["links"] = json!({ "self": "/console/api/me" });
        Ok(document(StatusCode::OK, &json!({ "data": resource })))
    }
    .await;
    call.answer(result)
}

#[derive(Debug, Default, serde::Deserialize)]
struct ListParams {
    #[serde(rename = "filter[query]")]
    query: Option<String>,
    #[serde(rename = "filter[status]")]
    status: Option<String>,
    #[serde(rename = "page[offset]")]
    offset: Option<u64>,
    #[serde(rename = "page[limit]")]
    limit: Option<u32>,
}

/// Agents matching `query` and `status`, one page, with seats and presence counts.
pub async fn list(
    agents: &mut AgentsClient,
    token: &str,
    query: &str,
    status: dir::AgentStatus,
    page: Page,
) -> Result<dir::ListAgentsResponse, ApiError> {
    let request = dir::ListAgentsRequest {
        page: Some(PageRequest {
            limit: page.limit,
            offset: page.offset,
        }),
        capability: 0,
        query: query.to_owned(),
        status: status as i32,
    };
    Ok(agents
        .list_agents(as_caller(token, request)?)
        .await
        .map_err(refused)?
        .into_inner())
}

/// `GET /console/api/agents`: a page of agents, searchable and filtered by status; `meta` has the
/// seats and the presence counts.
async fn list_agents(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    query: Result<Query<ListParams>, QueryRejection>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let Query(params) = query.map_err(|_| jsonapi::INVALID_QUERY)?;
        let q = validate::optional(
            "filter[query]",
            params.query.as_deref().unwrap_or_default(),
            QUERY_MAX,
        )?;
        let status = parse_status(params.status.as_deref().unwrap_or_default().trim())
            .ok_or_else(|| bad("filter[status]: must be invited, active or removed"))?;
        let page = crate::routes::page_of(params.offset, params.limit)?;
        let reply = list(&mut call.agents(), &call.caller.token, &q, status, page).await?;
        let info = reply.page.unwrap_or_default();
        let mut base = "/console/api/agents?".to_owned();
        if !q.is_empty() {
            base.push_str(&format!(
                "filter[query]={}&",
                jsonapi::encode_query_value(&q)
            ));
        }
        if status != dir::AgentStatus::Unspecified {
            base.push_str(&format!("filter[status]={}&", status_word(status as i32)));
        }
        let base = format!("{}{base}", state.checked.public_url);
        Ok(document(
            StatusCode::OK,
            &json!({
                "data": reply.agents.iter().map(agent_resource).collect::<Vec<_>>(),
                "meta": {
                    "seats": seats_json(&reply.seats.unwrap_or_default()),
                    "presence": presence_counts_json(&reply.presence.unwrap_or_default()),
                    "total": info.total,
                    "totalExact": info.total_exact,
                },
                "links": jsonapi::page_links(&base, page.offset, page.limit, info.total, info.total_exact),
            }),
        ))
    }
    .await;
    call.answer(result)
}

/// `GET /console/api/agents/{id}`.
async fn get_agent(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let id = agent_id(&id)?;
        let agent = call
            .agents()
            .get_agent(call.request(dir::GetAgentRequest { id })?)
            .await
            .map_err(refused)?
            .into_inner();
        Ok(agent_document(StatusCode::OK, &agent))
    }
    .await;
    call.answer(result)
}

/// `POST /console/api/agents` (`console-agents`: `email`, `role`, optional `fullName`): invites.
async fn invite(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let attributes = jsonapi::attributes(&body(raw)?, "console-agents")?;
        let email = validate::email("email", required_text(&attributes, "email")?)?;
        let role = role_attribute(&attributes)?;
        let full_name = match attributes.get("fullName") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(name)) => validate::optional("fullName", name, FULL_NAME_MAX)?,
            Some(_) => return Err(bad("fullName: must be a string")),
        };
        let request = dir::InviteAgentRequest {
            email,
            role: role as i32,
            full_name,
        };
        let agent = answered(call.agents().invite_agent(call.request(request)?).await)?;
        tracing::info!(actor_id = %call.caller.claims.sub, agent_id = %agent.id, "agent invited from the console");
        Ok(agent_document(StatusCode::CREATED, &agent))
    }
    .await;
    call.answer(result)
}

/// `POST /console/api/agents/{id}/invitation/resend`.
async fn resend_invitation(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let agent_id = agent_id(&id)?;
        let agent = answered(
            call.agents()
                .resend_invitation(call.request(dir::AgentRequest { agent_id })?)
                .await,
        )?;
        Ok(agent_document(StatusCode::OK, &agent))
    }
    .await;
    call.answer(result)
}

/// `DELETE /console/api/agents/{id}/invitation`: revokes the invitation (the agent is removed).
async fn revoke_invitation(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let agent_id = agent_id(&id)?;
        let agent = answered(
            call.agents()
                .revoke_invitation(call.request(dir::AgentRequest { agent_id })?)
                .await,
        )?;
        Ok(agent_document(StatusCode::OK, &agent))
    }
    .await;
    call.answer(result)
}

/// `POST /console/api/agents/{id}/remove` (`console-agent-removals`: `confirmEmail`, the agent's
/// email repeated).
async fn remove(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let agent_id = agent_id(&id)?;
        let attributes = jsonapi::attributes(&body(raw)?, "console-agent-removals")?;
        let confirm = required_text(&attributes, "confirmEmail")?.trim();
        if confirm.is_empty() {
            return Err(bad("confirmEmail: repeat the agent's email to confirm"));
        }
        if confirm.chars().count() > 254 {
            return Err(bad("confirmEmail: must be at most 254 characters"));
        }
        let request = dir::RemoveAgentRequest {
            agent_id,
            confirm_email: confirm.to_owned(),
        };
        let agent = answered(call.agents().remove_agent(call.request(request)?).await)?;
        tracing::info!(actor_id = %call.caller.claims.sub, agent_id = %agent.id, "agent removed from the console");
        Ok(agent_document(StatusCode::OK, &agent))
    }
    .await;
    call.answer(result)
}

/// `PATCH /console/api/agents/{id}/role` (`console-agent-roles`: `role`).
async fn change_role(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let agent_id = agent_id(&id)?;
        let attributes = jsonapi::attributes(&body(raw)?, "console-agent-roles")?;
        let role = role_attribute(&attributes)?;
        let request = dir::ChangeRoleRequest {
            agent_id,
            role: role as i32,
        };
        let agent = answered(call.agents().change_role(call.request(request)?).await)?;
        Ok(agent_document(StatusCode::OK, &agent))
    }
    .await;
    call.answer(result)
}

/// `POST /console/api/agents/{id}/password-reset`: identity mails the agent a reset link.
async fn reset_password(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let agent_id = agent_id(&id)?;
        let reply = answered(
            call.agents()
                .reset_agent_password(call.request(dir::AgentRequest {
                    agent_id: agent_id.clone(),
                })?)
                .await,
        )?;
        Ok(document(
            StatusCode::ACCEPTED,
            &json!({ "data": {
                "type": "console-password-resets",
                "id": agent_id,
                "attributes": { "expiresAtUs": reply.expires_at_us },
            } }),
        ))
    }
    .await;
    call.answer(result)
}

/// `PATCH /console/api/agents/{id}/routing` (`console-agent-routing`: `capacity`, `skills`; only the
/// attributes given change).
async fn update_routing(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let agent_id = agent_id(&id)?;
        let attributes = jsonapi::attributes(&body(raw)?, "console-agent-routing")?;
        let capacity = match attributes.get("capacity") {
            None | Some(Value::Null) => None,
            Some(value) => match jsonapi::whole_number(value) {
                Some(n @ 1..=100) => Some(n as u32),
                _ => return Err(bad("capacity: must be a whole number from 1 to 100")),
            },
        };
        let skills = match attributes.get("skills") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let texts = items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<Vec<String>>>()
                    .ok_or_else(|| bad("skills: must be a list of strings"))?;
                Some(dir::SkillList {
                    skills: assist_runtime::validate::skills("skills", &texts, SKILLS_MAX)?,
                })
            }
            Some(_) => return Err(bad("skills: must be a list of strings")),
        };
        if capacity.is_none() && skills.is_none() {
            return Err(bad("capacity or skills: give at least one"));
        }
        let request = dir::UpdateAgentRoutingRequest {
            agent_id,
            capacity,
            skills,
        };
        let agent = answered(
            call.agents()
                .update_agent_routing(call.request(request)?)
                .await,
        )?;
        Ok(agent_document(StatusCode::OK, &agent))
    }
    .await;
    call.answer(result)
}

/// `GET /console/api/agents/{id}/history`: every change to the agent, newest first, paged.
async fn history(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<jsonapi::PageParams>, QueryRejection>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let agent_id = agent_id(&id)?;
        let Query(params) = query.map_err(|_| jsonapi::INVALID_QUERY)?;
        let page = crate::routes::requested_page(params.offset, params.limit)?;
        let request = dir::ListAgentHistoryRequest {
            agent_id: agent_id.clone(),
            page: Some(page),
        };
        let reply = call
            .agents()
            .list_agent_history(call.request(request)?)
            .await
            .map_err(refused)?
            .into_inner();
        let info = reply.page.unwrap_or_default();
        let changes: Vec<Value> = reply
            .changes
            .iter()
            .map(|c| {
                let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
                json!({
                    "type": "console-agent-changes",
                    "id": c.id,
                    "attributes": {
                        "agentId": c.agent_id,
                        "actorId": c.actor_id,
                        "action": c.action,
                        "before": parse(&c.before),
                        "after": parse(&c.after),
                        "atUs": c.at_us,
                    },
                })
            })
            .collect();
        let base = format!(
            "{}/console/api/agents/{agent_id}/history?",
            state.checked.public_url
        );
        Ok(document(
            StatusCode::OK,
            &json!({
                "data": changes,
                "links": jsonapi::page_links(&base, page.offset, page.limit, info.total, info.total_exact),
            }),
        ))
    }
    .await;
    call.answer(result)
}

fn seats_document(seats: &dir::Seats) -> Response {
    document(
        StatusCode::OK,
        &json!({ "data": {
            "type": "console-seats",
            "id": "seats",
            "attributes": seats_json(seats),
        } }),
    )
}

/// `GET /console/api/seats`.
async fn get_seats(State(state): Shared, method: Method, headers: HeaderMap) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let seats = call
            .agents()
            .get_seats(call.request(dir::GetSeatsRequest {})?)
            .await
            .map_err(refused)?
            .into_inner();
        Ok(seats_document(&seats))
    }
    .await;
    call.answer(result)
}

/// `PUT /console/api/seats` (`console-seats`: `licensed`, 1 to 100,000).
async fn set_seats(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let attributes = jsonapi::attributes(&body(raw)?, "console-seats")?;
        let licensed = match attributes.get("licensed").and_then(jsonapi::whole_number) {
            Some(n @ 1..=100_000) => n as u32,
            _ => return Err(bad("licensed: must be a whole number from 1 to 100000")),
        };
        let seats = answered(
            call.agents()
                .set_seats(call.request(dir::SetSeatsRequest { licensed })?)
                .await,
        )?;
        Ok(seats_document(&seats))
    }
    .await;
    call.answer(result)
}

/// Sends a heartbeat for the caller.
pub async fn heartbeat(
    agents: &mut AgentsClient,
    token: &str,
    presence: dir::Presence,
) -> Result<dir::HeartbeatResponse, ApiError> {
    let request = as_caller(
        token,
        dir::HeartbeatRequest {
            presence: presence as i32,
        },
    )?;
    answered(agents.heartbeat(request).await)
}

/// agent-directory's reply, or its refusal as the API's error. A call the browser abandons midway is
/// still carried out whole: every gRPC service runs each call to its end (`assist_runtime::server`).
fn answered<T>(reply: Result<tonic::Response<T>, tonic::Status>) -> Result<T, ApiError> {
    reply.map(tonic::Response::into_inner).map_err(refused)
}

/// `POST /console/api/presence` (`console-presence`: `presence` online, away or offline): the
/// caller's heartbeat; the answer says within how many seconds to send the next one.
async fn presence(
    State(state): Shared,
    method: Method,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let call = open!(state, headers, method);
    let result = async {
        let attributes = jsonapi::attributes(&body(raw)?, "console-presence")?;
        let presence = parse_presence(required_text(&attributes, "presence")?)
            .ok_or_else(|| bad("presence: must be online, away or offline"))?;
        let reply = heartbeat(&mut call.agents(), &call.caller.token, presence).await?;
        Ok(document(
            StatusCode::OK,
            &json!({ "data": {
                "type": "console-presence",
                "id": call.caller.claims.sub,
                "attributes": {
                    "presence": presence_word(reply.presence),
                    "timeoutSeconds": reply.timeout_seconds,
                },
            } }),
        ))
    }
    .await;
    call.answer(result)
}

/// `GET /console/api/agents/events`: server-sent events fed by `WatchAgents` with the caller's token
/// (supervisors and administrators): `changed` with a `console-agents` resource whenever an agent's
/// profile or presence changes, and `synced` once the watch is current (after a (re)connect; the
/// page then reloads what it shows). The initial snapshot is not forwarded: the page has it.
async fn events(State(state): Shared, method: Method, headers: HeaderMap) -> Response {
    let call = open!(state, headers, method);
    let opened = match call.request(dir::WatchAgentsRequest {}) {
        Ok(request) => call.agents().watch_agents(request).await.map_err(refused),
        Err(error) => Err(error),
    };
    let stream = match opened {
        Ok(reply) => reply.into_inner(),
        Err(error) => return call.answer(Err(error)),
    };
    let response = event_stream(
        stream,
        state.shutdown.clone(),
        "agent watch",
        |event: dir::AgentEvent| match dir::agent_event::Kind::try_from(event.kind) {
            Ok(dir::agent_event::Kind::Synced) => Some(Event::default().event("synced").data("{}")),
            Ok(dir::agent_event::Kind::Changed) => event.agent.as_ref().map(|agent| {
                Event::default()
                    .event("changed")
                    .data(json!({ "data": agent_resource(agent) }).to_string())
            }),
            _ => None,
        },
    );
    call.answer(Ok(response))
}

/// Server-sent events from a gRPC stream: `encode` turns each message into an event or skips it. The
/// events end when the stream ends or fails (the browser's `EventSource` then reconnects, and the page
/// reloads what it shows) and when the gateway shuts down.
pub(crate) fn event_stream<T, F>(
    stream: tonic::Streaming<T>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    what: &'static str,
    encode: F,
) -> Response
where
    T: Send + 'static,
    F: FnMut(T) -> Option<Event> + Send + 'static,
{
    let events = futures::stream::unfold(
        (stream, shutdown, encode),
        move |(mut stream, mut shutdown, mut encode)| async move {
            loop {
                let next = tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => return None,
                    next = stream.message() => next,
                };
                let message = match next {
                    Ok(Some(message)) => message,
                    Ok(None) => return None,
                    Err(status) => {
                        tracing::debug!(watch = what, code = ?status.code(), error = %status.message(), "watch ended");
                        return None;
                    }
                };
                if let Some(event) = encode(message) {
                    return Some((Ok::<_, Infallible>(event), (stream, shutdown, encode)));
                }
            }
        },
    );
    (
        [(header::CACHE_CONTROL, "no-store")],
        Sse::new(events).keep_alive(KeepAlive::default()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for role in [
            dir::Role::Agent,
            dir::Role::Supervisor,
            dir::Role::Administrator,
        ] {
            assert_eq!(parse_role(role_word(role as i32)), Some(role));
        }
        assert_eq!(parse_role("admin"), None);
        assert_eq!(parse_status(""), Some(dir::AgentStatus::Unspecified));
        assert_eq!(parse_status("gone"), None);
        assert_eq!(parse_presence("away"), Some(dir::Presence::Away));
        assert_eq!(presence_word(0), "offline");
    }

    #[test]
    fn seats_running_out_is_a_conflict() {
        let error = refused(tonic::Status::resource_exhausted("no free seat"));
        assert_eq!(error.status, StatusCode::CONFLICT);
        assert_eq!(error.detail, "no free seat");
        let denied = refused(tonic::Status::permission_denied("role: not allowed"));
        assert_eq!(denied.status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn cookie_calls_need_the_csrf_header() {
        let token = assist_runtime::web::random_token();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("assist_csrf={token}").parse().unwrap(),
        );
        assert!(!csrf_header_matches(&headers));
        headers.insert(CSRF_HEADER, token.parse().unwrap());
        assert!(csrf_header_matches(&headers));
        headers.insert(CSRF_HEADER, "other".parse().unwrap());
        assert!(!csrf_header_matches(&headers));
    }
}
