//! The impersonation store: SQL only, no business rules. One implementation that PostgreSQL and SQLite
//! both accept; the conformance suite in `tests/store.rs` runs it on both. Every end of a session sends
//! a revocation notice in the same transaction.

use assist_runtime::db::{Backend, Database, WriteTransaction};
use assist_runtime::error::is_unique_violation;
use assist_runtime::notify::Notifier;
use assist_runtime::validate::{Page, Paged};
use assist_runtime::{Error, Result};

use std::sync::Arc;

use crate::domain::audit::{self, Action, AuditKeys, ChainCheck, Verdict};
use crate::domain::session::SYSTEM;
use crate::domain::{EndReason, NewSession, Session, TargetRealm};

pub static MIGRATIONS: assist_runtime::db::Migrations = assist_runtime::db::Migrations {
    postgres: &sqlx::migrate!("migrations/postgres"),
    sqlite: &sqlx::migrate!("migrations/sqlite"),
};

/// The notice channel of ended sessions; the payload is `<session id> <end reason>`.
const REVOCATIONS: &str = "assist_impersonation_revocations";

/// Counting stops here; larger totals are reported as a lower bound.
const COUNT_CAP: i64 = 10_000;

const SESSION_COLUMNS: &str = "id, agent_id, target_id, target_realm, reason, conversation_id, scope, \
    started_at, expires_at, idle_expires_at, last_used_at, ended_at, end_reason, ended_by, action_count, \
    audit_head";

/// Ends whatever is selected: a timed-out session records its timeout (by the system), any other the
/// reason given (by `$2`). `$1` is now, `$2` who ends it, `$3` the reason.
const END_SET: &str = "ended_at = $1, \
    end_reason = CASE WHEN idle_expires_at <= $1 AND idle_expires_at < expires_at THEN 'idle_timeout' \
                      WHEN expires_at <= $1 THEN 'max_length' ELSE $3 END, \
    ended_by = CASE WHEN idle_expires_at <= $1 OR expires_at <= $1 THEN 'system' ELSE $2 END";

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    agent_id: String,
    target_id: String,
    target_realm: String,
    reason: String,
    conversation_id: String,
    scope: String,
    started_at: i64,
    expires_at: i64,
    idle_expires_at: i64,
    last_used_at: i64,
    ended_at: Option<i64>,
    end_reason: Option<String>,
    ended_by: Option<String>,
    action_count: i64,
    audit_head: String,
}

