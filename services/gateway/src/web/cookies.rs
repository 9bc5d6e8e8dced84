//! The gateway's cookies (docs/web.md): the customer's and each portal's agent sign-in, each portal's
//! assist session, and the CSRF token. All are `HttpOnly` and `SameSite=Lax`, `Secure` when served
//! over TLS; the agent's own sign-in and the assist session are separate cookies, so ending
//! assistance leaves the agent signed in.

use assist_runtime::web::cookie;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, header};

use crate::routes::Portal;

pub const CUSTOMER: &str = "assist_customer";
pub const CSRF: &str = "assist_csrf";
/// Every cookie of the gateway starts so; none of them is passed on to an upstream.
const GATEWAY_PREFIX: &str = "assist_";
/// Longest cookie value read (two tokens and a name fit well below it).
const VALUE_MAX: usize = 3500;

/// Characters of tokens as identity and the impersonation service issue them (JWS compact form,
/// base64url secrets): nothing that needs quoting in a cookie.
fn token_like(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
}

/// A sign-in kept in a cookie: the access token and the refresh token that renews it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

impl Tokens {
    pub fn read(headers: &HeaderMap, name: &str) -> Option<Self> {
        let value = cookie(headers, name).filter(|v| v.len() <= VALUE_MAX)?;
        let (access, refresh) = value.split_once('|')?;
        (token_like(access) && token_like(refresh)).then(|| Self {
            access: access.to_owned(),
            refresh: refresh.to_owned(),
        })
    }

    pub fn value(&self) -> String {
        format!("{}|{}", self.access, self.refresh)
    }
}

/// An assist session of this browser: the impersonation token, the session id and the assisted
/// person's name (for the bar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assist {
    pub token: String,
    pub session_id: String,
    pub name: String,
}

impl Assist {
    pub fn read(headers: &HeaderMap, name: &str) -> Option<Self> {
        let value = cookie(headers, name).filter(|v| v.len() <= VALUE_MAX)?;
        let mut parts = value.split('|');
        let (token, session_id, encoded) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !token_like(token) || !token_like(session_id) {
            return None;
        }
        let name = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()?;
        Some(Self {
            token: token.to_owned(),
            session_id: session_id.to_owned(),
            name,
        })
    }

    pub fn value(&self) -> String {
        format!(
            "{}|{}|{}",
            self.token,
            self.session_id,
            URL_SAFE_NO_PAD.encode(self.name.as_bytes())
        )
    }
}

/// The portal's assist session in this browser, if any.
pub fn assist_of(headers: &HeaderMap, portal: &Portal) -> Option<Assist> {
    Assist::read(headers, portal.web.assist_cookie)
}

/// `Set-Cookie` for `name=value`, on `portal`'s paths, for the browser session (no `Max-Age`: the
/// tokens inside expire on their own and are checked on every use).
pub fn set(name: &str, value: &str, portal: &Portal, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let line = format!(
        "{name}={value}; Path={}; HttpOnly; SameSite=Lax{secure}",
        portal.web.cookie_path
    );
    HeaderValue::from_str(&line).expect("cookie values are token characters")
}

/// `Set-Cookie` that removes `name` from `portal`'s paths.
pub fn clear(name: &str, portal: &Portal) -> HeaderValue {
    let line = format!(
        "{name}=; Path={}; HttpOnly; SameSite=Lax; Max-Age=0",
        portal.web.cookie_path
    );
    HeaderValue::from_str(&line).expect("cookie names are token characters")
}

/// The request's `Cookie` header without the gateway's own cookies (what an upstream may see);
/// `None` when nothing is left.
pub fn without_gateway_cookies(headers: &HeaderMap) -> Option<HeaderValue> {
    let kept: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !pair.starts_with(GATEWAY_PREFIX))
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join("; ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{MERCHANT_PORTAL, STOREFRONT};

    fn with_cookie(line: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, line.parse().unwrap());
        headers
    }

    #[test]
    fn sessions_round_trip_and_garbage_is_no_session() {
        let assist = Assist {
            token: "a.b.c".into(),
            session_id: "0199-aa".into(),
            name: "Zoë <O'Neil>".into(),
        };
        let headers = with_cookie(&format!("assist_assist={}", assist.value()));
        assert_eq!(Assist::read(&headers, "assist_assist"), Some(assist));
        for garbage in [
            "assist_assist=a.b.c|x",
            "assist_assist=a b|x|eA",
            "assist_assist=a|b|!!",
            "assist_assist=a|b|c|d",
        ] {
            assert_eq!(Assist::read(&with_cookie(garbage), "assist_assist"), None);
        }
        let tokens = Tokens {
            access: "h.p.s".into(),
            refresh: "r-1_x".into(),
        };
        let headers = with_cookie(&format!("x=1; assist_agent={}", tokens.value()));
        assert_eq!(Tokens::read(&headers, "assist_agent"), Some(tokens));
    }

    #[test]
    fn cookies_are_http_only_lax_and_scoped_to_their_portal() {
        let line = set("assist_mp_agent", "v", &MERCHANT_PORTAL, true);
        assert_eq!(
            line,
            "assist_mp_agent=v; Path=/merchant-portal; HttpOnly; SameSite=Lax; Secure"
        );
        let line = set("assist_agent", "v", &STOREFRONT, false);
        assert_eq!(line, "assist_agent=v; Path=/; HttpOnly; SameSite=Lax");
    }

    #[test]
    fn upstreams_never_see_the_gateway_cookies() {
        let headers = with_cookie("demo_cart=a:1; assist_agent=x|y; assist_csrf=z; theme=dark");
        assert_eq!(
            without_gateway_cookies(&headers).unwrap(),
            "demo_cart=a:1; theme=dark"
        );
        assert_eq!(
            without_gateway_cookies(&with_cookie("assist_agent=x|y")),
            None
        );
    }
}
