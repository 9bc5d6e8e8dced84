//! The platform in one test process: identity, agent-directory, impersonation-token and conversation
//! routing (any number of replicas of the last two) on 127.0.0.1:0, each with its own database on one
//! backend, talking real gRPC; plus the principals and tokens tests need.

use std::net::SocketAddr;

use assist_identity::domain::keys::KeyEncryptionKey;
use assist_identity::service::{Actor, Identity, PrincipalInput};
use assist_proto::agentdirectory::v1 as dir;
use assist_proto::agentdirectory::v1::agent_directory_client::AgentDirectoryClient;
use assist_proto::identity::v1 as idp;
use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_proto::impersonation::v1::impersonation_client::ImpersonationClient;
use assist_proto::routing::v1::routing_client::RoutingClient;
use assist_runtime::auth::permission;
use assist_runtime::shutdown::ShutdownTrigger;
use assist_runtime::testing::{TestBackend, TestDb};
use clap::Parser;
use tonic::transport::Channel;

pub const PASSWORD: &str = "correct horse battery";
pub const ADMIN_EMAIL: &str = "admin@example.com";

/// One running service.
pub struct Running {
    pub addr: SocketAddr,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect_lazy()
    }

    /// Stops the service and waits until it has drained.
    pub async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

/// Binds 127.0.0.1:0, starts `serve` on it and waits until health says SERVING.
async fn start<F, Fut>(name: &str, serve: F) -> Running
where
    F: FnOnce(tokio::net::TcpListener, tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    start_at("127.0.0.1:0".parse().unwrap(), name, serve).await
}

/// [`start`] on a given address (a restart on the address a service had).
async fn start_at<F, Fut>(addr: SocketAddr, name: &str, serve: F) -> Running
where
    F: FnOnce(tokio::net::TcpListener, tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    start_on(listener, name, serve).await
}

/// [`start`] on a listener already bound (an address other services were given before it started).
async fn start_on<F, Fut>(listener: tokio::net::TcpListener, name: &str, serve: F) -> Running
where
    F: FnOnce(tokio::net::TcpListener, tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let addr = listener.local_addr().unwrap();
    let (trigger, shutdown) = assist_runtime::shutdown::channel();
    let task = tokio::spawn(serve(listener, shutdown));
    let running = Running {
        addr,
        trigger,
        task,
    };
    assist_runtime::testing::wait_serving(running.addr, name).await;
    running
}

/// A principal and a fresh access token of theirs.
#[derive(Debug, Clone)]
pub struct Signed {
    pub id: String,
    pub email: String,
    pub token: String,
}

pub struct Platform {
    pub backend: TestBackend,
    pub identity: Running,
    pub agents: Running,
    /// Replicas of impersonation-token, all on one database.
    pub impersonation: Vec<Running>,
    /// Replicas of conversation routing, all on one database (one to start with).
    pub routing: Vec<Running>,
    /// The first routing replica's address, known to impersonation-token before routing starts (it
    /// asks routing about conversations); its listener is held until that replica starts.
    routing_addr: SocketAddr,
    routing_listener: Option<tokio::net::TcpListener>,
    pub admin: Signed,
    /// A service account for the tests' own service-side calls (CheckSession, RecordAction, …).
    pub service: (String, String),
    /// Identity's key-encryption key, to reach its signing keys (forged-token tests).
    pub identity_kek: String,
    impersonation_kek: String,
    /// The platform's service accounts by service name (`gateway`, `routing`, …), each granted what
    /// `assist_runtime::auth::permission::PLATFORM_ACCOUNTS` gives it.
    accounts: std::collections::HashMap<&'static str, (String, String)>,
    dbs: Vec<TestDb>,
}

pub fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

impl Platform {
    /// The whole platform on `backend` with `replicas` impersonation replicas and extra impersonation
    /// flags (`--session-idle-secs=2`, …).
    pub async fn start(
        backend: TestBackend,
        replicas: usize,
        impersonation_flags: &[&str],
    ) -> Self {
        let identity_db = TestDb::on(&backend).await;
        let identity_kek = KeyEncryptionKey::generate_base64().unwrap();
        Self::start_with_identity(
            backend,
            replicas,
            impersonation_flags,
            identity_db,
            identity_kek,
        )
        .await
    }

