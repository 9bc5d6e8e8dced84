//! The OpenAPI 3.1 document of the gateway's routes, served at `/openapi.json`. It is built from the
//! same portals and error constants the handlers use, so codes and paths cannot drift from them.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::jsonapi::{self, ApiError, MEDIA_TYPE};
use crate::routes::{MERCHANT_PORTAL, Portal, STOREFRONT, Target};

/// The document; `server` is the public base URL, empty when links are relative.
pub fn document(server: &str) -> Value {
    let mut paths = Map::new();
    for portal in [&STOREFRONT, &MERCHANT_PORTAL] {
        portal_paths(portal, &mut paths);
    }
    own_paths(&mut paths);
    console_paths(&mut paths);
    conversation_paths(&mut paths);
    // Operation ids are written as phrases above; tools want them without spaces.
    for operation in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in operation.values_mut() {
            if let Some(id) = operation["operationId"].as_str() {
                operation["operationId"] = id.replace(' ', "-").into();
            }
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Agent Assist gateway",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The Glue-compatible agent-assist API of the storefront and, under \
                            /merchant-portal/, of the merchant portal; under /console/api/ the \
                            console's agent management and conversations; under /conversations the \
                            customers' conversations (JSON:API documents).",
        },
        "servers": [{ "url": if server.is_empty() { "/" } else { server } }],
        "paths": paths,
        "components": components(),
    })
}

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn parameter(name: &str) -> Value {
    json!({ "$ref": format!("#/components/parameters/{name}") })
}

/// A success answer whose body is a JSON:API document of schema `name`.
fn ok(description: &str, name: &str) -> Value {
    json!({ "description": description, "content": { MEDIA_TYPE: { "schema": schema(name) } } })
}

/// The responses of one operation: `success` by status, and the error objects it answers, grouped by
/// status with one example per code.
fn responses(success: &[(u16, Value)], errors: &[ApiError]) -> Value {
    let mut out = Map::new();
    for (status, response) in success {
        out.insert(status.to_string(), response.clone());
    }
    let mut by_status: BTreeMap<u16, Vec<&ApiError>> = BTreeMap::new();
    for error in errors {
        by_status
            .entry(error.status.as_u16())
            .or_default()
            .push(error);
    }
    for (status, errors) in by_status {
        let mut examples = Map::new();
        for error in &errors {
            let mut name = error.code.to_owned();
            let mut n = 1;
            while examples.contains_key(&name) {
                n += 1;
                name = format!("{}-{n}", error.code);
            }
            examples.insert(
                name,
                json!({
                    "summary": error.detail,
                    "value": { "errors": [{
                        "status": error.status.as_str(),
                        "code": error.code,
                        "detail": error.detail,
                    }] },
                }),
            );
        }
        let description = errors
            .iter()
            .map(|e| format!("{} {}", e.code, e.detail))
            .collect::<Vec<_>>()
            .join(" / ");
        out.insert(
            status.to_string(),
            json!({
                "description": description,
                "content": { MEDIA_TYPE: { "schema": schema("Errors"), "examples": examples } },
            }),
        );
    }
    Value::Object(out)
}

/// A request body of one resource of type `kind` with `attributes`.
fn request_body(kind: &str, attributes: Value, required: &[&str]) -> Value {
    // With required attributes, the attributes object itself is required.
    let data_required: &[&str] = if required.is_empty() {
        &["type"]
    } else {
        &["type", "attributes"]
    };
    json!({
        "required": true,
        "content": { MEDIA_TYPE: { "schema": {
            "type": "object",
            "required": ["data"],
            "properties": { "data": {
                "type": "object",
                "required": data_required,
                "properties": {
                    "type": { "const": kind },
                    "attributes": { "type": "object", "properties": attributes, "required": required },
                },
            } },
        } } },
    })
}

/// Text without control characters (Unicode `Cc`, which every text input refuses).
const NO_CONTROL_CHARACTERS: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";
/// Required text: no control characters, and something besides white space (inputs are trimmed).
const REQUIRED_TEXT: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// `body` (a [`request_body`]) whose attributes must give at least one of `names`, not null.
fn at_least_one_of(mut body: Value, names: &[&str]) -> Value {
    let data = &mut body["content"][MEDIA_TYPE]["schema"]["properties"]["data"];
    data["required"] = json!(["type", "attributes"]);
    data["properties"]["attributes"]["anyOf"] = names
        .iter()
        .map(|name| json!({ "required": [name], "properties": { *name: { "not": { "type": "null" } } } }))
        .collect();
    body
}

/// Failures every call may meet once past its own checks.
const UPSTREAM: [ApiError; 3] = [jsonapi::UNAVAILABLE, jsonapi::TIMEOUT, jsonapi::INTERNAL];
/// Failures of reading a request body.
const BODY: [ApiError; 3] = [
    jsonapi::INVALID_BODY,
    jsonapi::INVALID_TYPE,
    jsonapi::BODY_TOO_LARGE,
];
/// Failures of finding the calling agent.
const AGENT: [ApiError; 3] = [
    jsonapi::AGENT_ONLY,
    jsonapi::INVALID_ACCESS_TOKEN,
    jsonapi::INVALID_AGENT_TOKEN,
];

fn agent_security() -> Value {
    json!([{ "agentBearer": [] }, { "agentHeader": [] }])
}

fn sign_in_body(kind: &str) -> Value {
    request_body(
        kind,
        json!({
            "username": { "type": "string", "format": "email" },
            "password": { "type": "string", "format": "password" },
        }),
        &["username", "password"],
    )
}

