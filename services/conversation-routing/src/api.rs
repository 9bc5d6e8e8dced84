//! The `assist.routing.v1.Routing` gRPC service: decodes and checks requests, calls the use cases,
//! encodes replies.

use std::sync::Arc;

use assist_proto::routing::v1 as pb;
use assist_runtime::auth::caller;
use assist_runtime::notify::{WatchStream, Watches};
use assist_runtime::validate::Page;
use assist_runtime::{Error, Result};
use tokio::sync::{OnceCell, watch};
use tonic::{Request, Response, Status};

use crate::domain::Status as ConversationStatus;
use crate::domain::access::Caller;
use crate::domain::{AuthorKind, Channel, Conversation, Event, EventKind, Message, Priority};
use crate::service::{CreateRequest, Routing};
use crate::store::ListFilter;

/// Every method needs a token; only health and reflection are open.
pub const PUBLIC_METHODS: &[&str] = &[];

/// The gRPC face of [`Routing`]; answers `UNAVAILABLE` until the database, the service token and the
/// routing view of agents are ready.
#[derive(Clone)]
pub struct Api {
    routing: Arc<OnceCell<Arc<Routing>>>,
    watches: Watches,
}

impl Api {
    pub fn new(routing: Arc<OnceCell<Arc<Routing>>>, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            routing,
            watches: Watches::new(shutdown),
        }
    }

    /// The use cases and the verified caller of `request`.
    fn open<T>(&self, request: &Request<T>) -> Result<(&Arc<Routing>, Caller), Status> {
        let routing = self
            .routing
            .get()
            .ok_or_else(|| Status::unavailable("conversation routing is starting"))?;
        let claims = caller(request)?;
        let caller = routing.caller(&claims)?;
        Ok((routing, caller))
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Reply<T> {
    Ok(Response::new(value))
}

fn status_filter(value: i32) -> Result<Option<ConversationStatus>> {
    Ok(match pb::ConversationStatus::try_from(value) {
        Ok(pb::ConversationStatus::Unspecified) => None,
        Ok(status) => Some(status_from_pb(status)),
        Err(_) => return Err(Error::invalid("status", "unknown status")),
    })
}

fn status_from_pb(status: pb::ConversationStatus) -> ConversationStatus {
    match status {
        pb::ConversationStatus::Queued | pb::ConversationStatus::Unspecified => {
            ConversationStatus::Queued
        }
        pb::ConversationStatus::Assigned => ConversationStatus::Assigned,
        pb::ConversationStatus::Pending => ConversationStatus::Pending,
        pb::ConversationStatus::Resolved => ConversationStatus::Resolved,
        pb::ConversationStatus::Closed => ConversationStatus::Closed,
    }
}

fn status_to_pb(status: ConversationStatus) -> pb::ConversationStatus {
    match status {
        ConversationStatus::Queued => pb::ConversationStatus::Queued,
        ConversationStatus::Assigned => pb::ConversationStatus::Assigned,
        ConversationStatus::Pending => pb::ConversationStatus::Pending,
        ConversationStatus::Resolved => pb::ConversationStatus::Resolved,
        ConversationStatus::Closed => pb::ConversationStatus::Closed,
    }
}

fn priority_from_pb(value: i32) -> Result<Option<Priority>> {
    Ok(match pb::Priority::try_from(value) {
        Ok(pb::Priority::Unspecified) => None,
        Ok(pb::Priority::Low) => Some(Priority::Low),
        Ok(pb::Priority::Normal) => Some(Priority::Normal),
        Ok(pb::Priority::High) => Some(Priority::High),
        Ok(pb::Priority::Urgent) => Some(Priority::Urgent),
        Err(_) => return Err(Error::invalid("priority", "unknown priority")),
    })
}

fn priority_to_pb(priority: Priority) -> pb::Priority {
    match priority {
        Priority::Low => pb::Priority::Low,
        Priority::Normal => pb::Priority::Normal,
        Priority::High => pb::Priority::High,
        Priority::Urgent => pb::Priority::Urgent,
    }
}

/// `all` for scope ALL, false for MINE (and unspecified).
fn scope_is_all(value: i32) -> Result<bool> {
    match pb::Scope::try_from(value) {
        Ok(pb::Scope::All) => Ok(true),
        Ok(pb::Scope::Mine | pb::Scope::Unspecified) => Ok(false),
        Err(_) => Err(Error::invalid("scope", "unknown scope")),
    }
}

pub fn conversation_to_pb(c: Conversation) -> pb::Conversation {
    let queued = c.status == ConversationStatus::Queued;
    pb::Conversation {
        channel: match c.channel {
            Channel::Web => pb::Channel::Web,
            Channel::Api => pb::Channel::Api,
        } as i32,
        priority: priority_to_pb(c.priority) as i32,
        status: status_to_pb(c.status) as i32,
        id: c.id,
        customer_id: c.customer_id,
        subject: c.subject,
        required_skills: c.required_skills,
        assignee_id: c.assignee_id.unwrap_or_default(),
        created_at_us: c.created_at_us,
        assigned_at_us: c.assigned_at_us,
        first_reply_at_us: c.first_reply_at_us,
        resolved_at_us: c.resolved_at_us,
        closed_at_us: c.closed_at_us,
        updated_at_us: c.updated_at_us,
        requeued: queued && c.requeued,
        queued_at_us: if queued { c.queued_at_us } else { 0 },
        queue_position: c.queue_position.unwrap_or(0),
        version: c.version,
        last_message_at_us: c.last_message_at_us,
    }
}

fn message_to_pb(m: Message) -> pb::Message {
    pb::Message {
        author_kind: match m.author_kind {
            AuthorKind::Customer => pb::AuthorKind::Customer,
            AuthorKind::Agent => pb::AuthorKind::Agent,
            AuthorKind::System => pb::AuthorKind::System,
        } as i32,
        id: m.id,
        conversation_id: m.conversation_id,
        author_id: m.author_id,
        body: m.body,
        internal: m.internal,
        at_us: m.at_us,
    }
}

fn event_kind_to_pb(kind: EventKind) -> pb::conversation_event::Kind {
    use pb::conversation_event::Kind;
    match kind {
        EventKind::Created => Kind::Created,
        EventKind::Assigned => Kind::Assigned,
        EventKind::Transferred => Kind::Transferred,
        EventKind::Requeued => Kind::Requeued,
        EventKind::Message => Kind::Message,
        EventKind::Pending => Kind::Pending,
        EventKind::Resumed => Kind::Resumed,
        EventKind::Resolved => Kind::Resolved,
        EventKind::Reopened => Kind::Reopened,
        EventKind::Closed => Kind::Closed,
        EventKind::AssistStarted => Kind::AssistStarted,
    }
}

pub fn event_to_pb(e: Event, conversation: Option<Conversation>) -> pb::ConversationEvent {
    pb::ConversationEvent {
        kind: event_kind_to_pb(e.kind) as i32,
        id: e.id,
        conversation_id: e.conversation_id,
        actor_id: e.actor_id,
        at_us: e.at_us,
        to_agent_id: e.to_agent_id,
        from_agent_id: e.from_agent_id,
        capacity_override: e.capacity_override,
        reason: e.reason,
        message: e.message.map(message_to_pb),
        session_id: e.session_id,
        conversation: conversation.map(conversation_to_pb),
    }
}

#[tonic::async_trait]
impl pb::routing_server::Routing for Api {
    async fn create_conversation(
        &self,
        request: Request<pb::CreateConversationRequest>,
    ) -> Reply<pb::Conversation> {
        let (routing, caller) = self.open(&request)?;
        let req = request.into_inner();
        let created = routing
            .create(
                &caller,
                CreateRequest {
                    customer_id: req.customer_id,
                    subject: req.subject,
                    body: req.body,
                    priority: priority_from_pb(req.priority)?,
                    required_skills: req.required_skills,
                },
            )
            .await?;
        ok(conversation_to_pb(created))
    }

    async fn get_conversation(
        &self,
        request: Request<pb::GetConversationRequest>,
    ) -> Reply<pb::Conversation> {
        let (routing, caller) = self.open(&request)?;
        let conversation = routing
            .get(&caller, &request.into_inner().conversation_id)
            .await?;
        ok(conversation_to_pb(conversation))
    }

    async fn list_conversations(
        &self,
        request: Request<pb::ListConversationsRequest>,
    ) -> Reply<pb::ListConversationsResponse> {
        let (routing, caller) = self.open(&request)?;
        let req = request.into_inner();
        let page = Page::from_request(req.page)?;
        let all = scope_is_all(req.scope)?;
        let assignee_id = if req.assignee_id.is_empty() {
            None
        } else {
            Some(assist_runtime::validate::id("assignee_id", &req.assignee_id)?.to_string())
        };
        let queued_before_us = (req.min_queue_age_secs > 0).then(|| {
            assist_runtime::time::now_us() - i64::from(req.min_queue_age_secs) * 1_000_000
        });
        let filter = ListFilter {
            status: status_filter(req.status)?,
            assignee_id,
            queued_before_us,
            ..ListFilter::default()
        };
        let listed = routing.list(&caller, all, filter, page).await?;
        let info = listed.info(page);
        ok(pb::ListConversationsResponse {
            conversations: listed.items.into_iter().map(conversation_to_pb).collect(),
            page: Some(info),
        })
    }

    async fn post_message(
        &self,
        request: Request<pb::PostMessageRequest>,
    ) -> Reply<pb::PostMessageResponse> {
        let (routing, caller) = self.open(&request)?;
        let req = request.into_inner();
        let (message, conversation) = routing
            .post_message(&caller, &req.conversation_id, &req.body, req.internal)
            .await?;
        ok(pb::PostMessageResponse {
            message: Some(message_to_pb(message)),
            conversation: Some(conversation_to_pb(conversation)),
        })
    }

    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Reply<pb::ListMessagesResponse> {
        let (routing, caller) = self.open(&request)?;
        let req = request.into_inner();
        let page = Page::from_request(req.page)?;
        let listed = routing
            .messages(&caller, &req.conversation_id, page)
            .await?;
        let info = listed.info(page);
        ok(pb::ListMessagesResponse {
            messages: listed.items.into_iter().map(message_to_pb).collect(),
            page: Some(info),
        })
    }

    async fn set_conversation_status(
        &self,
        request: Request<pb::SetConversationStatusRequest>,
    ) -> Reply<pb::Conversation> {
        let (routing, caller) = self.open(&request)?;
        let req = request.into_inner();
        let to =
            status_filter(req.status)?.ok_or_else(|| Error::invalid("status", "must be set"))?;
        let conversation = routing
            .set_status(&caller, &req.conversation_id, to)
            .await?;
        ok(conversation_to_pb(conversation))
    }

    async fn assign_conversation(
        &self,
        request: Request<pb::AssignConversationRequest>,
    ) -> Reply<pb::Conversation> {
        let (routing, caller) = self.open(&request)?;
        let req = request.into_inner();
        let conversation = routing
            .assign(&caller, &req.conversation_id, &req.agent_id)
            .await?;
        ok(conversation_to_pb(conversation))
    }

    async fn record_assist_session(
        &self,
        request: Request<pb::RecordAssistSessionRequest>,
    ) -> Reply<pb::Conversation> {
        let (routing, caller) = self.open(&request)?;
        let req = request.into_inner();
        let conversation = routing
            .record_assist(&caller, &req.conversation_id, &req.session_id)
            .await?;
        ok(conversation_to_pb(conversation))
    }

    async fn get_conversation_history(
        &self,
        request: Request<pb::GetConversationHistoryRequest>,
    ) -> Reply<pb::GetConversationHistoryResponse> {
        let (routing, caller) = self.open(&request)?;
        let req = request.into_inner();
        let page = Page::from_request(req.page)?;
        let listed = routing.history(&caller, &req.conversation_id, page).await?;
        let info = listed.info(page);
        ok(pb::GetConversationHistoryResponse {
            events: listed
                .items
                .into_iter()
                .map(|e| event_to_pb(e, None))
                .collect(),
            page: Some(info),
        })
    }

    type WatchConversationsStream = WatchStream<pb::ConversationEvent>;

    async fn watch_conversations(
        &self,
        request: Request<pb::WatchConversationsRequest>,
    ) -> Reply<Self::WatchConversationsStream> {
        let claims = caller(&request)?;
        let (routing, caller) = self.open(&request)?;
        let req = request.into_inner();
        let all = scope_is_all(req.scope)?;
        let filter = Arc::new(
            routing
                .watch_filter(&caller, all, &req.conversation_id)
                .await?,
        );
        let caller = Arc::new(caller);
        let routing = routing.clone();
        let checked = (routing.clone(), claims.clone(), caller.clone());
        let stream = self.watches.open(
            routing.store().events().clone(),
            &claims,
            move || {
                let (routing, claims, caller) = checked.clone();
                async move { routing.still_watching(&claims, &caller) }
            },
            || async {
                Ok(vec![pb::ConversationEvent {
                    kind: pb::conversation_event::Kind::Watching as i32,
                    ..Default::default()
                }])
            },
            move |payload| {
                let routing = routing.clone();
                let filter = filter.clone();
                let caller = caller.clone();
                async move {
                    Ok(routing
                        .watched(&caller, &filter, &payload)
                        .await?
                        .into_iter()
                        .map(|(event, conversation)| event_to_pb(event, conversation))
                        .collect::<Vec<_>>())
                }
            },
        )?;
        ok(stream)
    }

    async fn get_queue_stats(
        &self,
        request: Request<pb::GetQueueStatsRequest>,
    ) -> Reply<pb::QueueStats> {
        let (routing, caller) = self.open(&request)?;
        let (figures, online, available) = routing.queue_stats(&caller).await?;
        let now = assist_runtime::time::now_us();
        ok(pb::QueueStats {
            queued: figures.queued,
            longest_wait_us: figures
                .oldest_queued_at_us
                .map_or(0, |at| (now - at).max(0)),
            agents_online: online,
            agents_available: available,
            open: figures.open,
        })
    }
}
