//! `assist up`: every service that exists and the gateway, in one process, each on its own loopback
//! port and talking real gRPC; SQLite in the data directory. On first start it creates an administrator
//! and the service account the services call each other with.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::Context;
use assist_identity::service::{Actor, PrincipalInput};
use assist_runtime::auth::{Realm, permission};
use clap::Parser;

use crate::embedded::{Storage, redact, write_private};

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
    /// Listen address of the agent-directory service.
    #[arg(
        long,
        env = "ASSIST_AGENT_DIRECTORY_LISTEN",
        default_value = "127.0.0.1:50052"
    )]
    pub agent_directory_listen: SocketAddr,
    /// Listen address of the impersonation-token service.
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_LISTEN",
        default_value = "127.0.0.1:50053"
    )]
    pub impersonation_listen: SocketAddr,
    /// Listen address of the conversation-routing service.
    #[arg(
        long,
        env = "ASSIST_CONVERSATION_ROUTING_LISTEN",
        default_value = "127.0.0.1:50054"
    )]
    pub routing_listen: SocketAddr,
    /// Listen address of the gateway (HTTP: the storefront agent-assist API).
    #[arg(long, env = "ASSIST_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub gateway_listen: SocketAddr,
    /// Listen address of the demo shop (storefront and merchant portal) the gateway fronts, started
    /// unless both upstreams below are given.
    #[arg(
        long,
        env = "ASSIST_DEMO_SHOP_LISTEN",
        default_value = "127.0.0.1:8090"
    )]
    pub demo_shop_listen: SocketAddr,
    /// A real storefront for the gateway to front instead of the demo shop.
    #[arg(long, env = "ASSIST_STOREFRONT_UPSTREAM")]
    pub storefront_upstream: Option<String>,
    /// A real merchant portal for the gateway to front instead of the demo shop.
    #[arg(long, env = "ASSIST_MERCHANT_PORTAL_UPSTREAM")]
    pub merchant_portal_upstream: Option<String>,
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
    /// Console agents without a heartbeat for this many seconds are offline.
    #[arg(long, env = "ASSIST_PRESENCE_TIMEOUT_SECS", default_value_t = 60)]
    pub presence_timeout_secs: u32,
    /// Assigned conversations of an agent offline this long go back to the queue.
    #[arg(long, env = "ASSIST_OFFLINE_GRACE_SECS", default_value_t = 900)]
    pub offline_grace_secs: u64,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let telemetry = assist_runtime::telemetry::init("assist");
    let database_url = args.storage.database_url()?;
    let identity_url = format!("http://{}", args.identity_listen);
    let identity_config = parse_config::<assist_identity::Config>(
        "identity",
        [
            format!("--listen={}", args.identity_listen),
            // One registry serves every service of this process.
            format!("--metrics-listen={}", args.metrics_listen),
            format!("--database-url={database_url}"),
            format!(
                "--key-encryption-key={}",
                args.storage.key_encryption_key()?
            ),
            // Mailed links (set-password, reset-password) open the gateway's pages.
            format!("--public-url=http://{}", args.gateway_listen),
        ],
    )?;
    if let Err(error) = identity_config.check() {
        assist_runtime::config::exit(&error.to_string());
    }
    let created = first_start(&args).await?;
    let accounts = service_accounts(&args).await?;
    let credentials = |service: &str| -> [String; 2] {
        let (id, secret) = &accounts[service];
        [
            format!("--client-id={id}"),
            format!("--client-secret={secret}"),
        ]
    };
    let agents_config = parse_config::<assist_agent_directory::Config>(
        "agent-directory",
        [
            format!("--listen={}", args.agent_directory_listen),
            format!("--presence-timeout-secs={}", args.presence_timeout_secs),
            format!(
                "--database-url={}",
                args.storage.agent_directory_database_url()?
            ),
            format!("--identity-url={identity_url}"),
        ]
        .into_iter()
        .chain(credentials("agent-directory")),
    )?;
    let impersonation_config = parse_config::<assist_impersonation_token::Config>(
        "impersonation",
        [
            format!("--listen={}", args.impersonation_listen),
            format!(
                "--database-url={}",
                args.storage.impersonation_database_url()?
            ),
            format!(
                "--key-encryption-key={}",
                args.storage.impersonation_key_encryption_key()?
            ),
            format!("--identity-url={identity_url}"),
            format!(
                "--agent-directory-url=http://{}",
                args.agent_directory_listen
            ),
            format!("--routing-url=http://{}", args.routing_listen),
        ]
        .into_iter()
        .chain(credentials("impersonation-token")),
    )?;
    let routing_config = parse_config::<assist_conversation_routing::Config>(
        "routing",
        [
            format!("--listen={}", args.routing_listen),
            format!("--database-url={}", args.storage.routing_database_url()?),
            format!("--identity-url={identity_url}"),
            format!(
                "--agent-directory-url=http://{}",
                args.agent_directory_listen
            ),
            format!("--impersonation-url=http://{}", args.impersonation_listen),
            format!("--offline-grace-secs={}", args.offline_grace_secs),
        ]
        .into_iter()
        .chain(credentials("routing")),
    )?;
    let demo_shop_url = format!("http://{}", args.demo_shop_listen);
    let demo_shop = args.storefront_upstream.is_none() || args.merchant_portal_upstream.is_none();
    let gateway_config = parse_config::<assist_gateway::Config>(
        "gateway",
        [
            format!(
                "--storefront-upstream={}",
                args.storefront_upstream
                    .as_deref()
                    .unwrap_or(&demo_shop_url)
            ),
            format!(
                "--merchant-portal-upstream={}",
                args.merchant_portal_upstream
                    .as_deref()
                    .unwrap_or(&demo_shop_url)
            ),
            format!("--listen={}", args.gateway_listen),
            format!("--identity-url={identity_url}"),
            format!(
                "--agent-directory-url=http://{}",
                args.agent_directory_listen
            ),
            format!("--impersonation-url=http://{}", args.impersonation_listen),
            format!("--routing-url=http://{}", args.routing_listen),
            format!("--cookie-key={}", args.storage.gateway_cookie_key()?),
        ]
        .into_iter()
        .chain(credentials("gateway")),
    )?;
    let demo_shop_config = parse_config::<assist_demo_shop::Config>(
        "demo-shop",
        [
            format!("--listen={}", args.demo_shop_listen),
            format!("--identity-url={identity_url}"),
            format!("--impersonation-url=http://{}", args.impersonation_listen),
        ]
        .into_iter()
        .chain(credentials("demo-shop")),
    )?;
    if let Err(error) = demo_shop_config.check() {
        assist_runtime::config::exit(&error.to_string());
    }
    if let Err(error) = gateway_config.check() {
        assist_runtime::config::exit(&error.to_string());
    }
    if let Err(error) = agents_config.check() {
        assist_runtime::config::exit(&error.to_string());
    }
    if let Err(error) = impersonation_config.check() {
        assist_runtime::config::exit(&error.to_string());
    }
    if let Err(error) = routing_config.check() {
        assist_runtime::config::exit(&error.to_string());
    }

    let (_trigger, shutdown) = assist_runtime::shutdown::on_signal();
    let identity = tokio::spawn(assist_identity::serve(
        identity_config,
        bind(args.identity_listen).await?,
        shutdown.clone(),
    ));
    let agents = tokio::spawn(assist_agent_directory::serve(
        agents_config,
        bind(args.agent_directory_listen).await?,
        shutdown.clone(),
    ));
    let impersonation = tokio::spawn(assist_impersonation_token::serve(
        impersonation_config,
        bind(args.impersonation_listen).await?,
        shutdown.clone(),
    ));
    let routing = tokio::spawn(assist_conversation_routing::serve(
        routing_config,
        bind(args.routing_listen).await?,
        shutdown.clone(),
    ));
    let gateway = tokio::spawn(assist_gateway::serve(
        gateway_config,
        bind(args.gateway_listen).await?,
        shutdown.clone(),
    ));
    let shop = if demo_shop {
        let listener = bind(args.demo_shop_listen).await?;
        tokio::spawn(assist_demo_shop::serve(
            demo_shop_config,
            listener,
            shutdown.clone(),
        ))
    } else {
        // No demo shop: a task that ends only with the others.
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|stop| *stop).await;
            Ok(())
        })
    };

    println!("Agent Assist is running (embedded mode, stop with Ctrl-C)");
    println!("  data:            {}", redact(&database_url));
    println!(
        "  identity:        grpc://{}  (assist.identity.v1.Identity)",
        args.identity_listen
    );
    println!(
        "  agent-directory: grpc://{}  (assist.agentdirectory.v1.AgentDirectory)",
        args.agent_directory_listen
    );
    println!(
        "  impersonation:   grpc://{}  (assist.impersonation.v1.Impersonation)",
        args.impersonation_listen
    );
    println!(
        "  routing:         grpc://{}  (assist.routing.v1.Routing)",
        args.routing_listen
    );
    println!(
        "  gateway:         http://{}  (open it in a browser: the shop; agent sign-in at /agent/login and /merchant-portal/agent/login; the console at /console/login; customer chat at /chat; the Glue-compatible API)",
        args.gateway_listen
    );
    if demo_shop {
        println!(
            "  demo shop:       http://{}  (the storefront and merchant portal the gateway fronts)",
            args.demo_shop_listen
        );
    }
    println!("  metrics:         http://{}/metrics", args.metrics_listen);
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
            tokio::spawn(make_first_agent(
                args.identity_listen,
                args.agent_directory_listen,
                args.admin_email.clone(),
                password,
            ));
        }
        None => println!("  administrator: {} (existing)", args.admin_email),
    }

    // The first service to stop (an error, or shutdown) stops the rest.
    let (service, result) = tokio::select! {
        r = identity => ("identity", r),
        r = agents => ("agent-directory", r),
        r = impersonation => ("impersonation", r),
        r = routing => ("conversation routing", r),
        r = gateway => ("gateway", r),
        r = shop => ("demo shop", r),
    };
    let result = result
        .with_context(|| format!("{service} task"))?
        .with_context(|| format!("{service} stopped"));
    drop(_trigger);
    telemetry.shutdown();
    result
}

