//! Test harness: databases on both backends and an identity server on 127.0.0.1:0.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use assist_identity::Config;
use assist_identity::domain::keys::KeyEncryptionKey;
use assist_identity::service::{Actor, Identity, PrincipalInput};
use assist_identity::store::Store;
use assist_proto::identity::v1 as pb;
use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_runtime::shutdown::ShutdownTrigger;
use clap::Parser;
use tonic::transport::Channel;

pub use assist_runtime::testing::TestDb;

/// The identity store over a test database, migrated.
pub async fn store(db: &TestDb) -> Store {
    Store::new(db.open(&assist_identity::store::MIGRATIONS).await)
}

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const PASSWORD: &str = "correct horse battery";

/// A running identity server and what tests need to talk to it.
pub struct Server {
    pub addr: SocketAddr,
    pub client: IdentityClient<Channel>,
    pub kek: String,
    pub db: TestDb,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    pub async fn start(db: TestDb) -> Self {
        Self::start_with(db, &[]).await
    }

    /// Starts identity with extra flags (`--login-max-failures=3`, …) and waits until it is SERVING.
    pub async fn start_with(db: TestDb, extra: &[&str]) -> Self {
        let kek = KeyEncryptionKey::generate_base64().unwrap();
        Self::start_with_kek(db, extra, kek).await
    }

    pub async fn start_with_kek(db: TestDb, extra: &[&str], kek: String) -> Self {
        let mut args = vec![
            "identity".to_owned(),
            "--listen=127.0.0.1:0".to_owned(),
            format!("--database-url={}", db.url),
            format!("--key-encryption-key={kek}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let config = Config::try_parse_from(args).expect("config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, shutdown) = assist_runtime::shutdown::channel();
        let task = tokio::spawn(assist_identity::serve(config, listener, shutdown));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let server = Self {
            addr,
            client: IdentityClient::new(channel),
            kek,
            db,
            trigger,
            task,
        };
        server.wait_serving().await;
        server
    }

    pub async fn wait_serving(&self) {
        assist_runtime::testing::wait_serving(self.addr, "identity").await;
    }

    /// The use cases over the same database, as the operator (`assist admin`) would reach them.
    pub async fn operator(&self) -> Identity {
        Identity::new(
            store(&self.db).await,
            Default::default(),
            KeyEncryptionKey::from_base64(&self.kek).unwrap(),
        )
        .await
        .unwrap()
    }

    /// Creates an administrator directly in the database and signs in over gRPC.
    pub async fn admin_token(&self) -> String {
        let operator = self.operator().await;
        let existing = operator
            .store()
            .find_login(assist_runtime::auth::Realm::BackOffice, ADMIN_EMAIL)
            .await
            .unwrap();
        if existing.is_none() {
            operator
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
                .await
                .unwrap();
        }
        self.login(pb::Realm::BackOffice, ADMIN_EMAIL, PASSWORD)
            .await
            .unwrap()
            .access
            .unwrap()
            .token
    }

    pub async fn login(
        &self,
        realm: pb::Realm,
        email: &str,
        password: &str,
    ) -> Result<pb::TokenPair, tonic::Status> {
        self.client
            .clone()
            .login(pb::LoginRequest {
                realm: realm as i32,
                email: email.into(),
                password: password.into(),
                client_address: String::new(),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        request
    }

    pub async fn create_customer(
        &self,
        admin: &str,
        email: &str,
        first: &str,
        last: &str,
    ) -> pb::Principal {
        self.client
            .clone()
            .create_customer(Self::authed(
                admin,
                pb::CreateCustomerRequest {
                    email: email.into(),
                    first_name: first.into(),
                    last_name: last.into(),
                    password: PASSWORD.into(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn stop(self) {
        self.trigger.trigger();
        self.task.await.unwrap().unwrap();
    }
}

/// A verifier of identity's tokens that fetches the JWKS over gRPC, as every other service does.
pub fn verifier(server: &Server) -> Arc<assist_runtime::auth::TokenVerifier> {
    Arc::new(assist_runtime::auth::TokenVerifier::new(
        "agent-assist",
        vec![assist_runtime::auth::TrustedIssuer {
            issuer: "assist-identity".into(),
            keys: Arc::new(assist_runtime::auth::IdentityJwks(server.client.clone())),
        }],
    ))
}
