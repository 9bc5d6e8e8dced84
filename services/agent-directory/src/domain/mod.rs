//! The agent-directory rules as plain types and functions: agents and their capabilities, what each kind
//! of change does to an agent and how it is recorded, and which principals may be agents. The console's
//! roles, seats and authorization matrix are in [`console`]. No I/O here.

pub mod console;

use assist_runtime::auth::Realm;
use assist_runtime::{Error, Result};
use serde_json::{Map, Value};

use self::console::{Presence, Role, RoutingUpdate, Status};

/// Longest display name, in characters.
pub const DISPLAY_NAME_MAX: usize = 200;
/// Longest nickname, in characters.
pub const NICKNAME_MAX: usize = 100;
/// The actor id recorded for changes made at the machine with the `assist` command.
pub const OPERATOR: &str = "operator";

/// Who an agent may assist. Ordered as in the proto, which is the order an agent lists them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Storefront agent: may assist customers.
    AssistCustomers,
    /// Merchant-portal agent: may assist merchant users.
    AssistMerchantUsers,
}

impl Capability {
    pub const ALL: [Capability; 2] = [Capability::AssistCustomers, Capability::AssistMerchantUsers];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::AssistCustomers => "assist_customers",
            Capability::AssistMerchantUsers => "assist_merchant_users",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == value)
    }
}

/// An agent's profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// The back-office principal's id in identity.
    pub id: String,
    pub display_name: String,
    pub nickname: String,
    /// Sorted, without duplicates.
    pub capabilities: Vec<Capability>,
    pub created_at_us: i64,
    pub updated_at_us: i64,
    /// 0 for a profile not stored yet; one more with every change.
    pub version: u64,
    /// As identity had it when the profile was stored (lowercase).
    pub email: String,
    pub role: Role,
    /// `None` for a profile not stored yet (not a console member).
    pub status: Option<Status>,
    /// The most conversations open at once.
    pub capacity: u32,
    /// Sorted, without duplicates.
    pub skills: Vec<String>,
    pub presence: Presence,
    /// The last heartbeat; 0 for never.
    pub last_seen_at_us: i64,
    /// Invited agents: when the invitation expires; 0 otherwise.
    pub invitation_expires_at_us: i64,
}

impl Agent {
    /// The profile of a back-office user who has none stored: named after the user, no capabilities,
    /// no console membership, version 0. It is stored with the first change.
    pub fn unstored(id: &str, full_name: &str) -> Self {
        Self {
            id: id.to_owned(),
            display_name: full_name.to_owned(),
            nickname: String::new(),
            capabilities: Vec::new(),
            created_at_us: 0,
            updated_at_us: 0,
            version: 0,
            email: String::new(),
            role: Role::Agent,
            status: None,
            capacity: crate::domain::console::DEFAULT_CAPACITY,
            skills: Vec::new(),
            presence: Presence::Offline,
            last_seen_at_us: 0,
            invitation_expires_at_us: 0,
        }
    }

    /// Whether the agent occupies a seat at `now_us`: active, or invited with a live invitation.
    pub fn occupies_seat(&self, now_us: i64) -> bool {
        match self.status {
            Some(Status::Active) => true,
            Some(Status::Invited) => self.invitation_expires_at_us > now_us,
            _ => false,
        }
    }

    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }
}

/// The key agents are listed by: the display name, case-insensitively. Computed here, not in SQL,
/// because SQLite's `lower()` only folds ASCII.
pub fn sort_name(display_name: &str) -> String {
    display_name.to_lowercase()
}

/// A new profile row: what a back-office user's profile starts from when it is first stored. Storing it
/// takes a seat: the one `reservation` holds, or else a free one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAgent {
    pub id: String,
    pub display_name: String,
    pub created_at_us: i64,
    pub email: String,
    pub role: Role,
    pub status: Status,
    pub invitation_expires_at_us: i64,
    /// A seat reserved for this agent beforehand (an invitation), released as the row is stored.
    pub reservation: Option<String>,
}

/// Profile fields to change; `None` leaves a field as it is. Built only by [`ProfileUpdate::new`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    display_name: Option<String>,
    nickname: Option<String>,
}

