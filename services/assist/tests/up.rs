//! `assist up` as a newcomer runs it: the real binary on a fresh data directory, an administrator
//! created on first start, a sign-in over gRPC, a clean stop on SIGTERM, and a restart that keeps the data.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use assist_proto::identity::v1 as pb;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Up {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    port: u16,
    agents_port: u16,
    impersonation_port: u16,
    routing_port: u16,
    gateway_port: u16,
}

/// Where a test's `assist up` writes its log (in its data directory), shown when a check fails.
fn log_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("assist-up.log")
}

fn log_of(data_dir: &std::path::Path) -> String {
    std::fs::read_to_string(log_path(data_dir)).unwrap_or_default()
}

impl Up {
    fn start(data_dir: &std::path::Path) -> Self {
        let (port, agents_port, impersonation_port) = (free_port(), free_port(), free_port());
        let (gateway_port, routing_port) = (free_port(), free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_assist"))
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .arg(format!("--identity-listen=127.0.0.1:{port}"))
            .arg(format!("--agent-directory-listen=127.0.0.1:{agents_port}"))
            .arg(format!(
                "--impersonation-listen=127.0.0.1:{impersonation_port}"
            ))
            .arg(format!("--routing-listen=127.0.0.1:{routing_port}"))
            .arg(format!("--gateway-listen=127.0.0.1:{gateway_port}"))
            .arg(format!("--metrics-listen=127.0.0.1:{}", free_port()))
            .arg(format!("--demo-shop-listen=127.0.0.1:{}", free_port()))
            .env_remove("ASSIST_DATABASE_URL")
            .env_remove("ASSIST_IDENTITY_KEY_ENCRYPTION_KEY")
            .env_remove("ASSIST_IMPERSONATION_KEY_ENCRYPTION_KEY")
            .env_remove("ASSIST_AGENT_DIRECTORY_DATABASE_URL")
            .env_remove("ASSIST_IMPERSONATION_DATABASE_URL")
            .env_remove("ASSIST_CONVERSATION_ROUTING_DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log_path(data_dir)).expect("log file"))
            .spawn()
            .expect("assist binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            port,
            agents_port,
            impersonation_port,
            routing_port,
            gateway_port,
        }
    }

    /// Stdout lines until `last` appears (bounded in time).
    fn read_until(&self, last: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(100)) {
                let done = line.contains(last);
                seen.push(line);
                if done {
                    return seen;
                }
            }
        }
        panic!("no {last:?} in {seen:#?}");
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "assist up did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Signs in, waiting while identity is not up yet (bounded, and generous: on a loaded 2-core
/// machine the services may take seconds to start).
async fn login(port: u16, email: &str, password: &str) -> Result<pb::TokenPair, tonic::Status> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match login_once(port, email, password).await {
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => return other,
        }
    }
    Err(tonic::Status::unavailable("never ready"))
}

async fn login_once(
    port: u16,
    email: &str,
    password: &str,
) -> Result<pb::TokenPair, tonic::Status> {
    let mut client = pb::identity_client::IdentityClient::new(channel(port));
    let request = pb::LoginRequest {
        realm: pb::Realm::BackOffice as i32,
        email: email.into(),
        password: password.into(),
        client_address: String::new(),
    };
    client.login(request).await.map(|r| r.into_inner())
}

fn channel(port: u16) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_lazy()
}

fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Calls `call` until the service stops answering UNAVAILABLE (it is still starting).
async fn when_ready<T, F, Fut>(mut call: F) -> Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    for _ in 0..200 {
        match call().await {
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => return other,
        }
    }
    Err(tonic::Status::unavailable("never ready"))
}

