//! The use cases of conversation routing and who may do what (DESIGN.md sections 4 and 5; the rules are
//! written out in `routing.proto`). Every change goes through [`Store::change`], one transaction.

use std::sync::Arc;

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::impersonation::v1 as imp;
use assist_runtime::auth::Claims;
use assist_runtime::time::now_us;
use assist_runtime::validate::{self, Page, Paged};
use assist_runtime::{Error, Result};

use crate::Sessions;
use crate::domain::access::{self, Caller, Role};
use crate::domain::{
    AuthorKind, Channel, Conversation, Event, EventKind, Message, NewConversation, Priority,
    Status, message_body, status_change,
};
use crate::engine::Engine;
use crate::roster::Roster;
use crate::store::{Decision, ListFilter, Notice, QueueFigures, Store};

/// The longest assist session id accepted.
const SESSION_ID_MAX: usize = 100;

/// Which events a watcher gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchFilter {
    /// A customer's own conversations (what customers are told of).
    Customer(String),
    /// A console member's own: assigned to them, or taken from them.
    Member(String),
    All,
    /// One conversation; `customer` when the watcher is its customer.
    Conversation {
        id: String,
        customer: bool,
    },
}

impl WatchFilter {
    pub fn matches(&self, notice: &Notice) -> bool {
        match self {
            WatchFilter::Customer(id) => notice.customer_id == *id && notice.customer_visible,
            WatchFilter::Member(id) => notice.assignee_id == *id || notice.from_agent_id == *id,
            WatchFilter::All => true,
            WatchFilter::Conversation { id, customer } => {
                notice.conversation_id == *id && (!customer || notice.customer_visible)
            }
        }
    }
}

/// A request to create a conversation, unchecked.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub customer_id: String,
    pub subject: String,
    pub body: String,
    pub priority: Option<Priority>,
    pub required_skills: Vec<String>,
}

/// Conversation routing: the store, the roster and the engine of this replica.
pub struct Routing {
    store: Store,
    roster: Arc<Roster>,
    engine: Arc<Engine>,
    sessions: Sessions,
}

impl Routing {
    pub fn new(store: Store, roster: Arc<Roster>, engine: Arc<Engine>, sessions: Sessions) -> Self {
        Self {
            store,
            roster,
            engine,
            sessions,
        }
    }

