//! The use cases of the impersonation-token service: start and end assist sessions, answer liveness,
//! record and verify the audit, and end sessions whose agent or target no longer qualifies.

use std::time::Duration;

use assist_runtime::audit::ActionText;
use assist_runtime::auth::{Actor as TokenActor, Claims, Realm, permission};
use assist_runtime::keys::{KEY_RELOAD, KeyEncryptionKey, KeyRing, KeyTable};
use assist_runtime::time::now_us;
use assist_runtime::validate::{Page, Paged};
use assist_runtime::{Error, Result};
use prometheus_client::metrics::gauge::Gauge;

use crate::directory::Directory;
use crate::domain::audit::{Action, Verdict};
use crate::domain::session::{Capability, Limits, SYSTEM, check_start};
use crate::domain::{
    EndReason, NewSession, Session, TargetRealm, narrow_scope, required_capability,
};
use crate::store::{NewAction, Selection, SessionFilter, Store};

/// Settings of the use cases.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `iss` of impersonation tokens.
    pub issuer: String,
    pub audience: String,
    pub limits: Limits,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            issuer: "assist-impersonation".into(),
            audience: "agent-assist".into(),
            limits: Limits::default(),
        }
    }
}

/// A started session and its token.
#[derive(Debug, Clone)]
pub struct Started {
    pub token: String,
    pub session: Session,
}

const REASON_MAX: usize = 500;
const CONVERSATION_ID_MAX: usize = 100;
/// Most actions one `RecordActions` call appends.
pub const RECORD_BATCH_MAX: usize = 1000;

pub struct Impersonation {
    store: Store,
    settings: Settings,
    keys: KeyRing,
    directory: Directory,
}

/// One action of a `RecordActions` batch, checked: a session id, text within the audit's bounds, and
/// an idempotency key that is a UUID when given.
fn checked_action(session_id: &str, action: NewAction) -> Result<(String, NewAction)> {
    let session_id = assist_runtime::validate::id("session_id", session_id)?;
    let text = ActionText::checked(&action.method, &action.target, &action.outcome)?;
    let idempotency_key = match action.idempotency_key.as_deref() {
        None | Some("") => None,
        Some(key) => Some(
            assist_runtime::validate::id("idempotency_key", key)?
                .hyphenated()
                .to_string(),
        ),
    };
    Ok((
        session_id.to_string(),
        NewAction {
            method: text.method,
            target: text.target,
            outcome: text.outcome,
            idempotency_key,
        },
    ))
}

/// A back-office administrator, never a service, never through an impersonation token.
fn require_admin(claims: &Claims) -> Result<()> {
    if claims.is_admin() {
        Ok(())
    } else {
        Err(Error::denied("administrator required"))
    }
}

/// An administrator, or a service account granted `permission`.
fn require_admin_or(claims: &Claims, permission: &str) -> Result<()> {
    if claims.is_admin_or_service_with(permission) {
        Ok(())
    } else {
        Err(Error::denied(format!(
            "administrator or a service granted {permission} required"
        )))
    }
}

