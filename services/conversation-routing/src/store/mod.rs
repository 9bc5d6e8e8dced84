//! The routing store: SQL only, no business rules. One implementation in SQL that PostgreSQL and SQLite
//! both accept (see `assist_runtime::db`); the tests run it on both.
//!
//! Concurrency. Every change is one transaction. The conversation row is locked first, then the
//! counters of the agents concerned in ascending id order, so transactions never wait on each other in
//! a cycle. Assignment passes take queued conversations with `FOR UPDATE SKIP LOCKED` (replicas split
//! the queue instead of queueing behind each other) and raise an agent's counter only while it stays
//! within capacity (`open_count + k <= capacity`, re-evaluated by PostgreSQL after any concurrent
//! update): no conversation is assigned twice and automatic assignment never exceeds a capacity, with
//! any number of replicas. SQLite has one writer at a time, which gives the same guarantees.

mod rows;

use std::collections::{BTreeMap, HashMap};

use assist_runtime::db::{Backend, Database, WriteTransaction};
use assist_runtime::notify::Notifier;
use assist_runtime::validate::{Page, Paged};
use assist_runtime::{Error, Result};
use sqlx::Row;

use crate::domain::{
    Conversation, Event, EventKind, Message, NewConversation, ROUTING_ACTOR, Status,
};
use rows::{
    CONVERSATION_FIELDS, ConversationRow, EVENT_FIELDS, EventRow, MESSAGE_FIELDS, MessageRow,
};

/// The notice channel of conversation events. Each notice lists events as
/// `event_id,conversation_id,customer_id,assignee_after,from_agent,customer_visible` joined by `;`, so
/// that watchers pick theirs without reading the database.
pub const EVENTS: &str = "assist_routing_events";
/// PostgreSQL refuses notice payloads of 8,000 bytes and more.
const PAYLOAD_MAX: usize = 7_000;

pub static MIGRATIONS: assist_runtime::db::Migrations = assist_runtime::db::Migrations {
    postgres: &sqlx::migrate!("migrations/postgres"),
    sqlite: &sqlx::migrate!("migrations/sqlite"),
};

/// One event as a notice carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub event_id: String,
    pub conversation_id: String,
    pub customer_id: String,
    /// The assignee after the event; empty for none.
    pub assignee_id: String,
    /// The assignee before a transfer or requeue; empty otherwise.
    pub from_agent_id: String,
    pub customer_visible: bool,
}

impl Notice {
    fn encode(&self) -> String {
        format!(
            "{},{},{},{},{},{}",
            self.event_id,
            self.conversation_id,
            self.customer_id,
            self.assignee_id,
            self.from_agent_id,
            u8::from(self.customer_visible)
        )
    }

    /// The events of a notice payload; malformed entries are skipped.
    pub fn decode(payload: &str) -> Vec<Notice> {
        payload
            .split(';')
            .filter_map(|entry| {
                let mut fields = entry.split(',');
                let notice = Notice {
                    event_id: fields.next()?.to_owned(),
                    conversation_id: fields.next()?.to_owned(),
                    customer_id: fields.next()?.to_owned(),
                    assignee_id: fields.next()?.to_owned(),
                    from_agent_id: fields.next()?.to_owned(),
                    customer_visible: fields.next()? == "1",
                };
                (!notice.event_id.is_empty()).then_some(notice)
            })
            .collect()
    }
}

/// What a change decided: the events it records (none: nothing changes) and, for a manual assignment,
/// the assignee's capacity (going over it is recorded as an override).
#[derive(Debug, Default)]
pub struct Decision {
    pub events: Vec<Event>,
    pub assignee_capacity: Option<u32>,
}

/// A conversation after a change and the events the change recorded.
#[derive(Debug, Clone)]
pub struct Changed {
    pub conversation: Conversation,
    pub events: Vec<Event>,
}

/// An agent's load as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    pub open: u32,
    pub last_assigned_us: i64,
}

/// A queued conversation an assignment pass holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub id: String,
    pub customer_id: String,
    pub required_skills: Vec<String>,
    pub created_at_us: i64,
    pub queued_at_us: i64,
    /// Taken back from an agent (or reopened) since it was last assigned.
    pub requeued: bool,
}

