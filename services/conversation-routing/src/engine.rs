//! The assignment engine of one replica: a single task that runs assignment passes whenever something
//! adds work or frees capacity (a kick) and at least every sweep interval, takes conversations back from
//! agents offline past the grace period or no longer assignable, follows agent-directory's
//! `WatchAgents` into the [`Roster`], and keeps the routing gauges.
//!
//! Replicas do not coordinate: each pass holds the queued conversations it plans for (other replicas
//! skip them) and the store's compare-and-set keeps capacities, so any number may run at once.

use std::sync::Arc;
use std::time::Duration;

use assist_proto::agentdirectory::v1 as dir;
use assist_runtime::Result;
use assist_runtime::time::now_us;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{Notify, watch};

use crate::domain::Status;
use crate::plan::{Candidate, Waiting, plan};
use crate::roster::{Change, Member, Roster};
use crate::store::{Held, Store, Want};

/// How far down the queue a replica looks for conversations someone can take, when the head of the
/// queue needs skills nobody online has.
const MAX_SKIP: u64 = 2_000;

/// Why conversations went back to the queue.
pub const REASON_OFFLINE: &str = "offline";
pub const REASON_REMOVED: &str = "removed";
pub const REASON_NOT_ASSIGNABLE: &str = "not_assignable";

/// The engine's knobs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Queued conversations one pass holds and plans.
    pub batch: u32,
    /// How long an agent may stay offline before their assigned conversations go back to the queue.
    pub offline_grace: Duration,
    /// The safety-net pass and the offline sweep run this often.
    pub sweep_every: Duration,
}

pub struct Engine {
    store: Store,
    roster: Arc<Roster>,
    settings: Settings,
    kick: Notify,
}

impl Engine {
    pub fn new(store: Store, roster: Arc<Roster>, settings: Settings) -> Self {
        Self {
            store,
            roster,
            settings,
            kick: Notify::new(),
        }
    }

