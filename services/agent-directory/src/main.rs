//! The agent-directory service binary: configuration, telemetry, listen, serve until SIGTERM.

use assist_agent_directory::Config;
use assist_runtime::config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = config::parse_or_exit();
    if let Err(error) = config.check() {
        config::exit(&error.to_string());
    }
    let telemetry = assist_runtime::telemetry::init("agent-directory");
    let listener = tokio::net::TcpListener::bind(config.server.listen).await?;
    let (_trigger, shutdown) = assist_runtime::shutdown::on_signal();
    let result = assist_agent_directory::serve(config, listener, shutdown).await;
    telemetry.shutdown();
    result
}