    /// [`Platform::start`] with identity on a database of the caller's (a seeded one, for load runs)
    /// and its key-encryption key.
    pub async fn start_with_identity(
        backend: TestBackend,
        replicas: usize,
        impersonation_flags: &[&str],
        identity_db: TestDb,
        identity_kek: String,
    ) -> Self {
        let agents_db = TestDb::on(&backend).await;
        let impersonation_db = TestDb::on(&backend).await;
        let routing_db = TestDb::on(&backend).await;
        let config = assist_identity::Config::try_parse_from([
            "identity".to_owned(),
            "--listen=127.0.0.1:0".to_owned(),
            format!("--database-url={}", identity_db.url),
            format!("--key-encryption-key={identity_kek}"),
        ])
        .unwrap();
        let identity = start("identity", |l, s| assist_identity::serve(config, l, s)).await;
        let operator = Identity::new(
            assist_identity::store::Store::new(
                identity_db.open(&assist_identity::store::MIGRATIONS).await,
            ),
            Default::default(),
            KeyEncryptionKey::from_base64(&identity_kek).unwrap(),
        )
        .await
        .unwrap();
        let created = operator
            .create_back_office_user(
                Actor::Operator,
                PrincipalInput {
                    email: ADMIN_EMAIL.into(),
                    full_name: "Ada Admin".into(),
                    password: PASSWORD.into(),
                    scopes: vec!["admin".into()],
                    ..Default::default()
                },
            )
            .await;
        // A database kept from an earlier run has the administrator already.
        if let Err(error) = created
            && !matches!(error, assist_runtime::Error::AlreadyExists(_))
        {
            panic!("creating the administrator: {error}");
        }
        let mut identity_client = IdentityClient::new(identity.channel());
        let admin = login(&mut identity_client, idp::Realm::BackOffice, ADMIN_EMAIL).await;
        let mut accounts = std::collections::HashMap::new();
        for (name, granted) in permission::PLATFORM_ACCOUNTS {
            let account = service_account(&mut identity_client, &admin.token, name, granted).await;
            accounts.insert(*name, account);
        }
        let service = service_account(
            &mut identity_client,
            &admin.token,
            "tests",
            TESTS_ACCOUNT_PERMISSIONS,
        )
        .await;
        let credentials = |name: &str| {
            let (id, secret) = &accounts[name];
            [
                format!("--client-id={id}"),
                format!("--client-secret={secret}"),
            ]
        };

        let agents_config = assist_agent_directory::Config::try_parse_from(
            [
                "agent-directory".to_owned(),
                "--listen=127.0.0.1:0".to_owned(),
                format!("--database-url={}", agents_db.url),
                format!("--identity-url={}", identity.url()),
            ]
            .into_iter()
            .chain(credentials("agent-directory")),
        )
        .unwrap();
        let agents = start("agent-directory", |l, s| {
            assist_agent_directory::serve(agents_config, l, s)
        })
        .await;
        // Tests and load runs make many agents: license plenty of seats.
        AgentDirectoryClient::new(agents.channel())
            .set_seats(authed(
                &admin.token,
                dir::SetSeatsRequest { licensed: 100_000 },
            ))
            .await
            .unwrap();
        let routing_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let routing_addr = routing_listener.local_addr().unwrap();
        let mut platform = Self {
            backend,
            identity,
            agents,
            impersonation: Vec::new(),
            routing: Vec::new(),
            routing_addr,
            routing_listener: Some(routing_listener),
            admin,
            service,
            identity_kek,
            impersonation_kek: KeyEncryptionKey::generate_base64().unwrap(),
            accounts,
            dbs: vec![identity_db, agents_db, impersonation_db, routing_db],
        };
        for _ in 0..replicas {
            platform
                .add_impersonation_replica(impersonation_flags)
                .await;
        }
        platform.add_routing_replica(&[]).await;
        platform
    }

    /// Starts one more conversation-routing replica on the same database, with extra flags
    /// (`--offline-grace-secs=1`, …).
    pub async fn add_routing_replica(&mut self, flags: &[&str]) -> usize {
        let mut args = vec![
            "routing".to_owned(),
            "--listen=127.0.0.1:0".to_owned(),
            format!("--database-url={}", self.dbs[3].url),
            format!("--identity-url={}", self.identity.url()),
            format!("--agent-directory-url={}", self.agents.url()),
            // Load runs without impersonation replicas record no assist sessions.
            format!(
                "--impersonation-url={}",
                self.impersonation
                    .first()
                    .map_or("http://127.0.0.1:9".to_owned(), Running::url)
            ),
        ];
        args.extend(self.credentials("routing"));
        args.extend(flags.iter().map(|f| f.to_string()));
        let config = assist_conversation_routing::Config::try_parse_from(args).unwrap();
        let serve = |l, s| assist_conversation_routing::serve(config, l, s);
        // The first replica answers where impersonation-token was told routing is.
        let running = match (self.routing.is_empty(), self.routing_listener.take()) {
            (true, Some(listener)) => start_on(listener, "routing", serve).await,
            (true, None) => start_at(self.routing_addr, "routing", serve).await,
            (false, _) => start("routing", serve).await,
        };
        self.routing.push(running);
        self.routing.len() - 1
    }

