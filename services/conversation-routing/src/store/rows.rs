//! Rows as the database returns them, and their conversion to domain types.

use assist_runtime::{Error, Result};

use crate::domain::{
    AuthorKind, Channel, Conversation, Event, EventKind, Message, Priority, Status, skills_of,
};

/// The columns of [`ConversationRow`], in order, over the alias `c`.
pub const CONVERSATION_FIELDS: &str = "c.id, c.customer_id, c.channel, c.subject, c.priority, \
     c.required_skills, c.status, c.assignee_id, c.requeued, c.queued_at, c.created_at, c.assigned_at, \
     c.first_reply_at, c.resolved_at, c.closed_at, c.updated_at, c.last_message_at, c.version";

#[derive(Debug, sqlx::FromRow)]
pub struct ConversationRow {
    id: String,
    customer_id: String,
    channel: String,
    subject: String,
    priority: i64,
    required_skills: String,
    status: String,
    assignee_id: Option<String>,
    requeued: i64,
    queued_at: i64,
    created_at: i64,
    assigned_at: i64,
    first_reply_at: i64,
    resolved_at: i64,
    closed_at: i64,
    updated_at: i64,
    last_message_at: i64,
    version: i64,
}

fn corrupt(what: &str, value: &str) -> Error {
    Error::internal(anyhow::anyhow!("stored {what} {value:?} is not known"))
}

impl TryFrom<ConversationRow> for Conversation {
    type Error = Error;

    fn try_from(row: ConversationRow) -> Result<Self> {
        Ok(Conversation {
            channel: Channel::parse(&row.channel)
                .ok_or_else(|| corrupt("channel", &row.channel))?,
            priority: Priority::from_number(row.priority)
                .ok_or_else(|| corrupt("priority", &row.priority.to_string()))?,
            status: Status::parse(&row.status).ok_or_else(|| corrupt("status", &row.status))?,
            required_skills: skills_of(&row.required_skills),
            id: row.id,
            customer_id: row.customer_id,
            subject: row.subject,
            assignee_id: row.assignee_id,
            requeued: row.requeued != 0,
            queued_at_us: row.queued_at,
            created_at_us: row.created_at,
            assigned_at_us: row.assigned_at,
            first_reply_at_us: row.first_reply_at,
            resolved_at_us: row.resolved_at,
            closed_at_us: row.closed_at,
            updated_at_us: row.updated_at,
            last_message_at_us: row.last_message_at,
            version: row.version.max(0) as u64,
            queue_position: None,
        })
    }
}

/// The columns of [`MessageRow`], in order, over the alias `m`.
pub const MESSAGE_FIELDS: &str =
    "m.id, m.conversation_id, m.author_kind, m.author_id, m.body, m.internal, m.at";

#[derive(Debug, sqlx::FromRow)]
pub struct MessageRow {
    id: String,
    conversation_id: String,
    author_kind: String,
    author_id: String,
    body: String,
    internal: i64,
    at: i64,
}

impl TryFrom<MessageRow> for Message {
    type Error = Error;

    fn try_from(row: MessageRow) -> Result<Self> {
        Ok(Message {
            author_kind: AuthorKind::parse(&row.author_kind)
                .ok_or_else(|| corrupt("author kind", &row.author_kind))?,
            id: row.id,
            conversation_id: row.conversation_id,
            author_id: row.author_id,
            body: row.body,
            internal: row.internal != 0,
            at_us: row.at,
        })
    }
}

/// The columns of [`EventRow`], in order: the event (alias `e`) and its message, if any (alias `m`,
/// left-joined).
pub const EVENT_FIELDS: &str = "e.id, e.conversation_id, e.kind, e.actor_id, e.at, e.to_agent_id, \
     e.from_agent_id, e.capacity_override, e.reason, e.session_id, m.id AS message_id, \
     m.author_kind AS message_author_kind, m.author_id AS message_author_id, m.body AS message_body, \
     m.internal AS message_internal, m.at AS message_at";

#[derive(Debug, sqlx::FromRow)]
pub struct EventRow {
    id: String,
    conversation_id: String,
    kind: String,
    actor_id: String,
    at: i64,
    to_agent_id: String,
    from_agent_id: String,
    capacity_override: i64,
    reason: String,
    session_id: String,
    message_id: Option<String>,
    message_author_kind: Option<String>,
    message_author_id: Option<String>,
    message_body: Option<String>,
    message_internal: Option<i64>,
    message_at: Option<i64>,
}

impl TryFrom<EventRow> for Event {
    type Error = Error;

    fn try_from(row: EventRow) -> Result<Self> {
        let message = match row.message_id {
            Some(id) => {
                let kind = row.message_author_kind.unwrap_or_default();
                Some(Message {
                    author_kind: AuthorKind::parse(&kind)
                        .ok_or_else(|| corrupt("author kind", &kind))?,
                    id,
                    conversation_id: row.conversation_id.clone(),
                    author_id: row.message_author_id.unwrap_or_default(),
                    body: row.message_body.unwrap_or_default(),
                    internal: row.message_internal.unwrap_or(0) != 0,
                    at_us: row.message_at.unwrap_or(0),
                })
            }
            None => None,
        };
        Ok(Event {
            kind: EventKind::parse(&row.kind).ok_or_else(|| corrupt("event kind", &row.kind))?,
            id: row.id,
            conversation_id: row.conversation_id,
            actor_id: row.actor_id,
            at_us: row.at,
            to_agent_id: row.to_agent_id,
            from_agent_id: row.from_agent_id,
            capacity_override: row.capacity_override != 0,
            reason: row.reason,
            message,
            session_id: row.session_id,
        })
    }
}
