//! The `assist` command: run the platform on the embedded default, migrate, administer and seed.

mod admin;
mod embedded;
mod seed;
mod up;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "assist",
    version,
    about = "Agent Assist: run, migrate, administer, seed"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every service in one process on loopback ports, with SQLite in the data directory.
    Up(Box<up::Args>),
    /// Create or upgrade the database schema and exit.
    Migrate(embedded::Storage),
    /// Operator tasks: users, passwords, signing keys.
    Admin(admin::Args),
    /// Fill the database with realistic synthetic data.
    Seed(seed::Args),
}

#[tokio::main]
async fn main() {
    let cli = match assist_runtime::config::parse::<Cli>() {
        Ok(cli) => cli,
        Err(message) => assist_runtime::config::exit(&message),
    };
    let result = match cli.command {
        Command::Up(args) => up::run(*args).await,
        Command::Migrate(storage) => embedded::migrate(&storage).await,
        Command::Admin(args) => admin::run(args).await,
        Command::Seed(args) => seed::run(args).await,
    };
    if let Err(error) = result {
        eprintln!("assist: {error:#}");
        std::process::exit(1);
    }
}
