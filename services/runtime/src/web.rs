//! Small pieces every HTTP service with pages needs: HTML escaping, reading cookies, and random
//! tokens (CSRF tokens, cookie values), and serving until drained.

use base64::Engine;

/// `text` with `&`, `<`, `>`, `"` and `'` escaped: safe in HTML text and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The value of cookie `name` in the request's `Cookie` headers (the first one, as browsers send the
/// most specific path first).
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
}

/// 32 random bytes, base64url without padding (43 characters, cookie- and URL-safe).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Runs an HTTP server's `serving` future until it ends, or until `grace` after `shutdown` trips
/// (requests still in flight are then abandoned), with the start-up failure policy of
/// [`until_failed`](crate::startup::until_failed): a `started` task that fails ends the server.
pub async fn serve_until_drained(
    serving: impl std::future::Future<Output = std::io::Result<()>>,
    shutdown: tokio::sync::watch::Receiver<bool>,
    grace: std::time::Duration,
    started: tokio::task::JoinHandle<anyhow::Result<()>>,
    what: &str,
) -> anyhow::Result<()> {
    let stop = shutdown.clone();
    let drained = async move {
        let drain_deadline = async move {
            crate::shutdown::tripped(stop).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = serving => Ok(result?),
            () = drain_deadline => {
                tracing::warn!("shutdown grace elapsed with requests in flight");
                Ok(())
            }
        }
    };
    crate::startup::until_failed(what, drained, started, shutdown).await
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">O'Neil & co</a>"#),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Neil &amp; co&lt;/a&gt;"
        );
    }

    #[test]
    fn reads_cookies_by_exact_name() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            "assist_agent_x=1; assist_agent=abc|def; other=\"q\""
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie(&headers, "assist_agent"), Some("abc|def"));
        assert_eq!(cookie(&headers, "other"), Some("q"));
        assert_eq!(cookie(&headers, "assist"), None);
    }

    #[test]
    fn secrets_compare_whole() {
        let token = random_token();
        assert_eq!(token.len(), 43);
        assert!(same_secret(&token, &token.clone()));
        assert!(!same_secret(&token, &random_token()));
        assert!(!same_secret("abc", "abcd"));
    }
}
