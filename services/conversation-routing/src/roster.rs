//! The routing view of agents: what agent-directory's `WatchAgents` says of each console member (role,
//! status, presence, capacity, skills), kept in memory per replica. Routing never reads another
//! service's tables; after every (re)connection the view is rebuilt from a full snapshot.

use std::collections::HashMap;
use std::sync::RwLock;

use assist_proto::agentdirectory::v1 as dir;

/// A console member as routing sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: String,
    pub role: dir::Role,
    pub active: bool,
    pub presence: dir::Presence,
    pub capacity: u32,
    /// Sorted.
    pub skills: Vec<String>,
    /// When the member went offline as far as routing knows (microseconds); 0 while not offline.
    pub offline_since_us: i64,
    pub version: u64,
}

impl Member {
    /// Active agents and supervisors receive conversations; administrators never do.
    pub fn is_assignable(&self) -> bool {
        self.active && matches!(self.role, dir::Role::Agent | dir::Role::Supervisor)
    }

    /// Assignable and online: automatic assignment considers them.
    pub fn takes_work(&self) -> bool {
        self.is_assignable() && self.presence == dir::Presence::Online
    }

    fn from_agent(agent: &dir::Agent, previous: Option<&Member>, now_us: i64) -> Self {
        let presence = dir::Presence::try_from(agent.presence).unwrap_or(dir::Presence::Offline);
        let offline_since_us = match (presence, previous) {
            (dir::Presence::Offline, Some(before)) if before.offline_since_us != 0 => {
                before.offline_since_us
            }
            (dir::Presence::Offline, Some(_)) => now_us,
            // First seen offline (a snapshot): since the last heartbeat, as far as anyone knows.
            (dir::Presence::Offline, None) => agent.last_seen_at_us.max(1),
            _ => 0,
        };
        let mut skills = agent.skills.clone();
        skills.sort();
        Self {
            id: agent.id.clone(),
            role: dir::Role::try_from(agent.role).unwrap_or(dir::Role::Unspecified),
            active: agent.status == dir::AgentStatus::Active as i32,
            presence,
            capacity: agent.capacity.max(1),
            skills,
            offline_since_us,
            version: agent.version,
        }
    }
}

/// What a change of one member means for routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Change {
    /// They can take more work than before (came online, more capacity, new skills, became assignable).
    pub more_room: bool,
    /// They can no longer be assigned anything (removed, or became an administrator).
    pub no_longer_assignable: bool,
}

/// Every console member routing knows, by id.
#[derive(Default)]
pub struct Roster {
    members: RwLock<HashMap<String, Member>>,
    /// False until the first snapshot is complete.
    synced: std::sync::atomic::AtomicBool,
}

impl Roster {
    pub fn get(&self, id: &str) -> Option<Member> {
        self.read().get(id).cloned()
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Members that take work now (online, assignable).
    pub fn taking_work(&self) -> Vec<Member> {
        self.read()
            .values()
            .filter(|m| m.takes_work())
            .cloned()
            .collect()
    }

    /// Assignable members offline since before `cutoff_us`.
    pub fn offline_since_before(&self, cutoff_us: i64) -> Vec<String> {
        self.read()
            .values()
            .filter(|m| {
                m.is_assignable() && m.offline_since_us != 0 && m.offline_since_us < cutoff_us
            })
            .map(|m| m.id.clone())
            .collect()
    }

    /// Replaces the whole view with a snapshot; returns the changes against the old view (members that
    /// vanished count as no longer assignable).
    pub fn replace(&self, agents: &[dir::Agent], now_us: i64) -> Vec<(String, Change)> {
        let mut members = self.write();
        let mut fresh = HashMap::with_capacity(agents.len());
        let mut changes = Vec::new();
        for agent in agents {
            let before = members.get(&agent.id);
            let member = Member::from_agent(agent, before, now_us);
            changes.push((agent.id.clone(), compare(before, &member)));
            fresh.insert(agent.id.clone(), member);
        }
        for (id, before) in members.iter() {
            if !fresh.contains_key(id) && before.is_assignable() {
                changes.push((
                    id.clone(),
                    Change {
                        more_room: false,
                        no_longer_assignable: true,
                    },
                ));
            }
        }
        *members = fresh;
        self.synced
            .store(true, std::sync::atomic::Ordering::Release);
        changes
    }

    /// Applies one changed profile (older versions than what is held are ignored).
    pub fn apply(&self, agent: &dir::Agent, now_us: i64) -> Change {
        let mut members = self.write();
        let before = members.get(&agent.id);
        if before.is_some_and(|b| b.version > agent.version) {
            return Change::default();
        }
        let member = Member::from_agent(agent, before, now_us);
        let change = compare(before, &member);
        members.insert(agent.id.clone(), member);
        change
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Member>> {
        self.members.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Member>> {
        self.members.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn compare(before: Option<&Member>, after: &Member) -> Change {
    let Some(before) = before else {
        return Change {
            more_room: after.takes_work(),
            no_longer_assignable: false,
        };
    };
    Change {
        more_room: after.takes_work()
            && (!before.takes_work()
                || after.capacity > before.capacity
                || after.skills != before.skills),
        no_longer_assignable: before.is_assignable() && !after.is_assignable(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, role: dir::Role, presence: dir::Presence, version: u64) -> dir::Agent {
        dir::Agent {
            id: id.into(),
            role: role as i32,
            status: dir::AgentStatus::Active as i32,
            presence: presence as i32,
            capacity: 2,
            skills: vec!["fr".into(), "billing".into()],
            version,
            last_seen_at_us: 5,
            ..Default::default()
        }
    }

    #[test]
    fn changes_that_matter_to_routing() {
        let roster = Roster::default();
        let changes = roster.replace(
            &[agent("a", dir::Role::Agent, dir::Presence::Offline, 1)],
            100,
        );
        assert_eq!(changes[0].1, Change::default());
        assert_eq!(roster.get("a").unwrap().offline_since_us, 5);
        assert_eq!(roster.offline_since_before(6), vec!["a".to_owned()]);
        let online = roster.apply(&agent("a", dir::Role::Agent, dir::Presence::Online, 2), 200);
        assert!(online.more_room);
        // Skills are kept sorted, as the plan's skill check needs.
        assert_eq!(roster.get("a").unwrap().skills, ["billing", "fr"]);
        // An older version arriving late changes nothing.
        let stale = roster.apply(
            &agent("a", dir::Role::Agent, dir::Presence::Offline, 1),
            300,
        );
        assert_eq!(stale, Change::default());
        assert!(roster.get("a").unwrap().takes_work());
        let offline = roster.apply(
            &agent("a", dir::Role::Agent, dir::Presence::Offline, 3),
            400,
        );
        assert_eq!(offline, Change::default());
        assert_eq!(roster.get("a").unwrap().offline_since_us, 400);
        let promoted = roster.apply(
            &agent("a", dir::Role::Administrator, dir::Presence::Online, 4),
            500,
        );
        assert!(promoted.no_longer_assignable);
        assert!(!roster.get("a").unwrap().takes_work());
        // Vanishing from a snapshot counts as no longer assignable.
        roster.apply(
            &agent("b", dir::Role::Supervisor, dir::Presence::Online, 1),
            600,
        );
        let changes = roster.replace(&[], 700);
        assert!(changes.contains(&(
            "b".into(),
            Change {
                more_room: false,
                no_longer_assignable: true
            }
        )));
    }
}