/// One assignment a pass wants: conversation (index into the held list), agent, capacity, time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    pub conversation: usize,
    pub agent_id: String,
    pub capacity: u32,
    pub at_us: i64,
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct Pass {
    /// How many queued conversations it held.
    pub held: usize,
    /// The assignments made: the conversation as held, the agent and the event.
    pub assigned: Vec<(Held, Event)>,
}

/// Which conversations a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub customer_id: Option<String>,
    pub assignee_id: Option<String>,
    pub status: Option<Status>,
    /// Every status but closed (when `status` is unset).
    pub open_only: bool,
    /// Queued since before this time (implies queued).
    pub queued_before_us: Option<i64>,
}

/// Queue figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueFigures {
    pub queued: u64,
    pub oldest_queued_at_us: Option<i64>,
    pub open: u64,
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    events: Notifier,
}

impl Store {
    pub fn new(db: Database) -> Self {
        let events = Notifier::new(&db, EVENTS);
        Self { db, events }
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// The notices of committed events.
    pub fn events(&self) -> &Notifier {
        &self.events
    }

    /// `FOR UPDATE` on PostgreSQL; nothing on SQLite, where the write transaction holds the database.
    fn for_update(&self) -> &'static str {
        match self.db.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// Stores a new queued conversation, its first message and their events.
    pub async fn create(
        &self,
        new: &NewConversation,
        actor_id: &str,
        now_us: i64,
    ) -> Result<Changed> {
        let conversation = Conversation {
            id: uuid::Uuid::now_v7().to_string(),
            customer_id: new.customer_id.clone(),
            channel: new.channel,
            subject: new.subject.clone(),
            priority: new.priority,
            required_skills: new.required_skills.clone(),
            status: Status::Queued,
            assignee_id: None,
            requeued: false,
            queued_at_us: now_us,
            created_at_us: now_us,
            assigned_at_us: 0,
            first_reply_at_us: 0,
            resolved_at_us: 0,
            closed_at_us: 0,
            updated_at_us: now_us,
            last_message_at_us: now_us,
            version: 1,
            queue_position: None,
        };
        let created = Event::new(&conversation.id, EventKind::Created, actor_id, now_us);
        let mut message_event = Event::new(&conversation.id, EventKind::Message, actor_id, now_us);
        message_event.message = Some(Message {
            id: uuid::Uuid::now_v7().to_string(),
            conversation_id: conversation.id.clone(),
            author_kind: crate::domain::AuthorKind::Customer,
            author_id: new.customer_id.clone(),
            body: new.body.clone(),
            internal: false,
            at_us: now_us,
        });
        let events = vec![created, message_event];
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "INSERT INTO conversations (id, customer_id, channel, subject, priority, required_skills, \
             status, requeued, queued_at, created_at, updated_at, last_message_at, version) \
             VALUES ($1, $2, $3, $4, $5, $6, 'queued', 0, $7, $7, $7, $7, 1)",
        )
        .bind(&conversation.id)
        .bind(&conversation.customer_id)
        .bind(conversation.channel.as_str())
        .bind(&conversation.subject)
        .bind(conversation.priority as i64)
        .bind(conversation.required_skills.join(" "))
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        self.record(&mut tx, &conversation, &events).await?;
        tx.commit().await?;
        Ok(Changed {
            conversation,
            events,
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<Conversation>> {
        let row: Option<ConversationRow> = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_FIELDS} FROM conversations c WHERE c.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.db.pool)
        .await?;
        row.map(Conversation::try_from).transpose()
    }

    /// Changes one conversation in one transaction: locks it, lets `decide` change it (and say which
    /// events that is; none changes nothing), keeps the agents' counters in step with who holds it
    /// open, stores messages and events and tells watchers.
    pub async fn change<F>(&self, id: &str, now_us: i64, decide: F) -> Result<Changed>
    where
        F: FnOnce(&mut Conversation) -> Result<Decision>,
    {
        let mut tx = self.db.begin_write().await?;
        let row: Option<ConversationRow> = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_FIELDS} FROM conversations c WHERE c.id = $1{}",
            self.for_update()
        ))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Err(Error::NotFound("conversation"));
        };
        let before = Conversation::try_from(row)?;
        let mut after = before.clone();
        let decision = match decide(&mut after) {
            Ok(decision) => decision,
            Err(error) => {
                tx.rollback().await?;
                return Err(error);
            }
        };
        let mut events = decision.events;
        if events.is_empty() {
            tx.rollback().await?;
            return Ok(Changed {
                conversation: before,
                events,
            });
        }
        after.version = before.version + 1;
        after.updated_at_us = now_us;
        let mut deltas: BTreeMap<&str, i64> = BTreeMap::new();
        if let (true, Some(agent)) = (before.status.is_open(), before.assignee_id.as_deref()) {
            *deltas.entry(agent).or_default() -= 1;
        }
        if let (true, Some(agent)) = (after.status.is_open(), after.assignee_id.as_deref()) {
            *deltas.entry(agent).or_default() += 1;
        }
        for (agent, delta) in deltas {
            match delta.cmp(&0) {
                std::cmp::Ordering::Greater => {
                    let open = self.take_over(&mut tx, agent, now_us).await?;
                    if decision
                        .assignee_capacity
                        .is_some_and(|c| open > u64::from(c))
                    {
                        for event in events.iter_mut().filter(|e| {
                            matches!(e.kind, EventKind::Assigned | EventKind::Transferred)
                        }) {
                            event.capacity_override = true;
                        }
                    }
                }
                std::cmp::Ordering::Less => self.release(&mut tx, agent, -delta).await?,
                std::cmp::Ordering::Equal => {}
            }
        }
        sqlx::query(
            "UPDATE conversations SET status = $1, assignee_id = $2, requeued = $3, queued_at = $4, \
             assigned_at = $5, first_reply_at = $6, resolved_at = $7, closed_at = $8, updated_at = $9, \
             last_message_at = $10, version = $11 WHERE id = $12",
        )
        .bind(after.status.as_str())
        .bind(&after.assignee_id)
        .bind(i64::from(after.requeued))
        .bind(after.queued_at_us)
        .bind(after.assigned_at_us)
        .bind(after.first_reply_at_us)
        .bind(after.resolved_at_us)
        .bind(after.closed_at_us)
        .bind(after.updated_at_us)
        .bind(after.last_message_at_us)
        .bind(after.version as i64)
        .bind(&after.id)
        .execute(&mut *tx)
        .await?;
        self.record(&mut tx, &after, &events).await?;
        tx.commit().await?;
        Ok(Changed {
            conversation: after,
            events,
        })
    }

    /// One more open conversation on `agent` regardless of capacity (a manual assignment); the count
    /// after it.
    async fn take_over(&self, tx: &mut WriteTransaction, agent: &str, now_us: i64) -> Result<u64> {
        let open: i64 = sqlx::query_scalar(
            "INSERT INTO routing_agents (agent_id, open_count, last_assigned_at, assignments) \
             VALUES ($1, 1, $2, 1) ON CONFLICT (agent_id) DO UPDATE SET \
             open_count = routing_agents.open_count + 1, last_assigned_at = $2, \
             assignments = routing_agents.assignments + 1 RETURNING open_count",
        )
        .bind(agent)
        .bind(now_us)
        .fetch_one(&mut **tx)
        .await?;
        Ok(open.max(0) as u64)
    }

    /// `count` fewer open conversations on `agent`.
    async fn release(&self, tx: &mut WriteTransaction, agent: &str, count: i64) -> Result<()> {
        sqlx::query("UPDATE routing_agents SET open_count = open_count - $1 WHERE agent_id = $2")
            .bind(count)
            .bind(agent)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Stores the messages and events of a change to `conversation` and queues their notices.
    async fn record(
        &self,
        tx: &mut WriteTransaction,
        conversation: &Conversation,
        events: &[Event],
    ) -> Result<()> {
        for event in events {
            if let Some(message) = &event.message {
                sqlx::query(
                    "INSERT INTO messages (id, conversation_id, author_kind, author_id, body, \
                     internal, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&message.id)
                .bind(&message.conversation_id)
                .bind(message.author_kind.as_str())
                .bind(&message.author_id)
                .bind(&message.body)
                .bind(i64::from(message.internal))
                .bind(message.at_us)
                .execute(&mut **tx)
                .await?;
            }
        }
        insert_events(tx, events).await?;
        let notices = events.iter().map(|event| Notice {
            event_id: event.id.clone(),
            conversation_id: conversation.id.clone(),
            customer_id: conversation.customer_id.clone(),
            assignee_id: conversation.assignee_id.clone().unwrap_or_default(),
            from_agent_id: event.from_agent_id.clone(),
            customer_visible: event.customer_visible(),
        });
        self.notify(tx, notices).await
    }

    /// Queues notices, as few payloads as fit.
    async fn notify(
        &self,
        tx: &mut WriteTransaction,
        notices: impl Iterator<Item = Notice>,
    ) -> Result<()> {
        let mut payload = String::new();
        for notice in notices {
            let entry = notice.encode();
            if !payload.is_empty() && payload.len() + entry.len() + 1 > PAYLOAD_MAX {
                tx.notify(&self.events, std::mem::take(&mut payload))
                    .await?;
            }
            if !payload.is_empty() {
                payload.push(';');
            }
            payload.push_str(&entry);
        }
        if !payload.is_empty() {
            tx.notify(&self.events, payload).await?;
        }
        Ok(())
    }

    /// One assignment pass: holds up to `limit` queued conversations in queue order (skipping `skip`
    /// and any another replica holds), reads the agents' loads, lets `plan` choose, then locks the
    /// chosen agents' counters (ascending id), grants what still fits within each capacity and applies
    /// it all in a few set-wise statements. Choices that no longer fit stay queued.
    pub async fn assign_pass<P>(&self, limit: u32, skip: u64, plan: P) -> Result<Pass>
    where
        P: FnOnce(&[Held], &HashMap<String, Load>) -> Vec<Want>,
    {
        let mut tx = self.db.begin_write().await?;
        let lock = match self.db.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "SELECT id, customer_id, required_skills, created_at, queued_at, requeued FROM conversations \
             WHERE status = 'queued' ORDER BY priority DESC, requeued DESC, queued_at, id \
             LIMIT $1 OFFSET $2{lock}"
        ))
        .bind(i64::from(limit))
        .bind(skip as i64)
        .fetch_all(&mut *tx)
        .await?;
        let held: Vec<Held> = rows
            .iter()
            .map(|row| {
                Ok(Held {
                    id: row.try_get(0)?,
                    customer_id: row.try_get(1)?,
                    required_skills: crate::domain::skills_of(&row.try_get::<String, _>(2)?),
                    created_at_us: row.try_get(3)?,
                    queued_at_us: row.try_get(4)?,
                    requeued: row.try_get::<i64, _>(5)? != 0,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        let mut pass = Pass {
            held: held.len(),
            assigned: Vec::new(),
        };
        if held.is_empty() {
            tx.rollback().await?;
            return Ok(pass);
        }
        let loads = self.loads_in(&mut tx).await?;
        let wants = plan(&held, &loads);
        let mut by_agent: BTreeMap<&str, Vec<&Want>> = BTreeMap::new();
        for want in &wants {
            by_agent.entry(&want.agent_id).or_default().push(want);
        }
        let agents: Vec<&str> = by_agent.keys().copied().collect();
        let missing: Vec<&str> = agents
            .iter()
            .copied()
            .filter(|a| !loads.contains_key(*a))
            .collect();
        if !missing.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO routing_agents (agent_id) VALUES {} ON CONFLICT DO NOTHING",
                placeholders(missing.len(), 1)
            ))
            .persistent(false)
            .bind_all(&missing)
            .execute(&mut *tx)
            .await?;
        }
        let open = self.lock_counters(&mut tx, &agents).await?;
        // What still fits, per agent: (agent, count, last assignment time, capacity).
        let mut raises: Vec<(&str, i64, i64, i64)> = Vec::new();
        let mut granted: Vec<&Want> = Vec::with_capacity(wants.len());
        for (agent, wanted) in by_agent {
            let capacity = i64::from(wanted[0].capacity);
            let fits = (capacity - open.get(agent).copied().unwrap_or(capacity))
                .clamp(0, wanted.len() as i64) as usize;
            if fits == 0 {
                continue;
            }
            let taken = &wanted[..fits];
            let last = taken.iter().map(|w| w.at_us).max().unwrap_or_default();
            raises.push((agent, fits as i64, last, capacity));
            granted.extend(taken);
        }
        if granted.is_empty() {
            tx.rollback().await?;
            return Ok(pass);
        }
        granted.sort_by_key(|want| want.conversation);
        let raised = raise_counters(&mut tx, &raises).await?;
        let assigned = assign_held(&mut tx, &held, &granted).await?;
        if raised != raises.len() as u64 || assigned != granted.len() as u64 {
            // Locked and held rows cannot change underneath; if they did, apply nothing.
            tx.rollback().await?;
            return Err(Error::internal(anyhow::anyhow!(
                "assignment pass: {raised} of {} counters and {assigned} of {} conversations changed",
                raises.len(),
                granted.len()
            )));
        }
        let events: Vec<Event> = granted
            .iter()
            .map(|want| {
                let mut event = Event::new(
                    &held[want.conversation].id,
                    EventKind::Assigned,
                    ROUTING_ACTOR,
                    want.at_us,
                );
                event.to_agent_id = want.agent_id.clone();
                event
            })
            .collect();
        insert_events(&mut tx, &events).await?;
        let notices = granted.iter().zip(&events).map(|(want, event)| Notice {
            event_id: event.id.clone(),
            conversation_id: event.conversation_id.clone(),
            customer_id: held[want.conversation].customer_id.clone(),
            assignee_id: want.agent_id.clone(),
            from_agent_id: String::new(),
            customer_visible: true,
        });
        self.notify(&mut tx, notices).await?;
        tx.commit().await?;
        pass.assigned = granted
            .iter()
            .zip(events)
            .map(|(want, event)| (held[want.conversation].clone(), event))
            .collect();
        Ok(pass)
    }

    /// Locks the counters of `agents` (sorted) in that order and reads them.
    async fn lock_counters(
        &self,
        tx: &mut WriteTransaction,
        agents: &[&str],
    ) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query(&format!(
            "SELECT agent_id, open_count FROM routing_agents WHERE agent_id IN ({}) \
             ORDER BY agent_id{}",
            list_placeholders(agents.len()),
            self.for_update()
        ))
        .persistent(false)
        .bind_all(agents)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }

    async fn loads_in(&self, tx: &mut WriteTransaction) -> Result<HashMap<String, Load>> {
        let rows = sqlx::query(LOADS).fetch_all(&mut **tx).await?;
        loads_of(&rows)
    }

    /// The agents' loads, by id.
    pub async fn loads(&self) -> Result<HashMap<String, Load>> {
        let rows = sqlx::query(LOADS).fetch_all(&self.db.pool).await?;
        loads_of(&rows)
    }

    /// Puts `agent`'s conversations in `statuses` back in the queue (ahead of newer ones of their
    /// priority), each with a REQUEUED event giving `reason`. Returns the changes.
    pub async fn requeue_assignee(
        &self,
        agent: &str,
        statuses: &[Status],
        reason: &str,
        now_us: i64,
    ) -> Result<Vec<Changed>> {
        let mut tx = self.db.begin_write().await?;
        let list = statuses
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows: Vec<ConversationRow> = sqlx::query_as(&format!(
            "SELECT {CONVERSATION_FIELDS} FROM conversations c WHERE c.assignee_id = $1 \
             AND c.status IN ({list}) ORDER BY c.id{}",
            self.for_update()
        ))
        .bind(agent)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let mut changed = Vec::with_capacity(rows.len());
        for row in rows {
            let mut conversation = Conversation::try_from(row)?;
            conversation.status = Status::Queued;
            conversation.assignee_id = None;
            conversation.requeued = true;
            conversation.updated_at_us = now_us;
            conversation.version += 1;
            sqlx::query(
                "UPDATE conversations SET status = 'queued', assignee_id = NULL, requeued = 1, \
                 updated_at = $1, version = version + 1 WHERE id = $2",
            )
            .bind(now_us)
            .bind(&conversation.id)
            .execute(&mut *tx)
            .await?;
            let mut event =
                Event::new(&conversation.id, EventKind::Requeued, ROUTING_ACTOR, now_us);
            event.from_agent_id = agent.to_owned();
            event.reason = reason.to_owned();
            changed.push(Changed {
                conversation,
                events: vec![event],
            });
        }
        let events: Vec<Event> = changed.iter().flat_map(|c| c.events.clone()).collect();
        insert_events(&mut tx, &events).await?;
        self.release(&mut tx, agent, changed.len() as i64).await?;
        let notices = changed.iter().map(|c| Notice {
            event_id: c.events[0].id.clone(),
            conversation_id: c.conversation.id.clone(),
            customer_id: c.conversation.customer_id.clone(),
            assignee_id: String::new(),
            from_agent_id: agent.to_owned(),
            customer_visible: false,
        });
        self.notify(&mut tx, notices).await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// Agents holding conversations in ASSIGNED.
    pub async fn assignees_holding_assigned(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT assignee_id FROM conversations \
             WHERE status = 'assigned' AND assignee_id IS NOT NULL",
        )
        .fetch_all(&self.db.pool)
        .await?)
    }

    /// Conversations matching `filter`: queued ones in queue order when listing the queue, otherwise
    /// the most recently updated first.
    pub async fn list(&self, filter: &ListFilter, page: Page) -> Result<Paged<Conversation>> {
        let mut conditions = Vec::new();
        let mut values: Vec<String> = Vec::new();
        let mut bind = |value: String| {
            values.push(value);
            format!("${}", values.len())
        };
        if let Some(customer) = &filter.customer_id {
            conditions.push(format!("c.customer_id = {}", bind(customer.clone())));
        }
        if let Some(assignee) = &filter.assignee_id {
            conditions.push(format!("c.assignee_id = {}", bind(assignee.clone())));
        }
        let status = match filter.queued_before_us {
            Some(_) => Some(Status::Queued),
            None => filter.status,
        };
        match status {
            Some(status) => conditions.push(format!("c.status = '{}'", status.as_str())),
            None if filter.open_only => conditions.push("c.status <> 'closed'".into()),
            None => {}
        }
        let mut before = None;
        if let Some(cutoff) = filter.queued_before_us {
            before = Some(cutoff);
            conditions.push(format!("c.queued_at < ${}", values.len() + 1));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let order = if status == Some(Status::Queued) {
            "c.priority DESC, c.requeued DESC, c.queued_at, c.id"
        } else {
            "c.updated_at DESC, c.id DESC"
        };
        let n = values.len() + usize::from(before.is_some());
        let sql = format!(
            "SELECT {CONVERSATION_FIELDS} FROM conversations c{where_clause} ORDER BY {order} \
             LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let mut query = sqlx::query_as::<_, ConversationRow>(&sql);
        for value in &values {
            query = query.bind(value);
        }
        if let Some(cutoff) = before {
            query = query.bind(cutoff);
        }
        let rows = query
            .bind(i64::from(page.limit))
            .bind(page.offset as i64)
            .fetch_all(&self.db.pool)
            .await?;
        let count_sql = format!("SELECT count(*) FROM conversations c{where_clause}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for value in &values {
            count = count.bind(value);
        }
        if let Some(cutoff) = before {
            count = count.bind(cutoff);
        }
        let total = count.fetch_one(&self.db.pool).await?;
        let mut items = rows
            .into_iter()
            .map(Conversation::try_from)
            .collect::<Result<Vec<_>>>()?;
        // The whole queue in queue order: each position is its place in the list. Otherwise each
        // queued conversation's position is counted.
        let whole_queue = status == Some(Status::Queued) && values.is_empty() && before.is_none();
        for (index, conversation) in items.iter_mut().enumerate() {
            if conversation.status == Status::Queued {
                conversation.queue_position = Some(if whole_queue {
                    page.offset + index as u64
                } else {
                    self.queue_position(conversation).await?
                });
            }
        }
        Ok(Paged {
            items,
            total: total.max(0) as u64,
            total_exact: true,
        })
    }

    /// How many queued conversations go before `conversation` (queued).
    pub async fn queue_position(&self, conversation: &Conversation) -> Result<u64> {
        let ahead: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM conversations WHERE status = 'queued' AND (priority > $1 OR \
             (priority = $1 AND (requeued > $2 OR (requeued = $2 AND (queued_at < $3 OR \
             (queued_at = $3 AND id < $4))))))",
        )
        .bind(conversation.priority as i64)
        .bind(i64::from(conversation.requeued))
        .bind(conversation.queued_at_us)
        .bind(&conversation.id)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(ahead.max(0) as u64)
    }

    /// Messages of a conversation, oldest first; internal notes only when asked for.
    pub async fn messages(
        &self,
        conversation_id: &str,
        with_internal: bool,
        page: Page,
    ) -> Result<Paged<Message>> {
        let internal = if with_internal {
            ""
        } else {
            " AND m.internal = 0"
        };
        let rows: Vec<MessageRow> = sqlx::query_as(&format!(
            "SELECT {MESSAGE_FIELDS} FROM messages m WHERE m.conversation_id = $1{internal} \
             ORDER BY m.at, m.id LIMIT $2 OFFSET $3"
        ))
        .bind(conversation_id)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.db.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM messages m WHERE m.conversation_id = $1{internal}"
        ))
        .bind(conversation_id)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(Paged {
            items: rows
                .into_iter()
                .map(Message::try_from)
                .collect::<Result<_>>()?,
            total: total.max(0) as u64,
            total_exact: true,
        })
    }

    /// Events of a conversation, oldest first; for customers only the kinds they are told of and no
    /// internal notes.
    pub async fn history(
        &self,
        conversation_id: &str,
        for_customer: bool,
        page: Page,
    ) -> Result<Paged<Event>> {
        let filter = if for_customer {
            let kinds = EventKind::ALL
                .iter()
                .filter(|k| k.customer_visible())
                .map(|k| format!("'{}'", k.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            format!(" AND e.kind IN ({kinds}) AND (m.internal IS NULL OR m.internal = 0)")
        } else {
            String::new()
        };
        let from = "FROM conversation_events e LEFT JOIN messages m ON m.id = e.message_id";
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_FIELDS} {from} WHERE e.conversation_id = $1{filter} \
             ORDER BY e.at, e.id LIMIT $2 OFFSET $3"
        ))
        .bind(conversation_id)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.db.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) {from} WHERE e.conversation_id = $1{filter}"
        ))
        .bind(conversation_id)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(Paged {
            items: rows
                .into_iter()
                .map(Event::try_from)
                .collect::<Result<_>>()?,
            total: total.max(0) as u64,
            total_exact: true,
        })
    }

    /// Events by id (with their messages) and the conversations they belong to, as they are now.
    pub async fn events_with_conversations(
        &self,
        ids: &[&str],
    ) -> Result<(Vec<Event>, HashMap<String, Conversation>)> {
        if ids.is_empty() {
            return Ok((Vec::new(), HashMap::new()));
        }
        let sql = format!(
            "SELECT {EVENT_FIELDS} FROM conversation_events e LEFT JOIN messages m \
             ON m.id = e.message_id WHERE e.id IN ({}) ORDER BY e.at, e.id",
            list_placeholders(ids.len())
        );
        let mut query = sqlx::query_as::<_, EventRow>(&sql);
        for id in ids {
            query = query.bind(*id);
        }
        let events = query
            .fetch_all(&self.db.pool)
            .await?
            .into_iter()
            .map(Event::try_from)
            .collect::<Result<Vec<_>>>()?;
        let mut conversation_ids: Vec<&str> =
            events.iter().map(|e| e.conversation_id.as_str()).collect();
        conversation_ids.sort_unstable();
        conversation_ids.dedup();
        let sql = format!(
            "SELECT {CONVERSATION_FIELDS} FROM conversations c WHERE c.id IN ({})",
            list_placeholders(conversation_ids.len())
        );
        let mut query = sqlx::query_as::<_, ConversationRow>(&sql);
        for id in &conversation_ids {
            query = query.bind(*id);
        }
        let conversations = query
            .fetch_all(&self.db.pool)
            .await?
            .into_iter()
            .map(|row| Conversation::try_from(row).map(|c| (c.id.clone(), c)))
            .collect::<Result<_>>()?;
        Ok((events, conversations))
    }

    /// Queue depth, the oldest queued time and how many conversations are open.
    pub async fn figures(&self) -> Result<QueueFigures> {
        let row = sqlx::query(
            "SELECT count(*), min(queued_at) FROM conversations WHERE status = 'queued'",
        )
        .fetch_one(&self.db.pool)
        .await?;
        let queued: i64 = row.try_get(0)?;
        let oldest: Option<i64> = row.try_get(1)?;
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM conversations WHERE status IN ('assigned', 'pending')",
        )
        .fetch_one(&self.db.pool)
        .await?;
        Ok(QueueFigures {
            queued: queued.max(0) as u64,
            oldest_queued_at_us: oldest,
            open: open.max(0) as u64,
        })
    }
}

