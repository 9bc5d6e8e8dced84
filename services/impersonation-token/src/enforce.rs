//! Ending sessions when their grounds go away, pushed by the services that own the facts: agent-directory
//! (`WatchAgents`: a capability revoked) and identity (`WatchPrincipalChanges`: an agent or a target
//! blocked). After every (re)connection all open sessions are rechecked, so nothing changed while a
//! watch was down is missed.

use std::sync::Arc;

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::identity::v1 as idp;
use assist_runtime::client::follow;
use tokio::sync::watch;

use crate::directory::{capabilities_of, is_blocked};
use crate::service::Impersonation;

/// Follows both feeds until `shutdown`.
pub async fn run(service: Arc<Impersonation>, shutdown: watch::Receiver<bool>) {
    tokio::join!(
        follow("agent-directory", shutdown.clone(), || follow_agents(
            service.clone()
        )),
        follow("identity", shutdown.clone(), || follow_principals(
            service.clone()
        )),
    );
}

async fn follow_agents(service: Arc<Impersonation>) -> Result<(), String> {
    let mut stream = service
        .directory()
        .agents
        .clone()
        .watch_agents(dir::WatchAgentsRequest {})
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    while let Some(event) = stream.message().await.map_err(|s| s.message().to_owned())? {
        let outcome = match dir::agent_event::Kind::try_from(event.kind) {
            // The snapshot itself is not needed: once synced, every open session is rechecked.
            Ok(dir::agent_event::Kind::Synced) => service.enforce_all().await,
            Ok(dir::agent_event::Kind::Changed) => match &event.agent {
                Some(agent) => {
                    service
                        .enforce_capabilities(&agent.id, &capabilities_of(agent))
                        .await
                }
                None => Ok(()),
            },
            _ => Ok(()),
        };
        if let Err(error) = outcome {
            // A recheck that failed must not be forgotten: reconnecting resyncs everything.
            return Err(error.to_string());
        }
    }
    Ok(())
}

async fn follow_principals(service: Arc<Impersonation>) -> Result<(), String> {
    let mut stream = service
        .directory()
        .identity
        .clone()
        .watch_principal_changes(idp::WatchPrincipalChangesRequest {})
        .await
        .map_err(|s| s.message().to_owned())?
        .into_inner();
    while let Some(change) = stream.message().await.map_err(|s| s.message().to_owned())? {
        let outcome = match idp::principal_change::Kind::try_from(change.kind) {
            Ok(idp::principal_change::Kind::Subscribed) => service.enforce_all().await,
            Ok(idp::principal_change::Kind::StatusChanged) => {
                // A notice can arrive after its change was undone (blocked, then reactivated and
                // assisted again): act on the status identity holds now, not the notice's.
                let status = service
                    .directory()
                    .identity
                    .clone()
                    .get_principal(idp::GetPrincipalRequest {
                        id: change.principal_id.clone(),
                    })
                    .await
                    .map_or(change.status, |p| p.into_inner().status);
                let active = status == idp::PrincipalStatus::Active as i32;
                service
                    .enforce_status(&change.principal_id, active, is_blocked(status))
                    .await
            }
            _ => Ok(()),
        };
        if let Err(error) = outcome {
            return Err(error.to_string());
        }
    }
    Ok(())
}
