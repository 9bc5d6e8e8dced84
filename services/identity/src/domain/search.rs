//! Search terms: the lowercased strings under which a principal is found by prefix.

/// Normalises a query or a term: trimmed, inner whitespace folded to one space, lowercased.
pub fn normalize(value: &str) -> String {
    value
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Terms of a customer: email, first name, last name and "first last".
pub fn person_terms(email: &str, first: &str, last: &str) -> Vec<String> {
    let mut terms = vec![
        normalize(email),
        normalize(first),
        normalize(last),
        normalize(&format!("{first} {last}")),
    ];
    terms.retain(|t| !t.is_empty());
    terms.sort_unstable();
    terms.dedup();
    terms
}

/// Terms of a merchant user: the person's terms plus the merchant name.
pub fn merchant_user_terms(email: &str, first: &str, last: &str, merchant: &str) -> Vec<String> {
    let mut terms = person_terms(email, first, last);
    let merchant = normalize(merchant);
    if !merchant.is_empty() && !terms.contains(&merchant) {
        terms.push(merchant);
        terms.sort_unstable();
    }
    terms
}

/// The most terms one principal has; a page of N principals needs at most N times this many term rows.
pub const MAX_TERMS_PER_PRINCIPAL: u64 = 5;

/// Counting list items stops here; beyond it the total is a lower bound.
pub const COUNT_CAP: u64 = 10_000;

/// Counting search matches stops here, and search pages end here: a person refines a query long before
/// paging through a thousand hits, and the cap keeps a broad prefix as fast as a narrow one.
pub const SEARCH_CAP: u64 = 1_000;

/// The exclusive upper bound of a prefix range: no UTF-8 string starting with `prefix` sorts at or above
/// `prefix` followed by U+10FFFF, bytewise.
pub fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_cover_names_and_email() {
        assert_eq!(
            person_terms("Ann.Lee@Example.com", "Ann", " Lee "),
            vec!["ann", "ann lee", "ann.lee@example.com", "lee"]
        );
        assert!(merchant_user_terms("a@b.de", "A", "B", "Spryker").contains(&"spryker".to_owned()));
    }

    #[test]
    fn prefix_range_contains_extensions() {
        let end = prefix_end("ann");
        for inside in ["ann", "anna", "ann lee", "ann\u{FFFF}"] {
            assert!(inside >= "ann" && inside < end.as_str(), "{inside}");
        }
        assert!("ano" > end.as_str());
    }
}