impl Impersonation {
    /// Loads (or on first start creates) the signing key.
    pub async fn new(
        store: Store,
        settings: Settings,
        kek: KeyEncryptionKey,
        directory: Directory,
    ) -> Result<Self> {
        let keys = KeyRing::load(store.database(), kek).await?;
        store.audit().use_key(&keys.active().kid);
        Ok(Self {
            store,
            settings,
            keys,
            directory,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn jwks(&self) -> Vec<assist_runtime::auth::PublicKey> {
        self.keys.published()
    }

    /// RFC 8693 delegation: the caller (an agent, by their own access token) gets a token for
    /// `target_id`. Every rule is checked against identity and agent-directory now, not from cache.
    pub async fn start_assist(
        &self,
        caller: &Claims,
        bearer: &str,
        target_id: &str,
        reason: &str,
        conversation_id: &str,
    ) -> Result<Started> {
        if caller.is_delegated() || caller.sid.is_some() {
            return Err(Error::denied(
                "an impersonation token cannot start an assist session",
            ));
        }
        if caller.realm != Realm::BackOffice || caller.iss == self.settings.issuer {
            return Err(Error::denied("only back-office users can assist"));
        }
        let target_id = assist_runtime::validate::id("target_id", target_id)?.to_string();
        let reason = assist_runtime::validate::optional("reason", reason, REASON_MAX)?;
        let conversation_id = assist_runtime::validate::optional(
            "conversation_id",
            conversation_id,
            CONVERSATION_ID_MAX,
        )?;
        if target_id == caller.sub {
            return Err(Error::denied("an agent cannot assist themselves"));
        }
        let conversation = async {
            match conversation_id.as_str() {
                "" => Ok(None),
                id => self
                    .directory
                    .conversation_customer(bearer, id)
                    .await
                    .map(Some),
            }
        };
        let (agent, target, customer) = tokio::join!(
            self.directory.agent(&caller.sub),
            self.directory.target(&target_id),
            conversation,
        );
        let (agent, target, customer) = (agent?, target?, customer?);
        // As at every other call (`Directory::as_it_is_now`): the token of someone no longer active
        // counts as no token.
        if !agent.active {
            return Err(Error::unauthenticated("the caller is no longer active"));
        }
        let target_realm = check_start(&agent, &target)?;
        if customer.is_some_and(|customer| customer != target_id) {
            return Err(Error::invalid(
                "conversation_id",
                "the conversation is not the target's",
            ));
        }

        let now = now_us();
        let (expires_at_us, idle_expires_at_us) = self.settings.limits.deadlines(now, now);
        let session = NewSession {
            id: uuid::Uuid::now_v7().to_string(),
            agent_id: caller.sub.clone(),
            target_id: target_id.clone(),
            target_realm,
            reason,
            conversation_id,
            scope: narrow_scope(&target.scope),
            started_at_us: now,
            expires_at_us,
            idle_expires_at_us,
        };
        let ended = self.store.start(&session).await?;
        for (id, reason) in &ended {
            tracing::info!(session_id = %id, reason = reason.as_str(), "assist session ended");
        }
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            sub: session.target_id.clone(),
            aud: self.settings.audience.clone(),
            exp: expires_at_us / 1_000_000,
            iat: now / 1_000_000,
            nbf: now / 1_000_000,
            jti: uuid::Uuid::now_v7().to_string(),
            realm: match target_realm {
                TargetRealm::Customer => Realm::Customer,
                TargetRealm::MerchantUser => Realm::MerchantUser,
            },
            scope: session.scope.clone(),
            act: Some(TokenActor {
                sub: caller.sub.clone(),
                realm: Realm::BackOffice,
            }),
            sid: Some(session.id.clone()),
            name: target.name.clone(),
            merchant_name: target.merchant_name.clone(),
        };
        let token = self.keys.active().sign(&claims)?;
        tracing::info!(
            session_id = %session.id,
            agent_id = %session.agent_id,
            target_id = %session.target_id,
            target_realm = target_realm.as_str(),
            "assist session started"
        );
        Ok(Started {
            token,
            session: session.into_started(),
        })
    }

    /// Ends a session: its agent (by their token, or the session's own impersonation token), an admin or
    /// a service. Ending an ended session answers it as it is.
    pub async fn end_assist(&self, caller: &Claims, session_id: &str) -> Result<Session> {
        let session_id = assist_runtime::validate::id("session_id", session_id)?.to_string();
        let session = self.find(&session_id).await?;
        let (reason, by) = if let (Some(act), Some(sid)) = (&caller.act, &caller.sid) {
            if *sid != session.id {
                return Err(Error::denied(
                    "a session can only be ended by its own token",
                ));
            }
            (EndReason::EndedByAgent, act.sub.clone())
        } else if caller.realm == Realm::BackOffice && caller.sub == session.agent_id {
            // Before the admin case: an administrator ending their own session ends it as its agent.
            (EndReason::EndedByAgent, caller.sub.clone())
        } else if caller.is_admin() {
            (EndReason::EndedByAdmin, caller.sub.clone())
        } else {
            return Err(Error::denied(
                "only the session's agent or an admin can end it",
            ));
        };
        let ended = self
            .store
            .end(Selection::One(&session.id), reason, &by, now_us())
            .await?;
        if !ended.is_empty() {
            tracing::info!(session_id = %session.id, ended_by = %by, "assist session ended");
        }
        self.find(&session.id).await
    }

    /// Whether a session is live now.
    pub async fn check_session(&self, caller: &Claims, session_id: &str) -> Result<Session> {
        require_admin_or(caller, permission::SESSIONS_CHECK)?;
        let session_id = assist_runtime::validate::id("session_id", session_id)?.to_string();
        self.find(&session_id).await
    }

    /// Who may watch revocations: admins and services granted `sessions:check`.
    pub fn may_watch(&self, caller: &Claims) -> Result<()> {
        require_admin_or(caller, permission::SESSIONS_CHECK)
    }

    /// Appends one request made with an impersonation token to its session's log.
    pub async fn record_action(
        &self,
        caller: &Claims,
        session_id: &str,
        action: NewAction,
    ) -> Result<u64> {
        let mut outcomes = self
            .record_actions(caller, vec![(session_id.to_owned(), action)])
            .await?;
        outcomes.remove(0)
    }

    /// Appends many such requests, of one or more sessions, in one transaction. Each action is
    /// checked on its own: a bad one (a field out of `assist_runtime::audit`'s bounds, an unknown
    /// session) is answered with its error and the others are written. An action whose idempotency
    /// key its session already holds answers the index it was recorded at. Every action is recorded
    /// at this service's time. Answers each action's index or error, in input order.
    pub async fn record_actions(
        &self,
        caller: &Claims,
        actions: Vec<(String, NewAction)>,
    ) -> Result<Vec<Result<u64>>> {
        if !caller.service_may(permission::AUDIT_WRITE) {
            return Err(Error::denied(
                "only a service granted audit:write records actions",
            ));
        }
        if actions.is_empty() || actions.len() > RECORD_BATCH_MAX {
            return Err(Error::invalid(
                "actions",
                format!("must hold 1 to {RECORD_BATCH_MAX} actions"),
            ));
        }
        let mut outcomes: Vec<Result<u64>> = Vec::with_capacity(actions.len());
        let mut valid = Vec::with_capacity(actions.len());
        let mut positions = Vec::with_capacity(actions.len());
        for (position, (session_id, action)) in actions.into_iter().enumerate() {
            match checked_action(&session_id, action) {
                Ok(checked) => {
                    outcomes.push(Ok(0));
                    positions.push(position);
                    valid.push(checked);
                }
                Err(error) => outcomes.push(Err(error)),
            }
        }
        if !valid.is_empty() {
            let idle = self.settings.limits.idle_timeout.as_micros() as i64;
            let recorded = self.store.record_actions(&valid, now_us(), idle).await?;
            for (position, recorded) in positions.into_iter().zip(recorded) {
                outcomes[position] = recorded.index().ok_or(Error::NotFound("session"));
            }
        }
        let rejected = outcomes.iter().filter(|o| o.is_err()).count();
        if rejected > 0 {
            tracing::warn!(rejected, "assist actions rejected");
        }
        Ok(outcomes)
    }

    /// Sessions; a back-office user who is not an admin sees only their own.
    pub async fn list_sessions(
        &self,
        caller: &Claims,
        mut filter: SessionFilter,
        page: Page,
    ) -> Result<Paged<Session>> {
        if !caller.is_admin() {
            if caller.is_delegated() || caller.realm != Realm::BackOffice {
                return Err(Error::denied("a back-office user's token is required"));
            }
            match &filter.agent_id {
                Some(agent) if *agent != caller.sub => {
                    return Err(Error::denied("agents can only list their own sessions"));
                }
                _ => filter.agent_id = Some(caller.sub.clone()),
            }
        }
        if let (Some(from), Some(before)) = (filter.started_from_us, filter.started_before_us)
            && from >= before
        {
            return Err(Error::invalid(
                "started_before_us",
                "must be later than started_from_us",
            ));
        }
        self.store.list(&filter, page).await
    }

    /// A session with a page of its actions: admins, services and the session's agent.
    pub async fn get_session(
        &self,
        caller: &Claims,
        session_id: &str,
        actions: Page,
    ) -> Result<(Session, Vec<Action>)> {
        let session_id = assist_runtime::validate::id("session_id", session_id)?.to_string();
        let session = self.find(&session_id).await?;
        let own = !caller.is_delegated()
            && caller.realm == Realm::BackOffice
            && caller.sub == session.agent_id;
        if !(caller.is_admin_or_service_with(permission::SESSIONS_READ) || own) {
            return Err(Error::denied(
                "only the session's agent or an admin can read it",
            ));
        }
        let actions = self.store.actions(&session.id, actions).await?;
        Ok((session, actions))
    }

    pub async fn verify_audit_chain(&self, caller: &Claims, session_id: &str) -> Result<Verdict> {
        require_admin(caller)?;
        let session_id = assist_runtime::validate::id("session_id", session_id)?.to_string();
        let session = self.find(&session_id).await?;
        let verdict = self.store.verify_chain(&session).await?;
        if let Verdict::Broken {
            at_index, problem, ..
        } = &verdict
        {
            tracing::warn!(session_id = %session.id, at_index, problem, "audit chain broken");
        }
        Ok(verdict)
    }

    async fn find(&self, session_id: &str) -> Result<Session> {
        self.store
            .get(session_id)
            .await?
            .ok_or(Error::NotFound("session"))
    }

    /// Ends the agent's sessions in realms they may no longer assist, and all of them when they are no
    /// longer an active back-office user. Idempotent; every replica may run it.
    pub async fn enforce_agent(&self, agent_id: &str) -> Result<()> {
        let agent = self.directory.agent(agent_id).await?;
        let now = now_us();
        if !agent.back_office || !agent.active {
            self.store
                .end(
                    Selection::OfAgent(agent_id),
                    EndReason::AgentBlocked,
                    SYSTEM,
                    now,
                )
                .await?;
            return Ok(());
        }
        for realm in [TargetRealm::Customer, TargetRealm::MerchantUser] {
            if agent.may_assist(realm).is_err() {
                self.store
                    .end(
                        Selection::OfAgentInRealm(agent_id, realm),
                        EndReason::CapabilityRevoked,
                        SYSTEM,
                        now,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Ends the sessions assisting a target that is blocked or deleted.
    pub async fn enforce_target(&self, target_id: &str) -> Result<()> {
        let blocked = match self.directory.target(target_id).await {
            Ok(target) => target.blocked,
            Err(Error::NotFound(_)) => true,
            Err(error) => return Err(error),
        };
        if blocked {
            self.store
                .end(
                    Selection::OfTarget(target_id),
                    EndReason::TargetBlocked,
                    SYSTEM,
                    now_us(),
                )
                .await?;
        }
        Ok(())
    }

    /// Rechecks every open session's agent and target (after a watch reconnects).
    pub async fn enforce_all(&self) -> Result<()> {
        let open = self.store.open_sessions(100_000).await?;
        let mut agents: Vec<&str> = open.iter().map(|s| s.agent_id.as_str()).collect();
        let mut targets: Vec<&str> = open.iter().map(|s| s.target_id.as_str()).collect();
        agents.sort_unstable();
        agents.dedup();
        targets.sort_unstable();
        targets.dedup();
        for agent in agents {
            self.enforce_agent(agent).await?;
        }
        for target in targets {
            self.enforce_target(target).await?;
        }
        Ok(())
    }

    /// Ends the agent's sessions in realms whose capability `held` lacks (a change pushed by
    /// agent-directory).
    pub async fn enforce_capabilities(&self, agent_id: &str, held: &[Capability]) -> Result<()> {
        for realm in [TargetRealm::Customer, TargetRealm::MerchantUser] {
            if !held.contains(&required_capability(realm)) {
                self.store
                    .end(
                        Selection::OfAgentInRealm(agent_id, realm),
                        EndReason::CapabilityRevoked,
                        SYSTEM,
                        now_us(),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Applies a status change pushed by identity: an agent who is not active any more ends all their
    /// sessions; a target blocked or deleted ends every session assisting them.
    pub async fn enforce_status(
        &self,
        principal_id: &str,
        active: bool,
        blocked: bool,
    ) -> Result<()> {
        let now = now_us();
        if !active {
            self.store
                .end(
                    Selection::OfAgent(principal_id),
                    EndReason::AgentBlocked,
                    SYSTEM,
                    now,
                )
                .await?;
        }
        if blocked {
            self.store
                .end(
                    Selection::OfTarget(principal_id),
                    EndReason::TargetBlocked,
                    SYSTEM,
                    now,
                )
                .await?;
        }
        Ok(())
    }

    /// Makes a new key active. The old one stays published for as long as a token it signed may live
    /// (the maximum session length), plus two key reloads for the replicas that still sign with it.
    pub async fn rotate_signing_key(&self, caller: &Claims) -> Result<String> {
        require_admin(caller)?;
        let now = now_us();
        let (stored, _) = assist_runtime::keys::generate(self.keys.kek(), now)?;
        let publish_until = now
            + self.settings.limits.max_length.as_micros() as i64
            + 2 * KEY_RELOAD.as_micros() as i64;
        KeyTable(self.store.database())
            .rotate(&stored, now, publish_until)
            .await?;
        self.reload_keys().await?;
        tracing::info!(kid = %stored.kid, "impersonation signing key rotated");
        Ok(stored.kid)
    }

    /// Housekeeping: records the end of timed-out sessions, updates the gauge of live sessions and
    /// reloads keys.
    pub async fn housekeeping(&self) -> Result<()> {
        let now = now_us();
        let ended = self
            .store
            .end(Selection::TimedOut, EndReason::IdleTimeout, SYSTEM, now)
            .await?;
        if !ended.is_empty() {
            tracing::info!(count = ended.len(), "timed-out assist sessions closed");
        }
        active_sessions().set(self.store.count_live(now).await? as i64);
        KeyTable(self.store.database())
            .delete_unpublished(now)
            .await?;
        self.reload_keys().await
    }

    /// Reloads the signing keys; new audit entries are keyed with the active one's audit key.
    async fn reload_keys(&self) -> Result<()> {
        self.keys.reload(self.store.database()).await?;
        self.store.audit().use_key(&self.keys.active().kid);
        Ok(())
    }
}

/// The `assist_impersonation_active_sessions` gauge on `/metrics`.
fn active_sessions() -> &'static Gauge {
    static GAUGE: std::sync::OnceLock<Gauge> = std::sync::OnceLock::new();
    GAUGE.get_or_init(|| {
        let gauge = Gauge::default();
        assist_runtime::metrics::register(
            "impersonation_active_sessions",
            "assist sessions live now (all replicas), refreshed every housekeeping round",
            gauge.clone(),
        );
        gauge
    })
}

/// How often timed-out sessions are closed and keys reloaded.
pub const HOUSEKEEPING: Duration = KEY_RELOAD;
