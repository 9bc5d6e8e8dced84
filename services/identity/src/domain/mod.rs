//! The identity rules as plain types and functions: principals, passwords, secrets, signing keys and
//! tokens, login throttling and search terms. No I/O here.

pub use assist_runtime::keys;
pub mod password;
pub mod principal;
pub mod search;
pub mod secret;
pub mod throttle;

pub use principal::{
    MerchantApproval, NewPrincipal, Principal, PrincipalKind, Purpose, Status, Subject,
};
