//! Mail delivery over real SMTP: lettre talks to a minimal SMTP receiver on 127.0.0.1, and the
//! delivered mail's link is removed from the outbox afterwards.

mod common;

use std::time::Duration;

use assist_proto::identity::v1 as pb;
use common::{Server, TestDb};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Accepts SMTP sessions and sends each received message (headers and body) to the channel.
async fn smtp_receiver() -> (u16, mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 test SMTP ready\r\n").await.unwrap();
                let mut message: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(body) = message.as_mut() {
                        if line == "." {
                            let _ = tx.send(message.take().unwrap());
                            write.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            body.push_str(&line);
                            body.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250-test\r\n250 8BITMIME\r\n",
                        "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
                        "DATA" => {
                            message = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            return;
                        }
                        _ => b"502 not implemented\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn invitations_go_out_over_smtp_and_the_link_leaves_the_outbox() {
    let (port, mut received) = smtp_receiver().await;
    let smtp = format!("--smtp-url=smtp://127.0.0.1:{port}");
    let server = Server::start_with(
        TestDb::sqlite(),
        &[&smtp, "--smtp-from=Agent Assist <assist@example.com>"],
    )
    .await;
    let admin = server.admin_token().await;
    let mut client = server.client.clone();
    client
        .create_back_office_user(Server::authed(
            &admin,
            pb::CreateBackOfficeUserRequest {
                email: "invitee@example.com".into(),
                full_name: "In Vitee".into(),
                send_invitation: true,
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(20), received.recv())
        .await
        .expect("mail within 20 s")
        .unwrap();
    assert!(message.contains("To: invitee@example.com"), "{message}");
    assert!(
        message.contains("Subject: You are invited to Agent Assist"),
        "{message}"
    );
    assert!(message.contains("set-password?token="), "{message}");

    // Once delivered, the outbox keeps the record but not the secret link.
    let mut delivered = None;
    for _ in 0..100 {
        let outbox = client
            .list_outbox(Server::authed(
                &admin,
                pb::ListOutboxRequest {
                    recipient: "invitee@example.com".into(),
                    page: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        if outbox.messages[0].sent_at_us > 0 {
            delivered = Some(outbox.messages[0].clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = delivered.expect("marked sent");
    assert!(!delivered.body.contains("token="), "{}", delivered.body);
    server.stop().await;
}
