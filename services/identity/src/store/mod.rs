//! The identity store: SQL only, no business rules. One implementation in SQL that PostgreSQL and SQLite
//! both accept (see `assist_runtime::db`); the conformance suite in `tests/store.rs` runs it on both.

use assist_runtime::auth::Realm;
use assist_runtime::db::WriteTransaction;
use assist_runtime::db::{Backend, Database};
use assist_runtime::error::is_unique_violation;
use assist_runtime::notify::Notifier;
use assist_runtime::validate::Page;
use assist_runtime::{Error, Result};

use crate::domain::keys::{KeyTable, StoredKey};
use crate::domain::search::{COUNT_CAP, MAX_TERMS_PER_PRINCIPAL, SEARCH_CAP, prefix_end};
use crate::domain::throttle::ThrottlePolicy;
use crate::domain::{
    MerchantApproval, NewPrincipal, Principal, PrincipalKind, Purpose, Status, Subject,
};

mod rows;

pub use rows::OutboxMessage;
use rows::PrincipalRow;

/// The notice channel of principal status changes.
const PRINCIPAL_CHANGES: &str = "assist_identity_principal_changes";

pub static MIGRATIONS: assist_runtime::db::Migrations = assist_runtime::db::Migrations {
    postgres: &sqlx::migrate!("migrations/postgres"),
    sqlite: &sqlx::migrate!("migrations/sqlite"),
};

pub use assist_runtime::validate::Paged;

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was live; it is now spent and `new_hash` replaces it in the same family.
    Rotated { subject: Subject },
    /// The token had already been spent: its family is now revoked.
    Reused,
    /// Unknown, expired or revoked.
    Invalid,
}

/// What a login attempt may do, as the throttle sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleState {
    Open,
    BlockedUntil(i64),
}

/// Search query already normalised by the domain.
pub struct SearchQuery<'a> {
    pub prefix: &'a str,
    /// An exact customer reference to put first, when the query is one.
    pub reference: Option<&'a str>,
    pub status: Option<Status>,
    pub page: Page,
}

const PRINCIPAL_COLUMNS: &str = "id, realm, status, email, scope, full_name, first_name, last_name, \
    customer_reference, merchant_id, merchant_name, merchant_approval, client_id, created_at, updated_at";

#[derive(Clone)]
pub struct Store {
    db: Database,
    principal_changes: Notifier,
}

impl Store {
    pub fn new(db: Database) -> Self {
        let principal_changes = Notifier::new(&db, PRINCIPAL_CHANGES);
        Self {
            db,
            principal_changes,
        }
    }