    /// Something added work or freed capacity: run a pass soon (kicks while a pass runs coalesce into
    /// one more pass).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Runs passes on kicks and sweeps on the interval until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut sweeps = tokio::time::interval(self.settings.sweep_every);
        sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let sweep = tokio::select! {
                _ = self.kick.notified() => false,
                _ = sweeps.tick() => true,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            if sweep && let Err(error) = self.sweep().await {
                tracing::warn!(error = %error, "routing sweep failed");
            }
            if let Err(error) = self.assign_all().await {
                tracing::warn!(error = %error, "assignment pass failed; the next kick or sweep retries");
            }
        }
    }

    /// Assignment passes until the queue is empty or nothing more fits; the number assigned.
    pub async fn assign_all(&self) -> Result<usize> {
        let mut assigned = 0;
        let mut skip = 0;
        loop {
            let members = self.roster.taking_work();
            if members.is_empty() {
                return Ok(assigned);
            }
            let mut room = false;
            let pass = self
                .store
                .assign_pass(self.settings.batch, skip, |held, loads| {
                    let mut candidates: Vec<Candidate> = members
                        .into_iter()
                        .map(|m| {
                            let load = loads.get(&m.id).copied().unwrap_or_default();
                            Candidate {
                                id: m.id,
                                capacity: m.capacity,
                                skills: m.skills,
                                open: load.open,
                                last_assigned_us: load.last_assigned_us,
                            }
                        })
                        .collect();
                    room = candidates.iter().any(|c| c.open < c.capacity);
                    let waiting: Vec<Waiting> = held
                        .iter()
                        .map(|h| Waiting {
                            id: h.id.clone(),
                            required_skills: h.required_skills.clone(),
                        })
                        .collect();
                    plan(&waiting, &mut candidates, now_us())
                        .into_iter()
                        .map(|p| Want {
                            conversation: p.conversation,
                            agent_id: candidates[p.candidate].id.clone(),
                            capacity: candidates[p.candidate].capacity,
                            at_us: p.at_us,
                        })
                        .collect()
                })
                .await?;
            for (held, event) in &pass.assigned {
                record_assignment(held, &event.to_agent_id, event.at_us);
            }
            assigned += pass.assigned.len();
            if pass.held < self.settings.batch as usize {
                return Ok(assigned);
            }
            if pass.assigned.is_empty() {
                if !room {
                    return Ok(assigned);
                }
                // The head of the queue needs skills nobody with room has: look further down.
                skip += u64::from(self.settings.batch);
                if skip >= MAX_SKIP {
                    return Ok(assigned);
                }
            }
        }
    }

    /// Takes back what agents offline past the grace period hold in ASSIGNED, and what members who can
    /// no longer be assigned hold open; refreshes the gauges.
    pub async fn sweep(&self) -> Result<()> {
        let now = now_us();
        let cutoff = now - assist_runtime::time::us(self.settings.offline_grace);
        let holders = self.store.assignees_holding_assigned().await?;
        for agent in holders {
            let member = self.roster.get(&agent);
            if let Some((statuses, reason)) =
                take_back(member.as_ref(), cutoff, self.roster.is_synced())
            {
                self.requeue(&agent, statuses, reason).await?;
            }
        }
        let figures = self.store.figures().await?;
        let gauges = metrics();
        gauges.queue_depth.set(figures.queued as i64);
        gauges.open.set(figures.open as i64);
        gauges.longest_wait_seconds.set(
            figures
                .oldest_queued_at_us
                .map_or(0, |at| (now - at).max(0) / 1_000_000),
        );
        Ok(())
    }

    /// Puts `agent`'s conversations in `statuses` back in the queue and kicks a pass.
    pub async fn requeue(&self, agent: &str, statuses: &[Status], reason: &str) -> Result<usize> {
        let changed = self
            .store
            .requeue_assignee(agent, statuses, reason, now_us())
            .await?;
        if !changed.is_empty() {
            tracing::info!(
                agent_id = agent,
                count = changed.len(),
                reason,
                "conversations requeued"
            );
            metrics()
                .requeued
                .get_or_create(&ReasonLabel {
                    reason: reason.to_owned(),
                })
                .inc_by(changed.len() as u64);
            self.kick();
        }
        Ok(changed.len())
    }

    /// Acts on a member's change: more room kicks a pass; no longer assignable takes their open
    /// conversations back at once.
    async fn on_change(&self, id: &str, change: Change) -> Result<()> {
        if change.no_longer_assignable {
            let reason = match self.roster.get(id) {
                Some(m) if !m.active => REASON_REMOVED,
                _ => REASON_NOT_ASSIGNABLE,
            };
            self.requeue(id, &[Status::Assigned, Status::Pending], reason)
                .await?;
        }
        if change.more_room {
            self.kick();
        }
        Ok(())
    }

    /// Follows agent-directory's `WatchAgents` (through `client`) into the roster until shutdown,
    /// reconnecting with a full resync.
    pub async fn follow_agents(
        self: Arc<Self>,
        client: crate::Agents,
        shutdown: watch::Receiver<bool>,
    ) {
        assist_runtime::client::follow("agent-directory", shutdown, || {
            let engine = self.clone();
            let mut client = client.clone();
            async move {
                let mut stream = client
                    .watch_agents(dir::WatchAgentsRequest {})
                    .await
                    .map_err(|s| s.message().to_owned())?
                    .into_inner();
                let mut snapshot = Vec::new();
                while let Some(event) =
                    stream.message().await.map_err(|s| s.message().to_owned())?
                {
                    let outcome = match dir::agent_event::Kind::try_from(event.kind) {
                        Ok(dir::agent_event::Kind::Snapshot) => {
                            snapshot.extend(event.agent);
                            Ok(())
                        }
                        Ok(dir::agent_event::Kind::Synced) => {
                            let changes = engine
                                .roster
                                .replace(&std::mem::take(&mut snapshot), now_us());
                            tracing::info!(
                                members = changes.len(),
                                "routing view of agents synced"
                            );
                            engine.kick();
                            let mut outcome = Ok(());
                            for (id, change) in changes {
                                outcome = outcome.and(engine.on_change(&id, change).await);
                            }
                            outcome
                        }
                        Ok(dir::agent_event::Kind::Changed) => match &event.agent {
                            Some(agent) => {
                                let change = engine.roster.apply(agent, now_us());
                                engine.on_change(&agent.id, change).await
                            }
                            None => Ok(()),
                        },
                        _ => Ok(()),
                    };
                    // A reaction that failed must not be forgotten: reconnecting resyncs everything.
                    outcome.map_err(|e| e.to_string())?;
                }
                Ok(())
            }
        })
        .await;
    }
}

