//! The gRPC face of [`Impersonation`]: decode and validate requests, call the use cases, encode replies.

use std::sync::Arc;

use assist_proto::common::v1 as common;
use assist_proto::impersonation::v1 as pb;
use assist_runtime::auth::caller;
use assist_runtime::notify::{WatchStream, Watches};
use assist_runtime::time::now_us;
use assist_runtime::validate::Page;
use assist_runtime::{Error, Result};
use tokio::sync::{OnceCell, watch};
use tonic::{Request, Response, Status};

use crate::domain::audit::{Action, Verdict};
use crate::domain::{EndReason, Session, TargetRealm};
use crate::service::Impersonation;
use crate::store::{NewAction, SessionFilter};

/// Methods callable without a token: the JWKS.
pub const PUBLIC_METHODS: &[&str] = &["/assist.impersonation.v1.Impersonation/GetJwks"];

/// RFC 8693 token type of the issued token.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Answers `UNAVAILABLE` until the database is ready.
#[derive(Clone)]
pub struct Api {
    service: Arc<OnceCell<Arc<Impersonation>>>,
    watches: Watches,
}

impl Api {
    pub fn new(
        service: Arc<OnceCell<Arc<Impersonation>>>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            service,
            watches: Watches::new(shutdown),
        }
    }

    fn service(&self) -> Result<Arc<Impersonation>, Status> {
        self.service
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("impersonation is starting"))
    }
}

