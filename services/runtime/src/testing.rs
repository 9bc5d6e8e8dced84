//! Test support for every service's tests: a database per test on SQLite and, when configured,
//! PostgreSQL (the same store tests run on both). Enabled by the `testing` feature.

use crate::db::{Database, Migrations, PoolSize};

/// Where test databases are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    /// The administrative URL of a server on which each test creates (and drops) its own database.
    Postgres(String),
}

impl TestBackend {
    /// Every backend the tests run on: SQLite always, PostgreSQL when `ASSIST_TEST_DATABASE_URL` is
    /// set. Without it, PostgreSQL is skipped with a note, unless `ASSIST_REQUIRE_POSTGRES=1`.
    pub fn all() -> Vec<TestBackend> {
        let mut backends = vec![TestBackend::Sqlite];
        match Self::postgres() {
            Some(backend) => backends.push(backend),
            None => {
                eprintln!("note: ASSIST_TEST_DATABASE_URL is not set; PostgreSQL cases skipped")
            }
        }
        backends
    }

    /// PostgreSQL when configured (required when `ASSIST_REQUIRE_POSTGRES=1`).
    pub fn postgres() -> Option<TestBackend> {
        match std::env::var("ASSIST_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(TestBackend::Postgres(url)),
            _ => {
                if std::env::var("ASSIST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                    panic!("ASSIST_REQUIRE_POSTGRES=1 but ASSIST_TEST_DATABASE_URL is not set");
                }
                None
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            TestBackend::Sqlite => "sqlite",
            TestBackend::Postgres(_) => "postgres",
        }
    }
}

/// A database for one test: a SQLite file in a temporary folder, or a fresh PostgreSQL database that is
/// dropped afterwards.
pub struct TestDb {
    pub url: String,
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
    pg_admin: Option<(String, String)>,
}

impl TestDb {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        Self {
            url,
            backend: "sqlite",
            _dir: Some(dir),
            pg_admin: None,
        }
    }

    pub async fn postgres(admin_url: &str) -> Self {
        let name = format!("assist_test_{}", uuid::Uuid::now_v7().simple());
        let admin = Database::connect(admin_url, PoolSize(1))
            .await
            .expect("postgres reachable");
        let create = format!("CREATE DATABASE {name}");
        sqlx::query(&create)
            .execute(&admin.pool)
            .await
            .expect("create test database");
        admin.pool.close().await;
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b)
            .unwrap_or(admin_url);
        Self {
            url: format!("{base}/{name}"),
            backend: "postgres",
            _dir: None,
            pg_admin: Some((admin_url.to_owned(), name)),
        }
    }

    /// A database that exists already and is kept afterwards (a seeded one, for load runs).
    pub fn existing(url: &str) -> TestDb {
        TestDb {
            url: url.to_owned(),
            backend: if url.starts_with("sqlite:") {
                "sqlite"
            } else {
                "postgres"
            },
            _dir: None,
            pg_admin: None,
        }
    }

    /// One database on each backend the tests run on (see [`TestBackend::all`]).
    pub async fn all() -> Vec<TestDb> {
        let mut dbs = Vec::new();
        for backend in TestBackend::all() {
            dbs.push(TestDb::on(&backend).await);
        }
        dbs
    }

    /// A fresh database on `backend`.
    pub async fn on(backend: &TestBackend) -> TestDb {
        match backend {
            TestBackend::Sqlite => TestDb::sqlite(),
            TestBackend::Postgres(url) => TestDb::postgres(url).await,
        }
    }

    /// Connects and runs `migrations`.
    pub async fn open(&self, migrations: &Migrations) -> Database {
        let db = Database::connect(&self.url, PoolSize(8))
            .await
            .expect("connect");
        db.migrate(migrations).await.expect("migrate");
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg_admin.take() {
            // Drop runs outside any runtime guarantee; use a small one of our own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(admin) = Database::connect(&admin_url, PoolSize(1)).await {
                        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(&drop).execute(&admin.pool).await;
                    }
                });
            })
            .join();
        }
    }
}

/// Waits (at most 10 s) until the server on `addr` says SERVING on `grpc.health.v1`.
pub async fn wait_serving(addr: std::net::SocketAddr, what: &str) {
    use tonic_health::pb::health_check_response::ServingStatus;
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .expect("address")
        .connect_lazy();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for _ in 0..400 {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status);
        if status.ok() == Some(ServingStatus::Serving as i32) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{what} never became SERVING");
}