/// What the sweep takes back from an agent holding ASSIGNED conversations, and why: ASSIGNED ones from
/// an assignable member offline since before `cutoff`; everything open from a removed member, an
/// administrator, or someone a synced roster does not know. Nothing otherwise.
fn take_back(
    member: Option<&Member>,
    cutoff_us: i64,
    synced: bool,
) -> Option<(&'static [Status], &'static str)> {
    const ASSIGNED: &[Status] = &[Status::Assigned];
    const OPEN: &[Status] = &[Status::Assigned, Status::Pending];
    match member {
        Some(m) if m.is_assignable() => (m.offline_since_us != 0 && m.offline_since_us < cutoff_us)
            .then_some((ASSIGNED, REASON_OFFLINE)),
        Some(m) if !m.active => Some((OPEN, REASON_REMOVED)),
        _ if synced => Some((OPEN, REASON_NOT_ASSIGNABLE)),
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct AgentLabel {
    agent_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// Routing's figures on `/metrics`.
struct Metrics {
    queue_depth: Gauge,
    open: Gauge,
    longest_wait_seconds: Gauge,
    waiting: Histogram,
    time_to_assignment: Histogram,
    assignments: Family<AgentLabel, Counter>,
    requeued: Family<ReasonLabel, Counter>,
}

fn metrics() -> &'static Metrics {
    static METRICS: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| {
        use assist_runtime::metrics::register;
        let buckets = || {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 900.0,
            ])
        };
        let metrics = Metrics {
            queue_depth: Gauge::default(),
            open: Gauge::default(),
            longest_wait_seconds: Gauge::default(),
            waiting: buckets(),
            time_to_assignment: buckets(),
            assignments: Family::default(),
            requeued: Family::default(),
        };
        register(
            "routing_queue_depth",
            "queued conversations (refreshed every sweep)",
            metrics.queue_depth.clone(),
        );
        register(
            "routing_open_conversations",
            "conversations assigned or pending (refreshed every sweep)",
            metrics.open.clone(),
        );
        register(
            "routing_longest_wait_seconds",
            "how long the oldest queued conversation has waited (refreshed every sweep)",
            metrics.longest_wait_seconds.clone(),
        );
        register(
            "routing_waiting_seconds",
            "time from joining the queue to an automatic assignment",
            metrics.waiting.clone(),
        );
        register(
            "routing_time_to_assignment_seconds",
            "time from a conversation's creation to its first automatic assignment",
            metrics.time_to_assignment.clone(),
        );
        register(
            "routing_assignments",
            "automatic assignments, per agent",
            metrics.assignments.clone(),
        );
        register(
            "routing_requeued",
            "conversations taken back to the queue, per reason",
            metrics.requeued.clone(),
        );
        metrics
    })
}

fn record_assignment(held: &Held, agent_id: &str, at_us: i64) {
    let metrics = metrics();
    let seconds = |since: i64| (at_us - since).max(0) as f64 / 1e6;
    metrics.waiting.observe(seconds(held.queued_at_us));
    if !held.requeued {
        metrics
            .time_to_assignment
            .observe(seconds(held.created_at_us));
    }
    metrics
        .assignments
        .get_or_create(&AgentLabel {
            agent_id: agent_id.to_owned(),
        })
        .inc();
}

#[cfg(test)]
mod tests {
    use super::*;
    use assist_proto::agentdirectory::v1 as dir;

    fn member(role: dir::Role, active: bool, offline_since_us: i64) -> Member {
        Member {
            id: "a".into(),
            role,
            active,
            presence: if offline_since_us == 0 {
                dir::Presence::Online
            } else {
                dir::Presence::Offline
            },
            capacity: 5,
            skills: vec![],
            offline_since_us,
            version: 1,
        }
    }

    #[test]
    fn the_sweep_takes_back_what_it_should_and_nothing_else() {
        let agent = |since| member(dir::Role::Agent, true, since);
        assert_eq!(take_back(Some(&agent(0)), 100, true), None);
        assert_eq!(
            take_back(Some(&agent(150)), 100, true),
            None,
            "within grace"
        );
        assert_eq!(
            take_back(Some(&agent(50)), 100, true),
            Some((&[Status::Assigned][..], REASON_OFFLINE))
        );
        let removed = member(dir::Role::Agent, false, 0);
        assert_eq!(
            take_back(Some(&removed), 100, true),
            Some((&[Status::Assigned, Status::Pending][..], REASON_REMOVED))
        );
        let administrator = member(dir::Role::Administrator, true, 0);
        assert_eq!(
            take_back(Some(&administrator), 100, true).map(|t| t.1),
            Some(REASON_NOT_ASSIGNABLE)
        );
        assert_eq!(
            take_back(None, 100, true).map(|t| t.1),
            Some(REASON_NOT_ASSIGNABLE)
        );
        assert_eq!(
            take_back(None, 100, false),
            None,
            "an unsynced view knows nothing"
        );
    }
}
