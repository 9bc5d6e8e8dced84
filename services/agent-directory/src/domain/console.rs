//! The console's rules as plain types and functions: roles, membership status, presence, seats, and the
//! authorization matrix of DESIGN.md section 4 (who may invite, remove, change the role of, reset the
//! password of, and set the routing of whom). No I/O here.

use assist_runtime::{Error, Result, validate};

use super::Agent;

/// The capacity of a new agent: the most conversations open at once.
pub const DEFAULT_CAPACITY: u32 = 5;
/// The largest capacity an agent can be given.
pub const MAX_CAPACITY: u32 = 100;
/// The most skills an agent can have.
pub const MAX_SKILLS: usize = 20;
/// The most seats a licence can have.
pub const MAX_SEATS: u32 = 100_000;

/// A console role. Ordered by power.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Agent,
    Supervisor,
    Administrator,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Agent, Role::Supervisor, Role::Administrator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::Administrator => "administrator",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == value)
    }

    /// Whether this role manages (invites, removes, changes the role of, resets the password of)
    /// members of role `target`: DESIGN.md section 4.
    pub fn manages(self, target: Role) -> bool {
        match self {
            Role::Administrator => true,
            Role::Supervisor => matches!(target, Role::Agent | Role::Supervisor),
            Role::Agent => false,
        }
    }

    /// The roles this role may give (by invitation or role change), least powerful first.
    pub fn grantable(self) -> &'static [Role] {
        match self {
            Role::Administrator => &Role::ALL,
            Role::Supervisor => &[Role::Agent, Role::Supervisor],
            Role::Agent => &[],
        }
    }
}

/// A stored profile's console membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Invited,
    Active,
    Removed,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Invited, Status::Active, Status::Removed];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Invited => "invited",
            Status::Active => "active",
            Status::Removed => "removed",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Presence {
    Online,
    Away,
    Offline,
}

impl Presence {
    pub const ALL: [Presence; 3] = [Presence::Online, Presence::Away, Presence::Offline];

    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Online => "online",
            Presence::Away => "away",
            Presence::Offline => "offline",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }
}

/// Active agents by presence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PresenceCounts {
    pub online: u64,
    pub away: u64,
    pub offline: u64,
}

/// The licence: how many seats there are and how many are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seats {
    pub licensed: u64,
    /// Active agents, unexpired invitations and seats reserved for invitations being sent.
    pub occupied: u64,
}

impl Seats {
    pub fn free(&self) -> u64 {
        self.licensed.saturating_sub(self.occupied)
    }

    /// Ok when one more seat can be taken.
    pub fn take_one(&self) -> Result<()> {
        if self.free() == 0 {
            return Err(Error::ResourceExhausted(format!(
                "no free seat: all {} licensed seats are occupied",
                self.licensed
            )));
        }
        Ok(())
    }

    /// A new licensed count: 1 to 100,000 and not below what is occupied.
    pub fn relicense(&self, licensed: u32) -> Result<u64> {
        if !(1..=MAX_SEATS).contains(&licensed) {
            return Err(Error::invalid(
                "licensed",
                format!("must be between 1 and {MAX_SEATS}"),
            ));
        }
        if u64::from(licensed) < self.occupied {
            return Err(Error::FailedPrecondition(format!(
                "{} seats are occupied; remove agents or revoke invitations before lowering the \
                 seats to {licensed}",
                self.occupied
            )));
        }
        Ok(u64::from(licensed))
    }
}

/// The console caller a back-office user is now: an administrator when identity lists it as an active
/// platform administrator, otherwise the role of its active profile; `None` for anyone else.
pub fn caller_now(
    id: &str,
    platform_administrator: bool,
    profile: Option<&Agent>,
) -> Option<Caller> {
    if platform_administrator {
        return Some(Caller {
            id: id.to_owned(),
            role: Role::Administrator,
        });
    }
    profile
        .filter(|agent| agent.status == Some(Status::Active))
        .map(|agent| Caller {
            id: agent.id.clone(),
            role: agent.role,
        })
}

/// What a membership change sees, read under the membership lock (so it cannot change meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub seats: Seats,
    /// Active agents with the administrator role.
    pub administrators: u64,
}

/// Who acts in the console: a principal id and its console role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub role: Role,
}

impl Caller {
    /// Supervisors manage agents and supervisors; administrators everyone; agents no one (DESIGN.md
    /// section 4; the rule is [`Role::manages`]).
    pub fn may_manage(&self, role: Role) -> bool {
        self.role.manages(role)
    }

    pub fn require_manager(&self) -> Result<()> {
        match self.role {
            Role::Agent => Err(Error::denied("supervisor or administrator required")),
            _ => Ok(()),
        }
    }

