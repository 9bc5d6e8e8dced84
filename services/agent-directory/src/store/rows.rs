//! Row types of the agent-directory tables and their conversion to domain types.

use assist_runtime::{Error, Result};

use crate::domain::console::{Presence, Role, Status};
use crate::domain::{Agent, AgentChange, Capability};

/// An agent joined with one of its capabilities (none when it holds none): one row per capability.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct AgentCapabilityRow {
    pub id: String,
    pub display_name: String,
    pub nickname: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
    pub email: String,
    pub role: String,
    pub status: String,
    pub capacity: i64,
    pub skills: String,
    pub presence: String,
    pub last_seen_at: i64,
    pub invitation_expires_at: i64,
    pub capability: Option<String>,
}

/// Folds rows ordered by agent into agents, each with its capabilities sorted, in the rows' order.
pub(super) fn agents_of(rows: Vec<AgentCapabilityRow>) -> Result<Vec<Agent>> {
    let mut agents: Vec<Agent> = Vec::new();
    for row in rows {
        let capability = row
            .capability
            .as_deref()
            .map(|c| {
                Capability::parse(c).ok_or_else(|| {
                    Error::internal(anyhow::anyhow!("agent {}: bad capability {c}", row.id))
                })
            })
            .transpose()?;
        let agent = match agents.last_mut() {
            Some(last) if last.id == row.id => last,
            _ => {
                let corrupt = |what: &str, value: &str| {
                    Error::internal(anyhow::anyhow!("agent {}: bad {what} {value}", row.id))
                };
                let role = Role::parse(&row.role).ok_or_else(|| corrupt("role", &row.role))?;
                let status =
                    Status::parse(&row.status).ok_or_else(|| corrupt("status", &row.status))?;
                let presence = Presence::parse(&row.presence)
                    .ok_or_else(|| corrupt("presence", &row.presence))?;
                agents.push(Agent {
                    display_name: row.display_name,
                    nickname: row.nickname,
                    capabilities: Vec::new(),
                    created_at_us: row.created_at,
                    updated_at_us: row.updated_at,
                    version: u64::try_from(row.version).unwrap_or(0),
                    email: row.email,
                    role,
                    status: Some(status),
                    capacity: u32::try_from(row.capacity).unwrap_or(0),
                    skills: row.skills.split_whitespace().map(str::to_owned).collect(),
                    presence,
                    last_seen_at_us: row.last_seen_at,
                    invitation_expires_at_us: row.invitation_expires_at,
                    id: row.id,
                });
                agents.last_mut().expect("just pushed")
            }
        };
        if let Some(capability) = capability {
            agent.capabilities.push(capability);
        }
    }
    for agent in &mut agents {
        agent.capabilities.sort();
        agent.capabilities.dedup();
    }
    Ok(agents)
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct ChangeRow {
    pub id: String,
    pub agent_id: String,
    pub actor_id: String,
    pub action: String,
    pub before_json: String,
    pub after_json: String,
    pub at: i64,
    pub version: i64,
}

impl From<ChangeRow> for AgentChange {
    fn from(row: ChangeRow) -> Self {
        AgentChange {
            id: row.id,
            agent_id: row.agent_id,
            actor_id: row.actor_id,
            action: row.action,
            before: row.before_json,
            after: row.after_json,
            at_us: row.at,
            version: u64::try_from(row.version).unwrap_or(0),
        }
    }
}