fn portal_paths(portal: &Portal, paths: &mut Map<String, Value>) {
    let prefix = portal.prefix;
    let (audience, search_schema, target_attributes, target_required) = match portal.target {
        Target::Customers => (
            "storefront",
            "CustomerSearch",
            json!({ "customerReference": { "type": "string", "maxLength": 64, "pattern": NO_CONTROL_CHARACTERS } }),
            "customerReference",
        ),
        Target::MerchantUsers => (
            "merchant portal",
            "MerchantUserSearch",
            json!({ "merchantUserId": { "type": "string", "format": "uuid" } }),
            "merchantUserId",
        ),
    };
    let mut target_attributes = target_attributes;
    target_attributes["reason"] =
        json!({ "type": "string", "maxLength": 500, "pattern": NO_CONTROL_CHARACTERS });

    let sign_in_errors: Vec<ApiError> = [jsonapi::AGENT_LOGIN_FAILED, jsonapi::TOO_MANY_REQUESTS]
        .into_iter()
        .chain(BODY)
        .chain(UPSTREAM)
        .collect();
    paths.insert(
        format!("{prefix}/agent-access-tokens"),
        json!({ "post": {
            "operationId": format!("{audience} agent sign-in"),
            "summary": format!("A {audience} agent signs in"),
            "requestBody": sign_in_body("agent-access-tokens"),
            "responses": responses(
                &[(201, ok("An access and refresh token of the agent", "TokenDocument"))],
                &sign_in_errors,
            ),
        } }),
    );

    let search_errors: Vec<ApiError> = AGENT
        .into_iter()
        .chain([jsonapi::INVALID_QUERY])
        .chain(UPSTREAM)
        .collect();
    paths.insert(
        format!("{prefix}/{}", portal.search_kind),
        json!({ "get": {
            "operationId": portal.search_kind,
            "summary": format!("Search the {audience}'s accounts, paged"),
            "security": agent_security(),
            "parameters": [
                parameter("AgentAuthorization"),
                parameter("Q"),
                parameter("PageOffset"),
                parameter("PageLimit"),
            ],
            "responses": responses(&[(200, ok("One page of matches", search_schema))], &search_errors),
        } }),
    );

    let start_errors: Vec<ApiError> = AGENT
        .into_iter()
        .chain([
            portal.impersonation_failed.clone(),
            jsonapi::TOO_MANY_REQUESTS,
        ])
        .chain(BODY)
        .chain(UPSTREAM)
        .collect();
    paths.insert(
        format!("{prefix}/{}", portal.impersonation_kind),
        json!({ "post": {
            "operationId": format!("{audience} impersonation start"),
            "summary": "The agent starts assisting; the token is not refreshable and the resource id \
                        is the session id",
            "security": agent_security(),
            "parameters": [parameter("AgentAuthorization")],
            "requestBody": request_body(portal.impersonation_kind, target_attributes, &[target_required]),
            "responses": responses(
                &[(201, ok("An impersonation token", "TokenDocument"))],
                &start_errors,
            ),
        } }),
    );

    let forbidden = ApiError {
        detail: "permission denied".into(),
        ..jsonapi::MISSING_ACCESS_TOKEN
    };
    let forbidden = ApiError {
        code: "403",
        ..forbidden
    };
    let end_errors: Vec<ApiError> = AGENT
        .into_iter()
        .chain([forbidden, jsonapi::NOT_FOUND])
        .chain(UPSTREAM)
        .collect();
    paths.insert(
        format!("{prefix}/{}/{{sessionId}}", portal.impersonation_kind),
        json!({ "delete": {
            "operationId": format!("{audience} impersonation end"),
            "summary": "The agent ends one of their sessions",
            "security": agent_security(),
            "parameters": [
                parameter("AgentAuthorization"),
                { "name": "sessionId", "in": "path", "required": true,
                  "schema": { "type": "string", "format": "uuid" } },
            ],
            "responses": responses(&[(204, json!({ "description": "Ended" }))], &end_errors),
        } }),
    );

    let sessions_errors: Vec<ApiError> = AGENT
        .into_iter()
        .chain([jsonapi::INVALID_QUERY])
        .chain(UPSTREAM)
        .collect();
    paths.insert(
        format!("{prefix}/agent-assist-sessions"),
        json!({ "get": {
            "operationId": format!("{audience} agent sessions"),
            "summary": "The calling agent's sessions in both portals, newest first, paged",
            "security": agent_security(),
            "parameters": [
                parameter("AgentAuthorization"),
                parameter("PageOffset"),
                parameter("PageLimit"),
            ],
            "responses": responses(&[(200, ok("One page of sessions", "Sessions"))], &sessions_errors),
        } }),
    );
}