/// Every agent's load.
const LOADS: &str = "SELECT agent_id, open_count, last_assigned_at FROM routing_agents";

fn loads_of(rows: &[sqlx::any::AnyRow]) -> Result<HashMap<String, Load>> {
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>(0)?,
                Load {
                    open: row.try_get::<i64, _>(1)?.clamp(0, i64::from(u32::MAX)) as u32,
                    last_assigned_us: row.try_get(2)?,
                },
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Error::from)
}

/// `$1, $2, …, $n`: the placeholders of an `IN` list.
fn list_placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(1, 2), (3, 4)`-style placeholders: `rows` groups of `columns` parameters, numbered from $1.
fn placeholders(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|row| {
            let fields: Vec<String> = (1..=columns)
                .map(|column| format!("${}", row * columns + column))
                .collect();
            format!("({})", fields.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Binding a list of text values in order.
trait BindAll<'q> {
    fn bind_all(self, values: &'q [&'q str]) -> Self;
}

impl<'q> BindAll<'q> for sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    fn bind_all(mut self, values: &'q [&'q str]) -> Self {
        for value in values {
            self = self.bind(*value);
        }
        self
    }
}

/// Raises each `(agent, count, last assignment, capacity)` counter by `count` where it stays within
/// `capacity`, in one statement; how many counters it raised.
async fn raise_counters(
    tx: &mut WriteTransaction,
    raises: &[(&str, i64, i64, i64)],
) -> Result<u64> {
    let sql = format!(
        "UPDATE routing_agents SET open_count = open_count + v.column2, \
         last_assigned_at = v.column3, assignments = assignments + v.column2 \
         FROM (VALUES {}) AS v \
         WHERE routing_agents.agent_id = v.column1 AND routing_agents.open_count + v.column2 <= v.column4",
        placeholders(raises.len(), 4)
    );
    let mut query = sqlx::query(&sql).persistent(false);
    for (agent, count, last, capacity) in raises {
        query = query.bind(*agent).bind(*count).bind(*last).bind(*capacity);
    }
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

/// Assigns the held conversations of `granted` (still queued) in one statement; how many it assigned.
async fn assign_held(tx: &mut WriteTransaction, held: &[Held], granted: &[&Want]) -> Result<u64> {
    let sql = format!(
        "UPDATE conversations SET status = 'assigned', assignee_id = v.column2, \
         assigned_at = v.column3, requeued = 0, updated_at = v.column3, version = version + 1 \
         FROM (VALUES {}) AS v WHERE conversations.id = v.column1 AND conversations.status = 'queued'",
        placeholders(granted.len(), 3)
    );
    let mut query = sqlx::query(&sql).persistent(false);
    for want in granted {
        query = query
            .bind(&held[want.conversation].id)
            .bind(&want.agent_id)
            .bind(want.at_us);
    }
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

/// The columns of an event row, in the order [`insert_events`] binds them.
const EVENT_COLUMNS: usize = 11;

/// Stores `events` in one statement.
async fn insert_events(tx: &mut WriteTransaction, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO conversation_events (id, conversation_id, kind, actor_id, at, to_agent_id, \
         from_agent_id, capacity_override, reason, message_id, session_id) VALUES {}",
        placeholders(events.len(), EVENT_COLUMNS)
    );
    // Changes record one to three events: those shapes are worth preparing once.
    let mut query = sqlx::query(&sql).persistent(events.len() <= 3);
    for event in events {
        query = query
            .bind(&event.id)
            .bind(&event.conversation_id)
            .bind(event.kind.as_str())
            .bind(&event.actor_id)
            .bind(event.at_us)
            .bind(&event.to_agent_id)
            .bind(&event.from_agent_id)
            .bind(i64::from(event.capacity_override))
            .bind(&event.reason)
            .bind(event.message.as_ref().map(|m| m.id.clone()))
            .bind(&event.session_id);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip() {
        let notice = Notice {
            event_id: "e".into(),
            conversation_id: "c".into(),
            customer_id: "u".into(),
            assignee_id: String::new(),
            from_agent_id: "a".into(),
            customer_visible: true,
        };
        let payload = format!("{};{}", notice.encode(), notice.encode());
        assert_eq!(Notice::decode(&payload), vec![notice.clone(), notice]);
        assert!(Notice::decode("garbage").is_empty());
    }
}
