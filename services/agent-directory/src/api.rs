//! The `assist.agentdirectory.v1.AgentDirectory` gRPC service: decodes and checks requests, calls the use
//! cases, encodes replies.

use std::sync::Arc;

use assist_proto::agentdirectory::v1 as pb;
use assist_runtime::auth::caller;
use assist_runtime::notify::{WatchStream, Watches};
use assist_runtime::validate::Page;
use assist_runtime::{Error, Result};
use tokio::sync::{OnceCell, watch};
use tonic::{Request, Response, Status};

use crate::domain::console::{
    Caller, Presence, PresenceCounts, Role, Seats, Status as AgentStatus,
};
use crate::domain::{Agent, AgentChange, Capability};
use crate::service::{Actor, Agents};

/// Every method needs a token; only health and reflection are open.
pub const PUBLIC_METHODS: &[&str] = &[];

/// The gRPC face of [`Agents`]; answers `UNAVAILABLE` until the database and the service token are
/// ready.
#[derive(Clone)]
pub struct Api {
    agents: Arc<OnceCell<Arc<Agents>>>,
    watches: Watches,
    /// Told to heartbeat senders: how long presence lasts without a heartbeat.
    presence_timeout_secs: u32,
}

impl Api {
    pub fn new(
        agents: Arc<OnceCell<Arc<Agents>>>,
        shutdown: watch::Receiver<bool>,
        presence_timeout_secs: u32,
    ) -> Self {
        Self {
            agents,
            watches: Watches::new(shutdown),
            presence_timeout_secs,
        }
    }