fn own_paths(paths: &mut Map<String, Value>) {
    let sign_in_errors: Vec<ApiError> = [jsonapi::USER_LOGIN_FAILED, jsonapi::TOO_MANY_REQUESTS]
        .into_iter()
        .chain(BODY)
        .chain(UPSTREAM)
        .collect();
    paths.insert(
        "/access-tokens".into(),
        json!({ "post": {
            "operationId": "customer sign-in",
            "summary": "A customer signs in",
            "requestBody": sign_in_body("access-tokens"),
            "responses": responses(
                &[(201, ok("An access and refresh token of the customer", "TokenDocument"))],
                &sign_in_errors,
            ),
        } }),
    );

    let refresh_errors: Vec<ApiError> = [
        jsonapi::REFRESH_FAILED,
        jsonapi::REFRESH_TOKEN_MISSING,
        jsonapi::TOO_MANY_REQUESTS,
    ]
    .into_iter()
    .chain(BODY)
    .chain(UPSTREAM)
    .collect();
    paths.insert(
        "/refresh-tokens".into(),
        json!({ "post": {
            "operationId": "refresh",
            "summary": "A new token pair for a refresh token, which is spent",
            "requestBody": request_body(
                "refresh-tokens",
                json!({ "refreshToken": { "type": "string", "pattern": REQUIRED_TEXT } }),
                &["refreshToken"],
            ),
            "responses": responses(&[(201, ok("A new token pair", "TokenDocument"))], &refresh_errors),
        } }),
    );

    let revoke_errors: Vec<ApiError> = [
        jsonapi::REFRESH_FAILED,
        jsonapi::MISSING_ACCESS_TOKEN,
        jsonapi::INVALID_ACCESS_TOKEN,
    ]
    .into_iter()
    .chain(UPSTREAM)
    .collect();
    paths.insert(
        "/refresh-tokens/{token}".into(),
        json!({ "delete": {
            "operationId": "revoke refresh token",
            "summary": "Revokes one refresh token, or with `mine` and an access token every refresh \
                        token of the caller",
            "security": [{}, { "bearer": [] }],
            "parameters": [{
                "name": "token", "in": "path", "required": true,
                "description": "A refresh token, or `mine`",
                "schema": { "type": "string" },
            }],
            "responses": responses(&[(204, json!({ "description": "Revoked" }))], &revoke_errors),
        } }),
    );

    paths.insert(
        "/.well-known/jwks.json".into(),
        json!({ "get": {
            "operationId": "jwks",
            "summary": "The public keys of identity and impersonation-token",
            "responses": responses(
                &[(200, json!({
                    "description": "A JWK set",
                    "content": { "application/jwk-set+json": { "schema": schema("Jwks") } },
                }))],
                &UPSTREAM,
            ),
        } }),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({ "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": { "200": {
                "description": "The OpenAPI document",
                "content": { "application/json": { "schema": { "type": "object" } } },
            } },
        } }),
    );
    let health = json!({
        "content": { "application/json": { "schema": {
            "type": "object",
            "properties": { "status": { "enum": ["serving", "starting", "stopping"] } },
        } } },
    });
    let mut serving = health.clone();
    serving["description"] = "Serving".into();
    let mut not_serving = health;
    not_serving["description"] = "Starting or stopping".into();
    paths.insert(
        "/healthz".into(),
        json!({ "get": {
            "operationId": "health",
            "summary": "Whether the gateway can reach the services with its token",
            "responses": { "200": serving, "503": not_serving },
        } }),
    );
}

/// An error object of the console whose detail is the service's message.
fn console_error(status: http::StatusCode, code: &'static str, detail: &'static str) -> ApiError {
    ApiError {
        status,
        code,
        detail: detail.into(),
    }
}

