//! What identity and agent-directory know about agents and targets, read over gRPC with this service's
//! token at the moment a rule needs it.

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::agentdirectory::v1::agent_directory_client::AgentDirectoryClient;
use assist_proto::identity::v1 as idp;
use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_proto::routing::v1 as rt;
use assist_proto::routing::v1::routing_client::RoutingClient;
use assist_runtime::auth::{Claims, Realm};
use assist_runtime::client::Outgoing;
use assist_runtime::{Error, Result};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::domain::session::Capability;
use crate::domain::{AgentFacts, TargetFacts, TargetRealm};

pub type Identity = IdentityClient<InterceptedService<Channel, Outgoing>>;
pub type Agents = AgentDirectoryClient<InterceptedService<Channel, Outgoing>>;

/// Conversation routing, called with the agent's own token (never this service's).
pub type Routing = RoutingClient<Channel>;

/// The services the rules consult.
#[derive(Clone)]
pub struct Directory {
    pub identity: Identity,
    pub agents: Agents,
    pub routing: Routing,
}

fn unavailable(service: &str, status: Status) -> Error {
    tracing::warn!(service, error = %status.message(), "directory call failed");
    Error::Unavailable(format!("{service} is unavailable"))
}

impl Directory {
    /// The agent as identity and agent-directory see it now (both asked at once).
    pub async fn agent(&self, id: &str) -> Result<AgentFacts> {
        let mut identity = self.identity.clone();
        let mut agents = self.agents.clone();
        let (principal, agent) = tokio::join!(
            identity.get_principal(idp::GetPrincipalRequest { id: id.to_owned() }),
            agents.get_agent(dir::GetAgentRequest { id: id.to_owned() }),
        );
        let principal = match principal {
            Ok(p) => Some(p.into_inner()),
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(unavailable("identity", status)),
        };
        let capabilities = match agent {
            Ok(agent) => capabilities_of(&agent.into_inner()),
            Err(status) if status.code() == Code::NotFound => Vec::new(),
            Err(status) => return Err(unavailable("agent-directory", status)),
        };
        Ok(AgentFacts {
            id: id.to_owned(),
            back_office: principal
                .as_ref()
                .is_some_and(|p| p.realm == idp::Realm::BackOffice as i32),
            active: principal
                .as_ref()
                .is_some_and(|p| p.status == idp::PrincipalStatus::Active as i32),
            capabilities,
        })
    }

    /// A back-office caller's claims as identity sees the principal now: refused once the principal
    /// is no longer active, and keeping only the scopes it still holds (so a demoted or removed
    /// administrator loses admin rights at once). Service and impersonation tokens pass unchanged:
    /// the first are short-lived and issued per account, the second are checked against their session.
    pub async fn as_it_is_now(&self, claims: &Claims) -> Result<Claims> {
        if claims.realm != Realm::BackOffice || claims.is_delegated() {
            return Ok(claims.clone());
        }
        let principal = self
            .identity
            .clone()
            .get_principal(idp::GetPrincipalRequest {
                id: claims.sub.clone(),
            })
            .await;
        match principal {
            Ok(p) => {
                let p = p.into_inner();
                if p.status == idp::PrincipalStatus::Active as i32
                    && p.realm == idp::Realm::BackOffice as i32
                {
                    Ok(claims.clone().limited_to(&p.scope))
                } else {
                    Err(Error::unauthenticated("the caller is no longer active"))
                }
            }
            Err(status) if status.code() == Code::NotFound => {
                Err(Error::unauthenticated("the caller is no longer active"))
            }
            Err(status) => Err(unavailable("identity", status)),
        }
    }

    /// The customer of conversation `id` when the agent whose bearer token is `bearer` may read it:
    /// routing decides with the agent's own rights. `INVALID_ARGUMENT` when there is no such
    /// conversation, `PERMISSION_DENIED` when it is not the agent's to read.
    pub async fn conversation_customer(&self, bearer: &str, id: &str) -> Result<String> {
        let mut request = tonic::Request::new(rt::GetConversationRequest {
            conversation_id: id.to_owned(),
        });
        let value = bearer
            .parse()
            .map_err(|_| Error::unauthenticated("malformed authorization header"))?;
        request.metadata_mut().insert("authorization", value);
        match self.routing.clone().get_conversation(request).await {
            Ok(reply) => Ok(reply.into_inner().customer_id),
            Err(status) => Err(match status.code() {
                Code::NotFound | Code::InvalidArgument => {
                    Error::invalid("conversation_id", "no such conversation")
                }
                Code::PermissionDenied | Code::Unauthenticated => {
                    Error::denied("the conversation is not the agent's to read")
                }
                _ => unavailable("conversation routing", status),
            }),
        }
    }

    /// The target as identity sees it now; `NOT_FOUND` when there is no such principal.
    pub async fn target(&self, id: &str) -> Result<TargetFacts> {
        let principal = self
            .identity
            .clone()
            .get_principal(idp::GetPrincipalRequest { id: id.to_owned() })
            .await
            .map_err(|status| match status.code() {
                Code::NotFound => Error::NotFound("target"),
                _ => unavailable("identity", status),
            })?
            .into_inner();
        Ok(target_facts(&principal))
    }
}

/// The capabilities an agent may use: none once it is removed from the console (removal clears them too;
/// this holds even for a profile read while the removal commits).
pub fn capabilities_of(agent: &dir::Agent) -> Vec<Capability> {
    if agent.status == dir::AgentStatus::Removed as i32 {
        return Vec::new();
    }
    agent
        .capabilities
        .iter()
        .filter_map(|c| match dir::Capability::try_from(*c) {
            Ok(dir::Capability::AssistCustomers) => Some(Capability::AssistCustomers),
            Ok(dir::Capability::AssistMerchantUsers) => Some(Capability::AssistMerchantUsers),
            _ => None,
        })
        .collect()
}

pub fn target_facts(principal: &idp::Principal) -> TargetFacts {
    TargetFacts {
        id: principal.id.clone(),
        realm: match idp::Realm::try_from(principal.realm) {
            Ok(idp::Realm::Customer) => Some(TargetRealm::Customer),
            Ok(idp::Realm::MerchantUser) => Some(TargetRealm::MerchantUser),
            _ => None,
        },
        blocked: is_blocked(principal.status),
        scope: principal.scope.clone(),
        name: display_name(principal),
        merchant_name: match &principal.kind {
            Some(idp::principal::Kind::MerchantUser(user)) => Some(user.merchant_name.clone()),
            _ => None,
        },
    }
}

/// "First Last" of a customer or merchant user; `None` when empty or another kind.
fn display_name(principal: &idp::Principal) -> Option<String> {
    let name = match &principal.kind {
        Some(idp::principal::Kind::Customer(c)) => idp::person_name(&c.first_name, &c.last_name),
        Some(idp::principal::Kind::MerchantUser(u)) => {
            idp::person_name(&u.first_name, &u.last_name)
        }
        _ => String::new(),
    };
    (!name.is_empty()).then_some(name)
}

/// Blocked or deleted: a target that may not be assisted.
pub fn is_blocked(status: i32) -> bool {
    matches!(
        idp::PrincipalStatus::try_from(status),
        Ok(idp::PrincipalStatus::Blocked | idp::PrincipalStatus::Deleted)
    )
}
