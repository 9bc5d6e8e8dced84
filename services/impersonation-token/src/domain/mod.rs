//! The rules of assist sessions as plain types and functions: who may assist whom, what scope an
//! impersonation token gets, when a session is live, and the audit hash chain. No I/O here.

pub mod audit;
pub mod session;

pub use session::{
    AgentFacts, EndReason, NewSession, Session, TargetFacts, TargetRealm, narrow_scope,
    required_capability,
};