fn console_paths(paths: &mut Map<String, Value>) {
    use crate::console::{BACK_OFFICE_ONLY, CSRF_REFUSED, MISSING_TOKEN};
    use http::StatusCode;
    let auth = [
        MISSING_TOKEN,
        jsonapi::INVALID_ACCESS_TOKEN,
        BACK_OFFICE_ONLY,
        CSRF_REFUSED,
    ];
    let denied = console_error(
        StatusCode::FORBIDDEN,
        "403",
        "supervisor or administrator required",
    );
    let bad = console_error(
        StatusCode::BAD_REQUEST,
        "400",
        "role: must be agent, supervisor or administrator",
    );
    let missing = console_error(StatusCode::NOT_FOUND, "404", "agent not found");
    let conflict = console_error(
        StatusCode::CONFLICT,
        "409",
        "no free seat: all 25 licensed seats are occupied",
    );
    let errors = |extra: &[&ApiError], with_body: bool| -> Vec<ApiError> {
        let mut all: Vec<ApiError> = auth.to_vec();
        all.extend(extra.iter().map(|e| (*e).clone()));
        if with_body {
            all.extend(BODY);
        }
        all.extend(UPSTREAM);
        all
    };
    let security = json!([{ "bearer": [] }, { "consoleCookie": [], "csrfHeader": [] }]);
    let id = json!({ "name": "id", "in": "path", "required": true,
                     "schema": { "type": "string", "format": "uuid" } });
    let agent_ok = |status: u16, description: &str| (status, ok(description, "ConsoleAgent"));
    let operation = |op: &str,
                     summary: &str,
                     parameters: Value,
                     body: Option<Value>,
                     success: Vec<(u16, Value)>,
                     errors: Vec<ApiError>| {
        let mut operation = json!({
            "operationId": op,
            "summary": summary,
            "security": security,
            "parameters": parameters,
            "responses": responses(&success, &errors),
        });
        if let Some(body) = body {
            operation["requestBody"] = body;
        }
        operation
    };
    let role_schema = json!({ "enum": ["agent", "supervisor", "administrator"] });
    let query_params = json!([
        { "name": "filter[query]", "in": "query", "required": false,
          "description": "Prefix of the full name, nickname or email",
          "schema": { "type": "string", "maxLength": 100, "pattern": NO_CONTROL_CHARACTERS } },
        { "name": "filter[status]", "in": "query", "required": false,
          "description": "Unset: invited and active agents",
          "schema": { "enum": ["invited", "active", "removed"] } },
        parameter("PageOffset"),
        parameter("PageLimit"),
    ]);

    paths.insert(
        "/console/api/me".into(),
        json!({ "get": operation(
            "console me",
            "The caller's profile, console role (platform administrators are administrators) and \
             the roles they may grant",
            json!([]),
            None,
            vec![(200, ok("The caller", "ConsoleMe"))],
            errors(&[], false),
        ) }),
    );
    paths.insert(
        "/console/api/agents".into(),
        json!({
            "get": operation(
                "console list agents",
                "Agents, searchable and filtered by status, paged; `meta` has the seats and the \
                 presence counts",
                query_params,
                None,
                vec![(200, ok("One page of agents", "ConsoleAgents"))],
                errors(&[&jsonapi::INVALID_QUERY, &bad], false),
            ),
            "post": operation(
                "console invite",
                "Invites by email with a role (supervisors: agent or supervisor); the set-password \
                 link is mailed; the invitation takes a seat",
                json!([]),
                Some(request_body(
                    "console-agents",
                    json!({
                        "email": { "type": "string", "format": "email", "maxLength": 254 },
                        "role": role_schema,
                        "fullName": { "type": "string", "maxLength": 100, "pattern": NO_CONTROL_CHARACTERS },
                    }),
                    &["email", "role"],
                )),
                vec![agent_ok(201, "The invited agent")],
                errors(&[&bad, &denied, &conflict], true),
            ),
        }),
    );
    paths.insert(
        "/console/api/agents/events".into(),
        json!({ "get": {
            "operationId": "console agent events",
            "summary": "Server-sent events: `changed` (data: a console-agents document) on every \
                        profile or presence change, `synced` once current after a (re)connect. \
                        Supervisors and administrators.",
            "security": security,
            "parameters": [],
            "responses": responses(
                &[(200, json!({
                    "description": "The event stream",
                    "content": { "text/event-stream": { "schema": { "type": "string" } } },
                }))],
                &errors(&[&denied], false),
            ),
        } }),
    );
    paths.insert(
        "/console/api/agents/{id}".into(),
        json!({ "get": operation(
            "console get agent",
            "One agent",
            json!([id]),
            None,
            vec![agent_ok(200, "The agent")],
            errors(&[&bad, &missing], false),
        ) }),
    );
    paths.insert(
        "/console/api/agents/{id}/invitation/resend".into(),
        json!({ "post": operation(
            "console resend invitation",
            "A new set-password link for an invited agent",
            json!([id]),
            None,
            vec![agent_ok(200, "The invited agent")],
            errors(&[&bad, &denied, &missing, &conflict], false),
        ) }),
    );
    paths.insert(
        "/console/api/agents/{id}/invitation".into(),
        json!({ "delete": operation(
            "console revoke invitation",
            "Revokes an invitation: the link stops working, the seat is freed",
            json!([id]),
            None,
            vec![agent_ok(200, "The removed agent")],
            errors(&[&bad, &denied, &missing, &conflict], false),
        ) }),
    );
    paths.insert(
        "/console/api/agents/{id}/remove".into(),
        json!({ "post": operation(
            "console remove agent",
            "Removes an agent, confirmed by repeating their email: sign-ins end at once, the seat \
             is freed, the history stays",
            json!([id]),
            Some(request_body(
                "console-agent-removals",
                json!({ "confirmEmail": { "type": "string", "maxLength": 254, "pattern": REQUIRED_TEXT } }),
                &["confirmEmail"],
            )),
            vec![agent_ok(200, "The removed agent")],
            errors(&[&bad, &denied, &missing, &conflict], true),
        ) }),
    );
    paths.insert(
        "/console/api/agents/{id}/role".into(),
        json!({ "patch": operation(
            "console change role",
            "Changes an agent's role (never one's own; the last administrator stays)",
            json!([id]),
            Some(request_body("console-agent-roles", json!({ "role": role_schema }), &["role"])),
            vec![agent_ok(200, "The agent")],
            errors(&[&bad, &denied, &missing, &conflict], true),
        ) }),
    );
    paths.insert(
        "/console/api/agents/{id}/password-reset".into(),
        json!({ "post": operation(
            "console reset password",
            "Identity mails the active agent a password-reset link",
            json!([id]),
            None,
            vec![(202, ok("When the link expires", "ConsolePasswordReset"))],
            errors(&[&bad, &denied, &missing, &conflict], false),
        ) }),
    );
    paths.insert(
        "/console/api/agents/{id}/routing".into(),
        json!({ "patch": operation(
            "console update routing",
            "Capacity and skills; only the attributes given change",
            json!([id]),
            Some(at_least_one_of(
                request_body(
                    "console-agent-routing",
                    json!({
                        "capacity": { "type": ["integer", "null"], "minimum": 1, "maximum": 100 },
                        "skills": { "type": ["array", "null"], "maxItems": 20, "items": {
                            "type": "string", "pattern": "^[a-z0-9_-]{1,32}$" } },
                    }),
                    &[],
                ),
                &["capacity", "skills"],
            )),
            vec![agent_ok(200, "The agent")],
            errors(&[&bad, &denied, &missing, &conflict], true),
        ) }),
    );
    paths.insert(
        "/console/api/agents/{id}/history".into(),
        json!({ "get": operation(
            "console agent history",
            "Every change to the agent, newest first, paged",
            json!([id, parameter("PageOffset"), parameter("PageLimit")]),
            None,
            vec![(200, ok("One page of changes", "ConsoleAgentChanges"))],
            errors(&[&jsonapi::INVALID_QUERY, &bad, &denied, &missing], false),
        ) }),
    );
    paths.insert(
        "/console/api/seats".into(),
        json!({
            "get": operation(
                "console seats",
                "Licensed, occupied and free seats",
                json!([]),
                None,
                vec![(200, ok("The seats", "ConsoleSeats"))],
                errors(&[], false),
            ),
            "put": operation(
                "console set seats",
                "Administrators: the licensed seat count (1 to 100,000), never below the occupied",
                json!([]),
                Some(request_body(
                    "console-seats",
                    json!({ "licensed": { "type": "integer", "minimum": 1, "maximum": 100_000 } }),
                    &["licensed"],
                )),
                vec![(200, ok("The seats", "ConsoleSeats"))],
                errors(&[&bad, &denied, &conflict], true),
            ),
        }),
    );
    paths.insert(
        "/console/api/presence".into(),
        json!({ "post": operation(
            "console heartbeat",
            "The caller's heartbeat (online or away; offline when leaving); send the next within \
             `timeoutSeconds`",
            json!([]),
            Some(request_body(
                "console-presence",
                json!({ "presence": { "enum": ["online", "away", "offline"] } }),
                &["presence"],
            )),
            vec![(200, ok("The caller's presence", "ConsolePresence"))],
            errors(&[&bad, &denied, &conflict], true),
        ) }),
    );
}

