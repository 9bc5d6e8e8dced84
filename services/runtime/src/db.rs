//! Database access for every service: one pool over PostgreSQL or SQLite, chosen by URL, and embedded
//! migrations per backend run at start.
//!
//! Stores are written once, in SQL that both backends accept (`$1` parameters, `RETURNING`,
//! `ON CONFLICT`, BIGINT microsecond times, TEXT ids), over sqlx's `Any` driver. The conformance suite of
//! each store runs on both backends; that is what proves the SQL. Where the dialects differ, the store
//! asks [`Backend`].

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use crate::error::{Error, Result};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }
}

/// The migrations of one service, one set per backend.
pub struct Migrations {
    pub postgres: &'static Migrator,
    pub sqlite: &'static Migrator,
}

/// A connection pool and the backend behind it.
#[derive(Debug, Clone)]
pub struct Database {
    pub pool: AnyPool,
    pub backend: Backend,
    /// SQLite allows one writer at a time; queueing writers here, in order, is far faster and fairer
    /// than letting them spin on SQLite's busy handler (which sleeps in growing steps).
    writer: Arc<tokio::sync::Mutex<()>>,
    /// The URL it was opened with, for connections outside the pool (`LISTEN`).
    url: Arc<str>,
}

/// A write transaction. On SQLite it also holds this process's writer turn until it ends.
pub struct WriteTransaction {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// Notices to send in-process once the transaction has committed (SQLite; PostgreSQL's `NOTIFY`
    /// is itself transactional).
    after_commit: Vec<(crate::notify::Notifier, String)>,
}

impl WriteTransaction {
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await?;
        for (notifier, payload) in self.after_commit {
            notifier.deliver_local(payload);
        }
        Ok(())
    }

    /// Sends `payload` to every watcher of `notifier`, on every replica, if and when this transaction
    /// commits.
    pub async fn notify(
        &mut self,
        notifier: &crate::notify::Notifier,
        payload: String,
    ) -> Result<()> {
        if notifier.is_postgres() {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(notifier.channel())
                .bind(&payload)
                .execute(&mut *self.tx)
                .await?;
        } else {
            self.after_commit.push((notifier.clone(), payload));
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        Ok(self.tx.rollback().await?)
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = sqlx::AnyConnection;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// How many connections a pool keeps.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize(pub u32);

impl Database {
    /// Connects to `postgres://…` or `sqlite://…`. A SQLite file is created if missing and opened in WAL
    /// mode with a busy timeout, so readers never wait for the writer.
    pub async fn connect(url: &str, size: PoolSize) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).ok_or_else(|| {
            Error::invalid("database_url", "must start with postgres:// or sqlite:")
        })?;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(Error::internal)?;
        let pool = AnyPoolOptions::new()
            .max_connections(size.0)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON; \
                             PRAGMA cache_size = -32768;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|error| {
                tracing::warn!(error = %error, "cannot connect to the database");
                Error::Unavailable("database unavailable".into())
            })?;
        Ok(Self {
            pool,
            backend,
            writer: Arc::new(tokio::sync::Mutex::new(())),
            url: url.into(),
        })
    }

    /// The URL this database was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs this backend's migrations. On PostgreSQL sqlx holds an advisory lock meanwhile, so replicas
    /// that start together migrate once. sqlx takes no lock on SQLite; there each migration is one
    /// transaction, so a process that loses the race to another one rolls back and, retrying, finds the
    /// migration applied.
    pub async fn migrate(&self, migrations: &Migrations) -> Result<()> {
        match self.backend {
            Backend::Postgres => migrations
                .postgres
                .run(&self.pool)
                .await
                .map_err(migration_error),
            Backend::Sqlite => {
                let _turn = self.write_turn().await;
                let mut attempt = 0;
                loop {
                    match migrations.sqlite.run(&self.pool).await {
                        Ok(()) => return Ok(()),
                        Err(error) if is_permanent(&error) => return Err(migration_error(error)),
                        Err(error) if attempt < 5 => {
                            attempt += 1;
                            tracing::debug!(error = %error, attempt, "migration raced another process; retrying");
                            tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                        }
                        Err(error) => return Err(migration_error(error)),
                    }
                }
            }
        }
    }

    /// Begins a transaction that writes. On SQLite, writers of this process take turns, and the
    /// transaction takes the write lock at once (`BEGIN IMMEDIATE`) so that it never fails to upgrade a
    /// read lock; another process (`assist admin`) still waits on the busy timeout.
    pub async fn begin_write(&self) -> Result<WriteTransaction> {
        Ok(match self.backend {
            Backend::Postgres => WriteTransaction {
                tx: self.pool.begin().await?,
                _turn: None,
                after_commit: Vec::new(),
            },
            Backend::Sqlite => {
                let turn = self.write_turn().await;
                WriteTransaction {
                    tx: self.pool.begin_with("BEGIN IMMEDIATE").await?,
                    _turn: turn,
                    after_commit: Vec::new(),
                }
            }
        })
    }

    /// [`Database::begin_write`] for writes a crash may lose without harm (presence heartbeats, which are
    /// sent again within seconds): on PostgreSQL the commit does not wait for the WAL flush
    /// (`synchronous_commit = off` for this transaction; still atomic and in order, only the last
    /// moments before a crash can be lost). The same as `begin_write` on SQLite.
    pub async fn begin_write_ephemeral(&self) -> Result<WriteTransaction> {
        let mut tx = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET LOCAL synchronous_commit TO OFF")
                .execute(&mut *tx.tx)
                .await?;
        }
        Ok(tx)
    }

    /// This process's writer turn on SQLite (nothing on PostgreSQL), for a write of one statement
    /// outside a transaction: hold it until the statement is done.
    pub async fn write_turn(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self.backend {
            Backend::Postgres => None,
            Backend::Sqlite => Some(self.writer.clone().lock_owned().await),
        }
    }

    /// Connects and migrates, retrying with backoff until it works or `shutdown` resolves.
    pub async fn connect_and_migrate(
        url: &str,
        size: PoolSize,
        migrations: &Migrations,
        shutdown: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<Self> {
        let mut delay = Duration::from_millis(100);
        loop {
            let attempt = async {
                let db = Self::connect(url, size).await?;
                db.migrate(migrations).await?;
                Ok::<_, Error>(db)
            }
            .await;
            match attempt {
                Ok(db) => return Ok(db),
                // Retrying cannot mend a schema this binary does not know: the start fails.
                Err(error @ Error::FailedPrecondition(_)) => return Err(error),
                Err(error) if *shutdown.borrow() => return Err(error),
                Err(error) => {
                    tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "database not ready");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// A migration failure that no retry mends: the database holds migrations this binary does not know
/// (a newer release ran on it) or one that differs from this binary's.
fn is_permanent(error: &sqlx::migrate::MigrateError) -> bool {
    use sqlx::migrate::MigrateError;
    matches!(
        error,
        MigrateError::VersionMissing(_)
            | MigrateError::VersionMismatch(_)
            | MigrateError::VersionTooOld(..)
            | MigrateError::VersionTooNew(..)
            | MigrateError::Dirty(_)
    )
}

fn migration_error(error: sqlx::migrate::MigrateError) -> Error {
    if is_permanent(&error) {
        Error::FailedPrecondition(format!(
            "the database schema does not match this release: {error}"
        ))
    } else {
        Error::internal(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_of_url() {
        assert_eq!(Backend::of_url("postgres://x/y"), Some(Backend::Postgres));
        assert_eq!(Backend::of_url("sqlite://data/x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::of_url("mysql://x"), None);
    }
}