    fn agents(&self) -> Result<&Arc<Agents>, Status> {
        self.agents
            .get()
            .ok_or_else(|| Status::unavailable("agent-directory is starting"))
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Reply<T> {
    Ok(Response::new(value))
}

/// A capability filter: unspecified means none.
fn capability_filter(value: i32, field: &'static str) -> Result<Option<Capability>> {
    Ok(match pb::Capability::try_from(value) {
        Ok(pb::Capability::Unspecified) => None,
        Ok(pb::Capability::AssistCustomers) => Some(Capability::AssistCustomers),
        Ok(pb::Capability::AssistMerchantUsers) => Some(Capability::AssistMerchantUsers),
        Err(_) => return Err(Error::invalid(field, "unknown capability")),
    })
}

fn capability_required(value: i32, field: &'static str) -> Result<Capability> {
    capability_filter(value, field)?.ok_or_else(|| Error::invalid(field, "must be set"))
}

fn capability_to_pb(capability: Capability) -> pb::Capability {
    match capability {
        Capability::AssistCustomers => pb::Capability::AssistCustomers,
        Capability::AssistMerchantUsers => pb::Capability::AssistMerchantUsers,
    }
}

fn role_required(value: i32) -> Result<Role> {
    match pb::Role::try_from(value) {
        Ok(pb::Role::Agent) => Ok(Role::Agent),
        Ok(pb::Role::Supervisor) => Ok(Role::Supervisor),
        Ok(pb::Role::Administrator) => Ok(Role::Administrator),
        Ok(pb::Role::Unspecified) => Err(Error::invalid("role", "must be set")),
        Err(_) => Err(Error::invalid("role", "unknown role")),
    }
}

/// A status filter: unspecified means invited and active.
fn status_filter(value: i32) -> Result<Option<AgentStatus>> {
    Ok(match pb::AgentStatus::try_from(value) {
        Ok(pb::AgentStatus::Unspecified) => None,
        Ok(pb::AgentStatus::Invited) => Some(AgentStatus::Invited),
        Ok(pb::AgentStatus::Active) => Some(AgentStatus::Active),
        Ok(pb::AgentStatus::Removed) => Some(AgentStatus::Removed),
        Err(_) => return Err(Error::invalid("status", "unknown status")),
    })
}

fn status_to_pb(status: Option<AgentStatus>) -> pb::AgentStatus {
    match status {
        None => pb::AgentStatus::Unspecified,
        Some(AgentStatus::Invited) => pb::AgentStatus::Invited,
        Some(AgentStatus::Active) => pb::AgentStatus::Active,
        Some(AgentStatus::Removed) => pb::AgentStatus::Removed,
    }
}

fn presence_required(value: i32) -> Result<Presence> {
    match pb::Presence::try_from(value) {
        Ok(pb::Presence::Online) => Ok(Presence::Online),
        Ok(pb::Presence::Away) => Ok(Presence::Away),
        Ok(pb::Presence::Offline) => Ok(Presence::Offline),
        Ok(pb::Presence::Unspecified) => Err(Error::invalid("presence", "must be set")),
        Err(_) => Err(Error::invalid("presence", "unknown presence")),
    }
}

fn presence_to_pb(presence: Presence) -> pb::Presence {
    match presence {
        Presence::Online => pb::Presence::Online,
        Presence::Away => pb::Presence::Away,
        Presence::Offline => pb::Presence::Offline,
    }
}

/// A count as the proto's `uint32`, saturating.
fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn seats_to_pb(seats: Seats) -> pb::Seats {
    pb::Seats {
        licensed: clamp(seats.licensed),
        occupied: clamp(seats.occupied),
        free: clamp(seats.free()),
    }
}

fn presence_counts_to_pb(counts: PresenceCounts) -> pb::PresenceCounts {
    pb::PresenceCounts {
        online: clamp(counts.online),
        away: clamp(counts.away),
        offline: clamp(counts.offline),
    }
}

impl From<Role> for pb::Role {
    fn from(role: Role) -> Self {
        match role {
            Role::Agent => pb::Role::Agent,
            Role::Supervisor => pb::Role::Supervisor,
            Role::Administrator => pb::Role::Administrator,
        }
    }
}

fn agent_to_pb(agent: Agent) -> pb::Agent {
    pb::Agent {
        id: agent.id,
        display_name: agent.display_name,
        nickname: agent.nickname,
        capabilities: agent
            .capabilities
            .into_iter()
            .map(|c| capability_to_pb(c) as i32)
            .collect(),
        created_at_us: agent.created_at_us,
        updated_at_us: agent.updated_at_us,
        version: agent.version,
        email: agent.email,
        role: pb::Role::from(agent.role) as i32,
        status: status_to_pb(agent.status) as i32,
        capacity: agent.capacity,
        skills: agent.skills,
        presence: presence_to_pb(agent.presence) as i32,
        last_seen_at_us: agent.last_seen_at_us,
        invitation_expires_at_us: agent.invitation_expires_at_us,
        caller_may_manage: false,
    }
}

/// `agent` as `caller` sees it in a list: with whether it may manage it.
fn listed_agent_to_pb(agent: Agent, caller: Option<&Caller>) -> pb::Agent {
    let caller_may_manage = caller.is_some_and(|caller| caller.may_manage_member(&agent));
    pb::Agent {
        caller_may_manage,
        ..agent_to_pb(agent)
    }
}

fn change_to_pb(change: AgentChange) -> pb::AgentChange {
    pb::AgentChange {
        id: change.id,
        agent_id: change.agent_id,
        actor_id: change.actor_id,
        action: change.action,
        before: change.before,
        after: change.after,
        at_us: change.at_us,
    }
}

fn event(kind: pb::agent_event::Kind, agent: Option<Agent>) -> pb::AgentEvent {
    pb::AgentEvent {
        kind: kind as i32,
        agent: agent.map(agent_to_pb),
    }
}

#[tonic::async_trait]
impl pb::agent_directory_server::AgentDirectory for Api {
    async fn get_agent(&self, request: Request<pb::GetAgentRequest>) -> Reply<pb::Agent> {
        let claims = caller(&request)?;
        let agent = self
            .agents()?
            .get_agent(Actor::Token(&claims), &request.into_inner().id)
            .await?;
        ok(agent_to_pb(agent))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Reply<pb::ListAgentsResponse> {
        let claims = caller(&request)?;
        let req = request.into_inner();
        let capability = capability_filter(req.capability, "capability")?;
        let status = status_filter(req.status)?;
        let page = Page::from_request(req.page)?;
        let (list, caller) = self
            .agents()?
            .list_agents(Actor::Token(&claims), capability, &req.query, status, page)
            .await?;
        ok(pb::ListAgentsResponse {
            page: Some(list.agents.info(page)),
            agents: list
                .agents
                .items
                .into_iter()
                .map(|agent| listed_agent_to_pb(agent, caller.as_ref()))
                .collect(),
            seats: Some(seats_to_pb(list.seats)),
            presence: Some(presence_counts_to_pb(list.presence)),
        })
    }

    async fn grant_capability(
        &self,
        request: Request<pb::ChangeCapabilityRequest>,
    ) -> Reply<pb::Agent> {
        let claims = caller(&request)?;
        let req = request.into_inner();
        let capability = capability_required(req.capability, "capability")?;
        let agent = self
            .agents()?
            .grant(Actor::Token(&claims), &req.agent_id, capability)
            .await?;
        ok(agent_to_pb(agent))
    }

    async fn revoke_capability(
        &self,
        request: Request<pb::ChangeCapabilityRequest>,
    ) -> Reply<pb::Agent> {
        let claims = caller(&request)?;
        let req = request.into_inner();
        let capability = capability_required(req.capability, "capability")?;
        let agent = self
            .agents()?
            .revoke(Actor::Token(&claims), &req.agent_id, capability)
            .await?;
        ok(agent_to_pb(agent))
    }

    async fn update_agent_profile(
        &self,
        request: Request<pb::UpdateAgentProfileRequest>,
    ) -> Reply<pb::Agent> {
        let claims = caller(&request)?;
        let req = request.into_inner();
        let agent = self
            .agents()?
            .update_profile(
                Actor::Token(&claims),
                &req.agent_id,
                req.display_name.as_deref(),
                req.nickname.as_deref(),
            )
            .await?;
        ok(agent_to_pb(agent))
    }

    async fn list_agent_history(
        &self,
        request: Request<pb::ListAgentHistoryRequest>,
    ) -> Reply<pb::ListAgentHistoryResponse> {
        let claims = caller(&request)?;
        let req = request.into_inner();
        let page = Page::from_request(req.page)?;
        let paged = self
            .agents()?
            .list_history(Actor::Token(&claims), &req.agent_id, page)
            .await?;
        ok(pb::ListAgentHistoryResponse {
            page: Some(paged.info(page)),
            changes: paged.items.into_iter().map(change_to_pb).collect(),
        })
    }

    type WatchAgentsStream = WatchStream<pb::AgentEvent>;

    async fn watch_agents(
        &self,
        request: Request<pb::WatchAgentsRequest>,
    ) -> Reply<Self::WatchAgentsStream> {
        let claims = caller(&request)?;
        let agents = self.agents()?.clone();
        let notifier = agents.agent_changes(Actor::Token(&claims)).await?.clone();
        let snapshot = agents.clone();
        let checked = (agents.clone(), claims.clone());
        let stream = self.watches.open(
            notifier,
            &claims,
            move || {
                let (agents, claims) = checked.clone();
                async move {
                    agents
                        .agent_changes(Actor::Token(&claims))
                        .await
                        .map(|_| ())
                }
            },
            move || async move {
                let mut events: Vec<pb::AgentEvent> = snapshot
                    .snapshot()
                    .await?
                    .into_iter()
                    .map(|agent| event(pb::agent_event::Kind::Snapshot, Some(agent)))
                    .collect();
                events.push(event(pb::agent_event::Kind::Synced, None));
                Ok(events)
            },
            move |id: String| {
                let agents = agents.clone();
                async move {
                    Ok(agents
                        .changed_agent(&id)
                        .await?
                        .map(|agent| event(pb::agent_event::Kind::Changed, Some(agent))))
                }
            },
        )?;
        ok(stream)
    }

    async fn get_seats(&self, request: Request<pb::GetSeatsRequest>) -> Reply<pb::Seats> {
        let claims = caller(&request)?;
        let seats = self.agents()?.seats(Actor::Token(&claims)).await?;
        ok(seats_to_pb(seats))
    }

    async fn set_seats(&self, request: Request<pb::SetSeatsRequest>) -> Reply<pb::Seats> {
        let claims = caller(&request)?;
        let licensed = request.into_inner().licensed;
        let seats = self
            .agents()?
            .set_seats(Actor::Token(&claims), licensed)
            .await?;
        ok(seats_to_pb(seats))
    }

    async fn invite_agent(&self, request: Request<pb::InviteAgentRequest>) -> Reply<pb::Agent> {
        let claims = caller(&request)?;
        let req = request.into_inner();
        let role = role_required(req.role)?;
        let agent = self
            .agents()?
            .invite(Actor::Token(&claims), &req.email, role, &req.full_name)
            .await?;
        ok(agent_to_pb(agent))
    }

    async fn resend_invitation(&self, request: Request<pb::AgentRequest>) -> Reply<pb::Agent> {
        let claims = caller(&request)?;
        let id = request.into_inner().agent_id;
        let agent = self
            .agents()?
            .resend_invitation(Actor::Token(&claims), &id)
            .await?;
        ok(agent_to_pb(agent))
    }

    async fn revoke_invitation(&self, request: Request<pb::AgentRequest>) -> Reply<pb::Agent> {
        let claims = caller(&request)?;
        let id = request.into_inner().agent_id;
        let agent = self
            .agents()?
            .revoke_invitation(Actor::Token(&claims), &id)
            .await?;
        ok(agent_to_pb(agent))
    }

    async fn remove_agent(&self, request: Request<pb::RemoveAgentRequest>) -> Reply<pb::Agent> {
        let claims = caller(&request)?;
        let req = request.into_inner();
        let agent = self
            .agents()?
            .remove(Actor::Token(&claims), &req.agent_id, &req.confirm_email)
            .await?;
        ok(agent_to_pb(agent))
    }

    async fn change_role(&self, request: Request<pb::ChangeRoleRequest>) -> Reply<pb::Agent> {
        let claims = caller(&request)?;
        let req = request.into_inner();
        let role = role_required(req.role)?;
        let agent = self
            .agents()?
            .change_role(Actor::Token(&claims), &req.agent_id, role)
            .await?;
        ok(agent_to_pb(agent))
    }

    async fn reset_agent_password(
        &self,
        request: Request<pb::AgentRequest>,
    ) -> Reply<pb::ResetAgentPasswordResponse> {
        let claims = caller(&request)?;
        let id = request.into_inner().agent_id;
        let expires_at_us = self
            .agents()?
            .reset_password(Actor::Token(&claims), &id)
            .await?;
        ok(pb::ResetAgentPasswordResponse { expires_at_us })
    }

    async fn update_agent_routing(
        &self,
        request: Request<pb::UpdateAgentRoutingRequest>,
    ) -> Reply<pb::Agent> {
        let claims = caller(&request)?;
        let req = request.into_inner();
        let skills = req.skills.map(|list| list.skills);
        let agent = self
            .agents()?
            .update_routing(
                Actor::Token(&claims),
                &req.agent_id,
                req.capacity,
                skills.as_deref(),
            )
            .await?;
        ok(agent_to_pb(agent))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Reply<pb::HeartbeatResponse> {
        let claims = caller(&request)?;
        let presence = presence_required(request.into_inner().presence)?;
        let presence = self
            .agents()?
            .heartbeat(Actor::Token(&claims), presence)
            .await?;
        ok(pb::HeartbeatResponse {
            presence: presence_to_pb(presence) as i32,
            timeout_seconds: self.presence_timeout_secs,
        })
    }

    async fn get_console_rights(
        &self,
        request: Request<pb::GetConsoleRightsRequest>,
    ) -> Reply<pb::ConsoleRights> {
        let claims = caller(&request)?;
        let rights = self.agents()?.console_rights(Actor::Token(&claims)).await?;
        let role = rights.caller.as_ref().map(|caller| caller.role);
        ok(pb::ConsoleRights {
            profile: Some(agent_to_pb(rights.profile)),
            role: role.map_or(pb::Role::Unspecified, pb::Role::from) as i32,
            platform_administrator: rights.platform_administrator,
            grantable_roles: rights
                .caller
                .as_ref()
                .map_or(&[][..], Caller::grantable)
                .iter()
                .map(|role| pb::Role::from(*role) as i32)
                .collect(),
        })
    }
}