impl ProfileUpdate {
    /// Checks the fields: a display name of 1 to 200 characters, a nickname of up to 100 (empty clears
    /// it). Both are trimmed.
    pub fn new(display_name: Option<&str>, nickname: Option<&str>) -> Result<Self> {
        Ok(Self {
            display_name: display_name
                .map(|v| assist_runtime::validate::required("display_name", v, DISPLAY_NAME_MAX))
                .transpose()?,
            nickname: nickname
                .map(|v| assist_runtime::validate::optional("nickname", v, NICKNAME_MAX))
                .transpose()?,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.display_name.is_none() && self.nickname.is_none()
    }
}

/// One change to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    Grant(Capability),
    Revoke(Capability),
    UpdateProfile(ProfileUpdate),
    /// A new profile of an invited agent: records the invitation.
    Invited,
    /// A new profile of an active member (a platform administrator opening the console): records it.
    Joined,
    /// A new invitation link expiring then.
    InvitationResent {
        expires_at_us: i64,
    },
    /// The invitation withdrawn: removed, without ever having been active.
    InvitationRevoked,
    /// An invited agent redeemed its invitation.
    Activated,
    /// Removed: no capabilities, offline, no seat.
    Removed,
    RoleChanged(Role),
    RoutingUpdated(RoutingUpdate),
    PasswordResetSent,
}

/// A recorded change: who did what to which agent, with the changed fields before and after as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentChange {
    pub id: String,
    pub agent_id: String,
    pub actor_id: String,
    /// `capability_granted`, `capability_revoked` or `profile_updated`.
    pub action: String,
    pub before: String,
    pub after: String,
    pub at_us: i64,
    /// The agent's version after this change.
    pub version: u64,
}

/// What `edit` by `actor_id` at `now_us` makes of `agent`: the agent after it and the record of the
/// change, or `None` when it changes nothing (granting a held capability, revoking one not held, setting
/// a field to its value), which is then neither stored nor recorded.
pub fn apply(
    agent: &Agent,
    edit: &Edit,
    actor_id: &str,
    now_us: i64,
) -> Option<(Agent, AgentChange)> {
    let mut after = agent.clone();
    let (action, before_json, after_json) = match edit {
        Edit::Grant(capability) => {
            if agent.has(*capability) {
                return None;
            }
            after.capabilities.push(*capability);
            after.capabilities.sort();
            (
                "capability_granted",
                capabilities_json(&agent.capabilities),
                capabilities_json(&after.capabilities),
            )
        }
        Edit::Revoke(capability) => {
            if !agent.has(*capability) {
                return None;
            }
            after.capabilities.retain(|c| c != capability);
            (
                "capability_revoked",
                capabilities_json(&agent.capabilities),
                capabilities_json(&after.capabilities),
            )
        }
        Edit::UpdateProfile(update) => {
            let mut before_fields = Map::new();
            let mut after_fields = Map::new();
            let mut set = |field: &str, target: &mut String, value: &Option<String>| {
                if let Some(value) = value
                    && value != target
                {
                    before_fields.insert(field.into(), Value::String(target.clone()));
                    after_fields.insert(field.into(), Value::String(value.clone()));
                    *target = value.clone();
                }
            };
            set(
                "display_name",
                &mut after.display_name,
                &update.display_name,
            );
            set("nickname", &mut after.nickname, &update.nickname);
            if after_fields.is_empty() {
                return None;
            }
            (
                "profile_updated",
                Value::Object(before_fields).to_string(),
                Value::Object(after_fields).to_string(),
            )
        }
        Edit::Joined => (
            "joined",
            "{}".to_owned(),
            serde_json::json!({
                "email": agent.email,
                "role": agent.role.as_str(),
                "status": status_str(agent.status),
            })
            .to_string(),
        ),
        Edit::Invited => (
            "invited",
            "{}".to_owned(),
            serde_json::json!({
                "email": agent.email,
                "role": agent.role.as_str(),
                "invitation_expires_at_us": agent.invitation_expires_at_us,
            })
            .to_string(),
        ),
        Edit::InvitationResent { expires_at_us } => {
            after.invitation_expires_at_us = *expires_at_us;
            (
                "invitation_resent",
                serde_json::json!({ "invitation_expires_at_us": agent.invitation_expires_at_us })
                    .to_string(),
                serde_json::json!({ "invitation_expires_at_us": expires_at_us }).to_string(),
            )
        }
        Edit::InvitationRevoked | Edit::Removed | Edit::Activated => {
            let (status, action) = match edit {
                Edit::InvitationRevoked => (Status::Removed, "invitation_revoked"),
                Edit::Removed => (Status::Removed, "removed"),
                _ => (Status::Active, "activated"),
            };
            if agent.status == Some(status) {
                return None;
            }
            after.status = Some(status);
            after.invitation_expires_at_us = 0;
            let mut before_fields = serde_json::json!({ "status": status_str(agent.status) });
            let mut after_fields = serde_json::json!({ "status": status.as_str() });
            if status == Status::Removed {
                after.capabilities.clear();
                after.presence = Presence::Offline;
                before_fields["capabilities"] = capability_names(&agent.capabilities);
                after_fields["capabilities"] = capability_names(&[]);
            }
            (action, before_fields.to_string(), after_fields.to_string())
        }
        Edit::RoleChanged(role) => {
            if agent.role == *role {
                return None;
            }
            after.role = *role;
            (
                "role_changed",
                serde_json::json!({ "role": agent.role.as_str() }).to_string(),
                serde_json::json!({ "role": role.as_str() }).to_string(),
            )
        }
        Edit::RoutingUpdated(update) => {
            let mut before_fields = Map::new();
            let mut after_fields = Map::new();
            if let Some(capacity) = update.capacity
                && capacity != agent.capacity
            {
                before_fields.insert("capacity".into(), agent.capacity.into());
                after_fields.insert("capacity".into(), capacity.into());
                after.capacity = capacity;
            }
            if let Some(skills) = &update.skills
                && *skills != agent.skills
            {
                before_fields.insert("skills".into(), agent.skills.clone().into());
                after_fields.insert("skills".into(), skills.clone().into());
                after.skills = skills.clone();
            }
            if after_fields.is_empty() {
                return None;
            }
            (
                "routing_updated",
                Value::Object(before_fields).to_string(),
                Value::Object(after_fields).to_string(),
            )
        }
        Edit::PasswordResetSent => ("password_reset_sent", "{}".to_owned(), "{}".to_owned()),
    };
    after.version = agent.version + 1;
    after.updated_at_us = now_us;
    let change = AgentChange {
        id: uuid::Uuid::now_v7().to_string(),
        agent_id: agent.id.clone(),
        actor_id: actor_id.to_owned(),
        action: action.to_owned(),
        before: before_json,
        after: after_json,
        at_us: now_us,
        version: after.version,
    };
    Some((after, change))
}

