//! `assist up`: every service that exists, in one process, each on its own loopback port and talking
//! real gRPC; SQLite in the data directory. On first start it creates an administrator.

use std::net::SocketAddr;

use anyhow::Context;
use assist_identity::service::{Actor, PrincipalInput};
use assist_runtime::auth::Realm;
use clap::Parser;

use crate::embedded::{Storage, redact};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub storage: Storage,
    /// Listen address of the identity service.
    #[arg(
        long,
        env = "ASSIST_IDENTITY_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub identity_listen: SocketAddr,
    /// Prometheus `/metrics` address.
    #[arg(long, env = "ASSIST_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,
    /// Email of the administrator created on first start.
    #[arg(
        long,
        env = "ASSIST_ADMIN_EMAIL",
        default_value = "admin@agent-assist.localhost"
    )]
    pub admin_email: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let telemetry = assist_runtime::telemetry::init("assist");
    let database_url = args.storage.database_url()?;
    let kek = args.storage.key_encryption_key()?;
    let identity_config = assist_identity::Config::try_parse_from([
        "identity".to_owned(),
        format!("--listen={}", args.identity_listen),
        format!("--metrics-listen={}", args.metrics_listen),
        format!("--database-url={database_url}"),
        format!("--key-encryption-key={kek}"),
    ])
    .context("identity configuration")?;
    if let Err(error) = identity_config.check() {
        assist_runtime::config::exit(&error.to_string());
    }
    let created = first_start(&args).await?;

    let listener = tokio::net::TcpListener::bind(args.identity_listen)
        .await
        .with_context(|| format!("binding {}", args.identity_listen))?;
    let (_trigger, shutdown) = assist_runtime::shutdown::on_signal();
    let identity = tokio::spawn(assist_identity::serve(
        identity_config,
        listener,
        shutdown.clone(),
    ));

    println!("Agent Assist is running (embedded mode, stop with Ctrl-C)");
    println!("  data:     {}", redact(&database_url));
    println!(
        "  identity: grpc://{}  (assist.identity.v1.Identity)",
        args.identity_listen
    );
    println!("  metrics:  http://{}/metrics", args.metrics_listen);
    match created {
        Some(password) => {
            println!();
            println!("First start: an administrator was created. Sign in with");
            println!("  email:    {}", args.admin_email);
            println!("  password: {password}");
            println!(
                "(shown once; change it with `assist admin reset-password --email {}`)",
                args.admin_email
            );
        }
        None => println!("  administrator: {} (existing)", args.admin_email),
    }

    let result = identity.await.context("identity task")?;
    telemetry.shutdown();
    result
}

/// Creates the administrator when the database has no back-office user yet; returns its password.
async fn first_start(args: &Args) -> anyhow::Result<Option<String>> {
    let identity = args.storage.identity().await?;
    let existing = identity
        .store()
        .list_principals(
            Realm::BackOffice,
            None,
            assist_runtime::validate::Page::new(1, 0)?,
        )
        .await?;
    if existing.total > 0 {
        return Ok(None);
    }
    let password = assist_identity::domain::secret::generate()?[..20].to_owned();
    identity
        .create_back_office_user(
            Actor::Operator,
            PrincipalInput {
                email: args.admin_email.clone(),
                full_name: "Administrator".into(),
                password: password.clone(),
                scopes: vec![assist_runtime::auth::ADMIN_SCOPE.into()],
                ..Default::default()
            },
        )
        .await?;
    identity.store().database().pool.close().await;
    Ok(Some(password))
}
