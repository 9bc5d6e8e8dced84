//! JSON:API documents as the Glue agent-assist endpoints write them: resources, error objects with
//! `status`, `code` and `detail`, request bodies of one typed resource, and paging links.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use serde_json::{Map, Value, json};
use tonic::Code;

pub const MEDIA_TYPE: &str = "application/vnd.api+json";

/// One JSON:API error object, answered as a document of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: Cow<'static, str>,
}

const fn error(status: StatusCode, code: &'static str, detail: &'static str) -> ApiError {
    ApiError {
        status,
        code,
        detail: Cow::Borrowed(detail),
    }
}

// The Glue error codes of the agent-assist and authentication resources.
pub const INVALID_ACCESS_TOKEN: ApiError =
    error(StatusCode::UNAUTHORIZED, "001", "Invalid access token.");
pub const MISSING_ACCESS_TOKEN: ApiError =
    error(StatusCode::FORBIDDEN, "002", "Missing access token.");
pub const USER_LOGIN_FAILED: ApiError = error(
    StatusCode::UNAUTHORIZED,
    "003",
    "Failed to authenticate user.",
);
pub const REFRESH_FAILED: ApiError =
    error(StatusCode::UNAUTHORIZED, "004", "Failed to refresh token.");
pub const REFRESH_TOKEN_MISSING: ApiError = error(
    StatusCode::UNPROCESSABLE_ENTITY,
    "901",
    "refreshToken => This value should not be blank.",
);
pub const AGENT_LOGIN_FAILED: ApiError = error(
    StatusCode::UNAUTHORIZED,
    "4101",
    "Failed to authenticate an agent.",
);
pub const INVALID_AGENT_TOKEN: ApiError = error(
    StatusCode::UNAUTHORIZED,
    "4102",
    "Invalid agent access token.",
);
pub const AGENT_ONLY: ApiError = error(
    StatusCode::UNAUTHORIZED,
    "4103",
    "Action is available to agent user only.",
);
pub const IMPERSONATION_FAILED: ApiError = error(
    StatusCode::UNAUTHORIZED,
    "4104",
    "Failed to impersonate a customer.",
);
pub const MERCHANT_USER_IMPERSONATION_FAILED: ApiError = error(
    StatusCode::UNAUTHORIZED,
    "4104",
    "Failed to impersonate a merchant user.",
);

// Errors without a Glue code carry their HTTP status as the code.
pub const INVALID_TYPE: ApiError = error(StatusCode::BAD_REQUEST, "400", "Invalid type.");
pub const INVALID_BODY: ApiError = error(
    StatusCode::BAD_REQUEST,
    "400",
    "Request body is not a JSON:API document.",
);
pub const INVALID_QUERY: ApiError =
    error(StatusCode::BAD_REQUEST, "400", "Invalid query parameters.");
pub const BODY_TOO_LARGE: ApiError = error(
    StatusCode::PAYLOAD_TOO_LARGE,
    "413",
    "Request body is too large.",
);
pub const NOT_FOUND: ApiError = error(StatusCode::NOT_FOUND, "404", "Resource not found.");
pub const TOO_MANY_REQUESTS: ApiError =
    error(StatusCode::TOO_MANY_REQUESTS, "429", "Too many requests.");
pub const UNAVAILABLE: ApiError = error(
    StatusCode::SERVICE_UNAVAILABLE,
    "503",
    "Service unavailable.",
);
pub const TIMEOUT: ApiError = error(
    StatusCode::GATEWAY_TIMEOUT,
    "504",
    "The request took too long.",
);
pub const INTERNAL: ApiError = error(StatusCode::INTERNAL_SERVER_ERROR, "500", "Internal error.");

