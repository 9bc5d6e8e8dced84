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
}

impl Up {
    fn start(data_dir: &std::path::Path) -> Self {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_assist"))
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .arg(format!("--identity-listen=127.0.0.1:{port}"))
            .arg(format!("--metrics-listen=127.0.0.1:{}", free_port()))
            .env_remove("ASSIST_DATABASE_URL")
            .env_remove("ASSIST_IDENTITY_KEY_ENCRYPTION_KEY")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("assist binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines, port }
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

async fn login(port: u16, email: &str, password: &str) -> Result<pb::TokenPair, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect_lazy();
    let mut client = pb::identity_client::IdentityClient::new(channel);
    let request = pb::LoginRequest {
        realm: pb::Realm::BackOffice as i32,
        email: email.into(),
        password: password.into(),
        client_address: String::new(),
    };
    for _ in 0..100 {
        match client.login(request.clone()).await {
            Err(status) if status.code() == tonic::Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => return other.map(|r| r.into_inner()),
        }
    }
    Err(tonic::Status::unavailable("never ready"))
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
        .expect("the printed credentials work");
    assert!(pair.access.is_some());
    assert!(dir.path().join("identity.db").exists());
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
    assert!(login(port, &email, &password).await.is_err(), "stopped");

    // Second start: same data, no new administrator, the old password still works.
    let again = Up::start(dir.path());
    let lines = again.read_until("administrator:");
    assert!(lines.iter().any(|l| l.contains("(existing)")), "{lines:#?}");
    login(again.port, &email, &password)
        .await
        .expect("data kept across restarts");
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
