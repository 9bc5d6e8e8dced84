//! The HTML of the gateway's pages: one layout, the assist bar, and inserting that bar into the pages
//! of an upstream. Everything from outside is escaped with `assist_runtime::web::escape`.

use assist_runtime::web::escape;

use crate::routes::{MERCHANT_PORTAL, Portal};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;color:#1d2733}\
main{max-width:72rem;margin:1.5rem auto;padding:0 1rem}\
#assist-bar{background:#8a3ffc;color:#fff;padding:.5rem 1rem;display:flex;gap:1rem;\
align-items:center}#assist-bar form{margin:0}\
#assist-bar button{background:#fff;color:#8a3ffc;border:0;padding:.3rem .8rem;cursor:pointer}\
.error{color:#b00020}.notice{color:#0b6b2b}table{border-collapse:collapse;width:100%}\
td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left}\
label{display:block;margin:.5rem 0}input{padding:.3rem}\
#suggestions{list-style:none;padding:0;max-width:30rem}\
#suggestions li{padding:.3rem;border:1px solid #ddd;border-top:0;cursor:pointer}\
#suggestions li:hover{background:#f0f0ff}\
#console-header form{display:inline}#summary{display:flex;gap:2rem;flex-wrap:wrap}\
#summary p{margin:.3rem 0;font-size:1.1rem}td.last-seen{white-space:nowrap}\
td.actions button,td.actions select{margin:.1rem}\
#add-agent{display:flex;gap:1rem;align-items:end;flex-wrap:wrap;margin:1rem 0}\
#add-agent h2{width:100%;margin:.5rem 0 0;font-size:1.1rem}#add-agent label{margin:0}\
#agent-search-form,#seats-form{margin:1rem 0}dialog{max-width:32rem}\
#console-nav a{margin-right:1rem}#console-nav a[aria-current]{font-weight:bold}\
label.inline{display:inline;margin:0}nav.tabs a{margin-right:1rem}nav.tabs a.current{font-weight:bold}\
ol.messages{list-style:none;padding:0}ol.messages li{margin:.5rem 0;padding:.5rem;border-radius:.3rem;\
background:#f3f5f7}ol.messages li.agent{background:#e8f0fe}ol.messages li.internal{background:#fff4d6;\
border-left:4px solid #e0a800}ol.messages li.system{background:none;color:#5a6570;font-style:italic}\
.meta{color:#5a6570;font-size:.85rem}.body{white-space:pre-wrap}textarea{width:100%;max-width:40rem}\
.internal-marker{font-weight:bold;color:#8a5a00}#status-actions button,#status-actions form{display:inline}";

/// A whole page: `title`, the assist bar when one is given, then `body`.
pub fn page(title: &str, bar: Option<&str>, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\n<body>{bar}<main>{body}</main></body></html>\n",
        title = escape(title),
        bar = bar.unwrap_or_default(),
    )
}

/// Keeps a server-rendered page current without reloading it: on every event of the server-sent
/// events at `#live-config`'s `events`, the page fetches itself again and swaps each element marked
/// `data-live` (by id) for the new one. `window.assistRefresh()` does the same on demand. A stream
/// that ends is reopened by the browser; the `watching` that follows refreshes too. When the page is
/// refused (403, 404: no longer the caller's to see), `#live-notice` says `gone`.
pub const LIVE_SCRIPT: &str = r#"<script>
(() => {
  const config = JSON.parse(document.getElementById('live-config').textContent);
  let running = false;
  let again = false;
  async function refresh() {
    if (running) { again = true; return; }
    running = true;
    try {
      const response = await fetch(location.href, { credentials: 'same-origin', headers: { accept: 'text/html' } });
      if (response.ok) {
        const fresh = new DOMParser().parseFromString(await response.text(), 'text/html');
        document.querySelectorAll('[data-live][id]').forEach((old) => {
          const now = fresh.getElementById(old.id);
          if (now) old.replaceWith(document.importNode(now, true));
        });
        document.dispatchEvent(new Event('assist:refreshed'));
      } else if ((response.status === 403 || response.status === 404) && config.gone) {
        // No longer the caller's to see (transferred, taken back): say so instead of going stale.
        const notice = document.getElementById('live-notice');
        notice.textContent = config.gone;
        notice.hidden = false;
      }
    } catch (error) {
      // The next event or heartbeat tries again.
    } finally {
      running = false;
      if (again) { again = false; setTimeout(refresh, 100); }
    }
  }
  let pending = null;
  const soon = () => {
    if (pending) return;
    pending = setTimeout(() => { pending = null; refresh(); }, 150);
  };
  window.assistRefresh = refresh;
  if (config.events && window.EventSource) {
    const source = new EventSource(config.events);
    ['watching', 'created', 'assigned', 'transferred', 'requeued', 'message', 'pending', 'resumed',
     'resolved', 'reopened', 'closed', 'assist_started']
      .forEach((kind) => source.addEventListener(kind, soon));
    // A refused reconnect closes the source: what the page shows is checked once more.
    source.addEventListener('error', () => { if (source.readyState === EventSource.CLOSED) soon(); });
  }
  if (config.every) setInterval(soon, config.every * 1000);
})();
</script>"#;

/// `config` as the page's `#live-config`, then [`LIVE_SCRIPT`]: `events` is the server-sent events
/// path, `every` (seconds, optional) a refresh period, `gone` (optional) what `#live-notice` says
/// once the page is refused.
pub fn live(config: &serde_json::Value) -> String {
    format!(
        "<p id=\"live-notice\" class=\"notice\" role=\"status\" hidden></p>{}{LIVE_SCRIPT}",
        json_script("live-config", config)
    )
}

/// `value` as a JSON script element `#id` (data for a page's script).
pub fn json_script(id: &str, value: &serde_json::Value) -> String {
    // `<` escaped so that no value can close the script element.
    let value = value.to_string().replace('<', "\\u003c");
    format!(
        "<script type=\"application/json\" id=\"{}\">{value}</script>",
        escape(id)
    )
}

/// A hidden CSRF field for a form.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(csrf)
    )
}

