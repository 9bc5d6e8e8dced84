//! `assist admin`: operator tasks straight on the database (no running service needed).

use anyhow::Context;
use assist_identity::service::{Actor, PrincipalInput};
use assist_runtime::auth::Realm;

use crate::embedded::Storage;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    storage: Storage,
    #[command(subcommand)]
    task: Task,
}

#[derive(clap::Subcommand)]
enum Task {
    /// Create a back-office user. Without --password, one is generated and printed.
    CreateUser {
        #[arg(long)]
        email: String,
        #[arg(long)]
        full_name: String,
        #[arg(long)]
        password: Option<String>,
        /// Give the user the admin scope.
        #[arg(long)]
        admin: bool,
    },
    /// Set a new password for a back-office user (printed when generated); logs them out everywhere.
    ResetPassword {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Make a new signing key active; the old one stays published until its tokens expire.
    RotateKeys,
    /// Print the newest mail written to the outbox (invitations, password resets), with its links.
    Outbox {
        /// Only mail to this address.
        #[arg(long)]
        recipient: Option<String>,
        /// How many messages, newest first (1 to 100).
        #[arg(long, default_value_t = 1)]
        limit: u32,
    },
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let identity = args.storage.identity().await?;
    match args.task {
        Task::CreateUser {
            email,
            full_name,
            password,
            admin,
        } => {
            let (password, generated) = password_or_generated(password)?;
            let principal = identity
                .create_back_office_user(
                    Actor::Operator,
                    PrincipalInput {
                        email,
                        full_name,
                        password: password.clone(),
                        scopes: if admin {
                            vec![assist_runtime::auth::ADMIN_SCOPE.into()]
                        } else {
                            vec![]
                        },
                        ..Default::default()
                    },
                )
                .await?;
            println!("created {} ({})", principal.email, principal.id);
            if generated {
                println!("password: {password}");
            }
        }
        Task::ResetPassword { email, password } => {
            let (principal, _) = identity
                .store()
                .find_login(Realm::BackOffice, &email.trim().to_lowercase())
                .await?
                .context("no back-office user has that email")?;
            let (password, generated) = password_or_generated(password)?;
            identity
                .set_password(Actor::Operator, &principal.id, &password)
                .await?;
            println!(
                "password of {} changed; refresh tokens revoked",
                principal.email
            );
            if generated {
                println!("password: {password}");
            }
        }
        Task::RotateKeys => {
            let kid = identity.rotate_signing_key(Actor::Operator).await?;
            println!("active signing key: {kid}");
        }
        Task::Outbox { recipient, limit } => {
            let page = assist_runtime::validate::Page::new(limit, 0)?;
            let mail = identity
                .list_outbox(
                    Actor::Operator,
                    recipient.as_deref().unwrap_or_default(),
                    page,
                )
                .await?;
            if mail.items.is_empty() {
                println!("no mail");
            }
            for message in mail.items {
                println!("id:      {}", message.id);
                println!("to:      {}", message.recipient);
                println!("subject: {}", message.subject);
                println!(
                    "created: {}",
                    assist_gateway::web::console::utc_text(message.created_at)
                );
                for link in links(&message.body) {
                    println!("link:    {link}");
                }
                println!();
                println!("{}", message.body.trim_end());
                println!();
            }
        }
    }
    Ok(())
}

/// The `http(s)://` links of a mail body, one per line as identity writes them.
fn links(body: &str) -> Vec<&str> {
    body.split_whitespace()
        .filter(|word| word.starts_with("http://") || word.starts_with("https://"))
        .collect()
}

fn password_or_generated(password: Option<String>) -> anyhow::Result<(String, bool)> {
    Ok(match password {
        Some(password) => (password, false),
        None => (
            assist_identity::domain::secret::generate()?[..20].to_owned(),
            true,
        ),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn links_are_found_in_mail() {
        let body = "Hello Ann,\n\nOpen this link:\n\nhttp://127.0.0.1:8080/set-password?token=abc\n\nBye\n";
        assert_eq!(
            super::links(body),
            ["http://127.0.0.1:8080/set-password?token=abc"]
        );
    }
}
