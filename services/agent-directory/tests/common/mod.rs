//! Test harness: a real identity server and agent-directory servers on 127.0.0.1:0, the users and tokens
//! the tests act with, and databases on both backends.

#![allow(dead_code)]

use std::net::SocketAddr;

use assist_agent_directory::store::{MIGRATIONS, Store};
use assist_identity::service::{Actor, PrincipalInput};
use assist_proto::agentdirectory::v1 as dir;
use assist_proto::agentdirectory::v1::agent_directory_client::AgentDirectoryClient;
use assist_proto::identity::v1 as idp;
use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_runtime::auth::{Claims, Realm};
use assist_runtime::keys::{self, KeyEncryptionKey};
use assist_runtime::shutdown::ShutdownTrigger;
use clap::Parser;
use tokio::net::TcpListener;
use tonic::transport::Channel;

pub use assist_runtime::testing::TestDb;

pub const PASSWORD: &str = "correct horse battery";
/// The service account agent-directory calls identity as.
pub const CLIENT_ID: &str = "agent-directory";

/// The agent-directory store over a test database, migrated.
pub async fn store(db: &TestDb) -> Store {
    Store::new(db.open(&MIGRATIONS).await)
}

pub fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

fn lazy_channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_lazy()
}

/// The health of the server at `addr` (its overall status, "" service).
pub async fn health(addr: SocketAddr) -> Option<i32> {
    let mut health = tonic_health::pb::health_client::HealthClient::new(lazy_channel(addr));
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()
        .map(|r| r.into_inner().status)
}

pub const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;

pub use assist_runtime::testing::wait_serving;

/// A signed-in user: principal id and access token.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

/// A running identity server (on SQLite: identity is not what these tests are about).
pub struct Identity {
    pub addr: SocketAddr,
    pub client: IdentityClient<Channel>,
    kek: String,
    db: TestDb,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Identity {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let kek = KeyEncryptionKey::generate_base64().unwrap();
        Self::launch(listener, TestDb::sqlite(), kek).await
    }

    /// Starts identity on `listener` over `db` (created or kept from before) and waits until SERVING.
    async fn launch(listener: TcpListener, db: TestDb, kek: String) -> Self {
        let config = assist_identity::Config::try_parse_from([
            "identity".to_owned(),
            "--listen=127.0.0.1:0".to_owned(),
            format!("--database-url={}", db.url),
            format!("--key-encryption-key={kek}"),
        ])
        .expect("identity config");
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = assist_runtime::shutdown::channel();
        let task = tokio::spawn(assist_identity::serve(config, listener, shutdown));
        wait_serving(addr, "identity").await;
        Self {
            addr,
            client: IdentityClient::new(lazy_channel(addr)),
            kek,
            db,
            trigger,
            task,
        }
    }

