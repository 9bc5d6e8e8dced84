//! Login throttling: after `max_failures` failures within `window`, further attempts are refused for
//! `block`. Refusals are kept per client address and per account *from one address* (the pair), so
//! a stranger's failures never block another client, nor lock a named account out for everyone. An
//! account failing from many addresses is slowed instead: while its own count is over the limit,
//! every attempt on it waits [`ACCOUNT_SLOWDOWN`] before the password is checked.

use std::time::Duration;

/// How long each sign-in to an account waits while the account fails from many addresses.
pub const ACCOUNT_SLOWDOWN: Duration = Duration::from_secs(1);

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

/// The throttle key of an account tried from one client address (keys of [`account_key`] and
/// [`address_key`]).
pub fn pair_key(account: &str, address: &str) -> String {
    format!("pair:{account}|{address}")
}

/// The throttle key of a client address.
pub fn address_key(address: &str) -> String {
    format!("address:{address}")
}