fn capabilities_json(capabilities: &[Capability]) -> String {
    serde_json::json!({ "capabilities": capability_names(capabilities) }).to_string()
}

fn capability_names(capabilities: &[Capability]) -> Value {
    capabilities.iter().map(|c| c.as_str()).collect()
}

fn status_str(status: Option<Status>) -> &'static str {
    status.map_or("none", Status::as_str)
}

/// A principal's status in identity, as far as agents are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalStatus {
    Active,
    Invited,
    Blocked,
    Inactive,
    Deleted,
}

impl PrincipalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalStatus::Active => "active",
            PrincipalStatus::Invited => "invited",
            PrincipalStatus::Blocked => "blocked",
            PrincipalStatus::Inactive => "inactive",
            PrincipalStatus::Deleted => "deleted",
        }
    }
}

/// What identity says about a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalFacts {
    pub id: String,
    pub realm: Realm,
    pub status: PrincipalStatus,
    /// The back-office user's full name; empty for other realms.
    pub full_name: String,
    pub email: String,
    /// A platform administrator (identity scope `admin`): joins the console as an administrator.
    pub platform_admin: bool,
}

/// The profile of a principal without a stored one: a back-office user has the default profile, anyone
/// else is no agent.
pub fn default_profile(facts: &PrincipalFacts) -> Result<Agent> {
    if facts.realm == Realm::BackOffice {
        Ok(Agent::unstored(&facts.id, &facts.full_name))
    } else {
        Err(Error::NotFound("agent"))
    }
}

/// Whether a principal may get a stored profile (a first capability, a first profile edit): active or
/// invited back-office users only.
pub fn may_become_agent(facts: &PrincipalFacts) -> Result<()> {
    if facts.realm != Realm::BackOffice {
        return Err(Error::FailedPrecondition(
            "only back-office users can be agents".into(),
        ));
    }
    match facts.status {
        PrincipalStatus::Active | PrincipalStatus::Invited => Ok(()),
        status => Err(Error::FailedPrecondition(format!(
            "the back-office user is {}; only active or invited users can be agents",
            status.as_str()
        ))),
    }
}