    /// Notices carrying the id of each principal whose status changed.
    pub fn principal_changes(&self) -> &Notifier {
        &self.principal_changes
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    // ---- principals ----

    /// Inserts a principal and its search terms in one transaction.
    pub async fn create_principal(&self, new: &NewPrincipal, terms: &[String]) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        insert_principal(&mut tx, new).await?;
        replace_terms(&mut tx, &new.principal, terms).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts many principals and their terms in one transaction with multi-row statements (seeding a
    /// million rows is minutes, not hours).
    pub async fn create_principals(&self, batch: &[(NewPrincipal, Vec<String>)]) -> Result<()> {
        const PRINCIPALS_PER_STATEMENT: usize = 1000;
        const TERMS_PER_STATEMENT: usize = 4000;
        let mut tx = self.db.begin_write().await?;
        for chunk in batch.chunks(PRINCIPALS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO principals (id, realm, status, email, password_hash, scope, full_name, \
                 first_name, last_name, customer_reference, merchant_id, merchant_name, merchant_approval, \
                 client_id, created_at, updated_at) VALUES {}",
                value_lists(chunk.len(), 16)
            );
            let mut query = sqlx::query(&sql);
            for (new, _) in chunk {
                let row = PrincipalRow::from_principal(&new.principal);
                query = query
                    .bind(row.id)
                    .bind(row.realm)
                    .bind(row.status)
                    .bind(row.email)
                    .bind(new.password_hash.clone())
                    .bind(row.scope)
                    .bind(row.full_name)
                    .bind(row.first_name)
                    .bind(row.last_name)
                    .bind(row.customer_reference)
                    .bind(row.merchant_id)
                    .bind(row.merchant_name)
                    .bind(row.merchant_approval)
                    .bind(row.client_id)
                    .bind(row.created_at)
                    .bind(row.updated_at);
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(conflict("email or reference is already in use"))?;
        }
        let terms: Vec<(&str, &str, &str)> = batch
            .iter()
            .flat_map(|(new, terms)| {
                let realm = new.principal.realm().as_str();
                terms
                    .iter()
                    .map(move |t| (realm, t.as_str(), new.principal.id.as_str()))
            })
            .collect();
        for chunk in terms.chunks(TERMS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO search_terms (realm, term, principal_id) VALUES {}",
                value_lists(chunk.len(), 3)
            );
            let mut query = sqlx::query(&sql);
            for (realm, term, id) in chunk {
                query = query.bind(*realm).bind(*term).bind(*id);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Refreshes the planner's statistics after a bulk load; on PostgreSQL also the visibility map, so
    /// that search counts are index-only scans.
    pub async fn analyze(&self) -> Result<()> {
        let _turn = self.db.write_turn().await;
        let sql = match self.db.backend {
            Backend::Postgres => "VACUUM ANALYZE",
            Backend::Sqlite => "ANALYZE",
        };
        sqlx::query(sql).execute(&self.db.pool).await?;
        Ok(())
    }

    /// Replaces a principal's profile fields and terms; revokes its refresh tokens when asked (scope
    /// changes). The caller read `principal` and changed it.
    pub async fn update_principal(
        &self,
        principal: &Principal,
        terms: &[String],
        revoke_tokens: bool,
        now: i64,
    ) -> Result<()> {
        let row = PrincipalRow::from_principal(principal);
        let mut tx = self.db.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE principals SET email = $2, scope = $3, full_name = $4, first_name = $5, \
             last_name = $6, merchant_name = $7, merchant_approval = $8, updated_at = $9 WHERE id = $1",
        )
        .bind(&row.id)
        .bind(&row.email)
        .bind(&row.scope)
        .bind(&row.full_name)
        .bind(&row.first_name)
        .bind(&row.last_name)
        .bind(&row.merchant_name)
        .bind(&row.merchant_approval)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(conflict("email is already in use"))?;
        if updated.rows_affected() == 0 {
            return Err(Error::NotFound("principal"));
        }
        replace_terms(&mut tx, principal, terms).await?;
        if revoke_tokens {
            revoke_all(&mut tx, &principal.id, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn get_principal(&self, id: &str) -> Result<Option<Principal>> {
        let sql = format!("SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE id = $1");
        let row: Option<PrincipalRow> = sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(PrincipalRow::into_principal).transpose()
    }

    /// A principal and its password hash, by realm and (lowercased) email.
    pub async fn find_login(
        &self,
        realm: Realm,
        email: &str,
    ) -> Result<Option<(Principal, Option<String>)>> {
        let sql = format!(
            "SELECT {PRINCIPAL_COLUMNS}, password_hash FROM principals WHERE realm = $1 AND email = $2"
        );
        let row: Option<rows::LoginRow> = sqlx::query_as(&sql)
            .bind(realm.as_str())
            .bind(email)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| Ok((r.principal.into_principal()?, r.password_hash)))
            .transpose()
    }

    /// A service account and its secret hash, by client id.
    pub async fn find_service_account(
        &self,
        client_id: &str,
    ) -> Result<Option<(Principal, Option<String>)>> {
        let sql = format!(
            "SELECT {PRINCIPAL_COLUMNS}, password_hash FROM principals WHERE client_id = $1"
        );
        let row: Option<rows::LoginRow> = sqlx::query_as(&sql)
            .bind(client_id)
            .fetch_optional(&self.db.pool)
            .await?;
        row.map(|r| Ok((r.principal.into_principal()?, r.password_hash)))
            .transpose()
    }

    /// Principals of one realm, newest first.
    pub async fn list_principals(
        &self,
        realm: Realm,
        status: Option<Status>,
        page: Page,
    ) -> Result<Paged<Principal>> {
        let sql = format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE realm = $1 AND ($2 IS NULL OR status = $2) \
             ORDER BY id DESC LIMIT $3 OFFSET $4"
        );
        let rows: Vec<PrincipalRow> = sqlx::query_as(&sql)
            .bind(realm.as_str())
            .bind(status.map(Status::as_str))
            .bind(i64::from(page.limit))
            .bind(page.offset as i64)
            .fetch_all(&self.db.pool)
            .await?;
        let counted = self.count_in_realm(realm, status).await?;
        paged(rows, counted)
    }

    /// Principals of a realm (optionally of one status), counted up to one past the cap.
    async fn count_in_realm(&self, realm: Realm, status: Option<Status>) -> Result<u64> {
        let counted: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM principals WHERE realm = $1 \
             AND ($2 IS NULL OR status = $2) LIMIT $3) capped",
        )
        .bind(realm.as_str())
        .bind(status.map(Status::as_str))
        .bind(COUNT_CAP as i64 + 1)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(counted as u64)
    }

    /// Sets a principal's status; leaving `active` revokes its refresh tokens in the same transaction.
    pub async fn set_status(&self, id: &str, status: Status, now: i64) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        let updated =
            sqlx::query("UPDATE principals SET status = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(status.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        if updated.rows_affected() == 0 {
            return Err(Error::NotFound("principal"));
        }
        if status != Status::Active {
            revoke_all(&mut tx, id, now).await?;
        }
        tx.notify(&self.principal_changes, id.to_owned()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets the password hash and, optionally, the status; revokes every refresh token.
    pub async fn set_password(&self, id: &str, password_hash: &str, now: i64) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        let updated =
            sqlx::query("UPDATE principals SET password_hash = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(password_hash)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        if updated.rows_affected() == 0 {
            return Err(Error::NotFound("principal"));
        }
        revoke_all(&mut tx, id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The next number of a named counter, starting at 1.
    pub async fn next_sequence(&self, name: &str) -> Result<i64> {
        let mut tx = self.db.begin_write().await?;
        let value: Option<i64> = sqlx::query_scalar(
            "UPDATE sequences SET value = value + 1 WHERE name = $1 RETURNING value",
        )
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?;
        let value = match value {
            Some(value) => value,
            None => {
                sqlx::query("INSERT INTO sequences (name, value) VALUES ($1, 1)")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                1
            }
        };
        tx.commit().await?;
        Ok(value)
    }

    /// Reserves `count` numbers of a named counter; returns the first.
    pub async fn reserve_sequence(&self, name: &str, count: i64) -> Result<i64> {
        let _turn = self.db.write_turn().await;
        let last: i64 = sqlx::query_scalar(
            "UPDATE sequences SET value = value + $2 WHERE name = $1 RETURNING value",
        )
        .bind(name)
        .bind(count)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(last - count + 1)
    }

    // ---- search ----

    /// Principals of `realm` with a term starting with the prefix, ordered by the first matching term
    /// and then id (stable), an exact reference hit first. An empty prefix lists all, by id.
    pub async fn search(&self, realm: Realm, query: &SearchQuery<'_>) -> Result<Paged<Principal>> {
        let status = query.status.map(Status::as_str);
        let page = query.page;
        let ids: Vec<String>;
        let total: u64;
        let reference_hit = match query.reference {
            Some(reference) => {
                sqlx::query_scalar::<_, String>(
                    "SELECT id FROM principals WHERE customer_reference = $1 AND realm = $2 \
                 AND ($3 IS NULL OR status = $3)",
                )
                .bind(reference)
                .bind(realm.as_str())
                .bind(status)
                .fetch_optional(&self.db.pool)
                .await?
            }
            None => None,
        };
        if query.prefix.is_empty() {
            ids = sqlx::query_scalar(
                "SELECT id FROM principals WHERE realm = $1 AND ($2 IS NULL OR status = $2) \
                 ORDER BY id LIMIT $3 OFFSET $4",
            )
            .bind(realm.as_str())
            .bind(status)
            .bind(i64::from(page.limit))
            .bind(page.offset as i64)
            .fetch_all(&self.db.pool)
            .await?;
            total = self.count_in_realm(realm, query.status).await?;
        } else {
            let end = prefix_end(query.prefix);
            // Each principal has at most MAX_TERMS_PER_PRINCIPAL terms, so this many term rows always
            // hold the wanted page of distinct principals.
            let wanted = page.offset + u64::from(page.limit) + 1;
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT t.principal_id FROM search_terms t \
                 WHERE t.realm = $1 AND t.term >= $2 AND t.term < $3 AND ($4 IS NULL OR EXISTS \
                 (SELECT 1 FROM principals p WHERE p.id = t.principal_id AND p.status = $4)) \
                 ORDER BY t.term, t.principal_id LIMIT $5",
            )
            .bind(realm.as_str())
            .bind(query.prefix)
            .bind(&end)
            .bind(status)
            .bind((wanted * MAX_TERMS_PER_PRINCIPAL) as i64)
            .fetch_all(&self.db.pool)
            .await?;
            // The reference hit counts once more unless one of its own terms matched the prefix too.
            let hit_in_terms = reference_hit.as_ref().is_some_and(|hit| rows.contains(hit));
            let reference_extra = u64::from(reference_hit.is_some() && !hit_in_terms);
            let mut seen = std::collections::HashSet::new();
            let mut ordered = Vec::with_capacity(rows.len() + 1);
            // A reference hit takes the first slot of the first page.
            for id in reference_hit.iter().cloned().chain(rows) {
                if seen.insert(id.clone()) {
                    ordered.push(id);
                }
            }
            ids = ordered
                .into_iter()
                .skip(page.offset as usize)
                .take(page.limit as usize)
                .collect();
            let counted: i64 = sqlx::query_scalar(
                "SELECT COUNT(DISTINCT principal_id) FROM (SELECT t.principal_id FROM search_terms t \
                 WHERE t.realm = $1 AND t.term >= $2 AND t.term < $3 AND ($4 IS NULL OR EXISTS \
                 (SELECT 1 FROM principals p WHERE p.id = t.principal_id AND p.status = $4)) \
                 LIMIT $5) capped",
            )
            .bind(realm.as_str())
            .bind(query.prefix)
            .bind(&end)
            .bind(status)
            .bind((SEARCH_CAP * MAX_TERMS_PER_PRINCIPAL) as i64)
            .fetch_one(&self.db.pool)
            .await?;
            total = (counted as u64 + reference_extra).min(SEARCH_CAP + 1);
        }
        let principals = self.get_many(&ids).await?;
        let cap = if query.prefix.is_empty() {
            COUNT_CAP
        } else {
            SEARCH_CAP
        };
        Ok(Paged {
            total_exact: total <= cap,
            total: total.min(cap),
            items: principals,
        })
    }

    /// Principals by id, in the order given.
    async fn get_many(&self, ids: &[String]) -> Result<Vec<Principal>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {PRINCIPAL_COLUMNS} FROM principals WHERE id IN {}",
            value_lists(1, ids.len())
        );
        let mut query = sqlx::query_as::<_, PrincipalRow>(&sql);
        for id in ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        let mut by_id: std::collections::HashMap<String, Principal> = rows
            .into_iter()
            .map(|r| r.into_principal().map(|p| (p.id.clone(), p)))
            .collect::<Result<_>>()?;
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    // ---- refresh tokens ----

    pub async fn insert_refresh_token(
        &self,
        token_hash: &str,
        family_id: &str,
        principal_id: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        let _turn = self.db.write_turn().await;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, principal_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(family_id)
        .bind(principal_id)
        .bind(now)
        .bind(expires_at)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Spends `old_hash` and stores `new_hash` in its family, atomically; detects reuse.
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<Rotation> {
        if self.db.backend == Backend::Postgres {
            // The hot path of every session: one statement (one round trip, one commit) instead of a
            // five-statement transaction. SQLite has no data-modifying CTEs, so it takes the long way.
            let rotated: Option<SubjectRow> = sqlx::query_as(
                "WITH spent AS (UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 \
                   AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $2 \
                   RETURNING family_id, principal_id), \
                 owner AS (SELECT p.id, p.realm, p.scope, p.full_name, p.first_name, p.last_name, \
                   p.merchant_name, s.family_id FROM principals p, spent s \
                   WHERE p.id = s.principal_id AND p.status = 'active'), \
                 issued AS (INSERT INTO refresh_tokens (token_hash, family_id, principal_id, created_at, \
                   expires_at) SELECT $3, family_id, id, $2, $4 FROM owner RETURNING 1) \
                 SELECT id, realm, scope, full_name, first_name, last_name, merchant_name FROM owner",
            )
            .bind(old_hash)
            .bind(now)
            .bind(new_hash)
            .bind(expires_at)
            .fetch_optional(&self.db.pool)
            .await?;
            if let Some(row) = rotated {
                return Ok(Rotation::Rotated {
                    subject: row.into_subject()?,
                });
            }
            // Nothing rotated: find out whether this was a reuse (rare path, its own transaction).
        }
        let mut tx = self.db.begin_write().await?;
        let spent: Option<(String, String)> = sqlx::query_as(
            "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
             AND revoked_at IS NULL AND expires_at > $2 RETURNING family_id, principal_id",
        )
        .bind(old_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((family_id, principal_id)) = spent else {
            let reused: Option<String> = sqlx::query_scalar(
                "SELECT family_id FROM refresh_tokens WHERE token_hash = $1 AND used_at IS NOT NULL",
            )
            .bind(old_hash)
            .fetch_optional(&mut *tx)
            .await?;
            let outcome = match reused {
                Some(family_id) => {
                    sqlx::query(
                        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 \
                         AND revoked_at IS NULL",
                    )
                    .bind(&family_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    Rotation::Reused
                }
                None => Rotation::Invalid,
            };
            tx.commit().await?;
            return Ok(outcome);
        };
        let row: SubjectRow = sqlx::query_as(
            "SELECT id, realm, scope, full_name, first_name, last_name, merchant_name, status \
             FROM principals WHERE id = $1",
        )
        .bind(&principal_id)
        .fetch_one(&mut *tx)
        .await?;
        if row.status != Status::Active.as_str() {
            // Leaving `active` revokes tokens, so this only happens in a race with a block; refuse.
            tx.rollback().await?;
            return Ok(Rotation::Invalid);
        }
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, principal_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(new_hash)
        .bind(&family_id)
        .bind(&principal_id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Rotation::Rotated {
            subject: row.into_subject()?,
        })
    }

    /// Revokes the family of a token; true when the token was known.
    pub async fn revoke_refresh_family(&self, token_hash: &str, now: i64) -> Result<bool> {
        let mut tx = self.db.begin_write().await?;
        let family: Option<String> =
            sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(token_hash)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(family) = &family {
            sqlx::query(
                "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
            )
            .bind(family)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(family.is_some())
    }

    /// Revokes every live refresh token of a principal; returns how many.
    pub async fn revoke_all_refresh_tokens(&self, principal_id: &str, now: i64) -> Result<u64> {
        let mut tx = self.db.begin_write().await?;
        let revoked = revoke_all(&mut tx, principal_id, now).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// Deletes refresh tokens, one-time tokens and throttle rows that can no longer matter.
    pub async fn delete_expired(&self, now: i64) -> Result<u64> {
        let _turn = self.db.write_turn().await;
        let mut deleted = 0;
        for sql in [
            "DELETE FROM refresh_tokens WHERE expires_at < $1",
            "DELETE FROM one_time_tokens WHERE expires_at < $1",
            "DELETE FROM login_throttle WHERE blocked_until < $1 AND window_start < $1 - 86400000000",
        ] {
            deleted += sqlx::query(sql)
                .bind(now)
                .execute(&self.db.pool)
                .await?
                .rows_affected();
        }
        Ok(deleted)
    }

    // ---- login throttling ----

    /// The latest block of any of `keys`.
    pub async fn throttle_state(&self, keys: [&str; 2], now: i64) -> Result<ThrottleState> {
        let until: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(blocked_until) FROM login_throttle WHERE key IN ($1, $2)",
        )
        .bind(keys[0])
        .bind(keys[1])
        .fetch_one(&self.db.pool)
        .await?;
        Ok(match until {
            Some(until) if until > now => ThrottleState::BlockedUntil(until),
            _ => ThrottleState::Open,
        })
    }

    /// The throttle rows of `keys` that exist: each key with the end of its block (0 or past when
    /// not blocked). One read for every key a sign-in checks.
    pub async fn throttle_rows(&self, keys: [&str; 3]) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT key, blocked_until FROM login_throttle WHERE key IN ($1, $2, $3)",
        )
        .bind(keys[0])
        .bind(keys[1])
        .bind(keys[2])
        .fetch_all(&self.db.pool)
        .await?)
    }

    /// Counts one failure against `key` under `policy`; the run that reaches the limit starts a block
    /// and a new count.
    pub async fn record_failure(&self, key: &str, policy: &ThrottlePolicy, now: i64) -> Result<()> {
        let _turn = self.db.write_turn().await;
        let window = assist_runtime::time::us(policy.window);
        let block = assist_runtime::time::us(policy.block);
        sqlx::query(
            "INSERT INTO login_throttle (key, failures, window_start, blocked_until) \
             VALUES ($1, 1, $2, CASE WHEN 1 >= $3 THEN $2 + $5 ELSE 0 END) \
             ON CONFLICT (key) DO UPDATE SET \
               failures = CASE WHEN login_throttle.window_start <= $2 - $4 THEN 1 \
                   WHEN login_throttle.failures + 1 >= $3 THEN 0 \
                   ELSE login_throttle.failures + 1 END, \
               window_start = CASE WHEN login_throttle.window_start <= $2 - $4 \
                   OR login_throttle.failures + 1 >= $3 THEN $2 ELSE login_throttle.window_start END, \
               blocked_until = CASE WHEN login_throttle.window_start > $2 - $4 \
                   AND login_throttle.failures + 1 >= $3 THEN $2 + $5 \
                   ELSE login_throttle.blocked_until END",
        )
        .bind(key)
        .bind(now)
        .bind(i64::from(policy.max_failures))
        .bind(window)
        .bind(block)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Forgets the failures of `key` (a successful login of that account).
    pub async fn clear_failures(&self, keys: &[&str]) -> Result<()> {
        // A blocked key never reaches a successful login, so deleting cannot lift a block.
        let mut tx = self.db.begin_write().await?;
        for key in keys {
            sqlx::query("DELETE FROM login_throttle WHERE key = $1")
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    // ---- signing keys ----

    pub async fn signing_keys(&self) -> Result<Vec<StoredKey>> {
        KeyTable(&self.db).all().await
    }

    /// Retires the active keys (published until `publish_until`) and makes `key` the active one.
    pub async fn rotate_signing_key(
        &self,
        key: &StoredKey,
        now: i64,
        publish_until: i64,
    ) -> Result<()> {
        KeyTable(&self.db).rotate(key, now, publish_until).await
    }

    /// Stores `key` as the active key only if there is none yet (first start, possibly racing replicas).
    pub async fn insert_first_signing_key(&self, key: &StoredKey) -> Result<bool> {
        KeyTable(&self.db).insert_first(key).await
    }

    /// Deletes retired keys that are no longer published.
    pub async fn delete_unpublished_keys(&self, now: i64) -> Result<u64> {
        KeyTable(&self.db).delete_unpublished(now).await
    }

    // ---- one-time tokens and mail ----

    /// Stores a one-time token (voiding earlier unused ones of the same purpose) and its mail, in one
    /// transaction.
    pub async fn issue_one_time_token(
        &self,
        token: &OneTimeToken<'_>,
        mail: &OutboxMessage,
    ) -> Result<()> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query(
            "UPDATE one_time_tokens SET used_at = $3 WHERE principal_id = $1 AND purpose = $2 \
             AND used_at IS NULL",
        )
        .bind(token.principal_id)
        .bind(token.purpose.as_str())
        .bind(token.now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO one_time_tokens (token_hash, principal_id, purpose, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token.token_hash)
        .bind(token.principal_id)
        .bind(token.purpose.as_str())
        .bind(token.now)
        .bind(token.expires_at)
        .execute(&mut *tx)
        .await?;
        insert_mail(&mut tx, mail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Spends a live one-time token, and every other live one of its principal, and sets the password
    /// (activating an invited principal), in one transaction. Returns the principal and purpose, or `None` when the token is not live.
    /// Whether a one-time token with this hash could be redeemed now (unspent, unexpired): checked
    /// before a new password is hashed, so unknown links cost no hashing.
    pub async fn one_time_token_usable(&self, token_hash: &str, now: i64) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM one_time_tokens WHERE token_hash = $1 AND used_at IS NULL \
             AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.db.pool)
        .await?;
        Ok(found.is_some())
    }

    pub async fn redeem_one_time_token(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<(String, Purpose)>> {
        let mut tx = self.db.begin_write().await?;
        let spent: Option<(String, String)> = sqlx::query_as(
            "UPDATE one_time_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
             AND expires_at > $2 RETURNING principal_id, purpose",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((principal_id, purpose)) = spent else {
            tx.rollback().await?;
            return Ok(None);
        };
        let purpose = Purpose::parse(&purpose)
            .ok_or_else(|| Error::internal(anyhow::anyhow!("unknown purpose {purpose}")))?;
        // Invitations activate; resets keep the status but only for principals that may sign in.
        let updated = sqlx::query(
            "UPDATE principals SET password_hash = $2, updated_at = $3, \
             status = CASE WHEN status = 'invited' THEN 'active' ELSE status END \
             WHERE id = $1 AND status IN ('active', 'invited')",
        )
        .bind(&principal_id)
        .bind(password_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        // The principal's other live links are spent with this one: an older invitation or reset
        // mail must not set the password again later.
        sqlx::query(
            "UPDATE one_time_tokens SET used_at = $2 WHERE principal_id = $1 AND used_at IS NULL",
        )
        .bind(&principal_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        revoke_all(&mut tx, &principal_id, now).await?;
        tx.commit().await?;
        Ok(Some((principal_id, purpose)))
    }

    pub async fn list_outbox(
        &self,
        recipient: Option<&str>,
        page: Page,
    ) -> Result<Paged<OutboxMessage>> {
        let items: Vec<OutboxMessage> = sqlx::query_as(
            "SELECT id, recipient, subject, body, created_at, sent_at FROM outbox \
             WHERE ($1 IS NULL OR recipient = $1) ORDER BY id DESC LIMIT $2 OFFSET $3",
        )
        .bind(recipient)
        .bind(i64::from(page.limit))
        .bind(page.offset as i64)
        .fetch_all(&self.db.pool)
        .await?;
        let counted: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM outbox WHERE ($1 IS NULL OR recipient = $1) \
             LIMIT $2) capped",
        )
        .bind(recipient)
        .bind(COUNT_CAP as i64 + 1)
        .fetch_one(&self.db.pool)
        .await?;
        Ok(Paged {
            items,
            total: (counted as u64).min(COUNT_CAP),
            total_exact: counted as u64 <= COUNT_CAP,
        })
    }

    /// Mail not yet delivered, oldest first.
    pub async fn pending_mail(&self, limit: i64, max_attempts: i64) -> Result<Vec<OutboxMessage>> {
        Ok(sqlx::query_as(
            "SELECT id, recipient, subject, body, created_at, sent_at FROM outbox \
             WHERE sent_at IS NULL AND attempts < $2 ORDER BY created_at LIMIT $1",
        )
        .bind(limit)
        .bind(max_attempts)
        .fetch_all(&self.db.pool)
        .await?)
    }

    /// Marks mail delivered and removes the link from the stored body: the secret no longer needs to
    /// sit in the database once the recipient has it.
    pub async fn mark_mail_sent(&self, id: &str, now: i64) -> Result<()> {
        let _turn = self.db.write_turn().await;
        sqlx::query(
            "UPDATE outbox SET sent_at = $2, attempts = attempts + 1, last_error = NULL, \
             body = '(delivered over SMTP; the link is not kept)' WHERE id = $1",
        )
        .bind(id)
        .bind(now)
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// Marks undelivered mail handed to an administrator (listed without an SMTP relay) and drops its
    /// link from the stored body: the one copy of the link is the one just shown. Mail already
    /// delivered or handed over is left as it is. Answers the ids this call handed over, so that of
    /// two administrators listing at once only one is given each link.
    pub async fn hand_over_mail(&self, ids: &[&str], now: i64) -> Result<Vec<String>> {
        let mut tx = self.db.begin_write().await?;
        let mut taken = Vec::with_capacity(ids.len());
        for id in ids {
            let handed: Option<String> = sqlx::query_scalar(
                "UPDATE outbox SET sent_at = $2, \
                 body = '(shown to an administrator; the link is not kept)' \
                 WHERE id = $1 AND sent_at IS NULL RETURNING id",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            taken.extend(handed);
        }
        tx.commit().await?;
        Ok(taken)
    }

    pub async fn mark_mail_failed(&self, id: &str, error: &str) -> Result<()> {
        let _turn = self.db.write_turn().await;
        sqlx::query("UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = $1")
            .bind(id)
            .bind(error)
            .execute(&self.db.pool)
            .await?;
        Ok(())
    }
}

/// A one-time token to store.
pub struct OneTimeToken<'a> {
    pub token_hash: &'a str,
    pub principal_id: &'a str,
    pub purpose: Purpose,
    pub now: i64,
    pub expires_at: i64,
}

fn conflict(message: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |error| {
        if is_unique_violation(&error) {
            Error::AlreadyExists(message.into())
        } else {
            error.into()
        }
    }
}

/// What a refreshed access token says about its principal, as read with the rotation.
#[derive(sqlx::FromRow)]
struct SubjectRow {
    id: String,
    realm: String,
    scope: String,
    full_name: String,
    first_name: String,
    last_name: String,
    merchant_name: Option<String>,
    /// Read where the status is not already a condition of the query.
    #[sqlx(default)]
    status: String,
}

impl SubjectRow {
    fn into_subject(self) -> Result<Subject> {
        let realm = Realm::parse(&self.realm).ok_or_else(|| {
            Error::internal(anyhow::anyhow!(
                "principal {}: bad realm {}",
                self.id,
                self.realm
            ))
        })?;
        let name = if self.full_name.is_empty() {
            assist_proto::identity::v1::person_name(&self.first_name, &self.last_name)
        } else {
            self.full_name
        };
        Ok(Subject {
            id: self.id,
            realm,
            scope: self.scope,
            name,
            merchant_name: self.merchant_name.filter(|_| realm == Realm::MerchantUser),
        })
    }
}

/// `($1, $2, …), (…)` for `rows` rows of `columns` values.
fn value_lists(rows: usize, columns: usize) -> String {
    let mut out = String::with_capacity(rows * columns * 5);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for column in 0..columns {
            if column > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("${}", row * columns + column + 1));
        }
        out.push(')');
    }
    out
}

fn paged(rows: Vec<PrincipalRow>, counted: u64) -> Result<Paged<Principal>> {
    Ok(Paged {
        items: rows
            .into_iter()
            .map(PrincipalRow::into_principal)
            .collect::<Result<_>>()?,
        total: counted.min(COUNT_CAP),
        total_exact: counted <= COUNT_CAP,
    })
}

async fn insert_principal(tx: &mut WriteTransaction, new: &NewPrincipal) -> Result<()> {
    let row = PrincipalRow::from_principal(&new.principal);
    let message = match new.principal.kind {
        PrincipalKind::Customer { .. } => "email or customer reference is already in use",
        PrincipalKind::ServiceAccount { .. } => "client id is already in use",
        _ => "email is already in use",
    };
    sqlx::query(
        "INSERT INTO principals (id, realm, status, email, password_hash, scope, full_name, first_name, \
         last_name, customer_reference, merchant_id, merchant_name, merchant_approval, client_id, \
         created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(&row.id)
    .bind(&row.realm)
    .bind(&row.status)
    .bind(&row.email)
    .bind(&new.password_hash)
    .bind(&row.scope)
    .bind(&row.full_name)
    .bind(&row.first_name)
    .bind(&row.last_name)
    .bind(&row.customer_reference)
    .bind(&row.merchant_id)
    .bind(&row.merchant_name)
    .bind(&row.merchant_approval)
    .bind(&row.client_id)
    .bind(row.created_at)
    .bind(row.updated_at)
    .execute(&mut **tx)
    .await
    .map_err(conflict(message))?;
    Ok(())
}

async fn replace_terms(
    tx: &mut WriteTransaction,
    principal: &Principal,
    terms: &[String],
) -> Result<()> {
    sqlx::query("DELETE FROM search_terms WHERE principal_id = $1")
        .bind(&principal.id)
        .execute(&mut **tx)
        .await?;
    for term in terms {
        sqlx::query("INSERT INTO search_terms (realm, term, principal_id) VALUES ($1, $2, $3)")
            .bind(principal.realm().as_str())
            .bind(term)
            .bind(&principal.id)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn revoke_all(tx: &mut WriteTransaction, principal_id: &str, now: i64) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE principal_id = $1 AND revoked_at IS NULL \
         AND used_at IS NULL",
    )
    .bind(principal_id)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected())
}

async fn insert_mail(tx: &mut WriteTransaction, mail: &OutboxMessage) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (id, recipient, subject, body, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&mail.id)
    .bind(&mail.recipient)
    .bind(&mail.subject)
    .bind(&mail.body)
    .bind(mail.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl MerchantApproval {
    fn from_column(value: Option<&str>) -> Result<Option<Self>> {
        value
            .map(|v| {
                Self::parse(v).ok_or_else(|| Error::internal(anyhow::anyhow!("bad approval {v}")))
            })
            .transpose()
    }
}