    /// Stops identity, keeping its database; [`Stopped::restart`] brings it back on the same address.
    pub async fn halt(self) -> Stopped {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
        Stopped {
            addr: self.addr,
            kek: self.kek,
            db: self.db,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn operator(&self) -> assist_identity::service::Identity {
        let store = assist_identity::store::Store::new(
            self.db.open(&assist_identity::store::MIGRATIONS).await,
        );
        assist_identity::service::Identity::new(
            store,
            Default::default(),
            KeyEncryptionKey::from_base64(&self.kek).unwrap(),
        )
        .await
        .unwrap()
    }

    /// Creates an administrator as the operator does and signs in over gRPC.
    pub async fn admin(&self) -> User {
        let admin = self
            .operator()
            .await
            .create_back_office_user(
                Actor::Operator,
                PrincipalInput {
                    email: "admin@example.com".into(),
                    full_name: "Ada Admin".into(),
                    password: PASSWORD.into(),
                    scopes: vec!["admin".into()],
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        User {
            token: self
                .login(idp::Realm::BackOffice, "admin@example.com")
                .await,
            id: admin.id,
        }
    }

    pub async fn login(&self, realm: idp::Realm, email: &str) -> String {
        self.client
            .clone()
            .login(idp::LoginRequest {
                realm: realm as i32,
                email: email.into(),
                password: PASSWORD.into(),
                client_address: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .access
            .unwrap()
            .token
    }

    /// A back-office user without the admin scope, signed in.
    pub async fn back_office_user(&self, admin: &User, email: &str, full_name: &str) -> User {
        let principal = self
            .client
            .clone()
            .create_back_office_user(authed(
                &admin.token,
                idp::CreateBackOfficeUserRequest {
                    email: email.into(),
                    full_name: full_name.into(),
                    password: PASSWORD.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        User {
            id: principal.id,
            token: self.login(idp::Realm::BackOffice, email).await,
        }
    }

    pub async fn customer(&self, admin: &User, email: &str) -> User {
        let principal = self
            .client
            .clone()
            .create_customer(authed(
                &admin.token,
                idp::CreateCustomerRequest {
                    email: email.into(),
                    first_name: "Carl".into(),
                    last_name: "Customer".into(),
                    password: PASSWORD.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        User {
            id: principal.id,
            token: self.login(idp::Realm::Customer, email).await,
        }
    }

    pub async fn set_status(&self, admin: &User, id: &str, status: idp::PrincipalStatus) {
        self.client
            .clone()
            .set_principal_status(authed(
                &admin.token,
                idp::SetPrincipalStatusRequest {
                    id: id.into(),
                    status: status as i32,
                },
            ))
            .await
            .unwrap();
    }

    /// Creates the service account `client_id` (a platform service's name) with the permissions the
    /// platform grants that service; returns its principal id and secret.
    pub async fn create_service_account(&self, admin: &User, client_id: &str) -> (String, String) {
        let created = self
            .client
            .clone()
            .create_service_account(authed(
                &admin.token,
                idp::CreateServiceAccountRequest {
                    client_id: client_id.into(),
                    scopes: assist_runtime::auth::permission::of_service(client_id)
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        (created.principal.unwrap().id, created.client_secret)
    }

    /// Creates a service account; returns its secret.
    pub async fn service_account(&self, admin: &User, client_id: &str) -> String {
        self.create_service_account(admin, client_id).await.1
    }

    /// A service token of a new service account `client_id`; the user id is the account's principal id.
    pub async fn service(&self, admin: &User, client_id: &str) -> User {
        let (id, secret) = self.create_service_account(admin, client_id).await;
        let token = self
            .client
            .clone()
            .issue_service_token(idp::IssueServiceTokenRequest {
                client_id: client_id.into(),
                client_secret: secret,
            })
            .await
            .unwrap()
            .into_inner()
            .token;
        User { id, token }
    }

    /// A back-office user created invited (no password yet), who cannot sign in.
    pub async fn invited_user(&self, admin: &User, email: &str, full_name: &str) -> String {
        self.client
            .clone()
            .create_back_office_user(authed(
                &admin.token,
                idp::CreateBackOfficeUserRequest {
                    email: email.into(),
                    full_name: full_name.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .id
    }

    /// A token signed with identity's live key carrying `act`, as an impersonation token does: the
    /// signature and claims are good, only the delegation is wrong for the directory.
    pub async fn delegated_token(
        &self,
        sub: &str,
        realm: Realm,
        scope: &str,
        agent: &str,
    ) -> String {
        let store = assist_identity::store::Store::new(
            self.db.open(&assist_identity::store::MIGRATIONS).await,
        );
        let kek = KeyEncryptionKey::from_base64(&self.kek).unwrap();
        let key = keys::open(&kek, &store.signing_keys().await.unwrap()[0]).unwrap();
        let now = assist_runtime::time::now_us() / 1_000_000;
        key.sign(&Claims {
            iss: "assist-identity".into(),
            sub: sub.into(),
            aud: "agent-assist".into(),
            exp: now + 300,
            iat: now - 5,
            nbf: now - 5,
            jti: uuid::Uuid::now_v7().to_string(),
            realm,
            scope: scope.into(),
            act: Some(assist_runtime::auth::Actor {
                sub: agent.into(),
                realm: Realm::BackOffice,
            }),
            sid: Some(uuid::Uuid::now_v7().to_string()),
            name: None,
            merchant_name: None,
        })
        .unwrap()
    }

    pub async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

/// An identity that was stopped, with what it needs to start again as it was.
pub struct Stopped {
    pub addr: SocketAddr,
    kek: String,
    db: TestDb,
}

impl Stopped {
    pub async fn restart(self) -> Identity {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        Identity::launch(listener, self.db, self.kek).await
    }
}

/// A running agent-directory server.
pub struct Directory {
    pub addr: SocketAddr,
    pub client: AgentDirectoryClient<Channel>,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Directory {
    /// Starts agent-directory on `database_url` against identity at `identity_url`, without waiting.
    pub async fn spawn(identity_url: &str, database_url: &str, client_secret: &str) -> Self {
        Self::spawn_with(identity_url, database_url, client_secret, &[]).await
    }

    /// [`Directory::spawn`] with extra flags (`--presence-timeout-secs=1`, …).
    pub async fn spawn_with(
        identity_url: &str,
        database_url: &str,
        client_secret: &str,
        flags: &[&str],
    ) -> Self {
        let mut args = vec![
            "assist-agent-directory".to_owned(),
            "--listen=127.0.0.1:0".to_owned(),
            format!("--database-url={database_url}"),
            format!("--identity-url={identity_url}"),
            format!("--client-id={CLIENT_ID}"),
            format!("--client-secret={client_secret}"),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        let config =
            assist_agent_directory::Config::try_parse_from(args).expect("agent-directory config");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = assist_runtime::shutdown::channel();
        let task = tokio::spawn(assist_agent_directory::serve(config, listener, shutdown));
        Self {
            addr,
            client: AgentDirectoryClient::new(lazy_channel(addr)),
            trigger,
            task,
        }
    }

    /// Starts agent-directory and waits until it is SERVING.
    pub async fn start(identity_url: &str, database_url: &str, client_secret: &str) -> Self {
        let directory = Self::spawn(identity_url, database_url, client_secret).await;
        wait_serving(directory.addr, "agent-directory").await;
        directory
    }

    pub async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

/// Identity, an administrator, and one agent-directory server on `db`.
pub struct Platform {
    pub identity: Identity,
    pub directory: Directory,
    pub admin: User,
    pub secret: String,
    pub db: TestDb,
}

impl Platform {
    pub async fn start(db: TestDb) -> Self {
        Self::start_with(db, &[]).await
    }

    /// [`Platform::start`] with extra agent-directory flags.
    pub async fn start_with(db: TestDb, flags: &[&str]) -> Self {
        let identity = Identity::start().await;
        let admin = identity.admin().await;
        let secret = identity.service_account(&admin, CLIENT_ID).await;
        let directory = Directory::spawn_with(&identity.url(), &db.url, &secret, flags).await;
        wait_serving(directory.addr, "agent-directory").await;
        Self {
            identity,
            directory,
            admin,
            secret,
            db,
        }
    }

    /// One platform per backend of `TestDb::all()`.
    pub async fn all() -> Vec<Platform> {
        let mut platforms = Vec::new();
        for db in TestDb::all().await {
            platforms.push(Self::start(db).await);
        }
        platforms
    }

    pub fn backend(&self) -> &'static str {
        self.db.backend
    }

    pub fn client(&self) -> AgentDirectoryClient<Channel> {
        self.directory.client.clone()
    }

    pub async fn grant(
        &self,
        token: &str,
        agent_id: &str,
        capability: dir::Capability,
    ) -> Result<dir::Agent, tonic::Status> {
        self.client()
            .grant_capability(authed(
                token,
                dir::ChangeCapabilityRequest {
                    agent_id: agent_id.into(),
                    capability: capability as i32,
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn revoke(
        &self,
        token: &str,
        agent_id: &str,
        capability: dir::Capability,
    ) -> Result<dir::Agent, tonic::Status> {
        self.client()
            .revoke_capability(authed(
                token,
                dir::ChangeCapabilityRequest {
                    agent_id: agent_id.into(),
                    capability: capability as i32,
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn get(&self, token: &str, id: &str) -> Result<dir::Agent, tonic::Status> {
        self.client()
            .get_agent(authed(token, dir::GetAgentRequest { id: id.into() }))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn history(
        &self,
        token: &str,
        agent_id: &str,
    ) -> Result<dir::ListAgentHistoryResponse, tonic::Status> {
        self.client()
            .list_agent_history(authed(
                token,
                dir::ListAgentHistoryRequest {
                    agent_id: agent_id.into(),
                    page: None,
                },
            ))
            .await
            .map(|r| r.into_inner())
    }

    pub async fn stop(self) {
        self.directory.stop().await;
        self.identity.stop().await;
    }
}
