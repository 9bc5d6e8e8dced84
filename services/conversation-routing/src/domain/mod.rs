//! Conversations as plain types: statuses and their transitions, priorities, messages, events, and the
//! input checks of a new conversation or message. No I/O here.

pub mod access;

use assist_runtime::{Error, Result, validate};

pub use assist_proto::routing::v1::{BODY_MAX, SUBJECT_MAX};
/// The most skills a conversation can require.
pub const MAX_REQUIRED_SKILLS: usize = 10;
/// The actor id of what the routing policy does by itself.
pub const ROUTING_ACTOR: &str = "routing";

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            /// The stored text.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(value: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == value)
            }
        }
    };
}

text_enum!(
    /// Where a conversation is in its life (DESIGN.md section 5).
    Status {
        Queued => "queued",
        Assigned => "assigned",
        Pending => "pending",
        Resolved => "resolved",
        Closed => "closed",
    }
);

impl Status {
    /// Open on an agent: counts against their capacity.
    pub fn is_open(self) -> bool {
        matches!(self, Status::Assigned | Status::Pending)
    }
}

text_enum!(
    /// How a conversation came in.
    Channel {
        Web => "web",
        Api => "api",
    }
);

text_enum!(
    /// Who wrote a message.
    AuthorKind {
        Customer => "customer",
        Agent => "agent",
        System => "system",
    }
);

text_enum!(
    /// What an event records.
    EventKind {
        Created => "created",
        Assigned => "assigned",
        Transferred => "transferred",
        Requeued => "requeued",
        Message => "message",
        Pending => "pending",
        Resumed => "resumed",
        Resolved => "resolved",
        Reopened => "reopened",
        Closed => "closed",
        AssistStarted => "assist_started",
    }
);

impl EventKind {
    /// The kinds a customer is told of (their own conversation; internal notes never).
    pub fn customer_visible(self) -> bool {
        matches!(
            self,
            EventKind::Created
                | EventKind::Assigned
                | EventKind::Transferred
                | EventKind::Message
                | EventKind::Resolved
                | EventKind::Reopened
                | EventKind::Closed
        )
    }
}

/// Priorities, lowest first; stored as their number so the queue orders by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Low = 1,
    Normal = 2,
    High = 3,
    Urgent = 4,
}

impl Priority {
    pub fn from_number(value: i64) -> Option<Self> {
        match value {
            1 => Some(Priority::Low),
            2 => Some(Priority::Normal),
            3 => Some(Priority::High),
            4 => Some(Priority::Urgent),
            _ => None,
        }
    }
}

/// A conversation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub id: String,
    pub customer_id: String,
    pub channel: Channel,
    pub subject: String,
    pub priority: Priority,
    pub required_skills: Vec<String>,
    pub status: Status,
    pub assignee_id: Option<String>,
    pub requeued: bool,
    pub queued_at_us: i64,
    pub created_at_us: i64,
    pub assigned_at_us: i64,
    pub first_reply_at_us: i64,
    pub resolved_at_us: i64,
    pub closed_at_us: i64,
    pub updated_at_us: i64,
    pub last_message_at_us: i64,
    pub version: u64,
    /// Queued only, when asked for: how many queued conversations go before it.
    pub queue_position: Option<u64>,
}

impl Conversation {
    pub fn is_assigned_to(&self, agent_id: &str) -> bool {
        self.assignee_id.as_deref() == Some(agent_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub author_kind: AuthorKind,
    pub author_id: String,
    pub body: String,
    pub internal: bool,
    pub at_us: i64,
}

/// One transition of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub conversation_id: String,
    pub kind: EventKind,
    pub actor_id: String,
    pub at_us: i64,
    pub to_agent_id: String,
    pub from_agent_id: String,
    pub capacity_override: bool,
    pub reason: String,
    pub message: Option<Message>,
    pub session_id: String,
}

impl Event {
    /// An event of `kind` by `actor` now, with nothing else set.
    pub fn new(conversation_id: &str, kind: EventKind, actor_id: &str, at_us: i64) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            conversation_id: conversation_id.to_owned(),
            kind,
            actor_id: actor_id.to_owned(),
            at_us,
            to_agent_id: String::new(),
            from_agent_id: String::new(),
            capacity_override: false,
            reason: String::new(),
            message: None,
            session_id: String::new(),
        }
    }

    pub fn customer_visible(&self) -> bool {
        self.kind.customer_visible() && !self.message.as_ref().is_some_and(|m| m.internal)
    }
}

/// A checked new conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConversation {
    pub customer_id: String,
    pub channel: Channel,
    pub subject: String,
    pub body: String,
    pub priority: Priority,
    pub required_skills: Vec<String>,
}