/// The conversations of the console (`/console/api/conversations…`) and of customers
/// (`/conversations…`): routing's refusals are passed on with its message.
fn conversation_paths(paths: &mut Map<String, Value>) {
    use crate::console::{BACK_OFFICE_ONLY, CSRF_REFUSED, MISSING_TOKEN};
    use crate::conversations::{BODY_MAX, CUSTOMER_SIGN_IN, CUSTOMERS_ONLY, SUBJECT_MAX};
    use http::StatusCode;
    let bad = console_error(StatusCode::BAD_REQUEST, "400", "body: must not be empty");
    let denied = console_error(
        StatusCode::FORBIDDEN,
        "403",
        "scope: all conversations are for supervisors and administrators",
    );
    let missing = console_error(StatusCode::NOT_FOUND, "404", "conversation not found");
    let conflict = console_error(
        StatusCode::CONFLICT,
        "409",
        "status: a closed conversation takes no messages",
    );
    let console_security = json!([{ "bearer": [] }, { "consoleCookie": [], "csrfHeader": [] }]);
    let customer_security = json!([{ "bearer": [] }, { "customerCookie": [], "csrfHeader": [] }]);
    let id = json!({ "name": "id", "in": "path", "required": true,
                     "schema": { "type": "string", "format": "uuid" } });
    let conversation = |status: u16, description: &str| (status, ok(description, "Conversation"));
    let events_ok = (
        200,
        json!({
            "description": "The event stream: `watching`, then one event per transition, named by \
                            its kind, with a conversation-events document as data",
            "content": { "text/event-stream": { "schema": { "type": "string" } } },
        }),
    );
    let message_body = request_body(
        "conversation-messages",
        json!({
            "body": { "type": "string", "minLength": 1, "maxLength": BODY_MAX, "pattern": REQUIRED_TEXT },
            "internal": { "type": "boolean", "description": "Console members: an internal note" },
        }),
        &["body"],
    );
    let status_body = request_body(
        "conversation-statuses",
        json!({ "status": { "enum": ["pending", "assigned", "resolved", "closed"] } }),
        &["status"],
    );
    let list_params = json!([
        { "name": "filter[scope]", "in": "query", "required": false,
          "description": "Console: `mine` (assigned to the caller now; the default) or `all` \
                          (supervisors and administrators)",
          "schema": { "enum": ["mine", "all"] } },
        { "name": "filter[status]", "in": "query", "required": false,
          "description": "Unset: open work for console members' `mine`, every status otherwise",
          "schema": { "enum": ["queued", "assigned", "pending", "resolved", "closed"] } },
        { "name": "filter[assignee]", "in": "query", "required": false,
          "description": "`all` only: conversations of this agent (empty: no filter)",
          "schema": { "anyOf": [
              { "type": "string", "format": "uuid" },
              { "type": "string", "maxLength": 0 },
          ] } },
        { "name": "filter[minQueueAgeSecs]", "in": "query", "required": false,
          "description": "Queued conversations waiting at least this long",
          "schema": { "type": "integer", "minimum": 0 } },
        parameter("PageOffset"),
        parameter("PageLimit"),
    ]);

    for (base, console) in [
        ("/console/api/conversations", true),
        ("/conversations", false),
    ] {
        let audience = if console { "console" } else { "customer" };
        let security = if console {
            &console_security
        } else {
            &customer_security
        };
        let auth: Vec<ApiError> = if console {
            vec![
                MISSING_TOKEN,
                jsonapi::INVALID_ACCESS_TOKEN,
                BACK_OFFICE_ONLY,
                CSRF_REFUSED,
            ]
        } else {
            vec![
                CUSTOMER_SIGN_IN,
                jsonapi::INVALID_ACCESS_TOKEN,
                CUSTOMERS_ONLY,
                CSRF_REFUSED,
            ]
        };
        let errors = |extra: &[&ApiError], with_body: bool| -> Vec<ApiError> {
            let mut all = auth.clone();
            all.extend(extra.iter().map(|e| (*e).clone()));
            if with_body {
                all.extend(BODY);
            }
            all.extend(UPSTREAM);
            all
        };
        let operation = |op: String,
                         summary: &str,
                         parameters: Value,
                         body: Option<Value>,
                         success: Vec<(u16, Value)>,
                         errors: Vec<ApiError>| {
            let mut operation = json!({
                "operationId": op,
                "summary": summary,
                "security": security,
                "parameters": parameters,
                "responses": responses(&success, &errors),
            });
            if let Some(body) = body {
                operation["requestBody"] = body;
            }
            operation
        };
        let mut collection = json!({ "get": operation(
            format!("{audience} list conversations"),
            if console {
                "The caller's conversations (assigned to them now) or, for supervisors and \
                 administrators, all; filtered and paged; queued ones carry their queue position"
            } else {
                "The customer's own conversations, newest activity first, paged"
            },
            list_params.clone(),
            None,
            vec![(200, ok("One page of conversations", "Conversations"))],
            errors(&[&jsonapi::INVALID_QUERY, &bad, &denied], false),
        ) });
        if !console {
            collection["post"] = operation(
                "customer start conversation".into(),
                "The customer starts a conversation with its first message; it is queued and \
                 routed to an available agent",
                json!([]),
                Some(request_body(
                    "conversations",
                    json!({
                        "subject": { "type": "string", "minLength": 1, "maxLength": SUBJECT_MAX, "pattern": REQUIRED_TEXT },
                        "body": { "type": "string", "minLength": 1, "maxLength": BODY_MAX, "pattern": REQUIRED_TEXT },
                    }),
                    &["subject", "body"],
                )),
                vec![conversation(201, "The new conversation")],
                errors(&[&bad, &denied], true),
            );
        }
        paths.insert(base.into(), collection);
        paths.insert(
            format!("{base}/{{id}}"),
            json!({ "get": operation(
                format!("{audience} get conversation"),
                "One conversation, as the caller may see it",
                json!([id]),
                None,
                vec![conversation(200, "The conversation")],
                errors(&[&bad, &denied, &missing], false),
            ) }),
        );
        paths.insert(
            format!("{base}/{{id}}/messages"),
            json!({
                "get": operation(
                    format!("{audience} list messages"),
                    if console {
                        "Messages oldest first, internal notes included, paged"
                    } else {
                        "Messages oldest first, paged (never internal notes)"
                    },
                    json!([id, parameter("PageOffset"), parameter("PageLimit")]),
                    None,
                    vec![(200, ok("One page of messages", "ConversationMessages"))],
                    errors(&[&jsonapi::INVALID_QUERY, &bad, &denied, &missing], false),
                ),
                "post": operation(
                    format!("{audience} post message"),
                    if console {
                        "A reply (the assignee) or an internal note (anyone who may read it)"
                    } else {
                        "The customer writes; on a resolved conversation this reopens it"
                    },
                    json!([id]),
                    Some(message_body.clone()),
                    vec![(201, ok("The message, with the conversation as it is now", "ConversationMessage"))],
                    errors(&[&bad, &denied, &missing, &conflict], true),
                ),
            }),
        );
        paths.insert(
            format!("{base}/{{id}}/status"),
            json!({ "patch": operation(
                format!("{audience} set conversation status"),
                if console {
                    "Pending or back to assigned (the assignee), resolved (the assignee, \
                     supervisors, administrators), closed (a resolved conversation)"
                } else {
                    "The customer resolves or closes their conversation"
                },
                json!([id]),
                Some(status_body.clone()),
                vec![conversation(200, "The conversation")],
                errors(&[&bad, &denied, &missing, &conflict], true),
            ) }),
        );
        paths.insert(
            format!("{base}/{{id}}/events"),
            json!({ "get": operation(
                format!("{audience} conversation events"),
                "Server-sent events of one conversation; the stream ends when routing's does \
                 (the browser reconnects)",
                json!([id]),
                None,
                vec![events_ok.clone()],
                errors(&[&bad, &denied, &missing], false),
            ) }),
        );
        if !console {
            continue;
        }
        paths.insert(
            format!("{base}/events"),
            json!({ "get": operation(
                "console conversations events".into(),
                "Server-sent events of the caller's conversations (`filter[scope]=mine`, the \
                 default: assigned to them, or taken from them) or of all (`all`: supervisors and \
                 administrators)",
                json!([{ "name": "filter[scope]", "in": "query", "required": false,
                         "schema": { "enum": ["mine", "all"] } }]),
                None,
                vec![events_ok.clone()],
                errors(&[&jsonapi::INVALID_QUERY, &bad, &denied], false),
            ) }),
        );
        paths.insert(
            format!("{base}/queue"),
            json!({ "get": operation(
                "console queue stats".into(),
                "The queue at a glance: depth, longest wait, agents online and available, open \
                 conversations",
                json!([]),
                None,
                vec![(200, ok("The queue", "ConversationQueueStats"))],
                errors(&[&denied], false),
            ) }),
        );
        paths.insert(
            format!("{base}/{{id}}/assignment"),
            json!({ "post": operation(
                "console assign conversation".into(),
                "Supervisors and administrators assign a queued conversation, or transfer an open \
                 one, to an active agent or supervisor (never an administrator); capacity does not \
                 bind (an override is recorded)",
                json!([id]),
                Some(request_body(
                    "conversation-assignments",
                    json!({ "agentId": { "type": "string", "format": "uuid" } }),
                    &["agentId"],
                )),
                vec![conversation(200, "The conversation")],
                errors(&[&bad, &denied, &missing, &conflict], true),
            ) }),
        );
        paths.insert(
            format!("{base}/{{id}}/history"),
            json!({ "get": operation(
                "console conversation history".into(),
                "Every transition with its actor, oldest first, paged",
                json!([id, parameter("PageOffset"), parameter("PageLimit")]),
                None,
                vec![(200, ok("One page of events", "ConversationEvents"))],
                errors(&[&jsonapi::INVALID_QUERY, &bad, &denied, &missing], false),
            ) }),
        );
        paths.insert(
            format!("{base}/{{id}}/assist-sessions"),
            json!({ "post": operation(
                "console record assist session".into(),
                "The assignee, a supervisor or an administrator records that an assist session was \
                 started for the conversation's customer",
                json!([id]),
                Some(request_body(
                    "conversation-assist-sessions",
                    json!({ "sessionId": { "type": "string", "format": "uuid" } }),
                    &["sessionId"],
                )),
                vec![conversation(200, "The conversation")],
                errors(&[&bad, &denied, &missing, &conflict], true),
            ) }),
        );
    }
}

