//! The agent-directory store: SQL only, no business rules. One implementation in SQL that PostgreSQL and
//! SQLite both accept (see `assist_runtime::db`); the conformance suite in `tests/store.rs` runs it on both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use assist_runtime::db::{Database, WriteTransaction};
use assist_runtime::notify::Notifier;
use assist_runtime::validate::Page;
use assist_runtime::{Error, Result};

use crate::domain::console::{Membership, Presence, PresenceCounts, Seats, Status};
use crate::domain::{Agent, AgentChange, Capability, NewAgent, sort_name};

mod rows;

use rows::{AgentCapabilityRow, ChangeRow, agents_of};

pub use assist_runtime::validate::Paged;

/// The notice channel of agent changes; each notice carries the changed agent's id.
pub const AGENT_CHANGES: &str = "assist_agent_directory_agents";

pub static MIGRATIONS: assist_runtime::db::Migrations = assist_runtime::db::Migrations {
    postgres: &sqlx::migrate!("migrations/postgres"),
    sqlite: &sqlx::migrate!("migrations/sqlite"),
};

/// The columns of an agent (alias `a`) in the order of [`AgentCapabilityRow`], without the capability.
const AGENT_FIELDS: &str = "a.id, a.display_name, a.nickname, a.created_at, a.updated_at, a.version, \
     a.email, a.role, a.status, a.capacity, a.skills, a.presence, a.last_seen_at, \
     a.invitation_expires_at";

/// Which agents a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Only those holding it.
    pub capability: Option<Capability>,
    /// Only those whose display name, nickname or email starts with it (already lowercased); empty
    /// for all.
    pub query: String,
    /// Only those with this status; `None` for invited and active ones.
    pub status: Option<Status>,
}

impl AgentFilter {
    /// The filter of the console's plain list: every invited and active agent.
    fn is_members(&self) -> bool {
        self.capability.is_none() && self.query.is_empty() && self.status.is_none()
    }

    /// The WHERE clause over `agents` (unaliased) and its values, bound as $1, $2, …: only the
    /// conditions in use, so that each shape gets a plan of its own that uses the indexes.
    fn where_clause(&self) -> (String, Vec<String>) {
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        let mut bind = |value: String| {
            values.push(value);
            format!("${}", values.len())
        };
        match self.status {
            Some(status) => conditions.push(format!("status = {}", bind(status.as_str().into()))),
            None => conditions.push("status <> 'removed'".to_owned()),
        }
        if let Some(capability) = self.capability {
            conditions.push(format!(
                "id IN (SELECT agent_id FROM agent_capabilities WHERE capability = {})",
                bind(capability.as_str().into())
            ));
        }
        if !self.query.is_empty() {
            let (low, high) = (
                bind(self.query.clone()),
                bind(format!("{}\u{10FFFF}", self.query)),
            );
            conditions.push(format!(
                "((sort_name >= {low} AND sort_name < {high}) \
                 OR (sort_nickname >= {low} AND sort_nickname < {high}) \
                 OR (sort_email >= {low} AND sort_email < {high}))"
            ));
        }
        (conditions.join(" AND "), values)
    }
}

/// One page of a list with the counts the console shows beside it.
#[derive(Debug, Clone)]
pub struct AgentPage {
    pub agents: Paged<Agent>,
    pub seats: Seats,
    pub presence: PresenceCounts,
}

/// What became of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No such agent is stored (and none was to be created).
    Missing,
    /// The change changed nothing; nothing was written. The agent as it is.
    Unchanged(Agent),
    /// Stored, recorded and announced, in one transaction.
    Changed(Agent, AgentChange),
}

/// What a change decides: the agent after it with the record of the change, `None` for nothing to
/// change, or a refusal (then nothing is written).
pub type Decision = Result<Option<(Agent, AgentChange)>>;

#[derive(Clone)]
pub struct Store {
    db: Database,
    changes: Notifier,
    counts: Arc<CountsCache>,
}

