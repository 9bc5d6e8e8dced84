//! Input checks shared by every RPC: required strings with length limits, emails, ids and pages.

use crate::error::{Error, Result};
use uuid::Uuid;

/// The longest name of a person identity keeps (a full, first or last name); every service that
/// passes one on checks it against this before calling.
pub const PERSON_NAME_MAX: usize = 100;

/// Default and maximum page sizes of every list.
pub const DEFAULT_PAGE_SIZE: u32 = 10;
pub const MAX_PAGE_SIZE: u32 = 100;
/// The deepest offset a list accepts; deeper paging is a scan nobody needs.
pub const MAX_OFFSET: u64 = 1_000_000;
/// The longest skill label (agents' skills, conversations' required skills), in characters.
pub const SKILL_MAX: usize = 32;

/// A page of results and how many match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: u64,
    /// False when counting stopped at a cap and `total` is a lower bound.
    pub total_exact: bool,
}

impl<T> Paged<T> {
    /// The `PageInfo` of this page as requested with `page`.
    pub fn info(&self, page: Page) -> assist_proto::common::v1::PageInfo {
        assist_proto::common::v1::PageInfo {
            total: self.total,
            offset: page.offset,
            limit: page.limit,
            total_exact: self.total_exact,
        }
    }
}

/// A validated page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
}

impl Page {
    /// Validates a page of a request; absent means the first page of the default size.
    pub fn from_request(page: Option<assist_proto::common::v1::PageRequest>) -> Result<Self> {
        let page = page.unwrap_or_default();
        Self::new(page.limit, page.offset)
    }

    /// Validates a limit (0 means the default) and an offset.
    pub fn new(limit: u32, offset: u64) -> Result<Self> {
        if limit > MAX_PAGE_SIZE {
            return Err(Error::invalid(
                "page.limit",
                format!("must be at most {MAX_PAGE_SIZE}"),
            ));
        }
        if offset > MAX_OFFSET {
            return Err(Error::invalid(
                "page.offset",
                format!("must be at most {MAX_OFFSET}"),
            ));
        }
        let limit = if limit == 0 { DEFAULT_PAGE_SIZE } else { limit };
        Ok(Self { limit, offset })
    }
}

/// A non-empty string, trimmed, of at most `max` characters.
pub fn required(field: &'static str, value: &str, max: usize) -> Result<String> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    bounded(field, value, max)
}

/// A possibly empty string, trimmed, of at most `max` characters.
pub fn optional(field: &'static str, value: &str, max: usize) -> Result<String> {
    bounded(field, value.trim(), max)
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<String> {
    if value.chars().count() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// An email address, lowercased: one `@`, a non-empty local part, a dotted domain, at most 254 bytes.
pub fn email(field: &'static str, value: &str) -> Result<String> {
    let value = required(field, value, 254)?.to_lowercase();
    let valid = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !value.contains(char::is_whitespace)
        }
        None => false,
    };
    if !valid {
        return Err(Error::invalid(field, "must be an email address"));
    }
    Ok(value)
}

/// A UUID given as text.
pub fn id(field: &'static str, value: &str) -> Result<Uuid> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    Uuid::try_parse(value).map_err(|_| Error::invalid(field, "must be a uuid"))
}

/// Skill labels: at most `max`, each 1 to [`SKILL_MAX`] of `a-z 0-9 _ -` (trimmed and lowercased
/// first); sorted, without duplicates.
pub fn skills(field: &'static str, skills: &[String], max: usize) -> Result<Vec<String>> {
    if skills.len() > max {
        return Err(Error::invalid(field, format!("at most {max} skills")));
    }
    let mut normalized = Vec::with_capacity(skills.len());
    for skill in skills {
        let skill = skill.trim().to_lowercase();
        let valid = !skill.is_empty()
            && skill.chars().count() <= SKILL_MAX
            && skill
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !valid {
            return Err(Error::invalid(
                field,
                format!("each skill is 1 to {SKILL_MAX} of a-z, 0-9, _ and -"),
            ));
        }
        normalized.push(skill);
    }
    normalized.sort();
    normalized.dedup();
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_default_and_cap() {
        assert_eq!(Page::new(0, 0).unwrap().limit, DEFAULT_PAGE_SIZE);
        assert_eq!(
            Page::new(100, 5).unwrap(),
            Page {
                limit: 100,
                offset: 5
            }
        );
        assert!(Page::new(101, 0).is_err());
        assert!(Page::new(10, MAX_OFFSET + 1).is_err());
    }

    #[test]
    fn emails_are_checked_and_lowercased() {
        assert_eq!(
            email("email", " Ann@Example.COM ").unwrap(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "a@b@c.de",
        ] {
            assert!(email("email", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn strings_have_limits() {
        assert!(required("name", "   ", 10).is_err());
        assert!(required("name", "abcdefghijk", 10).is_err());
        assert!(required("name", "a\u{0}b", 10).is_err());
        assert_eq!(required("name", " Ann ", 10).unwrap(), "Ann");
        assert_eq!(optional("name", "", 10).unwrap(), "");
    }
}
