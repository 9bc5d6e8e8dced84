//! The agent-directory use cases: each checks who asks, applies the domain rules, and calls the store and
//! (for facts about principals) identity. Shared by the gRPC API and the operator's `assist` commands.

use assist_runtime::auth::{Claims, Realm};
use assist_runtime::notify::Notifier;
use assist_runtime::time::now_us;
use assist_runtime::validate::{self, Page};
use assist_runtime::{Error, Result};

use crate::domain::{
    self, Agent, AgentChange, Capability, Edit, OPERATOR, PrincipalFacts, ProfileUpdate,
};
use crate::principals::Principals;
use crate::store::{Outcome, Paged, Store};

/// How many agents one query of a snapshot reads.
pub const SNAPSHOT_PAGE: u32 = 500;

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

    fn require_admin(&self) -> Result<()> {
        self.refuse_delegated()?;
        match self {
            Actor::Operator => Ok(()),
            Actor::Token(claims) if claims.is_admin_or_service() => Ok(()),
            Actor::Token(_) => Err(Error::denied("administrator or service token required")),
        }
    }

    fn require_back_office(&self) -> Result<()> {
        self.refuse_delegated()?;
        match self {
            Actor::Operator => Ok(()),
            Actor::Token(claims) if matches!(claims.realm, Realm::BackOffice | Realm::Service) => {
                Ok(())
            }
            Actor::Token(_) => Err(Error::denied("back-office or service token required")),
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

    /// Back office or service: one agent. A back-office user without a stored profile has the default
    /// one; any other principal is `NOT_FOUND`.
    pub async fn get_agent(&self, actor: Actor<'_>, id: &str) -> Result<Agent> {
        actor.require_back_office()?;
        let id = agent_id("id", id)?;
        match self.store.get_agent(&id).await? {
            Some(agent) => Ok(agent),
            None => domain::default_profile(&self.principal(&id).await?),
        }
    }

    /// Back office or service: stored agents by display name, optionally only those holding
    /// `capability`.
    pub async fn list_agents(
        &self,
        actor: Actor<'_>,
        capability: Option<Capability>,
        page: Page,
    ) -> Result<Paged<Agent>> {
        actor.require_back_office()?;
        self.store.list_agents(capability, page).await
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
        if let Some(agent) = self.store.get_agent(&id).await?
            && agent.has(capability)
        {
            return Ok(agent);
        }
        // Only now is identity asked: a change is coming, and it must be for a user who may be an agent.
        let facts = self.principal(&id).await?;
        domain::may_become_agent(&facts)?;
        let create = domain::new_agent(&facts, now_us());
        let edit = Edit::Grant(capability);
        let outcome = self
            .store
            .change(&id, Some(&create), |agent| {
                domain::apply(agent, &edit, actor.id(), now_us())
            })
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
            .change(&id, None, |agent| {
                domain::apply(agent, &edit, actor.id(), now_us())
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
        let outcome = self
            .store
            .change(&id, None, |agent| {
                domain::apply(agent, &edit, actor.id(), now_us())
            })
            .await?;
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
            .change(&id, Some(&create), |agent| {
                domain::apply(agent, &edit, actor.id(), now_us())
            })
            .await?;
        self.settled(outcome, &id)
    }

    /// Admin or service: the changes of one agent, newest first.
    pub async fn list_history(
        &self,
        actor: Actor<'_>,
        agent_id_value: &str,
        page: Page,
    ) -> Result<Paged<AgentChange>> {
        actor.require_admin()?;
        let id = agent_id("agent_id", agent_id_value)?;
        self.store.list_history(&id, page).await
    }

    /// Admin or service: the notices of agent changes (payload: the agent id).
    pub fn agent_changes(&self, actor: Actor<'_>) -> Result<&Notifier> {
        actor.require_admin()?;
        Ok(self.store.changes())
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

/// An agent id: the text of a UUID, in its canonical form.
fn agent_id(field: &'static str, value: &str) -> Result<String> {
    Ok(validate::id(field, value)?.to_string())
}