impl NewConversation {
    pub fn new(
        customer_id: String,
        channel: Channel,
        subject: &str,
        body: &str,
        priority: Priority,
        required_skills: &[String],
    ) -> Result<Self> {
        Ok(Self {
            customer_id,
            channel,
            subject: validate::required("subject", subject, SUBJECT_MAX)?,
            body: message_body(body)?,
            priority,
            required_skills: validate::skills(
                "required_skills",
                required_skills,
                MAX_REQUIRED_SKILLS,
            )?,
        })
    }
}

/// A message body: 1 to [`BODY_MAX`] characters, not only spaces, no NUL.
pub fn message_body(body: &str) -> Result<String> {
    validate::required("body", body, BODY_MAX)
}

/// Space-separated skills as stored, back to a list.
pub fn skills_of(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_owned).collect()
}

/// The status change a caller asks for, checked against where the conversation is.
pub fn status_change(from: Status, to: Status) -> Result<EventKind> {
    use Status::*;
    let refuse = |why: &str| {
        Err(Error::FailedPrecondition(format!(
            "a {} conversation cannot become {}: {why}",
            from.as_str(),
            to.as_str()
        )))
    };
    match (from, to) {
        (Assigned, Pending) => Ok(EventKind::Pending),
        (Pending, Assigned) => Ok(EventKind::Resumed),
        (Queued | Assigned | Pending, Resolved) => Ok(EventKind::Resolved),
        (Resolved, Closed) => Ok(EventKind::Closed),
        (_, Queued) => Err(Error::invalid(
            "status",
            "must be pending, assigned, resolved or closed",
        )),
        (Closed, _) => refuse("it is closed"),
        (_, Closed) => refuse("resolve it first"),
        (Queued, _) => refuse("it is not assigned yet"),
        (Resolved, _) => refuse("it is resolved; a customer message reopens it"),
        _ => refuse("it is already so"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(*status));
        }
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(Status::parse("open"), None);
    }

    #[test]
    fn transitions() {
        use Status::*;
        assert_eq!(
            status_change(Assigned, Pending).unwrap(),
            EventKind::Pending
        );
        assert_eq!(
            status_change(Pending, Assigned).unwrap(),
            EventKind::Resumed
        );
        assert_eq!(
            status_change(Queued, Resolved).unwrap(),
            EventKind::Resolved
        );
        assert_eq!(status_change(Resolved, Closed).unwrap(), EventKind::Closed);
        for (from, to) in [
            (Queued, Pending),
            (Queued, Assigned),
            (Assigned, Assigned),
            (Assigned, Closed),
            (Resolved, Resolved),
            (Resolved, Pending),
            (Closed, Resolved),
            (Closed, Closed),
        ] {
            let error = status_change(from, to).unwrap_err();
            assert_eq!(
                error.code(),
                tonic::Code::FailedPrecondition,
                "{from:?}→{to:?}"
            );
        }
        assert_eq!(
            status_change(Assigned, Queued).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn new_conversation_checks_input() {
        let new = |subject: &str, body: &str, skills: &[&str]| {
            let skills: Vec<String> = skills.iter().map(|s| s.to_string()).collect();
            NewConversation::new(
                "c".into(),
                Channel::Web,
                subject,
                body,
                Priority::Normal,
                &skills,
            )
        };
        assert!(new("Help", "Where is my parcel?", &[]).is_ok());
        assert!(new("", "x", &[]).is_err());
        assert!(new("x", " ", &[]).is_err());
        assert!(new(&"s".repeat(SUBJECT_MAX + 1), "x", &[]).is_err());
        assert!(new("x", &"b".repeat(BODY_MAX + 1), &[]).is_err());
        assert!(new("x", "y", &["Not Valid!"]).is_err());
        let skills = new("x", "y", &["fr", "billing", "fr"])
            .unwrap()
            .required_skills;
        assert_eq!(skills, vec!["billing", "fr"]);
    }

    #[test]
    fn internal_notes_are_never_customer_visible() {
        let mut event = Event::new("c", EventKind::Message, "a", 1);
        event.message = Some(Message {
            id: "m".into(),
            conversation_id: "c".into(),
            author_kind: AuthorKind::Agent,
            author_id: "a".into(),
            body: "note".into(),
            internal: true,
            at_us: 1,
        });
        assert!(!event.customer_visible());
        event.message.as_mut().unwrap().internal = false;
        assert!(event.customer_visible());
        assert!(!Event::new("c", EventKind::Requeued, "routing", 1).customer_visible());
    }
}
