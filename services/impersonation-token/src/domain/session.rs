//! Assist sessions: the rules that decide whether an agent may start assisting a target, what the
//! impersonation token may do, and when a session stops being live.

use std::time::Duration;

use assist_runtime::{Error, Result};

/// Whom a session assists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetRealm {
    Customer,
    MerchantUser,
}

impl TargetRealm {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetRealm::Customer => "customer",
            TargetRealm::MerchantUser => "merchant_user",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "customer" => Some(TargetRealm::Customer),
            "merchant_user" => Some(TargetRealm::MerchantUser),
            _ => None,
        }
    }
}

/// The agent-directory capability an agent needs to assist a realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    AssistCustomers,
    AssistMerchantUsers,
}

impl Capability {
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::AssistCustomers => "assist_customers",
            Capability::AssistMerchantUsers => "assist_merchant_users",
        }
    }
}

pub fn required_capability(realm: TargetRealm) -> Capability {
    match realm {
        TargetRealm::Customer => Capability::AssistCustomers,
        TargetRealm::MerchantUser => Capability::AssistMerchantUsers,
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    EndedByAgent,
    EndedByAdmin,
    Replaced,
    CapabilityRevoked,
    AgentBlocked,
    TargetBlocked,
    IdleTimeout,
    MaxLength,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::EndedByAgent => "ended_by_agent",
            EndReason::EndedByAdmin => "ended_by_admin",
            EndReason::Replaced => "replaced",
            EndReason::CapabilityRevoked => "capability_revoked",
            EndReason::AgentBlocked => "agent_blocked",
            EndReason::TargetBlocked => "target_blocked",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::MaxLength => "max_length",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [
            EndReason::EndedByAgent,
            EndReason::EndedByAdmin,
            EndReason::Replaced,
            EndReason::CapabilityRevoked,
            EndReason::AgentBlocked,
            EndReason::TargetBlocked,
            EndReason::IdleTimeout,
            EndReason::MaxLength,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == value)
    }
}

/// Who ended a session when no person did.
pub const SYSTEM: &str = "system";

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub agent_id: String,
    pub target_id: String,
    pub target_realm: TargetRealm,
    pub reason: String,
    pub conversation_id: String,
    pub scope: String,
    pub started_at_us: i64,
    pub expires_at_us: i64,
    pub idle_expires_at_us: i64,
    pub last_used_at_us: i64,
    pub ended_at_us: Option<i64>,
    pub end_reason: Option<EndReason>,
    pub ended_by: Option<String>,
    pub action_count: u64,
    pub audit_head: String,
}

impl Session {
    /// Live: not ended, and neither the idle timeout nor the maximum length has passed.
    pub fn is_live(&self, now_us: i64) -> bool {
        self.ended_at_us.is_none() && now_us < self.live_until_us()
    }

    /// Until when the session stays live without further use.
    pub fn live_until_us(&self) -> i64 {
        self.idle_expires_at_us.min(self.expires_at_us)
    }

    /// Why a session that is no longer live is over: its recorded reason, or the timeout it ran into.
    pub fn effective_end(&self) -> EndReason {
        self.end_reason
            .unwrap_or(if self.idle_expires_at_us < self.expires_at_us {
                EndReason::IdleTimeout
            } else {
                EndReason::MaxLength
            })
    }
}

/// A session about to start.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub agent_id: String,
    pub target_id: String,
    pub target_realm: TargetRealm,
    pub reason: String,
    pub conversation_id: String,
    pub scope: String,
    pub started_at_us: i64,
    pub expires_at_us: i64,
    pub idle_expires_at_us: i64,
}

impl NewSession {
    /// The session as stored right after it started.
    pub fn into_started(self) -> Session {
        Session {
            audit_head: crate::domain::audit::genesis(&self.id),
            id: self.id,
            agent_id: self.agent_id,
            target_id: self.target_id,
            target_realm: self.target_realm,
            reason: self.reason,
            conversation_id: self.conversation_id,
            scope: self.scope,
            started_at_us: self.started_at_us,
            expires_at_us: self.expires_at_us,
            idle_expires_at_us: self.idle_expires_at_us,
            last_used_at_us: self.started_at_us,
            ended_at_us: None,
            end_reason: None,
            ended_by: None,
            action_count: 0,
        }
    }
}

/// What identity and agent-directory say about the agent, read at the moment of the call.
#[derive(Debug, Clone)]
pub struct AgentFacts {
    pub id: String,
    /// A back-office user (not a customer, merchant user or service).
    pub back_office: bool,
    /// Status `active` in identity.
    pub active: bool,
    pub capabilities: Vec<Capability>,
}

/// What identity says about the target.
#[derive(Debug, Clone)]
pub struct TargetFacts {
    pub id: String,
    /// `None` for back-office users and services: never assisted.
    pub realm: Option<TargetRealm>,
    /// Blocked or deleted.
    pub blocked: bool,
    /// The target's own token scope.
    pub scope: String,
    /// What the session's tokens say about the target by name (the `name` and `merchant_name` claims).
    pub name: Option<String>,
    pub merchant_name: Option<String>,
}

