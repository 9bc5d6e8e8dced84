//! The canonical form of a forwarded path: the one reading of it that the sensitive-path check and
//! every upstream share. A path is percent-decoded once and must then be plain: no encoded `/`, `\`
//! or `%` (double encoding), no control characters, no `;` path parameters, no `.`/`..` or empty
//! segments, no segment that begins or ends with whitespace or ends with a dot, and no backslash.
//! Anything else could mean one thing to the check and another to a shop's router (`/account/password;x`,
//! `/account/password.`, `/account/password%20` are `/account/password` to some of them), so it is
//! refused with a 400 before any token is looked at.
//!
//! The canonical form keeps its case (upstream paths may be case-sensitive); the sensitive-path check
//! ignores case ([`assist_runtime::auth::is_sensitive_path`]). It never contains `%`, so it is its own
//! canonical form; the request is forwarded with its path as received, which decodes to it.

/// Why a path is refused: each is a 400 whose detail says which rule it broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotAbsolute,
    BadEscape,
    EncodedSeparator,
    DoubleEncoded,
    NotUtf8,
    ControlCharacter,
    Backslash,
    PathParameter,
    DotSegment,
    EmptySegment,
    TrailingDot,
    Whitespace,
}

impl Refusal {
    /// The error detail the client gets.
    pub fn detail(self) -> &'static str {
        match self {
            Refusal::NotAbsolute => "The path must start with '/'.",
            Refusal::BadEscape => "The path has a '%' that is not followed by two hex digits.",
            Refusal::EncodedSeparator => "The path has an encoded '/' or '\\'.",
            Refusal::DoubleEncoded => "The path has an encoded '%' (double encoding).",
            Refusal::NotUtf8 => "The path does not decode to UTF-8.",
            Refusal::ControlCharacter => "The path has a control character.",
            Refusal::Backslash => "The path has a backslash.",
            Refusal::PathParameter => "The path has a ';' (path parameters are not accepted).",
            Refusal::DotSegment => "The path has a '.' or '..' segment.",
            Refusal::EmptySegment => "The path has an empty segment ('//').",
            Refusal::TrailingDot => "A segment of the path ends with '.'.",
            Refusal::Whitespace => "A segment of the path begins or ends with whitespace.",
        }
    }
}

/// The canonical form of `raw` (a request's path, without the query), or why there is none.
pub fn canonical(raw: &str) -> Result<String, Refusal> {
    if !raw.starts_with('/') {
        return Err(Refusal::NotAbsolute);
    }
    let decoded = String::from_utf8(decode_once(raw)?).map_err(|_| Refusal::NotUtf8)?;
    for character in decoded.chars() {
        match character {
            '%' => return Err(Refusal::DoubleEncoded),
            '\\' => return Err(Refusal::Backslash),
            ';' => return Err(Refusal::PathParameter),
            c if c.is_control() => return Err(Refusal::ControlCharacter),
            _ => {}
        }
    }
    let segments: Vec<&str> = decoded[1..].split('/').collect();
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate() {
        if segment.is_empty() {
            // Only the last may be empty: a trailing slash, or `/` itself.
            if index != last {
                return Err(Refusal::EmptySegment);
            }
        } else if *segment == "." || *segment == ".." {
            return Err(Refusal::DotSegment);
        } else if segment.ends_with('.') {
            return Err(Refusal::TrailingDot);
        } else if segment.starts_with(is_blank) || segment.ends_with(is_blank) {
            return Err(Refusal::Whitespace);
        }
    }
    Ok(decoded)
}

/// Whitespace, and the invisible characters some routers trim as if they were.
fn is_blank(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}' | '\u{FEFF}')
}