/// A form that POSTs to `action` with one button and the CSRF field.
pub fn post_button(action: &str, csrf: &str, label: &str) -> String {
    format!(
        "<form method=\"post\" action=\"{}\">{}<button type=\"submit\">{}</button></form>",
        escape(action),
        csrf_field(csrf),
        escape(label)
    )
}

/// The bar shown on every page while an agent assists: who is assisted, and how to stop.
pub fn bar(portal: &Portal, name: &str, csrf: &str) -> String {
    let mut bar = format!(
        "<div id=\"assist-bar\"><span>{}: {}</span>{}",
        escape(portal.web.target_label),
        escape(name),
        post_button(
            &format!("{}/assist/end", portal.web.pages),
            csrf,
            portal.web.end_label
        )
    );
    if std::ptr::eq(portal, &MERCHANT_PORTAL) {
        bar.push_str(&post_button(
            &format!("{}/logout", portal.web.pages),
            csrf,
            "Log out Agent",
        ));
    }
    bar.push_str("</div>");
    bar
}

/// `page` with `insert` right after its `<body…>` tag (at the start when it has none). Works on the
/// page's bytes, whatever their encoding, and changes none of them; a `>` inside a quoted attribute
/// of the tag does not end it.
pub fn insert_after_body(page: &[u8], insert: &str) -> Vec<u8> {
    let at = body_tag_end(page).unwrap_or(0);
    let mut out = Vec::with_capacity(page.len() + insert.len());
    out.extend_from_slice(&page[..at]);
    out.extend_from_slice(insert.as_bytes());
    out.extend_from_slice(&page[at..]);
    out
}

