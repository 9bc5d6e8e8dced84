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
    }
    Ok(())
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