/// Grants the first administrator both assist capabilities (which stores its profile: a platform
/// administrator joins the console as its administrator), so that a newcomer can try agent assist
/// at once (the services are starting meanwhile: unavailable answers are retried).
async fn make_first_agent(
    identity: SocketAddr,
    agents: SocketAddr,
    email: String,
    password: String,
) {
    use assist_proto::agentdirectory::v1 as dir;
    use assist_proto::identity::v1 as idp;
    let attempt = async {
        let identity = assist_runtime::client::channel(
            &format!("http://{identity}"),
            std::time::Duration::from_secs(10),
        )?;
        let agents = assist_runtime::client::channel(
            &format!("http://{agents}"),
            std::time::Duration::from_secs(10),
        )?;
        let identity = idp::identity_client::IdentityClient::new(identity);
        let agents = dir::agent_directory_client::AgentDirectoryClient::new(agents);
        let login = idp::LoginRequest {
            realm: idp::Realm::BackOffice as i32,
            email,
            password,
            client_address: String::new(),
        };
        let pair = until_ready(|| {
            let mut identity = identity.clone();
            let login = login.clone();
            async move { identity.login(login).await }
        })
        .await?;
        let token = pair.access.map(|a| a.token).unwrap_or_default();
        for capability in [
            dir::Capability::AssistCustomers,
            dir::Capability::AssistMerchantUsers,
        ] {
            let change = dir::ChangeCapabilityRequest {
                agent_id: pair.principal_id.clone(),
                capability: capability as i32,
            };
            until_ready(|| {
                let mut agents = agents.clone();
                let mut request = tonic::Request::new(change.clone());
                let bearer = format!("Bearer {token}").parse().expect("token is ASCII");
                request.metadata_mut().insert("authorization", bearer);
                async move { agents.grant_capability(request).await }
            })
            .await?;
        }
        Ok::<_, anyhow::Error>(())
    };
    match attempt.await {
        Ok(()) => println!("  The administrator is also a storefront and merchant-portal agent."),
        Err(error) => {
            tracing::warn!(error = %error, "granting the administrator the assist capabilities failed")
        }
    }
}