    /// Stops every routing replica (to restart them with other flags).
    pub async fn stop_routing(&mut self) {
        for replica in self.routing.drain(..) {
            replica.stop().await;
        }
    }

    /// Starts one more impersonation-token replica on the same database.
    pub async fn add_impersonation_replica(&mut self, flags: &[&str]) -> usize {
        let running = self
            .start_impersonation("127.0.0.1:0".parse().unwrap(), flags)
            .await;
        self.impersonation.push(running);
        self.impersonation.len() - 1
    }

    /// An impersonation-token server on `addr` (`127.0.0.1:0` for any port) over the platform's
    /// impersonation database, not yet counted among the replicas: restart tests put it back in place.
    pub async fn start_impersonation(&self, addr: SocketAddr, flags: &[&str]) -> Running {
        let mut args = vec![
            "impersonation".to_owned(),
            "--listen=127.0.0.1:0".to_owned(),
            format!("--database-url={}", self.dbs[2].url),
            format!("--key-encryption-key={}", self.impersonation_kek),
            format!("--identity-url={}", self.identity.url()),
            format!("--agent-directory-url={}", self.agents.url()),
            format!("--routing-url=http://{}", self.routing_addr),
        ];
        args.extend(self.credentials("impersonation-token"));
        args.extend(flags.iter().map(|f| f.to_string()));
        let config = assist_impersonation_token::Config::try_parse_from(args).unwrap();
        start_at(addr, "impersonation", |l, s| {
            assist_impersonation_token::serve(config, l, s)
        })
        .await
    }

    /// Identity's database (for forged-token tests).
    pub fn identity_db(&self) -> &TestDb {
        &self.dbs[0]
    }

    /// Agent-directory's database (for seeding load runs).
    pub fn agents_db(&self) -> &TestDb {
        &self.dbs[1]
    }

    /// The impersonation database (for tampering tests).
    pub fn impersonation_db(&self) -> &TestDb {
        &self.dbs[2]
    }

    /// The routing database (for checks of what routing stored).
    pub fn routing_db(&self) -> &TestDb {
        &self.dbs[3]
    }

    pub fn routing_client(&self, replica: usize) -> RoutingClient<Channel> {
        RoutingClient::new(self.routing[replica].channel())
    }