    /// The assist session `session_id` as impersonation-token holds it now.
    async fn assist_session(&self, session_id: &str) -> Result<imp::AssistSession> {
        let reply = self
            .sessions
            .clone()
            .get_session(imp::GetSessionRequest {
                session_id: session_id.to_owned(),
                actions: Some(assist_proto::common::v1::PageRequest {
                    limit: 1,
                    offset: 0,
                }),
            })
            .await;
        match reply {
            Ok(reply) => reply.into_inner().session.ok_or_else(|| {
                Error::Unavailable("impersonation-token answered no session".into())
            }),
            Err(status) if status.code() == tonic::Code::NotFound => {
                Err(Error::invalid("session_id", "no such assist session"))
            }
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                Err(Error::invalid("session_id", "must be an assist session id"))
            }
            Err(status) => {
                tracing::warn!(error = %status.message(), "impersonation-token GetSession failed");
                Err(Error::Unavailable(
                    "impersonation-token is unavailable".into(),
                ))
            }
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The caller as routing sees it ([`access::caller`]), its console role from the roster (the
    /// current state of agent-directory).
    pub fn caller(&self, claims: &Claims) -> Result<Caller> {
        let member = self.roster.get(&claims.sub).and_then(|member| {
            let role = match member.role {
                dir::Role::Agent => Role::Agent,
                dir::Role::Supervisor => Role::Supervisor,
                dir::Role::Administrator => Role::Administrator,
                dir::Role::Unspecified => return None,
            };
            member.active.then_some(role)
        });
        access::caller(claims, member)
    }

    pub async fn create(&self, caller: &Caller, request: CreateRequest) -> Result<Conversation> {
        let (customer_id, channel) = match caller.role {
            Role::Customer => {
                if !request.customer_id.is_empty() && request.customer_id != caller.id {
                    return Err(Error::denied(
                        "customers start conversations for themselves only",
                    ));
                }
                if request.priority.is_some_and(|p| p != Priority::Normal)
                    || !request.required_skills.is_empty()
                {
                    return Err(Error::denied(
                        "only services set a conversation's priority or required skills",
                    ));
                }
                (caller.id.clone(), Channel::Web)
            }
            Role::Service => (
                validate::id("customer_id", &request.customer_id)?.to_string(),
                Channel::Api,
            ),
            _ => {
                return Err(Error::denied("customers and services start conversations"));
            }
        };
        let new = NewConversation::new(
            customer_id,
            channel,
            &request.subject,
            &request.body,
            request.priority.unwrap_or(Priority::Normal),
            &request.required_skills,
        )?;
        let created = self.store.create(&new, &caller.id, now_us()).await?;
        tracing::info!(conversation_id = %created.conversation.id, channel = channel.as_str(), "conversation created");
        self.engine.kick();
        Ok(created.conversation)
    }

    /// One conversation the caller may read, with its queue position when queued.
    pub async fn get(&self, caller: &Caller, id: &str) -> Result<Conversation> {
        let mut conversation = self.readable(caller, id).await?;
        if conversation.status == Status::Queued {
            conversation.queue_position = Some(self.store.queue_position(&conversation).await?);
        }
        Ok(conversation)
    }

    async fn readable(&self, caller: &Caller, id: &str) -> Result<Conversation> {
        let id = conversation_id(id)?;
        let conversation = self
            .store
            .get(&id)
            .await?
            .ok_or(Error::NotFound("conversation"))?;
        caller.may_read(&conversation)?;
        Ok(conversation)
    }

    /// MINE (`all` false) or ALL, filtered.
    pub async fn list(
        &self,
        caller: &Caller,
        all: bool,
        mut filter: ListFilter,
        page: Page,
    ) -> Result<Paged<Conversation>> {
        if all {
            if !caller.oversees() {
                return Err(Error::denied(
                    "only supervisors and administrators see all conversations",
                ));
            }
        } else {
            if filter.assignee_id.is_some() {
                return Err(Error::invalid(
                    "assignee_id",
                    "filters all conversations only",
                ));
            }
            match caller.role {
                Role::Customer => filter.customer_id = Some(caller.id.clone()),
                _ => {
                    filter.assignee_id = Some(caller.id.clone());
                    filter.open_only = filter.status.is_none();
                }
            }
        }
        self.store.list(&filter, page).await
    }

    pub async fn post_message(
        &self,
        caller: &Caller,
        id: &str,
        body: &str,
        internal: bool,
    ) -> Result<(Message, Conversation)> {
        let id = conversation_id(id)?;
        let body = message_body(body)?;
        let now = now_us();
        let changed = self
            .store
            .change(&id, now, |conversation| {
                caller.may_read(conversation)?;
                if conversation.status == Status::Closed {
                    return Err(Error::FailedPrecondition(
                        "the conversation is closed; start a new one".into(),
                    ));
                }
                let author_kind = match caller.role {
                    Role::Customer if internal => {
                        return Err(Error::denied("customers cannot write internal notes"));
                    }
                    Role::Customer => AuthorKind::Customer,
                    Role::Service => AuthorKind::System,
                    _ => AuthorKind::Agent,
                };
                conversation.last_message_at_us = now;
                // The message first: a reopen or resume it causes follows it in the history.
                let mut event = Event::new(&conversation.id, EventKind::Message, &caller.id, now);
                event.message = Some(Message {
                    id: uuid::Uuid::now_v7().to_string(),
                    conversation_id: conversation.id.clone(),
                    author_kind,
                    author_id: if author_kind == AuthorKind::System {
                        String::new()
                    } else {
                        caller.id.clone()
                    },
                    body,
                    internal,
                    at_us: now,
                });
                let mut events = vec![event];
                match caller.role {
                    Role::Customer => match conversation.status {
                        Status::Resolved => {
                            conversation.status = Status::Queued;
                            conversation.assignee_id = None;
                            conversation.requeued = true;
                            conversation.queued_at_us = now;
                            events.push(Event::new(&conversation.id, EventKind::Reopened, &caller.id, now));
                        }
                        Status::Pending => {
                            conversation.status = Status::Assigned;
                            events.push(Event::new(&conversation.id, EventKind::Resumed, &caller.id, now));
                        }
                        _ => {}
                    },
                    _ if internal => {}
                    Role::Service => {}
                    _ => {
                        if !conversation.is_assigned_to(&caller.id) {
                            return Err(Error::denied(
                                "only the assignee replies; assign it to yourself or write an internal note",
                            ));
                        }
                        if !conversation.status.is_open() {
                            return Err(Error::FailedPrecondition(format!(
                                "the conversation is {}; the customer can reopen it by writing",
                                conversation.status.as_str()
                            )));
                        }
                        if conversation.first_reply_at_us == 0 {
                            conversation.first_reply_at_us = now;
                        }
                    }
                }
                Ok(Decision {
                    events,
                    assignee_capacity: None,
                })
            })
            .await?;
        if changed.conversation.status == Status::Queued {
            self.engine.kick();
        }
        let message = changed
            .events
            .iter()
            .find_map(|e| e.message.clone())
            .ok_or_else(|| Error::internal(anyhow::anyhow!("message event missing")))?;
        Ok((message, changed.conversation))
    }

    pub async fn messages(&self, caller: &Caller, id: &str, page: Page) -> Result<Paged<Message>> {
        let conversation = self.readable(caller, id).await?;
        self.store
            .messages(&conversation.id, caller.is_member(), page)
            .await
    }

    pub async fn set_status(&self, caller: &Caller, id: &str, to: Status) -> Result<Conversation> {
        let id = conversation_id(id)?;
        let now = now_us();
        let changed = self
            .store
            .change(&id, now, |conversation| {
                caller.may_read(conversation)?;
                let kind = status_change(conversation.status, to)?;
                let assignee_only = matches!(kind, EventKind::Pending | EventKind::Resumed);
                if assignee_only && !conversation.is_assigned_to(&caller.id) {
                    return Err(Error::denied(format!(
                        "only the assignee marks a conversation {}",
                        to.as_str()
                    )));
                }
                conversation.status = to;
                match kind {
                    EventKind::Resolved => {
                        conversation.resolved_at_us = now;
                        conversation.requeued = false;
                    }
                    EventKind::Closed => conversation.closed_at_us = now,
                    _ => {}
                }
                Ok(Decision {
                    events: vec![Event::new(&conversation.id, kind, &caller.id, now)],
                    assignee_capacity: None,
                })
            })
            .await?;
        if to == Status::Resolved {
            // Capacity freed.
            self.engine.kick();
        }
        Ok(changed.conversation)
    }

    /// Manual assignment or transfer (supervisors, administrators, services).
    pub async fn assign(&self, caller: &Caller, id: &str, agent_id: &str) -> Result<Conversation> {
        if !caller.oversees() {
            return Err(Error::denied(
                "agents cannot assign conversations; a supervisor or administrator can",
            ));
        }
        let id = conversation_id(id)?;
        let agent_id = validate::id("agent_id", agent_id)?.to_string();
        let member = self
            .roster
            .get(&agent_id)
            .filter(|m| m.active)
            .ok_or_else(|| {
                Error::FailedPrecondition("the assignee is not an active console member".into())
            })?;
        if !member.is_assignable() {
            return Err(Error::FailedPrecondition(
                "administrators are never assigned conversations; choose an agent or supervisor"
                    .into(),
            ));
        }
        let now = now_us();
        let changed = self
            .store
            .change(&id, now, |conversation| {
                let kind = match conversation.status {
                    Status::Queued => EventKind::Assigned,
                    Status::Assigned | Status::Pending
                        if conversation.is_assigned_to(&agent_id) =>
                    {
                        return Err(Error::FailedPrecondition(
                            "the conversation is already assigned to them".into(),
                        ));
                    }
                    Status::Assigned | Status::Pending => EventKind::Transferred,
                    status => {
                        return Err(Error::FailedPrecondition(format!(
                            "a {} conversation cannot be assigned",
                            status.as_str()
                        )));
                    }
                };
                let mut event = Event::new(&conversation.id, kind, &caller.id, now);
                event.to_agent_id = agent_id.clone();
                event.from_agent_id = conversation.assignee_id.clone().unwrap_or_default();
                if conversation.status == Status::Queued {
                    conversation.status = Status::Assigned;
                }
                conversation.assignee_id = Some(agent_id.clone());
                conversation.assigned_at_us = now;
                conversation.requeued = false;
                Ok(Decision {
                    events: vec![event],
                    assignee_capacity: Some(member.capacity),
                })
            })
            .await?;
        if let Some(event) = changed.events.first() {
            tracing::info!(
                conversation_id = %id,
                actor_id = %caller.id,
                to = %agent_id,
                kind = event.kind.as_str(),
                capacity_override = event.capacity_override,
                "conversation assigned by hand"
            );
            if event.kind == EventKind::Transferred {
                // The previous assignee has room now.
                self.engine.kick();
            }
        }
        Ok(changed.conversation)
    }

    pub async fn record_assist(
        &self,
        caller: &Caller,
        id: &str,
        session_id: &str,
    ) -> Result<Conversation> {
        let id = conversation_id(id)?;
        let session_id = validate::required("session_id", session_id, SESSION_ID_MAX)?;
        if caller.role == Role::Customer {
            return Err(Error::denied("customers do not start assist sessions"));
        }
        let session = self.assist_session(&session_id).await?;
        let now = now_us();
        let changed = self
            .store
            .change(&id, now, |conversation| {
                caller.may_read(conversation)?;
                // Only the caller's own live session for this conversation's customer, started for
                // this conversation: the history never names a session that did not serve it.
                if session.agent_id != caller.id {
                    return Err(Error::denied("the assist session is another agent's"));
                }
                if session.target_id != conversation.customer_id
                    || session.target_realm != imp::TargetRealm::Customer as i32
                {
                    return Err(Error::invalid(
                        "session_id",
                        "the assist session is not for this conversation's customer",
                    ));
                }
                if !session.conversation_id.is_empty() && session.conversation_id != conversation.id
                {
                    return Err(Error::invalid(
                        "session_id",
                        "the assist session was started for another conversation",
                    ));
                }
                if !session.active {
                    return Err(Error::FailedPrecondition(
                        "the assist session has ended".into(),
                    ));
                }
                if conversation.status == Status::Closed {
                    return Err(Error::FailedPrecondition(
                        "the conversation is closed".into(),
                    ));
                }
                let mut event =
                    Event::new(&conversation.id, EventKind::AssistStarted, &caller.id, now);
                event.session_id = session_id.clone();
                Ok(Decision {
                    events: vec![event],
                    assignee_capacity: None,
                })
            })
            .await?;
        Ok(changed.conversation)
    }

    pub async fn history(&self, caller: &Caller, id: &str, page: Page) -> Result<Paged<Event>> {
        let conversation = self.readable(caller, id).await?;
        self.store
            .history(&conversation.id, caller.role == Role::Customer, page)
            .await
    }

    /// Which events the caller's watch gets.
    pub async fn watch_filter(
        &self,
        caller: &Caller,
        all: bool,
        conversation: &str,
    ) -> Result<WatchFilter> {
        if !conversation.is_empty() {
            let conversation = self.readable(caller, conversation).await?;
            return Ok(WatchFilter::Conversation {
                id: conversation.id,
                customer: caller.role == Role::Customer,
            });
        }
        if all {
            if !caller.oversees() {
                return Err(Error::denied(
                    "only supervisors and administrators watch all conversations",
                ));
            }
            return Ok(WatchFilter::All);
        }
        Ok(match caller.role {
            Role::Customer => WatchFilter::Customer(caller.id.clone()),
            _ => WatchFilter::Member(caller.id.clone()),
        })
    }

    /// Whether a watch `opened` by the caller of `claims` may go on: the caller's role now (from the
    /// roster, current state) is the role it watched with. A member removed, demoted or promoted
    /// watches again (or may not).
    pub fn still_watching(&self, claims: &Claims, opened: &Caller) -> Result<()> {
        if self.caller(claims)?.role == opened.role {
            Ok(())
        } else {
            Err(Error::denied("your console role changed; watch again"))
        }
    }

    /// The events of a notice payload that `filter` lets through, with their conversations as they
    /// are now. Customers never get internal notes. A watch of one conversation ends (an error) as
    /// soon as an event of it comes that the watcher may no longer read (an agent it was taken from).
    pub async fn watched(
        &self,
        watcher: &Caller,
        filter: &WatchFilter,
        payload: &str,
    ) -> Result<Vec<(Event, Option<Conversation>)>> {
        let notices = Notice::decode(payload);
        let ids: Vec<&str> = notices
            .iter()
            .filter(|n| filter.matches(n))
            .map(|n| n.event_id.as_str())
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (events, conversations) = self.store.events_with_conversations(&ids).await?;
        if matches!(filter, WatchFilter::Conversation { .. }) {
            for conversation in conversations.values() {
                watcher.may_read(conversation)?;
            }
        }
        let customer = matches!(
            filter,
            WatchFilter::Customer(_) | WatchFilter::Conversation { customer: true, .. }
        );
        Ok(events
            .into_iter()
            .filter(|e| !customer || e.customer_visible())
            .map(|e| {
                let conversation = conversations.get(&e.conversation_id).cloned();
                (e, conversation)
            })
            .collect())
    }

    pub async fn queue_stats(&self, caller: &Caller) -> Result<(QueueFigures, u32, u32)> {
        if !caller.is_member() {
            return Err(Error::denied("console members and services only"));
        }
        let figures = self.store.figures().await?;
        let online = self.roster.taking_work();
        let loads = self.store.loads().await?;
        let available = online
            .iter()
            .filter(|m| loads.get(&m.id).map_or(0, |l| l.open) < m.capacity)
            .count();
        Ok((figures, online.len() as u32, available as u32))
    }
}

/// A conversation id: the text of a UUID.
fn conversation_id(value: &str) -> Result<String> {
    Ok(validate::id("conversation_id", value)?.to_string())
}