/// Repeats `call` while it answers UNAVAILABLE (for at most 30 s).
async fn until_ready<T, F, Fut>(mut call: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    for _ in 0..300 {
        match call().await {
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Ok(reply) => return Ok(reply.into_inner()),
            Err(status) => anyhow::bail!("{}", status.message()),
        }
    }
    anyhow::bail!("the services did not become ready")
}

fn parse_config<C: Parser>(
    name: &str,
    args: impl IntoIterator<Item = String>,
) -> anyhow::Result<C> {
    C::try_parse_from(std::iter::once(name.to_owned()).chain(args))
        .with_context(|| format!("{name} configuration"))
}

async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// The embedded services' accounts, one per service with only its permissions
/// (`assist_runtime::auth::permission::PLATFORM_ACCOUNTS`): created on first start, each line of
/// `<data-dir>/service-accounts` (owner-only) holding `service client-id secret`. An account missing
/// from the file (a data directory of an older version) is created.
async fn service_accounts(args: &Args) -> anyhow::Result<HashMap<String, (String, String)>> {
    let path = args.storage.data_dir.join("service-accounts");
    let mut accounts: HashMap<String, (String, String)> = std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next()) {
                (Some(service), Some(id), Some(secret)) => {
                    Some((service.to_owned(), (id.to_owned(), secret.to_owned())))
                }
                _ => None,
            }
        })
        .collect();
    let missing: Vec<_> = permission::PLATFORM_ACCOUNTS
        .iter()
        .filter(|(service, _)| !accounts.contains_key(*service))
        .collect();
    if missing.is_empty() {
        return Ok(accounts);
    }
    let identity = args.storage.identity().await?;
    for (service, granted) in missing {
        let suffix = uuid::Uuid::now_v7().simple().to_string();
        let client_id = format!("assist-{service}-{}", &suffix[suffix.len() - 12..]);
        let granted: Vec<String> = granted.iter().map(|s| s.to_string()).collect();
        let (_, secret) = identity
            .create_service_account(Actor::Operator, &client_id, &granted)
            .await?;
        accounts.insert(service.to_string(), (client_id, secret));
    }
    identity.store().database().pool.close().await;
    let mut lines: Vec<String> = accounts
        .iter()
        .map(|(service, (id, secret))| format!("{service} {id} {secret}"))
        .collect();
    lines.sort();
    let _ = std::fs::remove_file(&path);
    write_private(&path, &(lines.join("\n") + "\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(accounts)
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