    pub fn require_administrator(&self) -> Result<()> {
        match self.role {
            Role::Administrator => Ok(()),
            _ => Err(Error::denied("administrator required")),
        }
    }

    /// May invite someone as `role`.
    pub fn may_invite(&self, role: Role) -> Result<()> {
        self.require_manager()?;
        if !self.may_manage(role) {
            return Err(Error::denied(format!(
                "a {} cannot invite a {}",
                self.role.as_str(),
                role.as_str()
            )));
        }
        Ok(())
    }

    /// Whether the console offers the caller to manage `agent`: a member (invited or active) of a
    /// role it manages, not itself. Each change checks its own rules again.
    pub fn may_manage_member(&self, agent: &Agent) -> bool {
        matches!(agent.status, Some(Status::Invited | Status::Active))
            && agent.id != self.id
            && self.may_manage(agent.role)
    }

    /// The roles the caller may give, least powerful first.
    pub fn grantable(&self) -> &'static [Role] {
        self.role.grantable()
    }

    /// May act on `agent` (remove, reset its password, set its routing, its invitation).
    pub fn may_act_on(&self, agent: &Agent) -> Result<()> {
        self.require_manager()?;
        if !self.may_manage(agent.role) {
            return Err(Error::denied(format!(
                "a {} cannot manage a {}",
                self.role.as_str(),
                agent.role.as_str()
            )));
        }
        Ok(())
    }
}

/// The one membership present in every member-only change: a stored, not removed profile.
fn require_member(agent: &Agent) -> Result<Status> {
    match agent.status {
        Some(Status::Removed) => Err(Error::FailedPrecondition("the agent is removed".into())),
        Some(status) => Ok(status),
        None => Err(Error::NotFound("agent")),
    }
}

/// The last active administrator stays one.
fn keep_an_administrator(agent: &Agent, membership: &Membership, leaving: bool) -> Result<()> {
    if leaving
        && agent.role == Role::Administrator
        && agent.status == Some(Status::Active)
        && membership.administrators <= 1
    {
        return Err(Error::FailedPrecondition(
            "the last administrator cannot be removed or demoted".into(),
        ));
    }
    Ok(())
}

/// Whether `caller` may remove `agent`, who is confirmed by `confirm_email`. Removing a removed agent is
/// allowed (it changes nothing but repeats the identity step).
pub fn check_remove(
    caller: &Caller,
    agent: &Agent,
    confirm_email: &str,
    membership: &Membership,
) -> Result<()> {
    caller.may_act_on(agent)?;
    if caller.id == agent.id {
        return Err(Error::denied("nobody can remove themselves"));
    }
    if agent.status.is_none() {
        return Err(Error::NotFound("agent"));
    }
    if !confirm_email.trim().eq_ignore_ascii_case(&agent.email) || agent.email.is_empty() {
        return Err(Error::invalid(
            "confirm_email",
            "must repeat the agent's email",
        ));
    }
    keep_an_administrator(agent, membership, true)
}

/// Whether `caller` may give `agent` the role `role`.
pub fn check_role_change(
    caller: &Caller,
    agent: &Agent,
    role: Role,
    membership: &Membership,
) -> Result<()> {
    if caller.id == agent.id {
        return Err(Error::denied("nobody can change their own role"));
    }
    caller.may_act_on(agent)?;
    if !caller.may_manage(role) {
        return Err(Error::denied(format!(
            "a {} cannot make anyone a {}",
            caller.role.as_str(),
            role.as_str()
        )));
    }
    require_member(agent)?;
    keep_an_administrator(agent, membership, role != Role::Administrator)
}

/// Whether `caller` may act on `agent`'s pending invitation.
pub fn check_invitation(caller: &Caller, agent: &Agent) -> Result<()> {
    caller.may_act_on(agent)?;
    match require_member(agent)? {
        Status::Invited => Ok(()),
        _ => Err(Error::FailedPrecondition(
            "the agent has no pending invitation".into(),
        )),
    }
}

/// Whether `caller` may have identity mail `agent` a password-reset link.
pub fn check_password_reset(caller: &Caller, agent: &Agent) -> Result<()> {
    caller.may_act_on(agent)?;
    match require_member(agent)? {
        Status::Active => Ok(()),
        _ => Err(Error::FailedPrecondition(
            "the agent has not set a password yet; resend the invitation instead".into(),
        )),
    }
}

/// Whether `caller` may set `agent`'s capacity and skills.
pub fn check_routing(caller: &Caller, agent: &Agent) -> Result<()> {
    caller.may_act_on(agent)?;
    require_member(agent).map(|_| ())
}