impl ApiError {
    /// A 400 naming what is wrong with the input.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "400",
            detail: Cow::Owned(detail.into()),
        }
    }

    /// The answer to a gRPC status no route-specific rule covered (DESIGN.md section 7). Messages of
    /// caller errors are short and name the field, so they are passed on; the rest stays in the logs.
    pub fn from_status(status: &tonic::Status) -> Self {
        let passed_on = |status_code: StatusCode| Self {
            status: status_code,
            code: static_code(status_code),
            detail: Cow::Owned(status.message().to_owned()),
        };
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange => passed_on(StatusCode::BAD_REQUEST),
            Code::Unauthenticated => INVALID_ACCESS_TOKEN,
            Code::PermissionDenied => passed_on(StatusCode::FORBIDDEN),
            Code::NotFound => passed_on(StatusCode::NOT_FOUND),
            Code::AlreadyExists | Code::Aborted => passed_on(StatusCode::CONFLICT),
            Code::FailedPrecondition => passed_on(StatusCode::CONFLICT),
            Code::ResourceExhausted => TOO_MANY_REQUESTS,
            Code::Unavailable => {
                tracing::warn!(error = %status.message(), "upstream unavailable");
                UNAVAILABLE
            }
            Code::DeadlineExceeded | Code::Cancelled => TIMEOUT,
            _ => {
                tracing::error!(code = ?status.code(), error = %status.message(), "upstream failed");
                INTERNAL
            }
        }
    }
}

fn static_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "400",
        StatusCode::FORBIDDEN => "403",
        StatusCode::NOT_FOUND => "404",
        StatusCode::CONFLICT => "409",
        _ => "500",
    }
}

impl From<assist_runtime::Error> for ApiError {
    fn from(error: assist_runtime::Error) -> Self {
        Self::from_status(&tonic::Status::from(error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "errors": [{
                "status": self.status.as_str(),
                "code": self.code,
                "detail": self.detail,
            }]
        });
        document(self.status, &body)
    }
}

/// A JSON:API document with its media type.
pub fn document(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, MEDIA_TYPE)],
        body.to_string(),
    )
        .into_response()
}

/// The attributes of a request document whose one resource must be of type `kind`. A body that is not
/// a JSON object with `data` is refused as such; a `data.type` other than `kind` is "Invalid type.".
pub fn attributes(body: &[u8], kind: &str) -> Result<Map<String, Value>, ApiError> {
    let document: Value = serde_json::from_slice(body).map_err(|_| INVALID_BODY)?;
    let data = document
        .get("data")
        .and_then(Value::as_object)
        .ok_or(INVALID_BODY)?;
    if data.get("type").and_then(Value::as_str) != Some(kind) {
        return Err(INVALID_TYPE);
    }
    match data.get("attributes") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(attributes)) => Ok(attributes.clone()),
        Some(_) => Err(INVALID_BODY),
    }
}

/// A JSON number that is a whole number (`4` and `4.0` alike, as JSON Schema's `integer`); `None`
/// for anything else, negatives included.
pub fn whole_number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n <= u32::MAX as f64)
            .map(|n| n as u64)
    })
}

/// A string attribute; `None` when missing or not a string.
pub fn text<'a>(attributes: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    attributes.get(name).and_then(Value::as_str)
}

/// The query parameters of a paged collection, as Glue names them.
#[derive(Debug, Default, serde::Deserialize)]
pub struct PageParams {
    #[serde(rename = "page[offset]")]
    pub offset: Option<u64>,
    #[serde(rename = "page[limit]")]
    pub limit: Option<u32>,
}

/// `self`, `first`, `last`, `prev` and `next` of one page, as applicable: `last` only when the total is
/// exact, `prev` past the first page, `next` while items remain. `base` ends in `?` or `&`-ready query.
pub fn page_links(base: &str, offset: u64, limit: u32, total: u64, total_exact: bool) -> Value {
    let limit64 = u64::from(limit);
    let link = |offset: u64| format!("{base}page[offset]={offset}&page[limit]={limit}");
    let mut links = Map::new();
    links.insert("self".into(), link(offset).into());
    links.insert("first".into(), link(0).into());
    if total_exact {
        let last = total.saturating_sub(1) / limit64 * limit64;
        links.insert("last".into(), link(last).into());
    }
    if offset > 0 {
        links.insert("prev".into(), link(offset.saturating_sub(limit64)).into());
    }
    if offset + limit64 < total {
        links.insert("next".into(), link(offset + limit64).into());
    }
    Value::Object(links)
}