/// The administrator (a back-office user) takes the storefront-agent capability and assists a new
/// customer: identity, agent-directory and impersonation-token of the embedded platform at work.
async fn assist_a_customer(up: &Up, admin: &str) -> String {
    use assist_proto::agentdirectory::v1 as dir;
    use assist_proto::impersonation::v1 as imp;
    let mut identity = pb::identity_client::IdentityClient::new(channel(up.port));
    let me = identity
        .get_jwks(assist_proto::common::v1::GetJwksRequest {})
        .await
        .unwrap();
    assert!(!me.into_inner().keys.is_empty());
    let email = format!("customer-{}@example.com", uuid::Uuid::now_v7().simple());
    let customer = identity
        .create_customer(authed(
            admin,
            pb::CreateCustomerRequest {
                email,
                first_name: "Casey".into(),
                last_name: "Customer".into(),
                password: "customer password".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let admin_id = identity
        .list_principals(authed(
            admin,
            pb::ListPrincipalsRequest {
                realm: pb::Realm::BackOffice as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .principals[0]
        .id
        .clone();
    let agents = dir::agent_directory_client::AgentDirectoryClient::new(channel(up.agents_port));
    when_ready(|| {
        let mut agents = agents.clone();
        let request = authed(
            admin,
            dir::ChangeCapabilityRequest {
                agent_id: admin_id.clone(),
                capability: dir::Capability::AssistCustomers as i32,
            },
        );
        async move { agents.grant_capability(request).await }
    })
    .await
    .expect("agent-directory reaches identity with the embedded service account");
    let impersonation =
        imp::impersonation_client::ImpersonationClient::new(channel(up.impersonation_port));
    let started = when_ready(|| {
        let mut impersonation = impersonation.clone();
        let request = authed(
            admin,
            imp::StartAssistRequest {
                target_id: customer.id.clone(),
                ..Default::default()
            },
        );
        async move { impersonation.start_assist(request).await }
    })
    .await
    .expect("impersonation reaches identity and agent-directory")
    .into_inner();
    assert_eq!(started.session.unwrap().target_id, customer.id);
    started.access_token
}

/// One HTTP/1.1 request to the gateway; answers the status code and the body.
async fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/vnd.api+json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

#[tokio::test]
async fn first_start_creates_an_admin_who_can_sign_in_and_data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path());
    let lines = up.read_until("password:");
    let value = |key: &str| {
        lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("{key} in {lines:#?}"))
    };
    let email = value("email:");
    let password = value("password:");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("127.0.0.1:{}", up.port)))
    );
    let pair = login(up.port, &email, &password)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "the printed credentials work: {error}\n{}",
                log_of(dir.path())
            )
        });
    let admin = pair.access.unwrap().token;
    // The first administrator is made an agent of both kinds, so the gateway's agent sign-in works.
    up.read_until("also a storefront and merchant-portal agent");
    let sign_in = format!(
        r#"{{"data":{{"type":"agent-access-tokens","attributes":{{"username":"{email}","password":"{password}"}}}}}}"#
    );
    let (status, body) = http(up.gateway_port, "POST", "/agent-access-tokens", &sign_in).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("accessToken"), "{body}");
    // The gateway fronts the demo shop, and serves the agents' pages.
    let (status, body) = http(up.gateway_port, "GET", "/", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Demo shop"), "{body}");
    let (status, body) = http(up.gateway_port, "GET", "/agent/login", "").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("name=\"password\""), "{body}");
    assist_a_customer(&up, &admin).await;
    // Conversation routing serves once its view of the agents has synced.
    let stats = when_ready(|| {
        let mut routing =
            assist_proto::routing::v1::routing_client::RoutingClient::new(channel(up.routing_port));
        let request = authed(&admin, assist_proto::routing::v1::GetQueueStatsRequest {});
        async move { routing.get_queue_stats(request).await }
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(stats.queued, 0);
    for file in [
        "identity.db",
        "agent-directory.db",
        "impersonation.db",
        "routing.db",
        "gateway-cookie.key",
    ] {
        assert!(dir.path().join(file).exists(), "{file}");
    }
    let kek = std::fs::metadata(dir.path().join("identity.kek")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            kek.permissions().mode() & 0o777,
            0o600,
            "the key-encryption key is private"
        );
    }
    let port = up.port;
    assert!(up.terminate().success(), "clean exit on SIGTERM");
    assert!(
        login_once(port, &email, &password).await.is_err(),
        "stopped"
    );

    // Second start: same data, no new administrator, the old password still works.
    let again = Up::start(dir.path());
    let lines = again.read_until("administrator:");
    assert!(lines.iter().any(|l| l.contains("(existing)")), "{lines:#?}");
    let pair = login(again.port, &email, &password)
        .await
        .expect("data kept across restarts");
    // The service account kept in the data directory still works.
    assist_a_customer(&again, &pair.access.unwrap().token).await;
    assert!(again.terminate().success());
}

#[test]
fn bad_configuration_exits_64_and_names_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_assist"))
        .args(["up", "--identity-listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ASSIST_IDENTITY_LISTEN"), "{stderr}");
}