fn components() -> Value {
    let mut components = base_components();
    if let Some(schemas) = components["schemas"].as_object_mut() {
        schemas.extend(conversation_schemas());
    }
    components
}

/// The schemas of the conversations APIs.
fn conversation_schemas() -> Map<String, Value> {
    let text = json!({ "type": "string" });
    let schemas = json!({
            "Conversation": { "type": "object", "properties": { "data": schema("ConversationResource") } },
            "Conversations": {
                "type": "object",
                "properties": {
                    "data": { "type": "array", "items": schema("ConversationResource") },
                    "meta": { "type": "object", "properties": {
                        "total": { "type": "integer" }, "totalExact": { "type": "boolean" },
                    } },
                    "links": schema("PageLinks"),
                },
            },
            "ConversationResource": {
                "type": "object",
                "properties": {
                    "type": { "const": "conversations" },
                    "id": text,
                    "attributes": { "type": "object", "properties": {
                        "customerId": text,
                        "channel": { "enum": ["web", "api"] },
                        "subject": text,
                        "priority": { "enum": ["low", "normal", "high", "urgent"] },
                        "requiredSkills": { "type": "array", "items": text },
                        "status": { "enum": ["queued", "assigned", "pending", "resolved", "closed"] },
                        "assigneeId": { "type": "string", "description": "empty while queued" },
                        "createdAtUs": { "type": "integer" },
                        "assignedAtUs": { "type": "integer", "description": "0: never" },
                        "firstReplyAtUs": { "type": "integer", "description": "0: no reply yet" },
                        "resolvedAtUs": { "type": "integer" },
                        "closedAtUs": { "type": "integer" },
                        "updatedAtUs": { "type": "integer" },
                        "lastMessageAtUs": { "type": "integer" },
                        "requeued": { "type": "boolean" },
                        "queuedAtUs": { "type": ["integer", "null"], "description": "queued only" },
                        "queuePosition": { "type": ["integer", "null"],
                                           "description": "queued only: how many go before it" },
                        "version": { "type": "integer" },
                    } },
                    "links": { "type": "object", "properties": { "self": text } },
                },
            },
            "ConversationMessageResource": {
                "type": "object",
                "properties": {
                    "type": { "const": "conversation-messages" },
                    "id": text,
                    "attributes": { "type": "object", "properties": {
                        "conversationId": text,
                        "authorKind": { "enum": ["customer", "agent", "system"] },
                        "authorId": text,
                        "body": text,
                        "internal": { "type": "boolean" },
                        "atUs": { "type": "integer" },
                    } },
                    "relationships": { "type": "object", "description": "`conversation`: the \
                                       conversation as it is after the message (answers to POST)" },
                },
            },
            "ConversationMessage": { "type": "object", "properties": { "data": schema("ConversationMessageResource") } },
            "ConversationMessages": {
                "type": "object",
                "properties": {
                    "data": { "type": "array", "items": schema("ConversationMessageResource") },
                    "meta": { "type": "object" },
                    "links": schema("PageLinks"),
                },
            },
            "ConversationEvents": {
                "type": "object",
                "properties": {
                    "data": { "type": "array", "items": { "type": "object", "properties": {
                        "type": { "const": "conversation-events" },
                        "id": text,
                        "attributes": { "type": "object", "properties": {
                            "kind": { "enum": ["watching", "created", "assigned", "transferred",
                                               "requeued", "message", "pending", "resumed",
                                               "resolved", "reopened", "closed", "assist_started"] },
                            "conversationId": text,
                            "actorId": { "type": "string", "description": "a principal id, or `routing`" },
                            "atUs": { "type": "integer" },
                            "toAgentId": text,
                            "fromAgentId": text,
                            "capacityOverride": { "type": "boolean" },
                            "reason": text,
                            "sessionId": text,
                            "message": {},
                            "conversation": {},
                        } },
                    } } },
                    "meta": { "type": "object" },
                    "links": schema("PageLinks"),
                },
            },
            "ConversationQueueStats": { "type": "object", "properties": { "data": { "type": "object", "properties": {
                "type": { "const": "conversation-queue-stats" }, "id": text,
                "attributes": { "type": "object", "properties": {
                    "queued": { "type": "integer" },
                    "longestWaitUs": { "type": "integer" },
                    "agentsOnline": { "type": "integer" },
                    "agentsAvailable": { "type": "integer" },
                    "open": { "type": "integer" },
                } },
            } } } }
    });
    match schemas {
        Value::Object(schemas) => schemas,
        _ => Map::new(),
    }
}

