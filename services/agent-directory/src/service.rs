//! The agent-directory use cases: each checks who asks, applies the domain rules, and calls the store and
//! identity (facts about principals; users, mail and blocking for the console). Shared by the gRPC API
//! and the operator's `assist` commands.

use std::time::Duration;

use assist_runtime::auth::{ADMIN_SCOPE, Claims, Realm, permission};
use assist_runtime::notify::Notifier;
use assist_runtime::time::now_us;
use assist_runtime::validate::{self, Page};
use assist_runtime::{Error, Result};
use prometheus_client::metrics::gauge::Gauge;

use crate::domain::console::{self, Caller, Presence, Role, RoutingUpdate, Seats, Status};
use crate::domain::{
    self, Agent, AgentChange, Capability, Edit, NewAgent, OPERATOR, PrincipalFacts,
    PrincipalStatus, ProfileUpdate,
};
use crate::principals::Principals;
use crate::store::{AgentFilter, AgentPage, Decision, Outcome, Paged, Store};

/// How many agents one query of a snapshot reads.
pub const SNAPSHOT_PAGE: u32 = 500;
/// How long a seat stays reserved for an invitation while identity creates the user and the mail.
const SEAT_RESERVATION: Duration = Duration::from_secs(60);
/// The longest list search, in characters.
const QUERY_MAX: usize = 100;

/// Who asks: a caller with a verified token, or the operator at the machine (`assist` command).
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    Operator,
    Token(&'a Claims),
}

impl Actor<'_> {
    /// The id recorded in the history as who made a change.
    pub fn id(&self) -> &str {
        match self {
            Actor::Operator => OPERATOR,
            Actor::Token(claims) => &claims.sub,
        }
    }

    /// Impersonation tokens never reach the directory: an agent acting as a customer is no agent here.
    fn refuse_delegated(&self) -> Result<()> {
        match self {
            Actor::Token(claims) if claims.is_delegated() => Err(Error::denied(
                "impersonation tokens are not accepted by the agent directory",
            )),
            _ => Ok(()),
        }
    }

    /// The operator or a platform administrator (never a service).
    fn require_admin(&self) -> Result<()> {
        self.refuse_delegated()?;
        match self {
            Actor::Operator => Ok(()),
            Actor::Token(claims) if claims.is_admin() => Ok(()),
            Actor::Token(_) => Err(Error::denied("administrator required")),
        }
    }

    /// A service account granted `agents:read`.
    fn is_reading_service(&self) -> bool {
        matches!(self, Actor::Token(claims) if claims.service_may(permission::AGENTS_READ))
    }

    /// The caller as a token of the back office (not a service, not the operator); for acting as oneself.
    fn back_office_user(&self) -> Result<&Claims> {
        self.refuse_delegated()?;
        match self {
            Actor::Token(claims) if claims.realm == Realm::BackOffice => Ok(claims),
            _ => Err(Error::denied("a back-office user's token is required")),
        }
    }

    fn require_back_office(&self) -> Result<()> {
        self.refuse_delegated()?;
        match self {
            Actor::Operator => Ok(()),
            Actor::Token(claims) if claims.realm == Realm::BackOffice => Ok(()),
            _ if self.is_reading_service() => Ok(()),
            Actor::Token(_) => Err(Error::denied(
                "back-office user or a service granted agents:read required",
            )),
        }
    }

    /// Admin, or the back-office user `agent_id` acting in its own name.
    fn require_self_or_admin(&self, agent_id: &str) -> Result<()> {
        self.refuse_delegated()?;
        match self {
            Actor::Token(claims) if claims.realm == Realm::BackOffice && claims.sub == agent_id => {
                Ok(())
            }
            _ => self
                .require_admin()
                .map_err(|_| Error::denied("administrator or the agent itself required")),
        }
    }
}