/// `raw` with each `%XX` decoded, refusing escapes of `/` and `\` (separators to some upstreams and
/// not to others) and malformed escapes.
fn decode_once(raw: &str) -> Result<Vec<u8>, Refusal> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            decoded.push(bytes[i]);
            i += 1;
            continue;
        }
        let byte = match (
            bytes.get(i + 1).and_then(|b| (*b as char).to_digit(16)),
            bytes.get(i + 2).and_then(|b| (*b as char).to_digit(16)),
        ) {
            (Some(high), Some(low)) => (high * 16 + low) as u8,
            _ => return Err(Refusal::BadEscape),
        };
        if byte == b'/' || byte == b'\\' {
            return Err(Refusal::EncodedSeparator);
        }
        decoded.push(byte);
        i += 3;
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use assist_runtime::auth::is_sensitive_path;

    /// The default sensitive paths, and a localised pattern as a deployment would add it.
    const SENSITIVE: &[&str] = &[
        "/account/password",
        "/account/email",
        "/account/payment-methods",
        "/account/delete",
        "/merchant-portal/password",
        "/*/account/password",
    ];

    /// What the proxy does with a path while assisting: refused as malformed (400), refused as
    /// sensitive (403), or forwarded.
    fn verdict(raw: &str) -> u16 {
        match canonical(raw) {
            Err(_) => 400,
            Ok(path) if is_sensitive_path(SENSITIVE, &path) => 403,
            Ok(_) => 200,
        }
    }

    #[test]
    fn disguised_sensitive_paths_are_refused() {
        let table: &[(&str, u16)] = &[
            ("/account/password", 403),
            ("/account/password;x", 400),
            ("/account/password;jsessionid=1/", 400),
            ("/account/password%3Bx", 400),
            ("/account/password.", 400),
            ("/account/password..", 400),
            ("/account/password%2e", 400),
            ("/account/password%20", 400),
            ("/account/%20password", 400),
            ("/account/password%09", 400),
            ("/account/password%C2%A0", 400),
            ("/account/password%E2%80%8B", 400),
            ("/account/password%00", 400),
            ("/account/password%0a", 400),
            ("/account%2fpassword", 400),
            ("/account%2Fpassword", 400),
            ("/account%5cpassword", 400),
            ("/account\\password", 400),
            ("/account/p%2561ssword", 400),
            ("/account/password%252e", 400),
            ("/account/pass%zzword", 400),
            ("/account/pass%2", 400),
            ("/account/p%ffassword", 400),
            ("/account//password", 400),
            ("//account/password", 400),
            ("/account/./password", 400),
            ("/account/%2e/password", 400),
            ("/x/../account/password", 400),
            ("/x/%2e%2e/account/password", 400),
            ("/ACCOUNT/PASSWORD", 403),
            ("/Account/P%61ssword", 403),
            ("/account/paſsword", 403),
            ("/account/password/", 403),
            ("/account/password/reset", 403),
            ("/account/password.json", 403),
            ("/account/password.html", 403),
            ("/index.php/account/password", 403),
            ("/shop.php/account/password", 403),
            ("/de/account/password", 403),
            ("/de/index.php/account/password", 403),
            ("/account/delete.json", 403),
            ("/merchant-portal/PASSWORD", 403),
            ("account/password", 400),
        ];
        assert!(table.len() >= 20);
        for (raw, expected) in table {
            assert_eq!(verdict(raw), *expected, "{raw}");
        }
    }

    #[test]
    fn ordinary_paths_are_forwarded() {
        for raw in [
            "/",
            "/cart",
            "/cart/",
            "/cart/items",
            "/products/French%20Press",
            "/products/caf%C3%A9",
            "/.well-known/security.txt",
            "/account",
            "/account/passwords",
            "/account/password-help",
            "/de/account",
            "/index.php",
            "/merchant-portal/",
            "/merchant-portal/orders",
        ] {
            assert_eq!(verdict(raw), 200, "{raw}");
        }
        assert_eq!(
            canonical("/products/French%20Press").as_deref(),
            Ok("/products/French Press"),
            "decoded once, case kept"
        );
    }

    #[test]
    fn each_refusal_says_what_is_wrong() {
        assert_eq!(canonical("/a;b"), Err(Refusal::PathParameter));
        assert_eq!(canonical("/a%252e"), Err(Refusal::DoubleEncoded));
        assert!(Refusal::PathParameter.detail().contains("';'"));
    }

    /// Properties over generated paths. They run 256 cases each (a few milliseconds); for a longer
    /// search run `PROPTEST_CASES=100000 cargo test -p assist-gateway --lib proxy::path`.
    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Paths made of the characters that matter here, escapes included, and anything at all.
        fn any_path() -> impl Strategy<Value = String> {
            prop_oneof![
                "/?([a-zA-Z0-9./;:\\\\ \t*~_-]|%[0-9a-fA-F]{2}|%2[eEfF]|%25[0-9a-fA-F]{0,2}|ſ|\u{200B}|\u{0}){0,40}",
                any::<String>(),
            ]
        }

        /// One way to disguise a character: as it is, in the other case, or percent-encoded.
        fn disguised(path: &str, choices: &[u8]) -> String {
            path.chars()
                .zip(choices.iter().cycle())
                .map(|(c, choice)| match (c, choice % 3) {
                    ('/', _) | (_, 0) => c.to_string(),
                    (_, 1) => c.to_ascii_uppercase().to_string(),
                    _ => format!("%{:02X}", c as u32),
                })
                .collect()
        }

        /// A sensitive path in disguise: each character as is, upper-cased or encoded, maybe behind
        /// a front controller, maybe with an extension, below it, or with something tacked on.
        fn disguised_sensitive() -> impl Strategy<Value = String> {
            let entries = prop::sample::select(vec![
                "/account/password",
                "/account/email",
                "/account/payment-methods",
                "/merchant-portal/password",
                "/de/account/password",
            ]);
            let front = prop::sample::select(vec!["", "/index.php", "/shop.PHP", "/de/app.php"]);
            let tail = prop::sample::select(vec![
                "",
                "/",
                ";x",
                ";",
                ".",
                "..",
                " ",
                "%20",
                "%09",
                "%00",
                "%2e",
                "%2E%2E",
                "%3b",
                ".json",
                ".html",
                ".JSON/x",
                "/reset",
                "/./",
                "/../password",
                "//",
                "%2f",
                "\\",
                "%5c",
                "%252e",
                "%C2%A0",
                "%E2%80%8B",
                "/x/..",
            ]);
            (
                entries,
                front,
                tail,
                prop::collection::vec(any::<u8>(), 1..64),
            )
                .prop_map(|(entry, front, tail, choices)| {
                    format!("{front}{}{tail}", disguised(entry, &choices))
                })
        }

        proptest! {
            #[test]
            fn canonical_paths_are_plain_and_their_own_canonical_form(raw in any_path()) {
                if let Ok(path) = canonical(&raw) {
                    prop_assert!(path.starts_with('/'));
                    prop_assert!(!path.contains(';') && !path.contains('%') && !path.contains('\\'));
                    for segment in path[1..].split('/') {
                        prop_assert!(segment != "." && segment != "..", "{path}");
                        prop_assert!(!segment.ends_with('.'), "{path}");
                        prop_assert!(!segment.starts_with(is_blank) && !segment.ends_with(is_blank), "{path}");
                    }
                    prop_assert!(!path[1..].trim_end_matches('/').contains("//"), "{path}");
                    prop_assert_eq!(canonical(&path), Ok(path.clone()));
                }
            }

            #[test]
            fn no_disguise_of_a_sensitive_path_is_forwarded(raw in disguised_sensitive()) {
                prop_assert_ne!(verdict(&raw), 200, "{} was forwarded", raw);
            }
        }
    }
}