/// How long counted seats and presence serve lists before a list counts them again: this replica's own
/// writes count at once (they clear the cache); the presence sweep recounts about every second (see
/// [`Store::recount`]), so other replicas' writes and expiring invitations show within a second or two
/// and lists seldom count inline.
const COUNTS_FRESH_FOR: Duration = Duration::from_secs(2);

/// The last [`Counts`] and the write generation they were counted at.
#[derive(Default)]
struct CountsCache {
    generation: AtomicU64,
    counted: Mutex<Option<(u64, Instant, Counts)>>,
}

impl CountsCache {
    /// A write of this replica committed: the next list counts again.
    fn clear(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl Store {
    pub fn new(db: Database) -> Self {
        let changes = Notifier::new(&db, AGENT_CHANGES);
        Self {
            db,
            changes,
            counts: Arc::default(),
        }
    }

    /// The counts of [`read_counts`], reused while fresh (see [`COUNTS_FRESH_FOR`]).
    async fn counts(&self, now_us: i64) -> Result<Counts> {
        let generation = self.counts.generation.load(Ordering::SeqCst);
        if let Some((at_generation, at, counts)) =
            *self.counts.counted.lock().expect("not poisoned")
            && at_generation == generation
            && at.elapsed() < COUNTS_FRESH_FOR
        {
            return Ok(counts);
        }
        self.count_now(now_us).await
    }

    /// Counts now and keeps the counts, tagged with the write generation seen before counting (a write
    /// meanwhile makes them stale at once).
    async fn count_now(&self, now_us: i64) -> Result<Counts> {
        let generation = self.counts.generation.load(Ordering::SeqCst);
        let counts = read_counts(&self.db.pool, now_us).await?;
        *self.counts.counted.lock().expect("not poisoned") =
            Some((generation, Instant::now(), counts));
        Ok(counts)
    }

    /// Notices carrying the id of each agent whose profile changed.
    pub fn changes(&self) -> &Notifier {
        &self.changes
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub async fn get_agent(&self, id: &str) -> Result<Option<Agent>> {
        read_agent(&self.db.pool, id).await
    }

    /// Stored agents matching `filter`, by display name (case-insensitively) and then id, with the
    /// seats at `now_us` and the presence of active agents: two queries (three with a filter).
    pub async fn list_agents(
        &self,
        filter: &AgentFilter,
        page: Page,
        now_us: i64,
    ) -> Result<AgentPage> {
        let (condition, values) = filter.where_clause();
        let n = values.len();
        let sql = format!(
            "SELECT {AGENT_FIELDS}, c.capability FROM (SELECT * FROM agents WHERE {condition} \
             ORDER BY sort_name, id LIMIT ${} OFFSET ${}) a \
             LEFT JOIN agent_capabilities c ON c.agent_id = a.id ORDER BY a.sort_name, a.id",
            n + 1,
            n + 2
        );
        let mut query = sqlx::query_as::<_, AgentCapabilityRow>(&sql);
        for value in &values {
            query = query.bind(value);
        }
        let rows = query
            .bind(i64::from(page.limit))
            .bind(offset(page))
            .fetch_all(&self.db.pool)
            .await?;
        let counts = self.counts(now_us).await?;
        let total = if filter.is_members() {
            counts.members
        } else {
            let sql = format!("SELECT COUNT(*) FROM agents WHERE {condition}");
            let mut query = sqlx::query_scalar::<_, i64>(&sql);
            for value in &values {
                query = query.bind(value);
            }
            query.fetch_one(&self.db.pool).await? as u64
        };
        Ok(AgentPage {
            agents: Paged {
                items: agents_of(rows)?,
                total,
                total_exact: true,
            },
            seats: counts.seats,
            presence: counts.presence,
        })
    }

    /// Up to `limit` stored agents (removed ones too) whose id sorts after `after` (`""` for the
    /// first), by id: the pages of a snapshot, each one query, stable while agents are added.
    pub async fn agents_after(&self, after: &str, limit: u32) -> Result<Vec<Agent>> {
        let sql = format!(
            "SELECT {AGENT_FIELDS}, c.capability FROM (SELECT * FROM agents WHERE id > $1 \
             ORDER BY id LIMIT $2) a LEFT JOIN agent_capabilities c ON c.agent_id = a.id ORDER BY a.id"
        );
        let rows: Vec<AgentCapabilityRow> = sqlx::query_as(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.db.pool)
            .await?;
        agents_of(rows)
    }

    /// Counts the seats and the presence of active agents now, for the lists that follow (see
    /// [`COUNTS_FRESH_FOR`]).
    pub async fn recount(&self, now_us: i64) -> Result<(Seats, PresenceCounts)> {
        let counts = self.count_now(now_us).await?;
        Ok((counts.seats, counts.presence))
    }

    /// The seats at `now_us`, counted now.
    pub async fn seats(&self, now_us: i64) -> Result<Seats> {
        Ok(read_counts(&self.db.pool, now_us).await?.seats)
    }

    /// Sets the licensed seats to what `decide` makes of the seats as they are (under the membership
    /// lock, so no invitation slips in between), recording who and when.
    pub async fn set_seats<F>(&self, actor_id: &str, now_us: i64, decide: F) -> Result<Seats>
    where
        F: FnOnce(&Seats) -> Result<u64>,
    {
        let mut tx = self.db.begin_write().await?;
        let membership = lock_membership(&mut tx, now_us).await?;
        let licensed = decide(&membership.seats)?;
        sqlx::query(
            "UPDATE seats SET licensed = $1, updated_at = $2, updated_by = $3 WHERE id = 1",
        )
        .bind(i64::try_from(licensed).map_err(Error::internal)?)
        .bind(now_us)
        .bind(actor_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Seats {
            licensed,
            ..membership.seats
        })
    }

    /// Takes a free seat for an invitation being sent, held until `expires_at_us` or until the
    /// invited profile is stored with it. `RESOURCE_EXHAUSTED` when none is free.
    pub async fn reserve_seat(&self, now_us: i64, expires_at_us: i64) -> Result<String> {
        let mut tx = self.db.begin_write().await?;
        let membership = lock_membership(&mut tx, now_us).await?;
        membership.seats.take_one()?;
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query("INSERT INTO seat_reservations (id, expires_at) VALUES ($1, $2)")
            .bind(&id)
            .bind(expires_at_us)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.counts.clear();
        Ok(id)
    }

    /// Gives a reserved seat back (the invitation failed).
    pub async fn release_seat(&self, reservation: &str) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM seat_reservations WHERE id = $1")
            .bind(reservation)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.counts.clear();
        Ok(())
    }

    /// Changes agent `id` in one transaction: asks `decide` what to make of the agent as it is now;
    /// when it answers a new agent and the record of the change, writes both and a notice. For changes
    /// that neither create a profile nor depend on seats or on the other members.
    ///
    /// Changes of one agent take turns (a row lock on PostgreSQL, the one writer on SQLite), so `decide`
    /// always sees the latest committed agent: two concurrent grants of one capability store one change.
    pub async fn change<F>(&self, id: &str, decide: F) -> Result<Outcome>
    where
        F: FnOnce(&Agent) -> Decision,
    {
        let mut tx = self.db.begin_write().await?;
        let outcome = self.decide_locked(&mut tx, id, decide).await?;
        self.finish(tx, outcome).await
    }

    /// [`Store::change`] for changes of membership (storing a profile, status, role): they take turns
    /// with each other through the seats row, and `decide` sees the [`Membership`] as it stands. When
    /// `create` is given and no profile exists, it is stored first, taking its reserved seat or else a
    /// free one (`RESOURCE_EXHAUSTED` when none is); when `decide` then answers `None`, nothing is
    /// written, not even `create`.
    pub async fn change_membership<F>(
        &self,
        id: &str,
        create: Option<&NewAgent>,
        now_us: i64,
        decide: F,
    ) -> Result<Outcome>
    where
        F: FnOnce(&Agent, &Membership) -> Decision,
    {
        let mut tx = self.db.begin_write().await?;
        let mut membership = lock_membership(&mut tx, now_us).await?;
        if let Some(new) = create {
            create_agent(&mut tx, new, &mut membership, now_us).await?;
        }
        let outcome = self
            .decide_locked(&mut tx, id, |agent| decide(agent, &membership))
            .await?;
        self.finish(tx, outcome).await
    }

    /// Commits a change that changed something; rolls back the rest.
    async fn finish(&self, tx: WriteTransaction, outcome: Outcome) -> Result<Outcome> {
        match outcome {
            Outcome::Changed(..) => {
                tx.commit().await?;
                self.counts.clear();
            }
            _ => tx.rollback().await?,
        }
        Ok(outcome)
    }

    /// Locks agent `id`, lets `decide` judge it, and writes what it decided (not committed).
    async fn decide_locked<F>(
        &self,
        tx: &mut WriteTransaction,
        id: &str,
        decide: F,
    ) -> Result<Outcome>
    where
        F: FnOnce(&Agent) -> Decision,
    {
        // A no-op update takes the row lock on PostgreSQL, in SQL that SQLite accepts too.
        let locked = sqlx::query("UPDATE agents SET version = version WHERE id = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        if locked.rows_affected() == 0 {
            return Ok(Outcome::Missing);
        }
        let current = read_agent(&mut **tx, id)
            .await?
            .ok_or_else(|| Error::internal(anyhow::anyhow!("agent {id} vanished while locked")))?;
        let Some((after, change)) = decide(&current)? else {
            return Ok(Outcome::Unchanged(current));
        };
        for capability in after.capabilities.iter().filter(|c| !current.has(**c)) {
            sqlx::query(
                "INSERT INTO agent_capabilities (agent_id, capability, granted_by, granted_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(capability.as_str())
            .bind(&change.actor_id)
            .bind(change.at_us)
            .execute(&mut **tx)
            .await?;
        }
        for capability in current.capabilities.iter().filter(|c| !after.has(**c)) {
            sqlx::query("DELETE FROM agent_capabilities WHERE agent_id = $1 AND capability = $2")
                .bind(id)
                .bind(capability.as_str())
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query(
            "UPDATE agents SET display_name = $2, sort_name = $3, nickname = $4, sort_nickname = $5, \
             updated_at = $6, version = $7, role = $8, status = $9, capacity = $10, skills = $11, \
             presence = $12, invitation_expires_at = $13 WHERE id = $1",
        )
        .bind(id)
        .bind(&after.display_name)
        .bind(sort_name(&after.display_name))
        .bind(&after.nickname)
        .bind(sort_name(&after.nickname))
        .bind(after.updated_at_us)
        .bind(i64::try_from(after.version).map_err(Error::internal)?)
        .bind(after.role.as_str())
        .bind(after.status.map(Status::as_str))
        .bind(i64::from(after.capacity))
        .bind(after.skills.join(" "))
        .bind(after.presence.as_str())
        .bind(after.invitation_expires_at_us)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO agent_history (id, agent_id, actor_id, action, before_json, after_json, at, \
             version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&change.id)
        .bind(id)
        .bind(&change.actor_id)
        .bind(&change.action)
        .bind(&change.before)
        .bind(&change.after)
        .bind(change.at_us)
        .bind(i64::try_from(change.version).map_err(Error::internal)?)
        .execute(&mut **tx)
        .await?;
        tx.notify(&self.changes, id.to_owned()).await?;
        Ok(Outcome::Changed(after, change))
    }

    /// A heartbeat that changes nothing but the time: one statement, true when agent `id` is active
    /// and already has `presence`. Presence writes do not wait for the WAL flush (see
    /// [`Database::begin_write_ephemeral`]).
    pub async fn touch(&self, id: &str, presence: Presence, now_us: i64) -> Result<bool> {
        let mut tx = self.db.begin_write_ephemeral().await?;
        let touched = sqlx::query(
            "UPDATE agents SET last_seen_at = $3 WHERE id = $1 AND status = 'active' \
             AND presence = $2",
        )
        .bind(id)
        .bind(presence.as_str())
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(touched.rows_affected() == 1)
    }

    /// Sets the presence (and last seen) of active agent `id`, announcing it when it changed; false
    /// when no active agent has that id. Presence is not history: only the version grows.
    pub async fn set_presence(&self, id: &str, presence: Presence, now_us: i64) -> Result<bool> {
        let mut tx = self.db.begin_write_ephemeral().await?;
        let changed = sqlx::query(
            "UPDATE agents SET presence = $2, last_seen_at = $3, version = version + 1 \
             WHERE id = $1 AND status = 'active' AND presence <> $2",
        )
        .bind(id)
        .bind(presence.as_str())
        .bind(now_us)
        .execute(&mut *tx)
        .await?;
        if changed.rows_affected() == 1 {
            tx.notify(&self.changes, id.to_owned()).await?;
            tx.commit().await?;
            self.counts.clear();
            return Ok(true);
        }
        // Not active, or it had that presence already (a concurrent heartbeat set it).
        let touched =
            sqlx::query("UPDATE agents SET last_seen_at = $2 WHERE id = $1 AND status = 'active'")
                .bind(id)
                .bind(now_us)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(touched.rows_affected() == 1)
    }

    /// Sets every agent offline whose last heartbeat is older than `cutoff_us`, announcing each; drops
    /// long-expired seat reservations. Returns how many went offline. Safe on any number of replicas.
    pub async fn expire_presence(&self, cutoff_us: i64) -> Result<usize> {
        let mut tx = self.db.begin_write_ephemeral().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE agents SET presence = 'offline', version = version + 1 \
             WHERE presence IN ('online', 'away') AND last_seen_at < $1 RETURNING id",
        )
        .bind(cutoff_us)
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            tx.notify(&self.changes, id.clone()).await?;
        }
        sqlx::query("DELETE FROM seat_reservations WHERE expires_at < $1")
            .bind(cutoff_us)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if !ids.is_empty() {
            self.counts.clear();
        }
        Ok(ids.len())
    }

    /// The changes of one agent, newest (highest version) first.
    pub async fn list_history(&self, agent_id: &str, page: Page) -> Result<Paged<AgentChange>> {
        let rows: Vec<ChangeRow> = sqlx::query_as(
            "SELECT id, agent_id, actor_id, action, before_json, after_json, at, version \
             FROM agent_history WHERE agent_id = $1 ORDER BY version DESC LIMIT $2 OFFSET $3",
        )
        .bind(agent_id)
        .bind(i64::from(page.limit))
        .bind(offset(page))
        .fetch_all(&self.db.pool)
        .await?;
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM agent_history WHERE agent_id = $1")
                .bind(agent_id)
                .fetch_one(&self.db.pool)
                .await?;
        Ok(Paged {
            items: rows.into_iter().map(AgentChange::from).collect(),
            total: total as u64,
            total_exact: true,
        })
    }
}

/// Page offsets are capped far below `i64::MAX` by `Page`; saturate anyway.
fn offset(page: Page) -> i64 {
    i64::try_from(page.offset).unwrap_or(i64::MAX)
}

/// Takes the membership lock (the seats row; the one writer on SQLite) and reads the membership.
async fn lock_membership(tx: &mut WriteTransaction, now_us: i64) -> Result<Membership> {
    sqlx::query("UPDATE seats SET licensed = licensed WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    let counts = read_counts(&mut **tx, now_us).await?;
    Ok(Membership {
        seats: counts.seats,
        administrators: counts.administrators,
    })
}

/// Stores `new` unless a profile with its id exists, keeping `membership` up to date.
async fn create_agent(
    tx: &mut WriteTransaction,
    new: &NewAgent,
    membership: &mut Membership,
    now_us: i64,
) -> Result<()> {
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM agents WHERE id = $1")
        .bind(&new.id)
        .fetch_optional(&mut **tx)
        .await?;
    if exists.is_some() {
        return Ok(());
    }
    let occupies = match new.status {
        Status::Active => true,
        Status::Invited => new.invitation_expires_at_us > now_us,
        Status::Removed => false,
    };
    // A live reservation already counts as occupied; the profile takes its place.
    let reserved = match &new.reservation {
        Some(reservation) => {
            let released =
                sqlx::query("DELETE FROM seat_reservations WHERE id = $1 AND expires_at > $2")
                    .bind(reservation)
                    .bind(now_us)
                    .execute(&mut **tx)
                    .await?;
            released.rows_affected() == 1
        }
        None => false,
    };
    if reserved {
        membership.seats.occupied -= 1;
    }
    if occupies {
        membership.seats.take_one()?;
        membership.seats.occupied += 1;
    }
    if new.status == Status::Active && new.role == crate::domain::console::Role::Administrator {
        membership.administrators += 1;
    }
    sqlx::query(
        "INSERT INTO agents (id, display_name, sort_name, nickname, created_at, updated_at, version, \
         email, sort_email, role, status, invitation_expires_at) \
         VALUES ($1, $2, $3, '', $4, $4, 0, $5, $6, $7, $8, $9)",
    )
    .bind(&new.id)
    .bind(&new.display_name)
    .bind(sort_name(&new.display_name))
    .bind(new.created_at_us)
    .bind(&new.email)
    .bind(new.email.to_lowercase())
    .bind(new.role.as_str())
    .bind(new.status.as_str())
    .bind(new.invitation_expires_at_us)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What one pass over the agents counts for the console.
#[derive(Debug, Clone, Copy)]
struct Counts {
    seats: Seats,
    presence: PresenceCounts,
    /// Invited and active agents.
    members: u64,
    /// Active agents with the administrator role.
    administrators: u64,
}

async fn read_counts<'e, E>(executor: E, now_us: i64) -> Result<Counts>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row: (i64, i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT \
         COALESCE(SUM(CASE WHEN status = 'active' AND role = 'administrator' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN status = 'active' AND presence = 'online' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN status = 'active' AND presence = 'away' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN status = 'active' THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN status = 'invited' AND invitation_expires_at > $1 THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN status = 'invited' THEN 1 ELSE 0 END), 0), \
         (SELECT licensed FROM seats WHERE id = 1), \
         (SELECT COUNT(*) FROM seat_reservations WHERE expires_at > $1) \
         FROM agents WHERE status <> 'removed'",
    )
    .bind(now_us)
    .fetch_one(executor)
    .await?;
    let (administrators, online, away, active, live_invitations, invited, licensed, reserved) = row;
    let n = |v: i64| v.max(0) as u64;
    Ok(Counts {
        seats: Seats {
            licensed: n(licensed),
            occupied: n(active) + n(live_invitations) + n(reserved),
        },
        presence: PresenceCounts {
            online: n(online),
            away: n(away),
            offline: n(active - online - away),
        },
        members: n(active) + n(invited),
        administrators: n(administrators),
    })
}

async fn read_agent<'e, E>(executor: E, id: &str) -> Result<Option<Agent>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql = format!(
        "SELECT {AGENT_FIELDS}, c.capability FROM agents a \
         LEFT JOIN agent_capabilities c ON c.agent_id = a.id WHERE a.id = $1"
    );
    let rows: Vec<AgentCapabilityRow> = sqlx::query_as(&sql).bind(id).fetch_all(executor).await?;
    Ok(agents_of(rows)?.pop())
}