/// The first row of a principal's profile, named after the user: an active member, an administrator
/// when the user is a platform administrator, an agent otherwise. Storing it takes a free seat.
pub fn new_agent(facts: &PrincipalFacts, now_us: i64) -> NewAgent {
    NewAgent {
        id: facts.id.clone(),
        display_name: facts.full_name.clone(),
        created_at_us: now_us,
        email: facts.email.clone(),
        role: if facts.platform_admin {
            Role::Administrator
        } else {
            Role::Agent
        },
        status: Status::Active,
        invitation_expires_at_us: 0,
        reservation: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Agent {
        Agent {
            created_at_us: 1,
            updated_at_us: 1,
            version: 3,
            ..Agent::unstored("a1", "Ann Lee")
        }
    }

    #[test]
    fn grant_and_revoke_keep_capabilities_sorted_and_record_both_sides() {
        let (after, change) = apply(
            &agent(),
            &Edit::Grant(Capability::AssistMerchantUsers),
            "admin",
            10,
        )
        .unwrap();
        let (after, _) = apply(
            &after,
            &Edit::Grant(Capability::AssistCustomers),
            "admin",
            11,
        )
        .unwrap();
        assert_eq!(
            after.capabilities,
            [Capability::AssistCustomers, Capability::AssistMerchantUsers]
        );
        assert_eq!((after.version, after.updated_at_us), (5, 11));
        assert_eq!(change.action, "capability_granted");
        assert_eq!(change.actor_id, "admin");
        assert_eq!(change.before, r#"{"capabilities":[]}"#);
        assert_eq!(
            change.after,
            r#"{"capabilities":["assist_merchant_users"]}"#
        );

        let (revoked, change) = apply(
            &after,
            &Edit::Revoke(Capability::AssistCustomers),
            "admin",
            12,
        )
        .unwrap();
        assert_eq!(revoked.capabilities, [Capability::AssistMerchantUsers]);
        assert_eq!(change.action, "capability_revoked");
        assert_eq!(
            change.before,
            r#"{"capabilities":["assist_customers","assist_merchant_users"]}"#
        );
    }

    #[test]
    fn changes_that_change_nothing_are_none() {
        let holding = apply(&agent(), &Edit::Grant(Capability::AssistCustomers), "x", 2)
            .unwrap()
            .0;
        assert!(apply(&holding, &Edit::Grant(Capability::AssistCustomers), "x", 3).is_none());
        assert!(apply(&agent(), &Edit::Revoke(Capability::AssistCustomers), "x", 3).is_none());
        let same = ProfileUpdate::new(Some(" Ann Lee "), Some("")).unwrap();
        assert!(apply(&agent(), &Edit::UpdateProfile(same), "x", 3).is_none());
    }

    #[test]
    fn profile_updates_record_only_the_changed_fields() {
        let update = ProfileUpdate::new(Some("Ann Lee"), Some("Annie")).unwrap();
        let (after, change) = apply(&agent(), &Edit::UpdateProfile(update), "a1", 9).unwrap();
        assert_eq!(after.nickname, "Annie");
        assert_eq!(change.before, r#"{"nickname":""}"#);
        assert_eq!(change.after, r#"{"nickname":"Annie"}"#);
        assert_eq!(change.action, "profile_updated");
    }

    #[test]
    fn profile_fields_have_limits() {
        assert!(ProfileUpdate::new(Some("  "), None).is_err());
        assert!(ProfileUpdate::new(Some(&"x".repeat(201)), None).is_err());
        assert!(ProfileUpdate::new(Some(&"é".repeat(200)), None).is_ok());
        assert!(ProfileUpdate::new(None, Some(&"x".repeat(101))).is_err());
        assert!(ProfileUpdate::new(None, Some("")).is_ok());
        assert!(ProfileUpdate::new(None, None).unwrap().is_empty());
        let error = ProfileUpdate::new(None, Some("a\nb")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "nickname: must not contain control characters"
        );
    }

    #[test]
    fn only_active_or_invited_back_office_users_become_agents() {
        let facts = |realm, status| PrincipalFacts {
            id: "p".into(),
            realm,
            status,
            full_name: "Pat".into(),
            email: "pat@example.com".into(),
            platform_admin: false,
        };
        assert!(may_become_agent(&facts(Realm::BackOffice, PrincipalStatus::Active)).is_ok());
        assert!(may_become_agent(&facts(Realm::BackOffice, PrincipalStatus::Invited)).is_ok());
        let blocked = may_become_agent(&facts(Realm::BackOffice, PrincipalStatus::Blocked));
        assert_eq!(blocked.unwrap_err().code(), tonic::Code::FailedPrecondition);
        let customer = may_become_agent(&facts(Realm::Customer, PrincipalStatus::Active));
        assert_eq!(
            customer.unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );

        let profile = default_profile(&facts(Realm::BackOffice, PrincipalStatus::Blocked)).unwrap();
        assert_eq!((profile.display_name.as_str(), profile.version), ("Pat", 0));
        let service = default_profile(&facts(Realm::Service, PrincipalStatus::Active));
        assert_eq!(service.unwrap_err().code(), tonic::Code::NotFound);
    }

    #[test]
    fn sort_names_fold_case_beyond_ascii() {
        assert_eq!(sort_name("Élodie"), "élodie");
        assert!(sort_name("ann") < sort_name("Bob"));
    }
}