    pub fn identity_client(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.identity.channel())
    }

    pub fn agents_client(&self) -> AgentDirectoryClient<Channel> {
        AgentDirectoryClient::new(self.agents.channel())
    }

    pub fn impersonation_client(&self, replica: usize) -> ImpersonationClient<Channel> {
        ImpersonationClient::new(self.impersonation[replica].channel())
    }

    /// `--client-id` and `--client-secret` of the platform's account for `service`.
    pub fn credentials(&self, service: &str) -> [String; 2] {
        let (id, secret) = &self.accounts[service];
        [
            format!("--client-id={id}"),
            format!("--client-secret={secret}"),
        ]
    }

    /// A token of the platform's account for `service` (what that service itself presents).
    pub async fn token_of(&self, service: &str) -> String {
        let (client_id, client_secret) = self.accounts[service].clone();
        self.identity_client()
            .issue_service_token(idp::IssueServiceTokenRequest {
                client_id,
                client_secret,
            })
            .await
            .unwrap()
            .into_inner()
            .token
    }

    /// A token of the tests' service account.
    pub async fn service_token(&self) -> String {
        self.identity_client()
            .issue_service_token(idp::IssueServiceTokenRequest {
                client_id: self.service.0.clone(),
                client_secret: self.service.1.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .token
    }

    /// A back-office user holding `capabilities`, signed in.
    pub async fn agent(&self, email: &str, capabilities: &[dir::Capability]) -> Signed {
        let created = self
            .identity_client()
            .create_back_office_user(authed(
                &self.admin.token,
                idp::CreateBackOfficeUserRequest {
                    email: email.into(),
                    full_name: format!("Agent {email}"),
                    password: PASSWORD.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        for capability in capabilities {
            self.grant(&created.id, *capability).await;
        }
        let mut identity = self.identity_client();
        login(&mut identity, idp::Realm::BackOffice, email).await
    }

    /// An active console member of `role` with `capacity`, signed in and online (a storefront agent:
    /// granting the capability stores the profile).
    pub async fn console_member(&self, email: &str, role: dir::Role, capacity: u32) -> Signed {
        let member = self.agent(email, &[dir::Capability::AssistCustomers]).await;
        let mut agents = self.agents_client();
        if role != dir::Role::Agent {
            agents
                .change_role(authed(
                    &self.admin.token,
                    dir::ChangeRoleRequest {
                        agent_id: member.id.clone(),
                        role: role as i32,
                    },
                ))
                .await
                .unwrap();
        }
        agents
            .update_agent_routing(authed(
                &self.admin.token,
                dir::UpdateAgentRoutingRequest {
                    agent_id: member.id.clone(),
                    capacity: Some(capacity),
                    skills: None,
                },
            ))
            .await
            .unwrap();
        self.presence(&member.token, dir::Presence::Online).await;
        member
    }

    /// Waits (at most 20 s) until routing's view of the agents has `count` of them online: presence
    /// reaches routing through agent-directory's watch, a moment after the heartbeat.
    pub async fn until_routing_sees_online(&self, count: u32) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let stats = self
                .routing_client(0)
                .get_queue_stats(authed(
                    &self.admin.token,
                    assist_proto::routing::v1::GetQueueStatsRequest {},
                ))
                .await
                .unwrap()
                .into_inner();
            if stats.agents_online == count {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "routing never saw {count} agents online (it sees {})",
                stats.agents_online
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A console member's heartbeat with `presence`.
    pub async fn presence(&self, token: &str, presence: dir::Presence) {
        self.agents_client()
            .heartbeat(authed(
                token,
                dir::HeartbeatRequest {
                    presence: presence as i32,
                },
            ))
            .await
            .unwrap();
    }

    pub async fn grant(&self, agent_id: &str, capability: dir::Capability) {
        self.agents_client()
            .grant_capability(authed(
                &self.admin.token,
                dir::ChangeCapabilityRequest {
                    agent_id: agent_id.into(),
                    capability: capability as i32,
                },
            ))
            .await
            .unwrap();
    }

    pub async fn revoke(&self, agent_id: &str, capability: dir::Capability) {
        self.agents_client()
            .revoke_capability(authed(
                &self.admin.token,
                dir::ChangeCapabilityRequest {
                    agent_id: agent_id.into(),
                    capability: capability as i32,
                },
            ))
            .await
            .unwrap();
    }

    /// A customer, signed in.
    pub async fn customer(&self, email: &str) -> Signed {
        self.identity_client()
            .create_customer(authed(
                &self.admin.token,
                idp::CreateCustomerRequest {
                    email: email.into(),
                    first_name: "Casey".into(),
                    last_name: "Customer".into(),
                    password: PASSWORD.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
        let mut identity = self.identity_client();
        login(&mut identity, idp::Realm::Customer, email).await
    }

    /// A merchant user of a merchant still awaiting approval, signed in... or not: such users may
    /// not sign in, so only the id is certain.
    pub async fn merchant_user(&self, email: &str) -> String {
        self.identity_client()
            .create_merchant_user(authed(
                &self.admin.token,
                idp::CreateMerchantUserRequest {
                    merchant_id: "merchant-1".into(),
                    merchant_name: "Spryker Shoes".into(),
                    email: email.into(),
                    first_name: "Mia".into(),
                    last_name: "Merchant".into(),
                    password: PASSWORD.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .id
    }

    pub async fn set_status(&self, principal_id: &str, status: idp::PrincipalStatus) {
        self.identity_client()
            .set_principal_status(authed(
                &self.admin.token,
                idp::SetPrincipalStatusRequest {
                    id: principal_id.into(),
                    status: status as i32,
                },
            ))
            .await
            .unwrap();
    }

    /// The gateway in front of this platform (the first impersonation replica), on 127.0.0.1:0 with
    /// the platform's service account; answers once `/healthz` says it is serving.
    pub async fn start_gateway(&self) -> Running {
        self.start_gateway_with(&[]).await
    }

    /// The gateway with extra flags (such as `--storefront-upstream=…`).
    pub async fn start_gateway_with(&self, flags: &[String]) -> Running {
        let mut args = vec![
            "gateway".to_owned(),
            "--listen=127.0.0.1:0".to_owned(),
            format!("--identity-url={}", self.identity.url()),
            format!("--agent-directory-url={}", self.agents.url()),
            format!("--impersonation-url={}", self.impersonation[0].url()),
            format!("--routing-url={}", self.routing[0].url()),
        ];
        args.extend(self.credentials("gateway"));
        args.extend(flags.iter().cloned());
        let config = assist_gateway::Config::try_parse_from(args).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = assist_runtime::shutdown::channel();
        let task = tokio::spawn(assist_gateway::serve(config, listener, shutdown));
        until_healthy(addr, "gateway").await;
        Running {
            addr,
            trigger,
            task,
        }
    }

    /// The demo shop (storefront and merchant portal) of this platform, on 127.0.0.1:0.
    pub async fn start_demo_shop(&self) -> Running {
        let config = assist_demo_shop::Config::try_parse_from(
            [
                "demo-shop".to_owned(),
                "--listen=127.0.0.1:0".to_owned(),
                format!("--identity-url={}", self.identity.url()),
                format!("--impersonation-url={}", self.impersonation[0].url()),
            ]
            .into_iter()
            .chain(self.credentials("demo-shop")),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = assist_runtime::shutdown::channel();
        let task = tokio::spawn(assist_demo_shop::serve(config, listener, shutdown));
        until_healthy(addr, "demo shop").await;
        Running {
            addr,
            trigger,
            task,
        }
    }

    /// The demo shop and a gateway fronting it: `(shop, gateway)`.
    pub async fn start_fronted_shop(&self) -> (Running, Running) {
        let shop = self.start_demo_shop().await;
        let upstream = format!("http://{}", shop.addr);
        let gateway = self
            .start_gateway_with(&[
                format!("--storefront-upstream={upstream}"),
                format!("--merchant-portal-upstream={upstream}"),
            ])
            .await;
        (shop, gateway)
    }

    pub async fn stop(self) {
        for replica in self.routing {
            replica.stop().await;
        }
        for replica in self.impersonation {
            replica.stop().await;
        }
        self.agents.stop().await;
        self.identity.stop().await;
        drop(self.dbs);
    }
}

async fn login(identity: &mut IdentityClient<Channel>, realm: idp::Realm, email: &str) -> Signed {
    let pair = identity
        .login(idp::LoginRequest {
            realm: realm as i32,
            email: email.into(),
            password: PASSWORD.into(),
            client_address: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    Signed {
        id: pair.principal_id,
        email: email.into(),
        token: pair.access.unwrap().token,
    }
}

/// What the tests' own service account may do: accept impersonation tokens, read and write the audit,
/// and run conversations as an integration.
const TESTS_ACCOUNT_PERMISSIONS: &[&str] = &[
    permission::SESSIONS_CHECK,
    permission::SESSIONS_READ,
    permission::AUDIT_WRITE,
    permission::CONVERSATIONS_WRITE,
];

async fn service_account(
    identity: &mut IdentityClient<Channel>,
    admin: &str,
    name: &str,
    granted: &[&str],
) -> (String, String) {
    let client_id = format!("{name}-{}", uuid::Uuid::now_v7().simple());
    let created = identity
        .create_service_account(authed(
            admin,
            idp::CreateServiceAccountRequest {
                client_id: client_id.clone(),
                scopes: granted.iter().map(|s| s.to_string()).collect(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    (client_id, created.client_secret)
}

/// Waits until `GET /healthz` on `addr` answers 200 (at most 20 s).
async fn until_healthy(addr: SocketAddr, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match http(addr, "GET", "/healthz", &[], None).await {
            Ok(reply) if reply.status == 200 => return,
            _ if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            other => panic!("{what} not serving: {other:?}"),
        }
    }
}

/// One HTTP answer, as the gateway tests read it.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`, read to the end): all the gateway
/// tests need, without an HTTP client crate.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> std::io::Result<HttpReply> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let body = body.unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    let typed = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if !body.is_empty() && !typed {
        request.push_str("content-type: application/vnd.api+json\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP answer");
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(invalid)?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(invalid)?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        return Err(std::io::Error::other("chunked answers are not read here"));
    }
    Ok(HttpReply {
        status,
        headers,
        body: body.to_owned(),
    })
}