impl SessionRow {
    fn into_session(self) -> Result<Session> {
        let damaged = |what: &str| Error::internal(anyhow::anyhow!("session {}: {what}", self.id));
        Ok(Session {
            target_realm: TargetRealm::parse(&self.target_realm)
                .ok_or_else(|| damaged("unknown target realm"))?,
            end_reason: match &self.end_reason {
                Some(reason) => {
                    Some(EndReason::parse(reason).ok_or_else(|| damaged("unknown end reason"))?)
                }
                None => None,
            },
            id: self.id,
            agent_id: self.agent_id,
            target_id: self.target_id,
            reason: self.reason,
            conversation_id: self.conversation_id,
            scope: self.scope,
            started_at_us: self.started_at,
            expires_at_us: self.expires_at,
            idle_expires_at_us: self.idle_expires_at,
            last_used_at_us: self.last_used_at,
            ended_at_us: self.ended_at,
            ended_by: self.ended_by,
            action_count: self.action_count as u64,
            audit_head: self.audit_head,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ActionRow {
    idx: i64,
    method: String,
    target: String,
    outcome: String,
    at: i64,
    recorded_at: i64,
    hash: String,
    key_id: String,
}

impl From<ActionRow> for Action {
    fn from(row: ActionRow) -> Self {
        Action {
            index: row.idx as u64,
            method: row.method,
            target: row.target,
            outcome: row.outcome,
            at_us: row.at,
            recorded_at_us: row.recorded_at,
            key_id: row.key_id,
            hash: row.hash,
        }
    }
}

/// Which open sessions to end.
#[derive(Debug, Clone)]
pub enum Selection<'a> {
    One(&'a str),
    OfAgent(&'a str),
    OfAgentInRealm(&'a str, TargetRealm),
    OfTarget(&'a str),
    /// Every session whose idle timeout or maximum length has passed.
    TimedOut,
}

/// Filters of a session list.
#[derive(Debug, Clone, Default)]
pub struct SessionFilter {
    pub agent_id: Option<String>,
    pub target_id: Option<String>,
    /// Only sessions live at `now_us`.
    pub active_at_us: Option<i64>,
    pub started_from_us: Option<i64>,
    pub started_before_us: Option<i64>,
}

/// An action about to be recorded (its time is the time it is recorded).
#[derive(Debug, Clone)]
pub struct NewAction {
    pub method: String,
    pub target: String,
    pub outcome: String,
    /// Appended once per session however often it is sent.
    pub idempotency_key: Option<String>,
}

/// What became of one action of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Appended at this index.
    Appended(u64),
    /// Its idempotency key was already in the session's log, at this index: nothing appended.
    AlreadyRecorded(u64),
    /// No such session: nothing appended.
    NoSuchSession,
}

impl Recorded {
    /// The action's index in its session's log, unless its session does not exist.
    pub fn index(self) -> Option<u64> {
        match self {
            Recorded::Appended(index) | Recorded::AlreadyRecorded(index) => Some(index),
            Recorded::NoSuchSession => None,
        }
    }
}

#[derive(Clone)]
pub struct Store {
    db: Database,
    revocations: Notifier,
    audit: Arc<AuditKeys>,
}

impl Store {
    /// A store whose audit chains are keyed with `audit`.
    pub fn new(db: Database, audit: Arc<AuditKeys>) -> Self {
        let revocations = Notifier::new(&db, REVOCATIONS);
        Self {
            db,
            revocations,
            audit,
        }
    }

    /// The audit keys this store's chains are made and checked with.
    pub fn audit(&self) -> &AuditKeys {
        &self.audit
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Notices of ended sessions: `<session id> <end reason>`.
    pub fn revocations(&self) -> &Notifier {
        &self.revocations
    }

    /// Starts `session`, first ending the agent's open session (as replaced, or as timed out), in one
    /// transaction that also announces the end.
    pub async fn start(&self, session: &NewSession) -> Result<Vec<(String, EndReason)>> {
        match self.db.backend {
            Backend::Postgres => self.start_postgres(session).await,
            Backend::Sqlite => self.start_sqlite(session).await,
        }
    }

    /// On PostgreSQL the whole start is one statement (one round trip, one commit): end the open
    /// session, then insert the new one (the insert reads the update's result, which orders the two),
    /// and notify each end. A concurrent start of the same agent that committed first makes the insert
    /// collide on the one-open-session index; the next attempt then sees and replaces it.
    async fn start_postgres(&self, session: &NewSession) -> Result<Vec<(String, EndReason)>> {
        let sql = format!(
            "WITH ended AS ( \
               UPDATE assist_sessions SET {END_SET} WHERE ended_at IS NULL AND agent_id = $4 \
               RETURNING id, end_reason), \
             started AS ( \
               INSERT INTO assist_sessions (id, agent_id, target_id, target_realm, reason, \
                 conversation_id, scope, started_at, expires_at, idle_expires_at, last_used_at, \
                 action_count, audit_head, audit_seal) \
               SELECT $5::text, $4::text, $6::text, $7::text, $8::text, $9::text, $10::text, \
                 $1::bigint, $11::bigint, $12::bigint, $1::bigint, 0, $13::text, $15::text \
               FROM (SELECT COUNT(*) FROM ended) AS after_ended) \
             SELECT id, end_reason, pg_notify($14, id || ' ' || end_reason)::text AS notified \
             FROM ended"
        );
        for _attempt in 0..16 {
            let result = sqlx::query_as::<_, (String, String, String)>(&sql)
                .bind(session.started_at_us)
                .bind(&session.agent_id)
                .bind(EndReason::Replaced.as_str())
                .bind(&session.agent_id)
                .bind(&session.id)
                .bind(&session.target_id)
                .bind(session.target_realm.as_str())
                .bind(&session.reason)
                .bind(&session.conversation_id)
                .bind(&session.scope)
                .bind(session.expires_at_us)
                .bind(session.idle_expires_at_us)
                .bind(audit::genesis(&session.id))
                .bind(self.revocations.channel())
                .bind(
                    self.audit
                        .seal(&session.id, 0, &audit::genesis(&session.id)),
                )
                .fetch_all(&self.db.pool)
                .await;
            match result {
                Ok(rows) => {
                    return Ok(rows
                        .into_iter()
                        .map(|(id, reason, _)| {
                            let reason = EndReason::parse(&reason).unwrap_or(EndReason::Replaced);
                            (id, reason)
                        })
                        .collect());
                }
                Err(error) if is_unique_violation(&error) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(Error::AlreadyExists(
            "too many sessions of this agent are starting at once".into(),
        ))
    }

    async fn start_sqlite(&self, session: &NewSession) -> Result<Vec<(String, EndReason)>> {
        // The writer turn makes starts take turns, so the end below always sees the previous start.
        let mut tx = self.db.begin_write().await?;
        let ended = end_in(
            &mut tx,
            &self.revocations,
            Selection::OfAgent(&session.agent_id),
            EndReason::Replaced,
            &session.agent_id,
            session.started_at_us,
        )
        .await?;
        sqlx::query(
            "INSERT INTO assist_sessions (id, agent_id, target_id, target_realm, reason, conversation_id, \
             scope, started_at, expires_at, idle_expires_at, last_used_at, action_count, audit_head, \
             audit_seal) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $8, 0, $11, $12)",
        )
        .bind(&session.id)
        .bind(&session.agent_id)
        .bind(&session.target_id)
        .bind(session.target_realm.as_str())
        .bind(&session.reason)
        .bind(&session.conversation_id)
        .bind(&session.scope)
        .bind(session.started_at_us)
        .bind(session.expires_at_us)
        .bind(session.idle_expires_at_us)
        .bind(audit::genesis(&session.id))
        .bind(self.audit.seal(&session.id, 0, &audit::genesis(&session.id)))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ended)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Session>> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM assist_sessions WHERE id = $1");
        let row: Option<SessionRow> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(SessionRow::into_session).transpose()
    }

    /// Ends the selected open sessions; answers the ids ended and their recorded reasons.
    pub async fn end(
        &self,
        selection: Selection<'_>,
        reason: EndReason,
        ended_by: &str,
        now: i64,
    ) -> Result<Vec<(String, EndReason)>> {
        let mut tx = self.db.begin_write().await?;
        let ended = end_in(&mut tx, &self.revocations, selection, reason, ended_by, now).await?;
        tx.commit().await?;
        Ok(ended)
    }

    /// Sessions not ended yet (possibly timed out), oldest first, at most `limit`.
    pub async fn open_sessions(&self, limit: u32) -> Result<Vec<Session>> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM assist_sessions WHERE ended_at IS NULL \
             ORDER BY started_at, id LIMIT $1"
        );
        let rows: Vec<SessionRow> = sqlx::query_as(&sql)
            .bind(limit as i64)
            .fetch_all(&self.db.pool)
            .await?;
        rows.into_iter().map(SessionRow::into_session).collect()
    }

    /// How many sessions are live at `now`.
    pub async fn count_live(&self, now: i64) -> Result<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM assist_sessions \
             WHERE ended_at IS NULL AND idle_expires_at > $1 AND expires_at > $1",
        )
        .bind(now)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(count as u64)
    }

    /// Sessions matching `filter`, newest first.
    pub async fn list(&self, filter: &SessionFilter, page: Page) -> Result<Paged<Session>> {
        let mut conditions = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let param = |value: Bind, binds: &mut Vec<Bind>| {
            binds.push(value);
            format!("${}", binds.len())
        };
        if let Some(agent) = &filter.agent_id {
            let p = param(Bind::Text(agent.clone()), &mut binds);
            conditions.push(format!("agent_id = {p}"));
        }
        if let Some(target) = &filter.target_id {
            let p = param(Bind::Text(target.clone()), &mut binds);
            conditions.push(format!("target_id = {p}"));
        }
        if let Some(now) = filter.active_at_us {
            let p = param(Bind::Int(now), &mut binds);
            conditions.push(format!(
                "ended_at IS NULL AND idle_expires_at > {p} AND expires_at > {p}"
            ));
        }
        if let Some(from) = filter.started_from_us {
            let p = param(Bind::Int(from), &mut binds);
            conditions.push(format!("started_at >= {p}"));
        }
        if let Some(before) = filter.started_before_us {
            let p = param(Bind::Int(before), &mut binds);
            conditions.push(format!("started_at < {p}"));
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let next = binds.len();
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM assist_sessions {filter_sql} \
             ORDER BY started_at DESC, id DESC LIMIT ${} OFFSET ${}",
            next + 1,
            next + 2
        );
        let mut query = sqlx::query_as::<_, SessionRow>(&sql);
        for bind in &binds {
            query = bind.apply_as(query);
        }
        let rows = query
            .bind(page.limit as i64)
            .bind(page.offset as i64)
            .fetch_all(&self.db.pool)
            .await?;
        let count_sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM assist_sessions {filter_sql} LIMIT ${}) AS capped",
            next + 1
        );
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for bind in &binds {
            count = bind.apply_scalar(count);
        }
        let total = count.bind(COUNT_CAP + 1).fetch_one(&self.db.pool).await?;
        Ok(Paged {
            items: rows
                .into_iter()
                .map(SessionRow::into_session)
                .collect::<Result<_>>()?,
            total: total.min(COUNT_CAP) as u64,
            total_exact: total <= COUNT_CAP,
        })
    }

    /// Appends an action to a session's chain in one transaction: the session row is locked, the
    /// action linked to its head, and the head, count and (while live) idle deadline moved on.
    pub async fn record_action(
        &self,
        session_id: &str,
        action: &NewAction,
        now: i64,
        idle_timeout_us: i64,
    ) -> Result<Recorded> {
        let batch = [(session_id.to_owned(), action.clone())];
        let recorded = self.record_actions(&batch, now, idle_timeout_us).await?;
        Ok(recorded[0])
    }

    /// Appends `actions` (of one or more sessions; each session's in the order given) in one
    /// transaction, one commit however many there are, all recorded at `now`. Session rows are locked
    /// in id order, so concurrent batches cannot deadlock. An action of an unknown session, or whose
    /// idempotency key its session's log already holds, is left out (the chain goes on without it);
    /// the others are written. Answers what became of each action, in input order.
    pub async fn record_actions(
        &self,
        actions: &[(String, NewAction)],
        now: i64,
        idle_timeout_us: i64,
    ) -> Result<Vec<Recorded>> {
        let mut sessions: Vec<&str> = actions.iter().map(|(id, _)| id.as_str()).collect();
        sessions.sort_unstable();
        sessions.dedup();
        let lock = match self.db.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let select = format!("SELECT {SESSION_COLUMNS} FROM assist_sessions WHERE id = $1{lock}");
        let mut recorded = vec![Recorded::NoSuchSession; actions.len()];
        let key_id = self.audit.current();
        let mut tx = self.db.begin_write().await?;
        for session_id in sessions {
            let Some(session) = sqlx::query_as::<_, SessionRow>(&select)
                .bind(session_id)
                .fetch_optional(&mut *tx)
                .await?
            else {
                continue;
            };
            let session = session.into_session()?;
            let mut head = session.audit_head.clone();
            let mut count = session.action_count;
            for (position, (_, action)) in actions
                .iter()
                .enumerate()
                .filter(|(_, (id, _))| id == session_id)
            {
                let mut appended = Action {
                    index: count + 1,
                    method: action.method.clone(),
                    target: action.target.clone(),
                    outcome: action.outcome.clone(),
                    at_us: now,
                    recorded_at_us: now,
                    key_id: key_id.clone(),
                    hash: String::new(),
                };
                appended.hash = self.audit.link(&head, &appended);
                // A key already stored (an earlier attempt of this batch, or a repeat within it)
                // inserts nothing, so the head stays where it is.
                let inserted = sqlx::query_scalar::<_, i64>(
                    "INSERT INTO assist_actions \
                     (session_id, idx, method, target, outcome, at, recorded_at, hash, idempotency_key, \
                     key_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                     ON CONFLICT (session_id, idempotency_key) DO NOTHING RETURNING idx",
                )
                .bind(session_id)
                .bind(appended.index as i64)
                .bind(&appended.method)
                .bind(&appended.target)
                .bind(&appended.outcome)
                .bind(now)
                .bind(now)
                .bind(&appended.hash)
                .bind(action.idempotency_key.as_deref())
                .bind(&appended.key_id)
                .fetch_optional(&mut *tx)
                .await?;
                recorded[position] = match inserted {
                    Some(_) => {
                        count = appended.index;
                        head = appended.hash;
                        Recorded::Appended(count)
                    }
                    None => {
                        let index: i64 = sqlx::query_scalar(
                            "SELECT idx FROM assist_actions \
                             WHERE session_id = $1 AND idempotency_key = $2",
                        )
                        .bind(session_id)
                        .bind(action.idempotency_key.as_deref())
                        .fetch_one(&mut *tx)
                        .await?;
                        Recorded::AlreadyRecorded(index as u64)
                    }
                };
            }
            // Use extends a live session's idle deadline (never past its maximum length).
            let idle = if session.is_live(now) {
                (now + idle_timeout_us).min(session.expires_at_us)
            } else {
                session.idle_expires_at_us
            };
            sqlx::query(
                "UPDATE assist_sessions SET action_count = $2, audit_head = $3, \
                 last_used_at = CASE WHEN last_used_at > $4 THEN last_used_at ELSE $4 END, \
                 idle_expires_at = $5, audit_seal = $6 WHERE id = $1",
            )
            .bind(session_id)
            .bind(count as i64)
            .bind(&head)
            .bind(now)
            .bind(idle)
            .bind(self.audit.seal(session_id, count, &head))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(recorded)
    }

    /// A page of a session's actions, oldest first.
    pub async fn actions(&self, session_id: &str, page: Page) -> Result<Vec<Action>> {
        self.actions_after(session_id, page.offset as i64, page.limit)
            .await
    }

    async fn actions_after(&self, session_id: &str, after: i64, limit: u32) -> Result<Vec<Action>> {
        let rows: Vec<ActionRow> = sqlx::query_as(
            "SELECT idx, method, target, outcome, at, recorded_at, hash, key_id FROM assist_actions \
             WHERE session_id = $1 AND idx > $2 ORDER BY idx LIMIT $3",
        )
        .bind(session_id)
        .bind(after)
        .bind(limit as i64)
        .fetch_all(&self.db.pool)
        .await?;
        Ok(rows.into_iter().map(Action::from).collect())
    }

    /// Recomputes a session's chain from its stored actions, up to the head, count and seal read
    /// first (actions appended meanwhile come after them and are not looked at).
    pub async fn verify_chain(&self, session: &Session) -> Result<Verdict> {
        let (count, head, seal): (i64, String, String) = sqlx::query_as(
            "SELECT action_count, audit_head, audit_seal FROM assist_sessions WHERE id = $1",
        )
        .bind(&session.id)
        .fetch_one(&self.db.pool)
        .await?;
        let count = count as u64;
        let mut check = ChainCheck::new(&self.audit, &session.id);
        let mut after = 0;
        loop {
            let batch = self.actions_after(&session.id, after, 1000).await?;
            let Some(last) = batch.last() else {
                break;
            };
            after = last.index as i64;
            batch
                .iter()
                .filter(|action| action.index <= count)
                .for_each(|action| check.feed(action));
            if last.index >= count {
                break;
            }
        }
        Ok(check.finish(&head, count, &seal))
    }
}

/// Ends the selected open sessions inside `tx`, notifying each end.
async fn end_in(
    tx: &mut WriteTransaction,
    revocations: &Notifier,
    selection: Selection<'_>,
    reason: EndReason,
    ended_by: &str,
    now: i64,
) -> Result<Vec<(String, EndReason)>> {
    let (condition, key, realm) = match &selection {
        Selection::One(id) => ("id = $4", Some(*id), None),
        Selection::OfAgent(agent) => ("agent_id = $4", Some(*agent), None),
        Selection::OfAgentInRealm(agent, realm) => (
            "agent_id = $4 AND target_realm = $5",
            Some(*agent),
            Some(*realm),
        ),
        Selection::OfTarget(target) => ("target_id = $4", Some(*target), None),
        Selection::TimedOut => ("(idle_expires_at <= $1 OR expires_at <= $1)", None, None),
    };
    let sql = format!(
        "UPDATE assist_sessions SET {END_SET} WHERE ended_at IS NULL AND {condition} \
         RETURNING id, end_reason"
    );
    let by = if matches!(selection, Selection::TimedOut) {
        SYSTEM
    } else {
        ended_by
    };
    let mut query = sqlx::query_as::<_, (String, String)>(&sql)
        .bind(now)
        .bind(by)
        .bind(reason.as_str());
    if let Some(key) = key {
        query = query.bind(key);
    }
    if let Some(realm) = realm {
        query = query.bind(realm.as_str());
    }
    let rows = query.fetch_all(&mut **tx).await?;
    let mut ended = Vec::with_capacity(rows.len());
    for (id, recorded) in rows {
        let recorded = EndReason::parse(&recorded).unwrap_or(reason);
        tx.notify(revocations, format!("{id} {}", recorded.as_str()))
            .await?;
        ended.push((id, recorded));
    }
    Ok(ended)
}

/// A value of a dynamically built query.
enum Bind {
    Text(String),
    Int(i64),
}

type AnyArgs<'q> = sqlx::any::AnyArguments<'q>;

impl Bind {
    fn apply_as<'q, O>(
        &'q self,
        query: sqlx::query::QueryAs<'q, sqlx::Any, O, AnyArgs<'q>>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Any, O, AnyArgs<'q>> {
        match self {
            Bind::Text(value) => query.bind(value.as_str()),
            Bind::Int(value) => query.bind(*value),
        }
    }

    fn apply_scalar<'q, O>(
        &'q self,
        query: sqlx::query::QueryScalar<'q, sqlx::Any, O, AnyArgs<'q>>,
    ) -> sqlx::query::QueryScalar<'q, sqlx::Any, O, AnyArgs<'q>> {
        match self {
            Bind::Text(value) => query.bind(value.as_str()),
            Bind::Int(value) => query.bind(*value),
        }
    }
}