fn base_components() -> Value {
    let token_attributes = json!({
        "type": "object",
        "properties": {
            "tokenType": { "const": "Bearer" },
            "expiresIn": { "type": "integer", "minimum": 0 },
            "accessToken": { "type": "string" },
            "refreshToken": { "type": ["string", "null"], "description": "null for impersonation tokens" },
        },
        "required": ["tokenType", "expiresIn", "accessToken", "refreshToken"],
    });
    let search = |kind: &str, key: &str, item: Value| {
        json!({
            "type": "object",
            "properties": {
                "data": { "type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "type": { "const": kind },
                        "id": { "type": "null" },
                        "attributes": { "type": "object", "properties": {
                            key: { "type": "array", "items": item },
                        } },
                        "links": { "type": "object" },
                    },
                } },
                "links": schema("PageLinks"),
            },
        })
    };
    let text = json!({ "type": "string" });
    json!({
        "schemas": {
            "Errors": {
                "type": "object",
                "required": ["errors"],
                "properties": { "errors": { "type": "array", "items": {
                    "type": "object",
                    "required": ["status", "code", "detail"],
                    "properties": { "status": text, "code": text, "detail": text },
                } } },
            },
            "TokenDocument": {
                "type": "object",
                "properties": { "data": {
                    "type": "object",
                    "properties": {
                        "type": text,
                        "id": { "type": ["string", "null"], "description": "the session id of an impersonation token" },
                        "attributes": token_attributes,
                        "links": { "type": "object", "properties": { "self": text } },
                    },
                } },
            },
            "PageLinks": {
                "type": "object",
                "properties": {
                    "self": text, "first": text, "last": text, "prev": text, "next": text,
                },
                "required": ["self", "first"],
            },
            "CustomerSearch": search("agent-customer-search", "customers", json!({
                "type": "object",
                "properties": {
                    "customerReference": text, "email": text, "firstName": text, "lastName": text,
                },
            })),
            "MerchantUserSearch": search("agent-merchant-user-search", "merchantUsers", json!({
                "type": "object",
                "properties": {
                    "merchantUserId": text, "merchantName": text, "firstName": text,
                    "lastName": text, "email": text,
                    "status": { "enum": ["active", "invited", "blocked", "inactive", "deleted"] },
                },
            })),
            "Sessions": {
                "type": "object",
                "properties": {
                    "data": { "type": "array", "items": {
                        "type": "object",
                        "properties": {
                            "type": { "const": "agent-assist-sessions" },
                            "id": text,
                            "attributes": { "type": "object", "properties": {
                                "targetId": text,
                                "targetRealm": { "enum": ["customer", "merchant_user", "unspecified"] },
                                "reason": text,
                                "active": { "type": "boolean" },
                                "startedAtUs": { "type": "integer" },
                                "expiresAtUs": { "type": "integer" },
                                "endedAtUs": { "type": ["integer", "null"] },
                                "endReason": { "type": ["string", "null"] },
                                "actionCount": { "type": "integer" },
                            } },
                        },
                    } },
                    "links": schema("PageLinks"),
                },
            },
            "ConsoleAgent": { "type": "object", "properties": { "data": schema("ConsoleAgentResource") } },
            "ConsoleAgents": {
                "type": "object",
                "properties": {
                    "data": { "type": "array", "items": schema("ConsoleAgentResource") },
                    "meta": { "type": "object", "properties": {
                        "seats": schema("SeatCounts"),
                        "presence": { "type": "object", "properties": {
                            "online": { "type": "integer" }, "away": { "type": "integer" },
                            "offline": { "type": "integer" },
                        } },
                        "total": { "type": "integer" },
                        "totalExact": { "type": "boolean" },
                    } },
                    "links": schema("PageLinks"),
                },
            },
            "ConsoleAgentResource": {
                "type": "object",
                "properties": {
                    "type": { "const": "console-agents" },
                    "id": text,
                    "attributes": { "type": "object", "properties": {
                        "email": text, "fullName": text, "nickname": text,
                        "role": { "enum": ["agent", "supervisor", "administrator", "none"] },
                        "status": { "enum": ["invited", "active", "removed", "none"] },
                        "presence": { "enum": ["online", "away", "offline"] },
                        "lastSeenAtUs": { "type": "integer", "description": "0: never" },
                        "invitationExpiresAtUs": { "type": "integer" },
                        "capacity": { "type": "integer" },
                        "skills": { "type": "array", "items": text },
                        "capabilities": { "type": "array", "items": text },
                        "version": { "type": "integer" },
                        "createdAtUs": { "type": "integer" },
                        "updatedAtUs": { "type": "integer" },
                    } },
                },
            },
            "ConsoleMe": {
                "type": "object",
                "description": "A console-me resource: the ConsoleAgentResource attributes plus \
                                consoleRole, platformAdministrator and grantableRoles",
                "properties": { "data": { "type": "object" } },
            },
            "ConsoleAgentChanges": {
                "type": "object",
                "properties": {
                    "data": { "type": "array", "items": { "type": "object", "properties": {
                        "type": { "const": "console-agent-changes" },
                        "id": text,
                        "attributes": { "type": "object", "properties": {
                            "agentId": text, "actorId": text, "action": text,
                            "before": {}, "after": {}, "atUs": { "type": "integer" },
                        } },
                    } } },
                    "links": schema("PageLinks"),
                },
            },
            "SeatCounts": { "type": "object", "properties": {
                "licensed": { "type": "integer" }, "occupied": { "type": "integer" },
                "free": { "type": "integer" },
            } },
            "ConsoleSeats": { "type": "object", "properties": { "data": { "type": "object", "properties": {
                "type": { "const": "console-seats" }, "id": text, "attributes": schema("SeatCounts"),
            } } } },
            "ConsolePresence": { "type": "object", "properties": { "data": { "type": "object", "properties": {
                "type": { "const": "console-presence" }, "id": text,
                "attributes": { "type": "object", "properties": {
                    "presence": { "enum": ["online", "away", "offline"] },
                    "timeoutSeconds": { "type": "integer" },
                } },
            } } } },
            "ConsolePasswordReset": { "type": "object", "properties": { "data": { "type": "object", "properties": {
                "type": { "const": "console-password-resets" }, "id": text,
                "attributes": { "type": "object", "properties": { "expiresAtUs": { "type": "integer" } } },
            } } } },
            "Jwks": {
                "type": "object",
                "properties": { "keys": { "type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "kid": text, "kty": text, "crv": text, "x": text, "alg": text, "use": text,
                    },
                } } },
            },
        },
        "parameters": {
            "AgentAuthorization": {
                "name": "X-Agent-Authorization", "in": "header", "required": false,
                "description": "`Bearer <agent token>`; taken over `Authorization` when present",
                "schema": text,
            },
            "Q": {
                "name": "q", "in": "query", "required": false,
                "description": "Prefix of a name or email (or a customer reference); none lists all",
                "schema": { "type": "string", "maxLength": 100, "pattern": NO_CONTROL_CHARACTERS },
            },
            "PageOffset": {
                "name": "page[offset]", "in": "query", "required": false,
                "schema": {
                    "type": "integer", "minimum": 0, "default": 0,
                    "maximum": assist_runtime::validate::MAX_OFFSET,
                },
            },
            "PageLimit": {
                "name": "page[limit]", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 1, "maximum": 100, "default": 10 },
            },
        },
        "securitySchemes": {
            "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" },
            "agentBearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                             "description": "An agent's access token" },
            "agentHeader": { "type": "apiKey", "in": "header", "name": "X-Agent-Authorization" },
            "consoleCookie": { "type": "apiKey", "in": "cookie", "name": "assist_console",
                               "description": "The console sign-in of /console/login" },
            "customerCookie": { "type": "apiKey", "in": "cookie", "name": "assist_customer",
                                "description": "The storefront customer sign-in of /login" },
            "csrfHeader": { "type": "apiKey", "in": "header", "name": "X-CSRF-Token",
                            "description": "With the cookie, for POST, PUT, PATCH and DELETE: the \
                                            page's CSRF token, and an Origin of this site" },
        },
    })
}
