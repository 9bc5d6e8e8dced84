//! The agent-directory store: SQL only, no business rules. One implementation in SQL that PostgreSQL and
//! SQLite both accept (see `assist_runtime::db`); the conformance suite in `tests/store.rs` runs it on both.

use assist_runtime::db::Database;
use assist_runtime::notify::Notifier;
use assist_runtime::validate::Page;
use assist_runtime::{Error, Result};

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

/// The columns of an agent joined with its capabilities (`agents a LEFT JOIN agent_capabilities c`).
const AGENT_COLUMNS: &str =
    "a.id, a.display_name, a.nickname, a.created_at, a.updated_at, a.version, c.capability";

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

#[derive(Clone)]
pub struct Store {
    db: Database,
    changes: Notifier,
}

impl Store {
    pub fn new(db: Database) -> Self {
        let changes = Notifier::new(&db, AGENT_CHANGES);
        Self { db, changes }
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

    /// Stored agents by display name (case-insensitively) and then id, optionally only those holding
    /// `capability`.
    pub async fn list_agents(
        &self,
        capability: Option<Capability>,
        page: Page,
    ) -> Result<Paged<Agent>> {
        let capability = capability.map(Capability::as_str);
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM (SELECT id, display_name, nickname, created_at, updated_at, \
             version, sort_name FROM agents WHERE ($1 IS NULL OR id IN \
             (SELECT agent_id FROM agent_capabilities WHERE capability = $1)) \
             ORDER BY sort_name, id LIMIT $2 OFFSET $3) a \
             LEFT JOIN agent_capabilities c ON c.agent_id = a.id ORDER BY a.sort_name, a.id"
        );
        let rows: Vec<AgentCapabilityRow> = sqlx::query_as(&sql)
            .bind(capability)
            .bind(i64::from(page.limit))
            .bind(offset(page))
            .fetch_all(&self.db.pool)
            .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM agents WHERE ($1 IS NULL OR id IN \
             (SELECT agent_id FROM agent_capabilities WHERE capability = $1))",
        )
        .bind(capability)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(Paged {
            items: agents_of(rows)?,
            total: total as u64,
            total_exact: true,
        })
    }

    /// Up to `limit` stored agents whose id sorts after `after` (`""` for the first), by id: the pages
    /// of a snapshot, each one query, stable while agents are added.
    pub async fn agents_after(&self, after: &str, limit: u32) -> Result<Vec<Agent>> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM (SELECT id, display_name, nickname, created_at, updated_at, \
             version FROM agents WHERE id > $1 ORDER BY id LIMIT $2) a \
             LEFT JOIN agent_capabilities c ON c.agent_id = a.id ORDER BY a.id"
        );
        let rows: Vec<AgentCapabilityRow> = sqlx::query_as(&sql)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.db.pool)
            .await?;
        agents_of(rows)
    }

    /// Changes agent `id` in one transaction: stores `create` first when no profile exists yet, then
    /// asks `decide` what to make of the agent as it is now. When it answers a new agent and the
    /// record of the change, writes both and a notice; when it answers `None`, writes nothing (not even
    /// `create`).
    ///
    /// Changes of one agent take turns (a row lock on PostgreSQL, the one writer on SQLite), so `decide`
    /// always sees the latest committed agent: two concurrent grants of one capability store one change.
    /// `decide` runs during the agent's turn; a time it reads then orders like the change.
    pub async fn change<F>(&self, id: &str, create: Option<&NewAgent>, decide: F) -> Result<Outcome>
    where
        F: FnOnce(&Agent) -> Option<(Agent, AgentChange)>,
    {
        let mut tx = self.db.begin_write().await?;
        if let Some(new) = create {
            // A profile created meanwhile by another call wins; this call then changes that one.
            sqlx::query(
                "INSERT INTO agents (id, display_name, sort_name, nickname, created_at, updated_at, \
                 version) VALUES ($1, $2, $3, '', $4, $4, 0) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&new.id)
            .bind(&new.display_name)
            .bind(sort_name(&new.display_name))
            .bind(new.created_at_us)
            .execute(&mut *tx)
            .await?;
        }
        // A no-op update takes the row lock on PostgreSQL, in SQL that SQLite accepts too.
        let locked = sqlx::query("UPDATE agents SET version = version WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if locked.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Outcome::Missing);
        }
        let current = read_agent(&mut *tx, id)
            .await?
            .ok_or_else(|| Error::internal(anyhow::anyhow!("agent {id} vanished while locked")))?;
        let Some((after, change)) = decide(&current) else {
            tx.rollback().await?;
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
            .execute(&mut *tx)
            .await?;
        }
        for capability in current.capabilities.iter().filter(|c| !after.has(**c)) {
            sqlx::query("DELETE FROM agent_capabilities WHERE agent_id = $1 AND capability = $2")
                .bind(id)
                .bind(capability.as_str())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE agents SET display_name = $2, sort_name = $3, nickname = $4, updated_at = $5, \
             version = $6 WHERE id = $1",
        )
        .bind(id)
        .bind(&after.display_name)
        .bind(sort_name(&after.display_name))
        .bind(&after.nickname)
        .bind(after.updated_at_us)
        .bind(i64::try_from(after.version).map_err(Error::internal)?)
        .execute(&mut *tx)
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
        .execute(&mut *tx)
        .await?;
        tx.notify(&self.changes, id.to_owned()).await?;
        tx.commit().await?;
        Ok(Outcome::Changed(after, change))
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

async fn read_agent<'e, E>(executor: E, id: &str) -> Result<Option<Agent>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql = format!(
        "SELECT {AGENT_COLUMNS} FROM agents a LEFT JOIN agent_capabilities c ON c.agent_id = a.id \
         WHERE a.id = $1"
    );
    let rows: Vec<AgentCapabilityRow> = sqlx::query_as(&sql).bind(id).fetch_all(executor).await?;
    Ok(agents_of(rows)?.pop())
}