/// Where the first `<body>` or `<body …>` tag (not `<bodyguard>`) of `page` ends.
fn body_tag_end(page: &[u8]) -> Option<usize> {
    let start = page.windows(6).position(|window| {
        window[..5].eq_ignore_ascii_case(b"<body")
            && matches!(window[5], b'>' | b' ' | b'\t' | b'\n' | b'\r' | b'/')
    })?;
    // A quote opens an attribute value only right after `=` (as HTML parses it).
    let mut quote = None;
    let mut after_equals = false;
    for (offset, byte) in page[start..].iter().enumerate() {
        match (quote, byte) {
            (None, b'>') => return Some(start + offset + 1),
            (None, b'"' | b'\'') if after_equals => quote = Some(*byte),
            (Some(open), _) if open == *byte => quote = None,
            _ => {}
        }
        if !byte.is_ascii_whitespace() {
            after_equals = quote.is_none() && *byte == b'=';
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::STOREFRONT;

    #[test]
    fn the_bar_goes_right_after_the_body_tag() {
        let inserted =
            |page: &[u8]| String::from_utf8_lossy(&insert_after_body(page, "[bar]")).into_owned();
        assert_eq!(
            inserted(b"<html><BODY class=\"x\"><p>hi</p></body>"),
            "<html><BODY class=\"x\">[bar]<p>hi</p></body>"
        );
        assert_eq!(inserted(b"<p>no body</p>"), "[bar]<p>no body</p>");
        assert_eq!(inserted(b"<bodyguard><body>"), "<bodyguard><body>[bar]");
        assert_eq!(
            inserted(b"<body data-x=\"a>b\" class='c>d'><p>"),
            "<body data-x=\"a>b\" class='c>d'>[bar]<p>",
            "a quoted > does not end the tag"
        );
        assert_eq!(inserted(b"<body class=\"x"), "[bar]<body class=\"x");
        assert_eq!(inserted(b"<body it's>"), "<body it's>[bar]");
        // Bytes that are not UTF-8 (a Latin-1 page) are kept as they are.
        assert_eq!(
            insert_after_body(b"<body>caf\xe9", "[bar]"),
            b"<body>[bar]caf\xe9"
        );
    }

    #[test]
    fn the_bar_escapes_the_name_and_offers_the_portals_buttons() {
        let storefront = bar(&STOREFRONT, "<script>", "t");
        assert!(storefront.contains("Customer: &lt;script&gt;"));
        assert!(storefront.contains("End Customer Assistance"));
        assert!(!storefront.contains("Log out Agent"));
        let merchant = bar(&MERCHANT_PORTAL, "Ann Bauer", "t");
        assert!(merchant.contains("User: Ann Bauer"));
        assert!(merchant.contains("/merchant-portal/agent/assist/end"));
        assert!(merchant.contains("Log out Agent"));
    }

    /// Properties of the bar's insertion over generated pages (256 cases; run longer with
    /// `PROPTEST_CASES=100000 cargo test -p assist-gateway --lib web::html`).
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Pages made of the pieces that matter (body tags, quotes, `>`), and arbitrary bytes.
        fn page() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                prop::sample::select(vec![
                    "<body>",
                    "<BODY class=\"a>b\">",
                    "<body",
                    "<bodyguard>",
                    "<body/>",
                    "\"",
                    "'",
                    "=",
                    ">",
                    "<",
                    " ",
                    "<html>",
                    "</body>",
                    "<!-- <body> -->",
                ])
                .prop_map(|piece| piece.as_bytes().to_vec()),
                prop::collection::vec(any::<u8>(), 0..16),
            ];
            prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
        }

        fn occurrences(haystack: &[u8], needle: &[u8]) -> usize {
            haystack
                .windows(needle.len())
                .filter(|w| *w == needle)
                .count()
        }

        proptest! {
            #[test]
            fn the_bar_is_inserted_once_and_the_page_kept(page in page(), name in any::<String>()) {
                let bar = bar(&STOREFRONT, &name, "csrf-token");
                let out = insert_after_body(&page, &bar);
                prop_assert_eq!(occurrences(&out, bar.as_bytes()), 1);
                let at = out
                    .windows(bar.len())
                    .position(|w| w == bar.as_bytes())
                    .unwrap();
                let mut rest = out[..at].to_vec();
                rest.extend_from_slice(&out[at + bar.len()..]);
                prop_assert_eq!(rest, page);
            }
        }
    }
}
