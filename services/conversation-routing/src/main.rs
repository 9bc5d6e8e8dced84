//! The conversation-routing service binary: configuration, telemetry, listen, serve until SIGTERM.

use assist_conversation_routing::Config;
use assist_runtime::config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config: Config = config::parse_or_exit();
    if let Err(error) = config.check() {
        config::exit(&error.to_string());
    }
    let telemetry = assist_runtime::telemetry::init("conversation-routing");
    let listener = tokio::net::TcpListener::bind(config.server.listen).await?;
    let (_trigger, shutdown) = assist_runtime::shutdown::on_signal();
    let result = assist_conversation_routing::serve(config, listener, shutdown).await;
    telemetry.shutdown();
    result
}