/// Percent-encodes a query value: everything but RFC 3986 unreserved characters.
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_follow_the_page() {
        let links = page_links("/s?", 10, 10, 25, true);
        assert_eq!(links["self"], "/s?page[offset]=10&page[limit]=10");
        assert_eq!(links["first"], "/s?page[offset]=0&page[limit]=10");
        assert_eq!(links["last"], "/s?page[offset]=20&page[limit]=10");
        assert_eq!(links["prev"], "/s?page[offset]=0&page[limit]=10");
        assert_eq!(links["next"], "/s?page[offset]=20&page[limit]=10");
        let first = page_links("/s?", 0, 10, 10, true);
        assert!(first.get("prev").is_none() && first.get("next").is_none());
        assert_eq!(first["last"], "/s?page[offset]=0&page[limit]=10");
        assert!(page_links("/s?", 0, 10, 0, false).get("last").is_none());
    }

    #[test]
    fn bodies_need_the_right_type() {
        let body = br#"{"data":{"type":"access-tokens","attributes":{"username":"a"}}}"#;
        assert_eq!(
            text(&attributes(body, "access-tokens").unwrap(), "username"),
            Some("a")
        );
        assert_eq!(
            attributes(body, "agent-access-tokens").unwrap_err(),
            INVALID_TYPE
        );
        assert_eq!(
            attributes(b"nope", "access-tokens").unwrap_err(),
            INVALID_BODY
        );
        assert_eq!(
            attributes(b"{}", "access-tokens").unwrap_err(),
            INVALID_BODY
        );
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query_value("Ann Lee&x=1"), "Ann%20Lee%26x%3D1");
        assert_eq!(encode_query_value("DE--1"), "DE--1");
    }

    /// Property tests (proptest, see `web::cookies`): decoding any body never panics, refuses what is
    /// not a document of the one type asked for, and gives back the attributes of one that is.
    /// Long search: `PROPTEST_CASES=100000 cargo test -p assist-gateway --lib jsonapi`.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Bodies made of JSON:API's pieces, and arbitrary bytes.
        fn body() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop::sample::select(vec![
                "{",
                "}",
                "[",
                "]",
                ",",
                ":",
                "\"data\"",
                "\"type\"",
                "\"attributes\"",
                "\"carts\"",
                "null",
                "1",
                "\"x\"",
                "\"\\u0000\"",
                " ",
                "\"",
            ]);
            prop_oneof![
                prop::collection::vec(piece, 0..40).prop_map(|p| p.concat().into_bytes()),
                any::<Vec<u8>>(),
            ]
        }

        proptest! {
            #[test]
            fn any_body_is_decoded_or_refused_without_panic(body in body()) {
                if let Ok(found) = attributes(&body, "carts") {
                    let document: Value = serde_json::from_slice(&body).unwrap();
                    prop_assert_eq!(&document["data"]["type"], "carts");
                    let expected = document["data"]["attributes"].as_object().cloned().unwrap_or_default();
                    prop_assert_eq!(found, expected);
                }
            }

            #[test]
            fn a_document_of_the_type_gives_its_attributes(
                attributes_in in prop::collection::btree_map("[a-z]{1,8}", "[ -~]{0,20}", 0..6),
                kind in "[a-z-]{1,12}",
            ) {
                let attrs: Map<String, Value> = attributes_in
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                let body = serde_json::json!({ "data": { "type": kind, "attributes": attrs } }).to_string();
                prop_assert_eq!(attributes(body.as_bytes(), &kind).ok(), Some(attrs));
                if kind != "carts" {
                    prop_assert!(attributes(body.as_bytes(), "carts").is_err());
                }
            }
        }
    }
}
