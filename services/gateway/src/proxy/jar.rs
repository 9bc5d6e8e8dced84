//! The cookies an upstream sets, as the gateway lets the browser keep them (docs/web.md, "Upstream
//! cookies"):
//! - an upstream can never set, overwrite or clear one of the gateway's own cookies: a `Set-Cookie`
//!   whose name is the gateway's prefix (`assist_`, also behind `__Host-`/`__Secure-`) is dropped;
//! - while an agent assists, the cookies the upstream sets go into a jar of that assist session: they
//!   are renamed `{assist cookie}_jar_{session}_{name}` (so they are the gateway's cookies and never
//!   reach an upstream as they are), scoped to the portal's path without a `Domain`, and made session
//!   cookies. Requests of that session get them back under their own names, and only them (not the
//!   agent's own cookies for the shop). Outside that session they are never forwarded, ending the
//!   session expires them, and any response of the portal expires those of another session: a shop
//!   session the upstream opened for the impersonation token cannot outlive the assistance in the
//!   agent's browser.

use http::{HeaderMap, HeaderValue, header};

use crate::routes::Portal;
use crate::web::cookies::GATEWAY_PREFIX;

/// The jar of one assist session of one portal.
pub struct Jar {
    prefix: String,
    path: &'static str,
}

impl Jar {
    /// The jar of session `session_id` in `portal`.
    pub fn of(portal: &Portal, session_id: &str) -> Self {
        let tag: String = session_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(32)
            .collect();
        Self {
            prefix: format!("{}{tag}_", base(portal)),
            path: portal.web.cookie_path,
        }
    }
}

/// The start of every jar cookie's name of `portal`.
fn base(portal: &Portal) -> String {
    format!("{}_jar_", portal.web.assist_cookie)
}

/// Whether an upstream's cookie `name` is (or could pass for) one of the gateway's.
fn is_gateway_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let bare = lower
        .strip_prefix("__host-")
        .or_else(|| lower.strip_prefix("__secure-"))
        .unwrap_or(&lower);
    bare.starts_with(GATEWAY_PREFIX)
}

