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
                            /merchant-portal/, of the merchant portal (JSON:API documents).",
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
    json!({
        "required": true,
        "content": { MEDIA_TYPE: { "schema": {
            "type": "object",
            "required": ["data"],
            "properties": { "data": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": { "const": kind },
                    "attributes": { "type": "object", "properties": attributes, "required": required },
                },
            } },
        } } },
    })
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
            json!({ "customerReference": { "type": "string", "maxLength": 64 } }),
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
    target_attributes["reason"] = json!({ "type": "string", "maxLength": 500 });

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
                json!({ "refreshToken": { "type": "string" } }),
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

fn components() -> Value {
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
                "schema": { "type": "string", "maxLength": 100 },
            },
            "PageOffset": {
                "name": "page[offset]", "in": "query", "required": false,
                "schema": { "type": "integer", "minimum": 0, "default": 0 },
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
        },
    })
}
