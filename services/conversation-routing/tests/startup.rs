//! The start-up failure policy seen from outside: a start that cannot succeed ends `serve` with its
//! error (so the binary exits non-zero) instead of leaving the service NOT_SERVING for ever.

use std::time::Duration;

use assist_conversation_routing::{Config, serve, store};
use assist_runtime::db::{Database, PoolSize};
use clap::Parser;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[tokio::test]
async fn a_database_from_a_newer_release_stops_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("routing.db").display());
    let db = Database::connect(&url, PoolSize(1)).await.unwrap();
    db.migrate(&store::MIGRATIONS).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (29991231000000, 'from a newer release', TRUE, x'00', 0)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    drop(db);

    let config = Config::try_parse_from([
        "assist-conversation-routing".to_owned(),
        format!("--database-url={url}"),
        "--client-secret=s".to_owned(),
        // Nothing listens there: the start fails before it would need identity.
        "--identity-url=http://127.0.0.1:9".to_owned(),
    ])
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let ended = tokio::time::timeout(Duration::from_secs(60), serve(config, listener, shutdown))
        .await
        .expect("serve ends by itself");
    let error = format!("{:#}", ended.unwrap_err());
    assert!(
        error.contains("conversation-routing did not start"),
        "{error}"
    );
    assert!(error.contains("does not match this release"), "{error}");
}