impl AgentFacts {
    /// Whether this agent may assist targets of `realm` now.
    pub fn may_assist(&self, realm: TargetRealm) -> Result<()> {
        if !self.back_office || !self.active {
            return Err(Error::denied("only an active back-office user can assist"));
        }
        let needed = required_capability(realm);
        if !self.capabilities.contains(&needed) {
            return Err(Error::denied(format!(
                "the agent lacks the {} capability",
                needed.as_str()
            )));
        }
        Ok(())
    }
}

/// Checks every rule of starting a session; answers the target's realm.
pub fn check_start(agent: &AgentFacts, target: &TargetFacts) -> Result<TargetRealm> {
    if agent.id == target.id {
        return Err(Error::denied("an agent cannot assist themselves"));
    }
    let realm = target.realm.ok_or_else(|| {
        Error::denied("only customers and merchant users can be assisted, never back-office users")
    })?;
    agent.may_assist(realm)?;
    if target.blocked {
        return Err(Error::FailedPrecondition(
            "target_id: the target is blocked or deleted".into(),
        ));
    }
    Ok(realm)
}

/// Scopes an impersonation token never carries, whatever the target holds: credentials, email,
/// payment methods and account deletion (and anything under them, such as `payment_methods:write`).
pub const SENSITIVE_SCOPES: &[&str] = &[
    "credentials",
    "password",
    "email",
    "payment_methods",
    "account_deletion",
    "admin",
];

fn is_sensitive(scope: &str) -> bool {
    let head = scope.split([':', '.']).next().unwrap_or(scope);
    SENSITIVE_SCOPES.contains(&head)
}

/// The scope of an impersonation token: the target's own scopes minus every sensitive one, plus
/// `assisted` so that services can tell the token apart.
pub fn narrow_scope(target_scope: &str) -> String {
    let mut scopes: Vec<&str> = target_scope
        .split(' ')
        .filter(|s| !s.is_empty() && !is_sensitive(s))
        .collect();
    scopes.push("assisted");
    scopes.sort_unstable();
    scopes.dedup();
    scopes.join(" ")
}

/// Session timing.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_length: Duration,
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_length: Duration::from_secs(8 * 3600),
            idle_timeout: Duration::from_secs(30 * 60),
        }
    }
}

impl Limits {
    /// `(expires_at, idle_expires_at)` of a session that starts or is used at `now`.
    pub fn deadlines(&self, started_at_us: i64, now_us: i64) -> (i64, i64) {
        let expires = started_at_us + self.max_length.as_micros() as i64;
        let idle = (now_us + self.idle_timeout.as_micros() as i64).min(expires);
        (expires, idle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(capabilities: Vec<Capability>) -> AgentFacts {
        AgentFacts {
            id: "agent".into(),
            back_office: true,
            active: true,
            capabilities,
        }
    }

    fn customer() -> TargetFacts {
        TargetFacts {
            id: "customer".into(),
            realm: Some(TargetRealm::Customer),
            blocked: false,
            scope: "customer".into(),
            name: None,
            merchant_name: None,
        }
    }

    #[test]
    fn sensitive_scopes_are_never_granted() {
        assert_eq!(
            narrow_scope("customer email payment_methods:write orders.write credentials"),
            "assisted customer orders.write"
        );
        assert_eq!(narrow_scope(""), "assisted");
    }

    #[test]
    fn starting_needs_the_capability_of_the_targets_realm() {
        assert!(check_start(&agent(vec![Capability::AssistCustomers]), &customer()).is_ok());
        assert!(check_start(&agent(vec![Capability::AssistMerchantUsers]), &customer()).is_err());
        let mut blocked_agent = agent(vec![Capability::AssistCustomers]);
        blocked_agent.active = false;
        assert!(check_start(&blocked_agent, &customer()).is_err());
    }

    #[test]
    fn never_oneself_a_back_office_user_or_a_blocked_target() {
        let agent = agent(vec![Capability::AssistCustomers]);
        let mut me = customer();
        me.id = agent.id.clone();
        assert!(check_start(&agent, &me).is_err());
        let mut colleague = customer();
        colleague.realm = None;
        assert!(check_start(&agent, &colleague).is_err());
        let mut blocked = customer();
        blocked.blocked = true;
        assert!(check_start(&agent, &blocked).is_err());
    }

    #[test]
    fn idle_deadline_never_passes_the_maximum_length() {
        let limits = Limits::default();
        let (expires, idle) = limits.deadlines(0, 0);
        assert_eq!(expires, 8 * 3600 * 1_000_000);
        assert_eq!(idle, 30 * 60 * 1_000_000);
        let (_, idle_late) = limits.deadlines(0, expires - 1);
        assert_eq!(idle_late, expires);
    }
}
