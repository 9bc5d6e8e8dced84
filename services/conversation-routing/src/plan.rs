//! Who gets what (DESIGN.md section 5), as a pure function: queued conversations in queue order, each
//! to the eligible agent with the lowest load ratio, then the one whose last assignment is oldest, then
//! the lowest id (deterministic). The store then applies the plan with a compare-and-set per agent, so a
//! plan made from a stale view can lose a race but never over-assign.

use std::cmp::Ordering;

/// An agent who takes work, with their load as last known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub capacity: u32,
    /// Sorted.
    pub skills: Vec<String>,
    pub open: u32,
    pub last_assigned_us: i64,
}

impl Candidate {
    fn has_room(&self) -> bool {
        self.open < self.capacity
    }

    fn covers(&self, required: &[String]) -> bool {
        required
            .iter()
            .all(|skill| self.skills.binary_search(skill).is_ok())
    }

    /// Less is preferred: load ratio (compared exactly, as fractions), then time since the last
    /// assignment, then id.
    fn preference(&self, other: &Self) -> Ordering {
        (u64::from(self.open) * u64::from(other.capacity))
            .cmp(&(u64::from(other.open) * u64::from(self.capacity)))
            .then(self.last_assigned_us.cmp(&other.last_assigned_us))
            .then_with(|| self.id.cmp(&other.id))
    }
}

/// A queued conversation, as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub id: String,
    /// Sorted.
    pub required_skills: Vec<String>,
}

/// One planned assignment: indexes into the waiting list and the candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub conversation: usize,
    pub candidate: usize,
    /// The assignment's time; successive assignments of one plan are a microsecond apart so that
    /// "longest since last assignment" orders them.
    pub at_us: i64,
}

/// Plans `waiting` (in queue order) onto `candidates`, updating their `open` and `last_assigned_us` as
/// it goes. Conversations nobody can take stay out of the plan.
pub fn plan(waiting: &[Waiting], candidates: &mut [Candidate], now_us: i64) -> Vec<Planned> {
    let mut planned = Vec::new();
    for (index, conversation) in waiting.iter().enumerate() {
        let best = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| c.has_room() && c.covers(&conversation.required_skills))
            .min_by(|(_, a), (_, b)| a.preference(b))
            .map(|(i, _)| i);
        if let Some(candidate) = best {
            let at_us = now_us + planned.len() as i64;
            candidates[candidate].open += 1;
            candidates[candidate].last_assigned_us = at_us;
            planned.push(Planned {
                conversation: index,
                candidate,
                at_us,
            });
        }
    }
    planned
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(id: &str, capacity: u32, open: u32, last: i64, skills: &[&str]) -> Candidate {
        Candidate {
            id: id.into(),
            capacity,
            skills: skills.iter().map(|s| s.to_string()).collect(),
            open,
            last_assigned_us: last,
        }
    }

    fn waiting(n: usize) -> Vec<Waiting> {
        (0..n)
            .map(|i| Waiting {
                id: format!("c{i}"),
                required_skills: vec![],
            })
            .collect()
    }

    #[test]
    fn equal_agents_take_turns() {
        let mut agents: Vec<Candidate> = (0..4)
            .map(|i| candidate(&format!("a{i}"), 10, 0, 0, &[]))
            .collect();
        for round in 0..5 {
            let planned = plan(&waiting(4), &mut agents, 1_000 * (round + 1));
            assert_eq!(planned.len(), 4);
            let opens: Vec<u32> = agents.iter().map(|a| a.open).collect();
            let (max, min) = (opens.iter().max().unwrap(), opens.iter().min().unwrap());
            assert!(max - min <= 1, "round {round}: {opens:?}");
        }
        assert!(agents.iter().all(|a| a.open == 5));
    }

    #[test]
    fn lowest_load_ratio_then_longest_idle_then_id() {
        // b has the lower load ratio (1/4 < 1/2), though it was assigned more recently.
        let mut agents = vec![candidate("a", 2, 1, 0, &[]), candidate("b", 4, 1, 50, &[])];
        let planned = plan(&waiting(1), &mut agents, 100);
        assert_eq!(planned[0].candidate, 1);
        // Equal ratios: the one assigned longest ago.
        let mut agents = vec![candidate("a", 2, 1, 70, &[]), candidate("b", 4, 2, 60, &[])];
        assert_eq!(plan(&waiting(1), &mut agents, 100)[0].candidate, 1);
        // Everything equal: the lowest id.
        let mut agents = vec![candidate("b", 2, 0, 0, &[]), candidate("a", 2, 0, 0, &[])];
        assert_eq!(plan(&waiting(1), &mut agents, 100)[0].candidate, 1);
    }

    #[test]
    fn capacity_and_skills_bound_the_plan() {
        let mut agents = vec![
            candidate("a", 1, 0, 0, &["fr"]),
            candidate("b", 1, 1, 0, &["billing", "fr"]),
        ];
        let mut queue = waiting(3);
        queue[0].required_skills = vec!["billing".into()];
        let planned = plan(&queue, &mut agents, 100);
        // Only b has billing, and b is full; a takes the next one and is then full too.
        assert_eq!(planned.len(), 1);
        assert_eq!((planned[0].conversation, planned[0].candidate), (1, 0));
        assert!(agents.iter().all(|a| a.open <= a.capacity));
    }
}
