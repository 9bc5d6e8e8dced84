//! The `assist.agentdirectory.v1.AgentDirectory` gRPC service: decodes and checks requests, calls the use
//! cases, encodes replies.

use std::sync::Arc;

use assist_proto::agentdirectory::v1 as pb;
use assist_runtime::auth::caller;
use assist_runtime::notify::{WatchStream, watch_stream};
use assist_runtime::validate::Page;
use assist_runtime::{Error, Result};
use tokio::sync::{OnceCell, watch};
use tonic::{Request, Response, Status};

use crate::domain::{Agent, AgentChange, Capability};
use crate::service::{Actor, Agents};

/// Every method needs a token; only health and reflection are open.
pub const PUBLIC_METHODS: &[&str] = &[];

/// The gRPC face of [`Agents`]; answers `UNAVAILABLE` until the database and the service token are
/// ready.
#[derive(Clone)]
pub struct Api {
    agents: Arc<OnceCell<Arc<Agents>>>,
    shutdown: watch::Receiver<bool>,
}

impl Api {
    pub fn new(agents: Arc<OnceCell<Arc<Agents>>>, shutdown: watch::Receiver<bool>) -> Self {
        Self { agents, shutdown }
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
        let page = Page::from_request(req.page)?;
        let paged = self
            .agents()?
            .list_agents(Actor::Token(&claims), capability, page)
            .await?;
        ok(pb::ListAgentsResponse {
            page: Some(paged.info(page)),
            agents: paged.items.into_iter().map(agent_to_pb).collect(),
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
        let notifier = agents.agent_changes(Actor::Token(&claims))?.clone();
        let snapshot = agents.clone();
        ok(watch_stream(
            notifier,
            self.shutdown.clone(),
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
        ))
    }
}
