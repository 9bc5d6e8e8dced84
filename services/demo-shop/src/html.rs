//! Server-rendered HTML: the page layout of both portals, escaping, prices, and the refusal pages every
//! handler answers with. Everything that did not come from this file is escaped before it is written.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// Which portal a page belongs to: its navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Portal {
    Storefront,
    MerchantPortal,
}

const STYLE: &str = "body{font-family:sans-serif;margin:0}header,main{padding:0.5rem 1rem}\
header{background:#eee}nav a{margin-right:1rem}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:0.25rem 0.5rem}.error{color:#b00}\
.product{border:1px solid #ccc;padding:0.5rem;margin:0.5rem 0}";

pub use assist_runtime::web::escape;

/// An amount of cents as shown: `1234` is `12.34`.
pub fn price(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A whole page: `whoami` (plain text, escaped here) in the header, `main` (HTML) below it.
pub fn page(portal: Portal, title: &str, whoami: &str, main: &str) -> String {
    let nav = match portal {
        Portal::Storefront => {
            // `/chat` is the gateway's customer chat, on the same origin as the shop it fronts.
            r#"<a href="/">Shop</a><a href="/cart">Cart</a><a href="/account">Account</a><a href="/chat">Chat with us</a>"#
        }
        Portal::MerchantPortal => {
            r#"<a href="/merchant-portal/">Portal</a><a href="/merchant-portal/offers">Offers</a><a href="/merchant-portal/profile">Profile</a>"#
        }
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>{STYLE}</style></head>\n<body>\n<header><nav>{nav}</nav>\
         <span id=\"whoami\">{whoami}</span></header>\n<main>\n{main}\n</main>\n</body></html>\n",
        title = escape(title),
        whoami = escape(whoami),
    )
}

/// An HTML answer that no cache keeps (pages show one person's cart and profile).
pub fn respond(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A 303 back to `location` (after a form was handled).
pub fn see_other(location: &'static str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(location));
    response
}

/// Why a request was not carried out: rendered as a page with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    /// 400: the input was refused; nothing changed.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401: no acceptable token for this page.
    pub fn sign_in(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403: a sensitive page, refused to an assisting agent.
    pub fn while_assisting() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "This page is not available while an agent assists.",
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The shop cannot check your sign-in right now; try again in a moment.",
        )
    }

    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    fn title(&self) -> &'static str {
        match self.status {
            StatusCode::BAD_REQUEST => "Invalid input",
            StatusCode::UNAUTHORIZED => "Sign in required",
            StatusCode::FORBIDDEN => "Not available while assisting",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::SERVICE_UNAVAILABLE => "Temporarily unavailable",
            _ => "Something went wrong",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let title = self.title();
        let main = format!(
            "<h1>{}</h1>\n<p class=\"error\">{}</p>",
            escape(title),
            escape(&self.message)
        );
        respond(self.status, page(Portal::Storefront, title, "", &main))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_have_two_decimals() {
        assert_eq!(price(1234), "12.34");
        assert_eq!(price(5), "0.05");
        assert_eq!(price(10_000_000), "100000.00");
    }

    #[test]
    fn every_page_has_a_body_tag_and_escapes_the_name() {
        let html = page(Portal::Storefront, "Cart", "<b>Eve</b>", "<p>x</p>");
        assert!(html.contains("<body>"));
        assert!(html.contains(r#"<span id="whoami">&lt;b&gt;Eve&lt;/b&gt;</span>"#));
    }
}