impl Api {
    /// The verified caller as identity sees it now ([`crate::directory::Directory::as_it_is_now`]).
    async fn caller<T>(
        &self,
        request: &Request<T>,
    ) -> Result<assist_runtime::auth::Claims, Status> {
        let claims = caller(request)?;
        Ok(self.service()?.directory().as_it_is_now(&claims).await?)
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Reply<T> {
    Ok(Response::new(value))
}

fn realm_to_pb(realm: TargetRealm) -> pb::TargetRealm {
    match realm {
        TargetRealm::Customer => pb::TargetRealm::Customer,
        TargetRealm::MerchantUser => pb::TargetRealm::MerchantUser,
    }
}

fn reason_to_pb(reason: EndReason) -> pb::EndReason {
    match reason {
        EndReason::EndedByAgent => pb::EndReason::EndedByAgent,
        EndReason::EndedByAdmin => pb::EndReason::EndedByAdmin,
        EndReason::Replaced => pb::EndReason::Replaced,
        EndReason::CapabilityRevoked => pb::EndReason::CapabilityRevoked,
        EndReason::AgentBlocked => pb::EndReason::AgentBlocked,
        EndReason::TargetBlocked => pb::EndReason::TargetBlocked,
        EndReason::IdleTimeout => pb::EndReason::IdleTimeout,
        EndReason::MaxLength => pb::EndReason::MaxLength,
    }
}

/// A session as callers see it: a session that timed out is reported ended (by the system) even
/// before housekeeping has recorded it.
fn session_to_pb(session: Session) -> pb::AssistSession {
    let now = now_us();
    let active = session.is_live(now);
    let (ended_at_us, end_reason, ended_by) = match (active, session.ended_at_us) {
        (true, _) => (0, None, String::new()),
        (false, Some(at)) => (
            at,
            session.end_reason,
            session.ended_by.clone().unwrap_or_default(),
        ),
        (false, None) => (
            session.live_until_us(),
            Some(session.effective_end()),
            crate::domain::session::SYSTEM.to_owned(),
        ),
    };
    pb::AssistSession {
        target_realm: realm_to_pb(session.target_realm) as i32,
        end_reason: end_reason.map_or(pb::EndReason::Unspecified, reason_to_pb) as i32,
        ended_at_us,
        ended_by,
        active,
        id: session.id,
        agent_id: session.agent_id,
        target_id: session.target_id,
        reason: session.reason,
        conversation_id: session.conversation_id,
        started_at_us: session.started_at_us,
        expires_at_us: session.expires_at_us,
        idle_expires_at_us: session.idle_expires_at_us,
        last_used_at_us: session.last_used_at_us,
        action_count: session.action_count,
        scope: session.scope,
    }
}

fn action_to_pb(action: Action) -> pb::Action {
    pb::Action {
        index: action.index,
        method: action.method,
        target: action.target,
        outcome: action.outcome,
        at_us: action.at_us,
        recorded_at_us: action.recorded_at_us,
        hash: action.hash,
    }
}

fn new_action(action: pb::RecordActionRequest) -> (String, NewAction) {
    (
        action.session_id,
        NewAction {
            method: action.method,
            target: action.target,
            outcome: action.outcome,
            idempotency_key: Some(action.idempotency_key),
        },
    )
}

fn non_negative(value: i64, field: &'static str) -> Result<Option<i64>> {
    match value {
        0 => Ok(None),
        v if v < 0 => Err(Error::invalid(field, "must not be negative")),
        v => Ok(Some(v)),
    }
}

fn optional_id(value: &str, field: &'static str) -> Result<Option<String>> {
    if value.is_empty() {
        Ok(None)
    } else {
        assist_runtime::validate::id(field, value).map(|id| Some(id.to_string()))
    }
}

#[tonic::async_trait]
impl pb::impersonation_server::Impersonation for Api {
    async fn start_assist(
        &self,
        request: Request<pb::StartAssistRequest>,
    ) -> Reply<pb::StartAssistResponse> {
        // Not `self.caller`: `start_assist` reads the agent's current state itself (status and
        // capabilities, from identity and agent-directory at once) and needs no scope of the token.
        let claims = caller(&request)?;
        // The agent's own token, to ask routing about the conversation with the agent's rights.
        let bearer = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let req = request.into_inner();
        if !(req.requested_token_type.is_empty() || req.requested_token_type == JWT_TOKEN_TYPE) {
            return Err(Error::invalid(
                "requested_token_type",
                format!("must be empty or {JWT_TOKEN_TYPE}"),
            )
            .into());
        }
        let started = self
            .service()?
            .start_assist(
                &claims,
                &bearer,
                &req.target_id,
                &req.reason,
                &req.conversation_id,
            )
            .await?;
        let expires_at_us = started.session.expires_at_us;
        ok(pb::StartAssistResponse {
            access_token: started.token,
            issued_token_type: JWT_TOKEN_TYPE.into(),
            token_type: "Bearer".into(),
            expires_in: ((expires_at_us - now_us()).max(0) / 1_000_000) as u64,
            expires_at_us,
            scope: started.session.scope.clone(),
            session: Some(session_to_pb(started.session)),
        })
    }

    async fn end_assist(&self, request: Request<pb::EndAssistRequest>) -> Reply<pb::AssistSession> {
        let claims = self.caller(&request).await?;
        let session = self
            .service()?
            .end_assist(&claims, &request.into_inner().session_id)
            .await?;
        ok(session_to_pb(session))
    }

    async fn check_session(
        &self,
        request: Request<pb::CheckSessionRequest>,
    ) -> Reply<pb::CheckSessionResponse> {
        let claims = self.caller(&request).await?;
        let session = self
            .service()?
            .check_session(&claims, &request.into_inner().session_id)
            .await?;
        let active = session.is_live(now_us());
        ok(pb::CheckSessionResponse {
            active,
            live_until_us: if active { session.live_until_us() } else { 0 },
            end_reason: if active {
                pb::EndReason::Unspecified as i32
            } else {
                reason_to_pb(session.effective_end()) as i32
            },
        })
    }

    type WatchRevocationsStream = WatchStream<pb::RevocationEvent>;

    async fn watch_revocations(
        &self,
        request: Request<pb::WatchRevocationsRequest>,
    ) -> Reply<Self::WatchRevocationsStream> {
        let claims = self.caller(&request).await?;
        let service = self.service()?;
        service.may_watch(&claims)?;
        let subscribed = pb::RevocationEvent {
            kind: pb::revocation_event::Kind::Subscribed as i32,
            ..Default::default()
        };
        let checked = (service.clone(), claims.clone());
        let stream = self.watches.open(
            service.store().revocations().clone(),
            &claims,
            move || {
                let (service, claims) = checked.clone();
                async move { service.may_watch(&claims) }
            },
            move || async move { Ok(vec![subscribed]) },
            |payload: String| async move {
                let (id, reason) = payload.split_once(' ').unwrap_or((payload.as_str(), ""));
                Ok(Some(pb::RevocationEvent {
                    kind: pb::revocation_event::Kind::Ended as i32,
                    session_id: id.to_owned(),
                    end_reason: EndReason::parse(reason)
                        .map_or(pb::EndReason::Unspecified, reason_to_pb)
                        as i32,
                }))
            },
        )?;
        ok(stream)
    }

    async fn record_action(
        &self,
        request: Request<pb::RecordActionRequest>,
    ) -> Reply<pb::RecordActionResponse> {
        let claims = self.caller(&request).await?;
        let (session_id, action) = new_action(request.into_inner());
        let index = self
            .service()?
            .record_action(&claims, &session_id, action)
            .await?;
        ok(pb::RecordActionResponse { index })
    }

    async fn record_actions(
        &self,
        request: Request<pb::RecordActionsRequest>,
    ) -> Reply<pb::RecordActionsResponse> {
        let claims = self.caller(&request).await?;
        let actions = request
            .into_inner()
            .actions
            .into_iter()
            .map(new_action)
            .collect();
        let outcomes = self.service()?.record_actions(&claims, actions).await?;
        let mut reply = pb::RecordActionsResponse::default();
        for (position, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(index) => reply.indexes.push(index),
                Err(error) => {
                    reply.indexes.push(0);
                    reply.rejected.push(pb::RejectedAction {
                        position: position as u32,
                        reason: error.to_string(),
                    });
                }
            }
        }
        ok(reply)
    }

    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Reply<pb::ListSessionsResponse> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        let page = Page::from_request(req.page)?;
        let filter = SessionFilter {
            agent_id: optional_id(&req.agent_id, "agent_id")?,
            target_id: optional_id(&req.target_id, "target_id")?,
            active_at_us: req.active_only.then(now_us),
            started_from_us: non_negative(req.started_from_us, "started_from_us")?,
            started_before_us: non_negative(req.started_before_us, "started_before_us")?,
        };
        let paged = self.service()?.list_sessions(&claims, filter, page).await?;
        let info = paged.info(page);
        ok(pb::ListSessionsResponse {
            sessions: paged.items.into_iter().map(session_to_pb).collect(),
            page: Some(info),
        })
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Reply<pb::GetSessionResponse> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        let page = Page::from_request(req.actions)?;
        let (session, actions) = self
            .service()?
            .get_session(&claims, &req.session_id, page)
            .await?;
        let info = common::PageInfo {
            total: session.action_count,
            offset: page.offset,
            limit: page.limit,
            total_exact: true,
        };
        ok(pb::GetSessionResponse {
            session: Some(session_to_pb(session)),
            actions: actions.into_iter().map(action_to_pb).collect(),
            actions_page: Some(info),
        })
    }

    async fn verify_audit_chain(
        &self,
        request: Request<pb::VerifyAuditChainRequest>,
    ) -> Reply<pb::VerifyAuditChainResponse> {
        let claims = self.caller(&request).await?;
        let verdict = self
            .service()?
            .verify_audit_chain(&claims, &request.into_inner().session_id)
            .await?;
        ok(match verdict {
            Verdict::Intact { checked } => pb::VerifyAuditChainResponse {
                intact: true,
                actions_checked: checked,
                ..Default::default()
            },
            Verdict::Broken {
                checked,
                at_index,
                problem,
            } => pb::VerifyAuditChainResponse {
                intact: false,
                actions_checked: checked,
                first_broken_index: at_index,
                problem: problem.into(),
            },
        })
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Reply<pb::RotateSigningKeyResponse> {
        let claims = self.caller(&request).await?;
        let kid = self.service()?.rotate_signing_key(&claims).await?;
        ok(pb::RotateSigningKeyResponse { kid })
    }

    async fn get_jwks(&self, _request: Request<common::GetJwksRequest>) -> Reply<common::Jwks> {
        ok(assist_runtime::keys::jwks_message(&self.service()?.jwks()))
    }
}
