//! The gateway's cookies (docs/web.md): the customer's and each portal's agent sign-in, each portal's
//! assist session, the console's sign-in, and the CSRF token. All are `HttpOnly` and `SameSite=Lax`, `Secure` when served
//! over TLS; the agent's own sign-in and the assist session are separate cookies, so ending
//! assistance leaves the agent signed in. Sign-ins and sessions are sealed (XChaCha20-Poly1305 with
//! the gateway's cookie key, bound to the cookie's name): the browser can neither read the tokens nor
//! change or move them.

use assist_runtime::keys::KeyEncryptionKey;
use assist_runtime::web::cookie;
use http::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::routes::Portal;

pub const CUSTOMER: &str = "assist_customer";
pub const CSRF: &str = "assist_csrf";
/// The console user's sign-in (`Path=/console`).
pub const CONSOLE: &str = "assist_console";
pub const CONSOLE_PATH: &str = "/console";
/// Every cookie of the gateway starts so; none of them is passed on to an upstream, and an upstream
/// cannot set one (`proxy::jar`).
pub const GATEWAY_PREFIX: &str = "assist_";
/// Longest cookie value read (two tokens and a name, sealed, fit well below it).
const VALUE_MAX: usize = 4000;

/// Reads cookie `name` sealed with `key` (bound to the name, so a value cannot be moved to another
/// cookie); `None` when absent, forged, damaged or sealed with another key.
fn open<T: DeserializeOwned>(headers: &HeaderMap, name: &str, key: &KeyEncryptionKey) -> Option<T> {
    let value = cookie(headers, name).filter(|v| v.len() <= VALUE_MAX)?;
    let plain = key.open(name, value).ok()?;
    serde_json::from_slice(&plain).ok()
}

/// `content` as the sealed value of cookie `name`.
fn seal<T: Serialize>(content: &T, name: &str, key: &KeyEncryptionKey) -> String {
    let plain = serde_json::to_vec(content).expect("cookie contents serialize");
    key.seal(name, &plain)
        .expect("the operating system's random source failed")
}

/// A sign-in kept in a cookie: the access token and the refresh token that renews it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

impl Tokens {
    pub fn read(headers: &HeaderMap, name: &str, key: &KeyEncryptionKey) -> Option<Self> {
        open(headers, name, key)
    }

    pub fn value(&self, name: &str, key: &KeyEncryptionKey) -> String {
        seal(self, name, key)
    }
}

/// An assist session of this browser: the impersonation token, the session id and the assisted
/// person's name (for the bar).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assist {
    pub token: String,
    pub session_id: String,
    pub name: String,
}

impl Assist {
    pub fn value(&self, name: &str, key: &KeyEncryptionKey) -> String {
        seal(self, name, key)
    }
}

/// The portal's assist session in this browser, if any.
pub fn assist_of(headers: &HeaderMap, portal: &Portal, key: &KeyEncryptionKey) -> Option<Assist> {
    open(headers, portal.web.assist_cookie, key)
}

/// `Set-Cookie` for `name=value`, on `portal`'s paths, for the browser session (no `Max-Age`: the
/// tokens inside expire on their own and are checked on every use).
pub fn set(name: &str, value: &str, portal: &Portal, secure: bool) -> HeaderValue {
    set_at(name, value, portal.web.cookie_path, secure)
}

/// [`set`] on the paths below `path`.
pub fn set_at(name: &str, value: &str, path: &str, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let line = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&line).expect("cookie values are base64")
}

/// `Set-Cookie` that removes `name` from `portal`'s paths.
pub fn clear(name: &str, portal: &Portal) -> HeaderValue {
    clear_at(name, portal.web.cookie_path)
}

/// [`clear`] on the paths below `path`.
pub fn clear_at(name: &str, path: &str) -> HeaderValue {
    let line = format!("{name}=; Path={path}; HttpOnly; SameSite=Lax; Max-Age=0");
    HeaderValue::from_str(&line).expect("cookie names are token characters")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{MERCHANT_PORTAL, STOREFRONT};
    use http::header;

    fn with_cookie(line: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, line.parse().unwrap());
        headers
    }

    fn key() -> KeyEncryptionKey {
        KeyEncryptionKey::from_base64(&KeyEncryptionKey::generate_base64().unwrap()).unwrap()
    }

    #[test]
    fn sessions_are_sealed_and_bound_to_their_cookie() {
        let key = key();
        let assist = Assist {
            token: "a.b.c".into(),
            session_id: "0199-aa".into(),
            name: "Zoë <O'Neil> | x".into(),
        };
        let value = assist.value("assist_assist", &key);
        assert!(!value.contains("a.b.c"), "the token is not readable");
        let headers = with_cookie(&format!("assist_assist={value}"));
        assert_eq!(assist_of(&headers, &STOREFRONT, &key), Some(assist.clone()));
        assert_eq!(
            assist_of(&headers, &STOREFRONT, &self::key()),
            None,
            "another key"
        );
        // The same value under another cookie's name does not open.
        let moved = with_cookie(&format!("assist_mp_assist={value}"));
        assert_eq!(assist_of(&moved, &MERCHANT_PORTAL, &key), None);
        let mut tampered = value.into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        let headers = with_cookie(&format!("assist_assist={tampered}"));
        assert_eq!(assist_of(&headers, &STOREFRONT, &key), None);
        assert_eq!(
            assist_of(&with_cookie("assist_assist=garbage"), &STOREFRONT, &key),
            None
        );

        let tokens = Tokens {
            access: "h.p.s".into(),
            refresh: "r-1_x".into(),
        };
        let headers = with_cookie(&format!(
            "x=1; assist_agent={}",
            tokens.value("assist_agent", &key)
        ));
        assert_eq!(Tokens::read(&headers, "assist_agent", &key), Some(tokens));
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

    /// Property tests (proptest; cargo-fuzz needs nightly on every machine that runs CI, proptest
    /// does not): opening arbitrary or altered cookie values never panics and never opens. CI runs
    /// the default 256 cases; a long search: `PROPTEST_CASES=100000 cargo test -p assist-gateway
    /// --lib web::cookies`.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn arbitrary_cookie_values_never_open(value in "[ -~]{0,400}") {
                let key = key();
                if let Ok(headers) = std::panic::catch_unwind(|| with_cookie(&format!("assist_assist={value}"))) {
                    prop_assert_eq!(assist_of(&headers, &STOREFRONT, &key), None);
                    prop_assert_eq!(Tokens::read(&headers, "assist_assist", &key), None);
                }
            }

            #[test]
            fn an_altered_sealed_value_never_opens(
                at in any::<prop::sample::Index>(),
                by in "[A-Za-z0-9_=-]",
                cut in any::<bool>(),
            ) {
                let key = key();
                let assist = Assist {
                    token: "h.p.s".into(),
                    session_id: "0199-aa".into(),
                    name: "Zoë".into(),
                };
                let value = assist.value("assist_assist", &key);
                let i = at.index(value.len());
                let altered = if cut {
                    value[..i].to_owned()
                } else {
                    format!("{}{by}{}", &value[..i], &value[i + 1..])
                };
                let opened = assist_of(&with_cookie(&format!("assist_assist={altered}")), &STOREFRONT, &key);
                if altered == value {
                    prop_assert_eq!(opened, Some(assist));
                } else {
                    prop_assert_eq!(opened, None, "{} opened", altered);
                }
            }
        }
    }
}