/// Whether an invited agent whose invitation was redeemed may become active now: it holds its seat while
/// the invitation is live, after that it needs a free one.
pub fn check_activation(agent: &Agent, membership: &Membership, now_us: i64) -> Result<()> {
    if agent.status == Some(Status::Invited) && !agent.occupies_seat(now_us) {
        membership.seats.take_one()?;
    }
    Ok(())
}

/// Whether a resent invitation may keep (or take again) a seat.
pub fn check_resend(agent: &Agent, membership: &Membership, now_us: i64) -> Result<()> {
    check_activation(agent, membership, now_us)
}

/// Capacity and skills to set; `None` keeps a field. Built only by [`RoutingUpdate::new`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingUpdate {
    pub capacity: Option<u32>,
    pub skills: Option<Vec<String>>,
}

impl RoutingUpdate {
    /// Checks: a capacity of 1 to 100; at most 20 skills, each 1 to 32 of `a-z 0-9 _ -` (trimmed and
    /// lowercased); duplicates dropped, sorted.
    pub fn new(capacity: Option<u32>, skills: Option<&[String]>) -> Result<Self> {
        if let Some(capacity) = capacity
            && !(1..=MAX_CAPACITY).contains(&capacity)
        {
            return Err(Error::invalid(
                "capacity",
                format!("must be between 1 and {MAX_CAPACITY}"),
            ));
        }
        let skills = skills
            .map(|skills| validate::skills("skills", skills, MAX_SKILLS))
            .transpose()?;
        Ok(Self { capacity, skills })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            id: "me".into(),
            role,
        }
    }

    fn member(id: &str, role: Role, status: Status) -> Agent {
        Agent {
            email: format!("{id}@example.com"),
            role,
            status: Some(status),
            ..Agent::unstored(id, id)
        }
    }

    fn membership(administrators: u64) -> Membership {
        Membership {
            seats: Seats {
                licensed: 10,
                occupied: 5,
            },
            administrators,
        }
    }

    #[test]
    fn the_caller_now_is_a_platform_administrator_or_an_active_member() {
        let active = member("me", Role::Supervisor, Status::Active);
        assert_eq!(
            caller_now("me", false, Some(&active)),
            Some(caller(Role::Supervisor))
        );
        assert_eq!(
            caller_now("me", true, Some(&active)),
            Some(caller(Role::Administrator))
        );
        assert_eq!(
            caller_now("me", true, None),
            Some(caller(Role::Administrator))
        );
        for status in [Status::Invited, Status::Removed] {
            let agent = member("me", Role::Administrator, status);
            assert_eq!(caller_now("me", false, Some(&agent)), None);
        }
        assert_eq!(
            caller_now("me", false, Some(&super::Agent::unstored("me", "Me"))),
            None
        );
        assert_eq!(caller_now("me", false, None), None);
    }

    #[test]
    fn the_console_offers_only_what_the_caller_may_do() {
        use Role::*;
        let supervisor = caller(Supervisor);
        assert!(supervisor.may_manage_member(&member("a", Agent, Status::Active)));
        assert!(supervisor.may_manage_member(&member("s", Supervisor, Status::Invited)));
        assert!(!supervisor.may_manage_member(&member("x", Administrator, Status::Active)));
        assert!(!supervisor.may_manage_member(&member("me", Supervisor, Status::Active)));
        assert!(!caller(Agent).may_manage_member(&member("a", Agent, Status::Active)));
        let administrator = caller(Administrator);
        assert!(administrator.may_manage_member(&member("x", Administrator, Status::Active)));
        assert!(!administrator.may_manage_member(&member("r", Agent, Status::Removed)));
        assert!(!administrator.may_manage_member(&super::Agent::unstored("n", "n")));

        assert_eq!(caller(Agent).grantable(), &[] as &[Role]);
        assert_eq!(supervisor.grantable(), &[Agent, Supervisor]);
        assert_eq!(
            administrator.grantable(),
            &[Agent, Supervisor, Administrator]
        );
    }

    /// DESIGN.md section 4, "invite / remove / change role / reset password": no / for agents and
    /// supervisors / for everyone.
    #[test]
    fn the_matrix_decides_who_manages_whom() {
        use Role::*;
        let table = [
            (Agent, [false, false, false]),
            (Supervisor, [true, true, false]),
            (Administrator, [true, true, true]),
        ];
        for (caller_role, allowed) in table {
            for (target_role, allowed) in
                [Agent, Supervisor, Administrator].into_iter().zip(allowed)
            {
                let caller = caller(caller_role);
                let target = member("t", target_role, Status::Active);
                let m = membership(2);
                let cell = format!("{caller_role:?} on {target_role:?}");
                assert_eq!(
                    caller.may_invite(target_role).is_ok(),
                    allowed,
                    "invite: {cell}"
                );
                assert_eq!(
                    check_remove(&caller, &target, "T@example.com", &m).is_ok(),
                    allowed,
                    "remove: {cell}"
                );
                assert_eq!(
                    check_password_reset(&caller, &target).is_ok(),
                    allowed,
                    "reset: {cell}"
                );
                assert_eq!(
                    check_routing(&caller, &target).is_ok(),
                    allowed,
                    "routing: {cell}"
                );
                let to_agent = check_role_change(&caller, &target, Agent, &m);
                assert_eq!(to_agent.is_ok(), allowed, "demote: {cell}");
            }
        }
    }

    #[test]
    fn supervisors_cannot_make_administrators_and_nobody_changes_their_own_role() {
        let m = membership(2);
        let agent = member("t", Role::Agent, Status::Active);
        let supervisor = caller(Role::Supervisor);
        assert!(check_role_change(&supervisor, &agent, Role::Supervisor, &m).is_ok());
        let error = check_role_change(&supervisor, &agent, Role::Administrator, &m).unwrap_err();
        assert_eq!(error.code(), tonic::Code::PermissionDenied);
        let me = member("me", Role::Administrator, Status::Active);
        let error =
            check_role_change(&caller(Role::Administrator), &me, Role::Agent, &m).unwrap_err();
        assert_eq!(error.to_string(), "nobody can change their own role");
        let error = check_remove(&caller(Role::Administrator), &me, "me@example.com", &m);
        assert_eq!(error.unwrap_err().code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn the_last_administrator_stays() {
        let admin = caller(Role::Administrator);
        let last = member("t", Role::Administrator, Status::Active);
        let error = check_remove(&admin, &last, "t@example.com", &membership(1)).unwrap_err();
        assert_eq!(error.code(), tonic::Code::FailedPrecondition);
        let error = check_role_change(&admin, &last, Role::Supervisor, &membership(1));
        assert_eq!(error.unwrap_err().code(), tonic::Code::FailedPrecondition);
        assert!(check_remove(&admin, &last, "t@example.com", &membership(2)).is_ok());
        // An invited administrator is not one of the active ones the rule protects.
        let invited = member("t", Role::Administrator, Status::Invited);
        assert!(check_remove(&admin, &invited, "t@example.com", &membership(1)).is_ok());
    }

    #[test]
    fn removal_needs_the_email_repeated() {
        let admin = caller(Role::Administrator);
        let agent = member("t", Role::Agent, Status::Active);
        let error = check_remove(&admin, &agent, "other@example.com", &membership(2)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "confirm_email: must repeat the agent's email"
        );
        assert!(check_remove(&admin, &agent, " T@Example.com ", &membership(2)).is_ok());
    }

    #[test]
    fn seats_are_never_overbooked_or_relicensed_below_use() {
        let full = Seats {
            licensed: 3,
            occupied: 3,
        };
        assert_eq!(
            full.take_one().unwrap_err().code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(
            full.relicense(2).unwrap_err().code(),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(full.relicense(3).unwrap(), 3);
        assert_eq!(
            full.relicense(0).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let over = Seats {
            licensed: 2,
            occupied: 3,
        };
        assert_eq!(over.free(), 0);
    }

    #[test]
    fn an_expired_invitation_needs_a_free_seat_to_activate() {
        let mut invited = member("t", Role::Agent, Status::Invited);
        invited.invitation_expires_at_us = 100;
        let full = Membership {
            seats: Seats {
                licensed: 1,
                occupied: 1,
            },
            administrators: 1,
        };
        assert!(check_activation(&invited, &full, 50).is_ok());
        let error = check_activation(&invited, &full, 150).unwrap_err();
        assert_eq!(error.code(), tonic::Code::ResourceExhausted);
    }

    #[test]
    fn routing_updates_are_checked_and_normalized() {
        let update = RoutingUpdate::new(
            Some(7),
            Some(&["Billing".into(), " de ".into(), "billing".into()]),
        )
        .unwrap();
        assert_eq!(update.skills.unwrap(), ["billing", "de"]);
        assert!(RoutingUpdate::new(Some(0), None).is_err());
        assert!(RoutingUpdate::new(Some(101), None).is_err());
        assert!(RoutingUpdate::new(None, Some(&["a b".into()])).is_err());
        assert!(RoutingUpdate::new(None, Some(&["x".repeat(33)])).is_err());
        let many: Vec<String> = (0..21).map(|i| format!("s{i}")).collect();
        assert!(RoutingUpdate::new(None, Some(&many)).is_err());
        assert!(
            RoutingUpdate::new(None, Some(&[]))
                .unwrap()
                .skills
                .unwrap()
                .is_empty()
        );
    }
}