/// The request's cookies as `name=value` pairs.
fn request_cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// The `Cookie` header the upstream gets: while assisting (`jar`), the jar's cookies under their own
/// names; otherwise the browser's cookies but the gateway's (jars included). `None` when empty.
pub fn forwarded(headers: &HeaderMap, jar: Option<&Jar>) -> Option<HeaderValue> {
    let kept: Vec<String> = request_cookies(headers)
        .filter_map(|(name, value)| match jar {
            Some(jar) => name
                .strip_prefix(jar.prefix.as_str())
                .map(|name| format!("{name}={value}")),
            None => (!name.starts_with(GATEWAY_PREFIX)).then(|| format!("{name}={value}")),
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join("; ")).ok()
}

/// `Set-Cookie`s that expire `portal`'s jar cookies in the request other than those of `keep`'s
/// session (all of them when `keep` is `None`).
pub fn expire_others(headers: &HeaderMap, portal: &Portal, keep: Option<&Jar>) -> Vec<HeaderValue> {
    let base = base(portal);
    request_cookies(headers)
        .map(|(name, _)| name)
        .filter(|name| name.starts_with(&base))
        .filter(|name| keep.is_none_or(|jar| !name.starts_with(jar.prefix.as_str())))
        .filter_map(|name| {
            HeaderValue::from_str(&format!(
                "{name}=; Path={}; HttpOnly; SameSite=Lax; Max-Age=0",
                portal.web.cookie_path
            ))
            .ok()
        })
        .collect()
}

/// The upstream's `Set-Cookie`s as the browser gets them: the gateway's names dropped, and while
/// assisting (`jar`) the rest moved into the jar.
pub fn from_upstream(headers: &mut HeaderMap, jar: Option<&Jar>, secure: bool) {
    let lines: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for line in lines {
        let Some(text) = line.to_str().ok() else {
            continue;
        };
        let Some((name, _)) = text.split_once('=') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || is_gateway_name(name) {
            continue;
        }
        let kept = match jar {
            None => Some(line),
            Some(jar) => into_jar(text, jar, secure),
        };
        if let Some(kept) = kept {
            headers.append(header::SET_COOKIE, kept);
        }
    }
}

/// One upstream `Set-Cookie` line, renamed into `jar`: its value and `HttpOnly`, `Secure` and
/// `SameSite` kept, `Domain`, `Path`, `Expires` and `Max-Age` replaced (the jar's path, a session
/// cookie), except that a cookie the upstream removes is removed.
fn into_jar(line: &str, jar: &Jar, secure: bool) -> Option<HeaderValue> {
    let mut parts = line.split(';');
    let (name, value) = parts.next()?.split_once('=')?;
    let mut kept = format!(
        "{}{}={}; Path={}",
        jar.prefix,
        name.trim(),
        value.trim(),
        jar.path
    );
    let mut removed = false;
    let mut is_secure = secure;
    for attribute in parts {
        let (key, argument) = attribute
            .split_once('=')
            .map_or((attribute.trim(), ""), |(k, v)| (k.trim(), v.trim()));
        match key.to_ascii_lowercase().as_str() {
            "httponly" => kept.push_str("; HttpOnly"),
            "secure" => is_secure = true,
            "samesite" => kept.push_str(&format!("; SameSite={argument}")),
            "max-age" => removed |= argument.parse::<i64>().is_ok_and(|age| age <= 0),
            "expires" => removed |= expired(argument),
            _ => {}
        }
    }
    if is_secure {
        kept.push_str("; Secure");
    }
    if removed {
        kept.push_str("; Max-Age=0");
    }
    HeaderValue::from_str(&kept).ok()
}

/// Whether an `Expires` date is a removal: a year before this one (how upstreams clear cookies, with
/// dates such as `Thu, 01 Jan 1970 00:00:00 GMT`). A date earlier this year makes a session cookie,
/// which ending the assistance removes as well.
fn expired(date: &str) -> bool {
    let this_year = 1970 + assist_runtime::time::now_us() / 1_000_000 / 31_556_952;
    date.split([' ', '-'])
        .filter_map(|word| word.parse::<i64>().ok())
        .find(|number| *number >= 1000)
        .is_some_and(|year| year < this_year)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::{MERCHANT_PORTAL, STOREFRONT};

    fn set_cookies(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(header::SET_COOKIE, line.parse().unwrap());
        }
        headers
    }

    fn lines(headers: &HeaderMap) -> Vec<&str> {
        headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    fn with_cookie(line: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, line.parse().unwrap());
        headers
    }

    #[test]
    fn upstreams_cannot_set_the_gateway_cookies() {
        let mut headers = set_cookies(&[
            "assist_assist=x; Path=/",
            "ASSIST_agent=x",
            "__Host-assist_csrf=x; Path=/; Secure",
            "__Secure-assist_customer=; Max-Age=0",
            "assist_assist_jar_0199_sid=forged",
            "=nameless",
            "theme=dark; Path=/; Max-Age=60",
        ]);
        from_upstream(&mut headers, None, false);
        assert_eq!(lines(&headers), ["theme=dark; Path=/; Max-Age=60"]);
    }

    #[test]
    fn while_assisting_upstream_cookies_go_into_the_session_jar() {
        let jar = Jar::of(&STOREFRONT, "0199-aa");
        let mut headers = set_cookies(&[
            "shop_session=abc; Path=/account; Domain=.shop.example; HttpOnly; SameSite=Strict; Max-Age=86400",
            "remember=1; Expires=Wed, 21 Oct 2099 07:28:00 GMT",
            "old=; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
            "gone=; Max-Age=0",
            "assist_agent=forged",
        ]);
        from_upstream(&mut headers, Some(&jar), true);
        assert_eq!(
            lines(&headers),
            [
                "assist_assist_jar_0199aa_shop_session=abc; Path=/; HttpOnly; SameSite=Strict; Secure",
                "assist_assist_jar_0199aa_remember=1; Path=/; Secure",
                "assist_assist_jar_0199aa_old=; Path=/; Secure; Max-Age=0",
                "assist_assist_jar_0199aa_gone=; Path=/; Secure; Max-Age=0",
            ]
        );
    }

    #[test]
    fn the_jar_is_forwarded_only_to_its_session() {
        let headers = with_cookie(
            "demo_cart=a:1; assist_agent=x; assist_assist_jar_0199aa_shop_session=abc; \
             assist_assist_jar_0288bb_shop_session=old; assist_mp_assist_jar_0199aa_mp=m",
        );
        let jar = Jar::of(&STOREFRONT, "0199-aa");
        assert_eq!(forwarded(&headers, Some(&jar)).unwrap(), "shop_session=abc");
        assert_eq!(forwarded(&headers, None).unwrap(), "demo_cart=a:1");
        assert_eq!(forwarded(&with_cookie("assist_agent=x"), Some(&jar)), None);

        let expired = |keep: Option<&Jar>, portal| {
            expire_others(&headers, portal, keep)
                .into_iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            expired(Some(&jar), &STOREFRONT),
            ["assist_assist_jar_0288bb_shop_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"]
        );
        assert_eq!(expired(None, &STOREFRONT).len(), 2);
        assert_eq!(
            expired(None, &MERCHANT_PORTAL),
            [
                "assist_mp_assist_jar_0199aa_mp=; Path=/merchant-portal; HttpOnly; SameSite=Lax; Max-Age=0"
            ]
        );
    }
}
