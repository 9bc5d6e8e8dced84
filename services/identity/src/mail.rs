//! Mail delivery: the outbox is written in the same transaction as the token it carries; when SMTP is
//! configured, this dispatcher delivers pending mail and marks it sent (at-least-once).

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::store::{OutboxMessage, Store};

/// Attempts per mail before it is left for an operator to look at.
const MAX_ATTEMPTS: i64 = 10;

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// From an `smtp://`, `smtps://` or `smtp://…?tls=required` URL (lettre's format).
    pub fn from_url(url: &str, from: &str) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("not an SMTP URL: {e}"))?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        let from = from
            .parse::<Mailbox>()
            .map_err(|e| format!("not a mail address: {e}"))?;
        Ok(Self { transport, from })
    }

    async fn send(&self, mail: &OutboxMessage) -> Result<(), String> {
        let to = mail
            .recipient
            .parse::<Mailbox>()
            .map_err(|e| format!("recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .body(mail.body.clone())
            .map_err(|e| format!("message: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("smtp: {e}"))
    }

    /// Delivers pending mail every `interval` until `shutdown` trips.
    pub async fn run(
        self,
        store: Store,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            match store.pending_mail(50, MAX_ATTEMPTS).await {
                Ok(pending) => {
                    for mail in pending {
                        let outcome = self.send(&mail).await;
                        let recorded = match &outcome {
                            Ok(()) => {
                                store
                                    .mark_mail_sent(&mail.id, assist_runtime::time::now_us())
                                    .await
                            }
                            Err(error) => store.mark_mail_failed(&mail.id, error).await,
                        };
                        match (outcome, recorded) {
                            (Ok(()), Ok(())) => {
                                tracing::info!(outbox_id = %mail.id, "mail delivered")
                            }
                            (Err(error), _) => {
                                tracing::warn!(outbox_id = %mail.id, error = %error, "mail not delivered")
                            }
                            (_, Err(error)) => {
                                tracing::error!(outbox_id = %mail.id, error = %error, "recording delivery failed")
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(error = %error, "reading the outbox failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}
