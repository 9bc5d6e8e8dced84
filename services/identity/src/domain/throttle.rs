//! Login throttling: after `max_failures` failures within `window`, further attempts are refused for
//! `block`. Kept per account and per client address.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    pub max_failures: u32,
    pub window: Duration,
    pub block: Duration,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            max_failures: 9,
            window: Duration::from_secs(15 * 60),
            block: Duration::from_secs(6 * 60),
        }
    }
}

/// The throttle key of an account in a realm.
pub fn account_key(realm: &str, email: &str) -> String {
    format!("account:{realm}:{email}")
}

/// The throttle key of a client address.
pub fn address_key(address: &str) -> String {
    format!("address:{address}")
}
