//! Shutdown: one watch channel that SIGTERM, SIGINT or a test can trip, and every server waits on.

use tokio::sync::watch;

/// Trips shutdown; every clone of the paired receiver sees it.
#[derive(Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// A new shutdown channel that nothing trips yet.
pub fn channel() -> (ShutdownTrigger, watch::Receiver<bool>) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(tx), rx)
}

/// A shutdown channel tripped by SIGTERM or SIGINT.
pub fn on_signal() -> (ShutdownTrigger, watch::Receiver<bool>) {
    let (trigger, rx) = channel();
    let on_signal = trigger.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        on_signal.trigger();
    });
    (trigger, rx)
}

/// Resolves once `rx` has been tripped.
pub async fn tripped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