/// What a back-office user may do in the console ([`Agents::console_rights`]).
pub struct ConsoleRights {
    pub profile: Agent,
    /// The console caller it is now; `None` for no active member.
    pub caller: Option<Caller>,
    pub platform_administrator: bool,
}

/// The agent directory: profiles stored here, principals read from identity.
pub struct Agents {
    store: Store,
    principals: Principals,
}

impl Agents {
    pub fn new(store: Store, principals: Principals) -> Self {
        Self { store, principals }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A back-office user reading their own profile, a service granted `agents:read`, or an active
    /// console member (checked against the current state, so a removed member reads nothing more):
    /// one agent. A back-office user without a stored profile has the default one; any other
    /// principal is `NOT_FOUND`.
    pub async fn get_agent(&self, actor: Actor<'_>, id: &str) -> Result<Agent> {
        actor.require_back_office()?;
        let id = agent_id("id", id)?;
        let own = matches!(actor, Actor::Token(claims) if claims.sub == id);
        if !own {
            self.require_reader(actor).await?;
        }
        match self.store.get_agent(&id).await? {
            Some(agent) => Ok(agent),
            None => domain::default_profile(&self.principal(&id).await?),
        }
    }

    /// A service granted `agents:read` or an active console member: stored agents matching the filter
    /// by display name, with the seats and the presence counts of active agents, and the console
    /// caller (to tell whom it may manage).
    pub async fn list_agents(
        &self,
        actor: Actor<'_>,
        capability: Option<Capability>,
        query: &str,
        status: Option<Status>,
        page: Page,
    ) -> Result<(AgentPage, Option<Caller>)> {
        let caller = self.require_reader(actor).await?;
        let query = validate::optional("query", query, QUERY_MAX)?;
        let filter = AgentFilter {
            capability,
            query: domain::sort_name(&query),
            status,
        };
        let agents = self.store.list_agents(&filter, page, now_us()).await?;
        Ok((agents, caller))
    }

    /// A back-office user, for itself: its own profile and the console role it acts with now (none
    /// when it is no active member).
    pub async fn console_rights(&self, actor: Actor<'_>) -> Result<ConsoleRights> {
        actor.refuse_delegated()?;
        let claims = match actor {
            Actor::Token(claims) if claims.realm == Realm::BackOffice => claims,
            _ => return Err(Error::denied("a back-office user's token is required")),
        };
        let profile = self.get_agent(actor, &claims.sub).await?;
        let platform_administrator = self.is_platform_administrator(claims).await?;
        let caller = console::caller_now(&claims.sub, platform_administrator, Some(&profile));
        Ok(ConsoleRights {
            profile,
            caller,
            platform_administrator,
        })
    }

    /// Admin: grants `capability` to a back-office user, storing the profile on its first grant.
    /// Granting a held capability changes nothing; any other grant needs identity to list the user as
    /// active or invited at that moment.
    pub async fn grant(
        &self,
        actor: Actor<'_>,
        agent_id_value: &str,
        capability: Capability,
    ) -> Result<Agent> {
        actor.require_admin()?;
        let id = agent_id("agent_id", agent_id_value)?;
        let edit = Edit::Grant(capability);
        let decide = |agent: &Agent| -> Decision {
            if agent.status == Some(Status::Removed) {
                return Err(Error::FailedPrecondition("the agent is removed".into()));
            }
            Ok(domain::apply(agent, &edit, actor.id(), now_us()))
        };
        let outcome = self.store.change(&id, decide).await?;
        if !matches!(outcome, Outcome::Missing) {
            return self.settled(outcome, &id);
        }
        // Only now is identity asked: a profile is to be stored, for a user who may be an agent.
        let facts = self.principal(&id).await?;
        domain::may_become_agent(&facts)?;
        let create = domain::new_agent(&facts, now_us());
        let outcome = self
            .store
            .change_membership(&id, Some(&create), now_us(), |agent, _| decide(agent))
            .await?;
        self.settled(outcome, &id)
    }

    /// Admin: revokes `capability`. Revoking one not held changes nothing.
    pub async fn revoke(
        &self,
        actor: Actor<'_>,
        agent_id_value: &str,
        capability: Capability,
    ) -> Result<Agent> {
        actor.require_admin()?;
        let id = agent_id("agent_id", agent_id_value)?;
        let edit = Edit::Revoke(capability);
        let outcome = self
            .store
            .change(&id, |agent| {
                Ok(domain::apply(agent, &edit, actor.id(), now_us()))
            })
            .await?;
        match outcome {
            // Nothing stored, so nothing held: the answer is the profile as GetAgent shows it.
            Outcome::Missing => domain::default_profile(&self.principal(&id).await?),
            outcome => self.settled(outcome, &id),
        }
    }

    /// Admin, or the agent itself: sets the display name (1 to 200 characters) and/or the nickname (up
    /// to 100; empty clears it). Fields left `None` keep their value.
    pub async fn update_profile(
        &self,
        actor: Actor<'_>,
        agent_id_value: &str,
        display_name: Option<&str>,
        nickname: Option<&str>,
    ) -> Result<Agent> {
        let id = agent_id("agent_id", agent_id_value)?;
        actor.require_self_or_admin(&id)?;
        let update = ProfileUpdate::new(display_name, nickname)?;
        let edit = Edit::UpdateProfile(update);
        let decide = |agent: &Agent| Ok(domain::apply(agent, &edit, actor.id(), now_us()));
        let outcome = self.store.change(&id, decide).await?;
        if !matches!(outcome, Outcome::Missing) {
            return self.settled(outcome, &id);
        }
        let facts = self.principal(&id).await?;
        let default = domain::default_profile(&facts)?;
        if domain::apply(&default, &edit, actor.id(), now_us()).is_none() {
            // Nothing to store: the default profile already says so.
            return Ok(default);
        }
        domain::may_become_agent(&facts)?;
        let create = domain::new_agent(&facts, now_us());
        let outcome = self
            .store
            .change_membership(&id, Some(&create), now_us(), |agent, _| decide(agent))
            .await?;
        self.settled(outcome, &id)
    }

    /// Admin, service, console supervisor or administrator: the changes of one agent, newest first.
    pub async fn list_history(
        &self,
        actor: Actor<'_>,
        agent_id_value: &str,
        page: Page,
    ) -> Result<Paged<AgentChange>> {
        self.caller(actor).await?.require_manager()?;
        let id = agent_id("agent_id", agent_id_value)?;
        self.store.list_history(&id, page).await
    }

    /// Admin, service, console supervisor or administrator: the notices of agent changes (payload:
    /// the agent id).
    pub async fn agent_changes(&self, actor: Actor<'_>) -> Result<&Notifier> {
        if !actor.is_reading_service() {
            self.caller(actor).await?.require_manager()?;
        }
        Ok(self.store.changes())
    }

    // ---- the console ----

    /// Who may read the directory: a service granted `agents:read`, or a caller the console knows now
    /// ([`Agents::caller`]).
    /// The console caller, when it is one (`None` for a reading service).
    async fn require_reader(&self, actor: Actor<'_>) -> Result<Option<Caller>> {
        if actor.is_reading_service() {
            return Ok(None);
        }
        self.caller(actor).await.map(Some)
    }

    /// The caller's console role, from the current state: its own active profile's role; platform
    /// administrators (their status and scope read from identity now, not from their token, so a
    /// blocked or demoted administrator loses the rights at once) and the operator are
    /// administrators. Services and anyone else are refused.
    pub async fn caller(&self, actor: Actor<'_>) -> Result<Caller> {
        actor.refuse_delegated()?;
        let claims = match actor {
            Actor::Operator => {
                return Ok(Caller {
                    id: OPERATOR.into(),
                    role: Role::Administrator,
                });
            }
            Actor::Token(claims) => claims,
        };
        match claims.realm {
            Realm::BackOffice => {}
            _ => return Err(Error::denied("a back-office user's token is required")),
        }
        let platform_administrator = self.is_platform_administrator(claims).await?;
        let profile = if platform_administrator {
            None
        } else {
            self.store.get_agent(&claims.sub).await?
        };
        console::caller_now(&claims.sub, platform_administrator, profile.as_ref())
            .ok_or_else(|| Error::denied("only active console members can do this"))
    }

    /// Whether identity lists the token's back-office user as an active platform administrator now
    /// (asked only when the token carries the `admin` scope).
    async fn is_platform_administrator(&self, claims: &Claims) -> Result<bool> {
        if claims.realm != Realm::BackOffice || !claims.has_scope(ADMIN_SCOPE) {
            return Ok(false);
        }
        let facts = self.principal(&claims.sub).await?;
        Ok(facts.platform_admin && facts.status == PrincipalStatus::Active)
    }

    /// Back office or service: the seats.
    pub async fn seats(&self, actor: Actor<'_>) -> Result<Seats> {
        actor.require_back_office()?;
        self.store.seats(now_us()).await
    }

    /// Administrator: sets the licensed seats (not below what is occupied).
    pub async fn set_seats(&self, actor: Actor<'_>, licensed: u32) -> Result<Seats> {
        let caller = self.caller(actor).await?;
        caller.require_administrator()?;
        let seats = self
            .store
            .set_seats(&caller.id, now_us(), |seats| seats.relicense(licensed))
            .await?;
        tracing::info!(actor_id = %caller.id, licensed = seats.licensed, "seats changed");
        Ok(seats)
    }

    /// Supervisor or administrator per the matrix: creates the invited user in identity, has it mail
    /// the set-password link, and stores the invited profile, holding a seat throughout.
    pub async fn invite(
        &self,
        actor: Actor<'_>,
        email: &str,
        role: Role,
        full_name: &str,
    ) -> Result<Agent> {
        let caller = self.caller(actor).await?;
        let email = validate::email("email", email)?;
        let full_name = match full_name.trim() {
            "" => email.split('@').next().unwrap_or_default().to_owned(),
            name => validate::required("full_name", name, validate::PERSON_NAME_MAX)?,
        };
        caller.may_invite(role)?;
        let now = now_us();
        let reservation = self
            .store
            .reserve_seat(now, now + SEAT_RESERVATION.as_micros() as i64)
            .await?;
        let id = match self.principals.create_invited(&email, &full_name).await {
            Ok(id) => id,
            Err(error) => {
                self.store.release_seat(&reservation).await?;
                return Err(error);
            }
        };
        // A mail that failed leaves an invitation that has already expired: it holds no seat, and
        // resending it is the way on.
        let sent = self.principals.send_link(&id, true).await;
        let create = NewAgent {
            id: id.clone(),
            display_name: full_name,
            created_at_us: now_us(),
            email,
            role,
            status: Status::Invited,
            invitation_expires_at_us: *sent.as_ref().unwrap_or(&0),
            reservation: Some(reservation),
        };
        let outcome = self
            .store
            .change_membership(&id, Some(&create), now_us(), |agent, _| {
                Ok(domain::apply(agent, &Edit::Invited, &caller.id, now_us()))
            })
            .await?;
        let agent = self.settled(outcome, &id)?;
        sent.map_err(|error| {
            tracing::warn!(agent_id = %id, error = %error, "invitation mail failed");
            Error::Unavailable(
                "the agent was invited but the mail could not be sent; resend it".into(),
            )
        })?;
        Ok(agent)
    }

    /// Supervisor or administrator per the matrix: a new invitation link for an invited agent.
    pub async fn resend_invitation(&self, actor: Actor<'_>, agent_id_value: &str) -> Result<Agent> {
        let caller = self.caller(actor).await?;
        let id = agent_id("agent_id", agent_id_value)?;
        console::check_invitation(&caller, &self.member(&id).await?)?;
        let expires_at_us = self.principals.send_link(&id, true).await?;
        let edit = Edit::InvitationResent { expires_at_us };
        let outcome = self
            .store
            .change_membership(&id, None, now_us(), |agent, membership| {
                console::check_invitation(&caller, agent)?;
                console::check_resend(agent, membership, now_us())?;
                Ok(domain::apply(agent, &edit, &caller.id, now_us()))
            })
            .await?;
        self.settled(outcome, &id)
    }

    /// Supervisor or administrator per the matrix: withdraws an invitation (the agent is removed and
    /// identity blocks the user, so the link stops working). Revoking a removed agent's invitation
    /// repeats only the identity step.
    pub async fn revoke_invitation(&self, actor: Actor<'_>, agent_id_value: &str) -> Result<Agent> {
        let caller = self.caller(actor).await?;
        let id = agent_id("agent_id", agent_id_value)?;
        let outcome = self
            .store
            .change_membership(&id, None, now_us(), |agent, _| {
                // Revoking again repeats only the identity step (it may have failed before).
                if agent.status == Some(Status::Removed) {
                    caller.may_act_on(agent)?;
                    return Ok(None);
                }
                console::check_invitation(&caller, agent)?;
                Ok(domain::apply(
                    agent,
                    &Edit::InvitationRevoked,
                    &caller.id,
                    now_us(),
                ))
            })
            .await?;
        let agent = self.settled_or_missing(outcome, &id)?;
        self.principals.block(&id).await?;
        Ok(agent)
    }

    /// Supervisor or administrator per the matrix, confirmed by the agent's email: removes the agent
    /// (capabilities gone, offline, seat freed), then has identity block it (sign-ins and refresh
    /// tokens end). Removing a removed agent repeats only the identity step.
    pub async fn remove(
        &self,
        actor: Actor<'_>,
        agent_id_value: &str,
        confirm_email: &str,
    ) -> Result<Agent> {
        let caller = self.caller(actor).await?;
        let id = agent_id("agent_id", agent_id_value)?;
        if confirm_email.trim().is_empty() {
            return Err(Error::invalid(
                "confirm_email",
                "must repeat the agent's email",
            ));
        }
        let outcome = self
            .store
            .change_membership(&id, None, now_us(), |agent, membership| {
                console::check_remove(&caller, agent, confirm_email, membership)?;
                Ok(domain::apply(agent, &Edit::Removed, &caller.id, now_us()))
            })
            .await?;
        let agent = self.settled_or_missing(outcome, &id)?;
        self.principals.block(&id).await.map_err(|_| {
            Error::Unavailable(
                "the agent is removed, but identity could not be reached to end its sign-ins; \
                 remove it again"
                    .into(),
            )
        })?;
        Ok(agent)
    }

    /// Supervisor or administrator per the matrix: gives an invited or active agent another role.
    pub async fn change_role(
        &self,
        actor: Actor<'_>,
        agent_id_value: &str,
        role: Role,
    ) -> Result<Agent> {
        let caller = self.caller(actor).await?;
        let id = agent_id("agent_id", agent_id_value)?;
        let outcome = self
            .store
            .change_membership(&id, None, now_us(), |agent, membership| {
                console::check_role_change(&caller, agent, role, membership)?;
                Ok(domain::apply(
                    agent,
                    &Edit::RoleChanged(role),
                    &caller.id,
                    now_us(),
                ))
            })
            .await?;
        self.settled_or_missing(outcome, &id)
    }

    /// Supervisor or administrator per the matrix: identity mails the active agent a reset link; the
    /// request is recorded. When the link expires.
    pub async fn reset_password(&self, actor: Actor<'_>, agent_id_value: &str) -> Result<i64> {
        let caller = self.caller(actor).await?;
        let id = agent_id("agent_id", agent_id_value)?;
        console::check_password_reset(&caller, &self.member(&id).await?)?;
        let expires_at_us = self.principals.send_link(&id, false).await?;
        let outcome = self
            .store
            .change(&id, |agent| {
                Ok(domain::apply(
                    agent,
                    &Edit::PasswordResetSent,
                    &caller.id,
                    now_us(),
                ))
            })
            .await?;
        self.settled_or_missing(outcome, &id)?;
        Ok(expires_at_us)
    }

    /// Supervisor or administrator per the matrix: capacity and skills.
    pub async fn update_routing(
        &self,
        actor: Actor<'_>,
        agent_id_value: &str,
        capacity: Option<u32>,
        skills: Option<&[String]>,
    ) -> Result<Agent> {
        let caller = self.caller(actor).await?;
        let id = agent_id("agent_id", agent_id_value)?;
        let edit = Edit::RoutingUpdated(RoutingUpdate::new(capacity, skills)?);
        let outcome = self
            .store
            .change(&id, |agent| {
                console::check_routing(&caller, agent)?;
                Ok(domain::apply(agent, &edit, &caller.id, now_us()))
            })
            .await?;
        match outcome {
            Outcome::Unchanged(agent) => Ok(agent),
            outcome => self.settled_or_missing(outcome, &id),
        }
    }

    /// A back-office user's own heartbeat. Active members: presence and last seen (one statement
    /// when the presence stays). An invited member is activated first (it could sign in, so it
    /// redeemed its invitation); a platform administrator without a profile gets one, as
    /// administrator. Anyone else is refused.
    pub async fn heartbeat(&self, actor: Actor<'_>, presence: Presence) -> Result<Presence> {
        let claims = actor.back_office_user()?;
        let id = claims.sub.as_str();
        // The usual case, an active member whose presence stays: one statement, nothing to announce.
        if self.store.touch(id, presence, now_us()).await? {
            return Ok(presence);
        }
        // An active member whose presence changes.
        if self.store.set_presence(id, presence, now_us()).await? {
            return Ok(presence);
        }
        match self.store.get_agent(id).await? {
            Some(agent) if agent.status == Some(Status::Invited) => {
                let outcome = self
                    .store
                    .change_membership(id, None, now_us(), |agent, membership| {
                        console::check_activation(agent, membership, now_us())?;
                        Ok(domain::apply(agent, &Edit::Activated, id, now_us()))
                    })
                    .await?;
                self.settled_or_missing(outcome, id)?;
            }
            Some(agent) if agent.status == Some(Status::Removed) => {
                return Err(Error::denied("the agent is removed"));
            }
            // Activated meanwhile by a concurrent heartbeat.
            Some(_) => {}
            None if claims.has_scope(ADMIN_SCOPE) => {
                let facts = self.principal(id).await?;
                domain::may_become_agent(&facts)?;
                let create = domain::new_agent(&facts, now_us());
                self.store
                    .change_membership(id, Some(&create), now_us(), |agent, _| {
                        Ok(domain::apply(agent, &Edit::Joined, id, now_us()))
                    })
                    .await?;
            }
            None => return Err(Error::denied("only console members send heartbeats")),
        }
        if !self.store.set_presence(id, presence, now_us()).await? {
            return Err(Error::denied("only active console members send heartbeats"));
        }
        Ok(presence)
    }

    /// Sets agents offline whose last heartbeat is older than `timeout`, recounts seats and presence
    /// for the lists, and refreshes the console gauges on `/metrics`.
    pub async fn expire_presence(&self, timeout: Duration) -> Result<usize> {
        let now = now_us();
        let expired = self
            .store
            .expire_presence(now - timeout.as_micros() as i64)
            .await?;
        if expired > 0 {
            tracing::info!(agents = expired, "presence timed out");
        }
        let (seats, presence) = self.store.recount(now).await?;
        let gauges = gauges();
        gauges.online.set(presence.online as i64);
        gauges.away.set(presence.away as i64);
        gauges.offline.set(presence.offline as i64);
        gauges.seats_licensed.set(seats.licensed as i64);
        gauges.seats_occupied.set(seats.occupied as i64);
        Ok(expired)
    }

    /// A stored profile, `NOT_FOUND` when there is none.
    async fn member(&self, id: &str) -> Result<Agent> {
        self.store
            .get_agent(id)
            .await?
            .ok_or(Error::NotFound("agent"))
    }

    /// [`Agents::settled`] for changes of stored profiles only: a missing one is `NOT_FOUND`.
    fn settled_or_missing(&self, outcome: Outcome, id: &str) -> Result<Agent> {
        match outcome {
            Outcome::Missing => Err(Error::NotFound("agent")),
            outcome => self.settled(outcome, id),
        }
    }

    /// Every stored agent, by id, read a page at a time; for callers already checked by
    /// [`Agents::agent_changes`].
    pub async fn snapshot(&self) -> Result<Vec<Agent>> {
        let mut agents = Vec::new();
        loop {
            let after = agents
                .last()
                .map(|a: &Agent| a.id.clone())
                .unwrap_or_default();
            let page = self.store.agents_after(&after, SNAPSHOT_PAGE).await?;
            let complete = page.len() < SNAPSHOT_PAGE as usize;
            agents.extend(page);
            if complete {
                return Ok(agents);
            }
        }
    }

    /// An agent as a watcher sees it after a notice; for callers already checked by
    /// [`Agents::agent_changes`].
    pub async fn changed_agent(&self, id: &str) -> Result<Option<Agent>> {
        self.store.get_agent(id).await
    }

    /// The principal `id` as identity knows it; `NOT_FOUND` "agent" when it does not.
    async fn principal(&self, id: &str) -> Result<PrincipalFacts> {
        self.principals
            .get(id)
            .await?
            .ok_or(Error::NotFound("agent"))
    }

    /// The agent a change leaves, logging a change that happened.
    fn settled(&self, outcome: Outcome, id: &str) -> Result<Agent> {
        match outcome {
            Outcome::Changed(agent, change) => {
                tracing::info!(
                    agent_id = %agent.id,
                    actor_id = %change.actor_id,
                    action = %change.action,
                    version = agent.version,
                    "agent changed"
                );
                Ok(agent)
            }
            Outcome::Unchanged(agent) => Ok(agent),
            Outcome::Missing => Err(Error::internal(anyhow::anyhow!(
                "agent {id} missing right after it was stored"
            ))),
        }
    }
}

/// The console's gauges on `/metrics`, refreshed by every presence sweep.
struct Gauges {
    online: Gauge,
    away: Gauge,
    offline: Gauge,
    seats_licensed: Gauge,
    seats_occupied: Gauge,
}

fn gauges() -> &'static Gauges {
    static GAUGES: std::sync::OnceLock<Gauges> = std::sync::OnceLock::new();
    GAUGES.get_or_init(|| {
        let gauge = |name: &str, help: &str| {
            let gauge = Gauge::default();
            assist_runtime::metrics::register(name, help, gauge.clone());
            gauge
        };
        Gauges {
            online: gauge("console_agents_online", "active console agents online"),
            away: gauge("console_agents_away", "active console agents away"),
            offline: gauge("console_agents_offline", "active console agents offline"),
            seats_licensed: gauge("console_seats_licensed", "licensed console seats"),
            seats_occupied: gauge(
                "console_seats_occupied",
                "console seats taken by active agents and live invitations",
            ),
        }
    })
}

/// An agent id: the text of a UUID, in its canonical form.
fn agent_id(field: &'static str, value: &str) -> Result<String> {
    Ok(validate::id(field, value)?.to_string())
}
