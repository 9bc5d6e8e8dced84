//! What one audited action is made of, and its limits, in one place for both sides: a verifier's
//! recorder normalises every action before it queues it ([`ActionText::normalised`], which never
//! fails), and impersonation-token's `RecordActions` accepts exactly what that can produce
//! ([`ActionText::checked`]). So no request a verifier forwards can make an action the audit refuses.

use crate::error::Result;

/// Longest method (`GET`, an extension method, `GRPC`), in characters.
pub const METHOD_MAX: usize = 16;
/// Longest target (the path without its query, or the RPC path), in characters.
pub const TARGET_MAX: usize = 500;
/// Longest outcome (an HTTP status or a gRPC code name), in characters.
pub const OUTCOME_MAX: usize = 64;
/// Ends a value cut to its limit, so a reader sees it was longer.
pub const TRUNCATED: &str = "…[truncated]";
/// What an empty value is recorded as (the audit keeps no empty field).
pub const EMPTY: &str = "-";

/// The text fields of one audited action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionText {
    pub method: String,
    pub target: String,
    pub outcome: String,
}

impl ActionText {
    /// The action as a verifier records it: the target's query left out, control characters
    /// replaced (U+FFFD), surrounding whitespace trimmed, an empty value as [`EMPTY`], and each field
    /// cut to its limit with [`TRUNCATED`] at the end. Always passes [`ActionText::checked`].
    pub fn normalised(method: &str, target: &str, outcome: &str) -> Self {
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        Self {
            method: bounded(method, METHOD_MAX),
            target: bounded(path, TARGET_MAX),
            outcome: bounded(outcome, OUTCOME_MAX),
        }
    }

    /// The action as the audit accepts it: each field non-empty, within its limit, free of control
    /// characters (trimmed).
    pub fn checked(method: &str, target: &str, outcome: &str) -> Result<Self> {
        use crate::validate::required;
        Ok(Self {
            method: required("method", method, METHOD_MAX)?,
            target: required("target", target, TARGET_MAX)?,
            outcome: required("outcome", outcome, OUTCOME_MAX)?,
        })
    }
}

/// `value` in at most `max` characters, as [`ActionText::normalised`] describes.
fn bounded(value: &str, max: usize) -> String {
    let clean: String = value
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    let clean = clean.trim();
    if clean.is_empty() {
        return EMPTY.to_owned();
    }
    if clean.chars().count() <= max {
        return clean.to_owned();
    }
    let keep = max.saturating_sub(TRUNCATED.chars().count());
    let mut cut: String = clean.chars().take(keep).collect();
    cut.truncate(cut.trim_end().len());
    cut.push_str(TRUNCATED);
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_verifier_records_is_always_accepted() {
        let long_path = format!("/{}", "a".repeat(600));
        let long_wide = format!("/{}", "é€😀".repeat(300));
        let long_method = "VERYLONGEXTENSIONMETHOD".repeat(3);
        let trailing_spaces = format!("/a{}", " ".repeat(600));
        let leading_spaces = format!("{}/x", " ".repeat(490));
        let cases: Vec<(&str, &str, &str)> = vec![
            ("GET", "/cart", "200"),
            (&long_method, &long_path, "404"),
            ("GET", &long_wide, "200"),
            ("", "", ""),
            ("  ", " \t ", "\n"),
            ("GE\u{7}T", "/a\u{0}b\r\n", "2\u{1b}00"),
            ("GET", &trailing_spaces, "200"),
            ("GET", &leading_spaces, "200"),
        ];
        for (method, target, outcome) in cases {
            let text = ActionText::normalised(method, target, outcome);
            let checked = ActionText::checked(&text.method, &text.target, &text.outcome)
                .unwrap_or_else(|e| panic!("{text:?} refused: {e}"));
            assert_eq!(
                checked, text,
                "normalised text is already in its checked form"
            );
            assert_eq!(
                ActionText::normalised(&text.method, &text.target, &text.outcome),
                text,
                "normalising twice changes nothing"
            );
        }
    }

    #[test]
    fn long_values_are_cut_with_the_marker_and_the_query_is_left_out() {
        let text = ActionText::normalised(
            "VERYLONGEXTENSIONMETHOD",
            &format!("/{}?token=secret", "p".repeat(600)),
            "404",
        );
        assert_eq!(text.method, "VERY…[truncated]");
        assert_eq!(text.target.chars().count(), TARGET_MAX);
        assert!(text.target.starts_with("/ppp"));
        assert!(text.target.ends_with(TRUNCATED));
        let short = ActionText::normalised("GET", "/cart?coupon=x", "200");
        assert_eq!(short.target, "/cart");
        assert_eq!(ActionText::normalised("", "", "").method, EMPTY);
        assert!(ActionText::checked("GET", &"x".repeat(TARGET_MAX + 1), "200").is_err());
    }
}
