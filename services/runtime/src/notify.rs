//! Change notices that reach every replica of a service: PostgreSQL `LISTEN/NOTIFY` in a cluster, an
//! in-process channel on SQLite (the embedded mode has one process). Writers send a notice inside their
//! transaction ([`crate::db::WriteTransaction::notify`]); watchers get it once it has committed.
//!
//! Notices are not durable: a listener connection that drops loses what was sent meanwhile. Watchers
//! therefore learn of every such gap ([`Notice::Gap`]) and must resync what they hold.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use crate::auth::Claims;
use crate::db::{Backend, Database};

/// What a watcher receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A committed change; the payload is the writer's (usually an id).
    Changed(String),
    /// Notices may have been lost (the listener reconnected, or the watcher fell behind): resync.
    Gap,
}

/// One notification channel of one database, shared by writers and watchers of this process.
#[derive(Clone)]
pub struct Notifier {
    channel: &'static str,
    backend: Backend,
    local: broadcast::Sender<Notice>,
    /// True while notices are flowing: always on SQLite; on PostgreSQL while `LISTEN` is established.
    live: std::sync::Arc<watch::Sender<bool>>,
    url: std::sync::Arc<str>,
}

/// A watcher's end, from [`Notifier::subscribe`].
pub struct Subscription {
    receiver: broadcast::Receiver<Notice>,
}

impl Subscription {
    /// The next notice; a watcher that fell behind gets [`Notice::Gap`].
    pub async fn next(&mut self) -> Notice {
        match self.receiver.recv().await {
            Ok(notice) => notice,
            Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => {
                Notice::Gap
            }
        }
    }
}

impl Notifier {
    /// A notifier on `channel` (a SQL identifier: lowercase letters and `_`). It can send at once;
    /// watchers of this process receive once [`Notifier::listen`] runs (PostgreSQL).
    pub fn new(db: &Database, channel: &'static str) -> Self {
        debug_assert!(channel.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        let (local, _) = broadcast::channel(4096);
        let (live, _) = watch::channel(db.backend == Backend::Sqlite);
        Self {
            channel,
            backend: db.backend,
            local,
            live: std::sync::Arc::new(live),
            url: db.url().into(),
        }
    }

    /// On PostgreSQL, holds a `LISTEN` connection in a background task, reconnecting, until
    /// `shutdown`; relays what arrives to this process's watchers. Nothing to do on SQLite.
    pub fn listen(&self, shutdown: watch::Receiver<bool>) {
        if self.backend == Backend::Postgres {
            tokio::spawn(listen(
                self.url.to_string(),
                self.channel,
                self.local.clone(),
                self.live.clone(),
                shutdown,
            ));
        }
    }

    pub fn channel(&self) -> &'static str {
        self.channel
    }

    pub(crate) fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    pub(crate) fn deliver_local(&self, payload: String) {
        // No receiver is fine: nobody is watching.
        let _ = self.local.send(Notice::Changed(payload));
    }

    /// Subscribes once notices are flowing (waits for `LISTEN` on PostgreSQL). Every notice committed
    /// after this returns is delivered, or a [`Notice::Gap`] says some may be missing.
    pub async fn subscribe(&self) -> Subscription {
        let mut live = self.live.subscribe();
        loop {
            let receiver = self.local.subscribe();
            if *live.borrow_and_update() {
                return Subscription { receiver };
            }
            let _ = live.changed().await;
        }
    }
}

async fn listen(
    url: String,
    channel: &'static str,
    local: broadcast::Sender<Notice>,
    live: std::sync::Arc<watch::Sender<bool>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen(channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let attempt = tokio::select! {
            result = attempt => result,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let mut listener = match attempt {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(channel, error = %error, "cannot listen for notices; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        delay = Duration::from_millis(100);
        live.send_replace(true);
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                _ = shutdown.wait_for(|s| *s) => {
                    live.send_replace(false);
                    return;
                }
            };
            match received {
                Ok(Some(notification)) => {
                    let _ = local.send(Notice::Changed(notification.payload().to_owned()));
                }
                Ok(None) => {
                    // sqlx reconnected underneath: whatever was sent meanwhile is lost.
                    tracing::warn!(channel, "notice listener reconnected; watchers resync");
                    let _ = local.send(Notice::Gap);
                }
                Err(error) => {
                    tracing::warn!(channel, error = %error, "notice listener failed; watchers resync");
                    live.send_replace(false);
                    let _ = local.send(Notice::Gap);
                    break;
                }
            }
        }
    }
}

/// The server stream of a watch RPC.
pub type WatchStream<T> =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, tonic::Status>> + Send + 'static>>;

/// Open watches one person may hold on one server (browser tabs, devices).
pub const WATCHES_PER_PERSON: usize = 8;
/// Open watches one service account may hold on one server (one or two per replica of the caller).
pub const WATCHES_PER_SERVICE: usize = 64;
/// How often an open watch checks that its caller still has access, between notices.
pub const RECHECK_INTERVAL: Duration = Duration::from_secs(2);

/// The watches of one server. Each caller holds a bounded number of them at once
/// ([`WATCHES_PER_PERSON`], [`WATCHES_PER_SERVICE`]), and a watch ends, with the status that says why,
/// when the server shuts down, when the caller's token expires, and when the caller's access check
/// fails: that check runs every [`RECHECK_INTERVAL`] and again before each notice is turned into
/// items, so a caller whose rights ended is sent nothing more.
#[derive(Clone)]
pub struct Watches {
    shutdown: watch::Receiver<bool>,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// A caller's place among its open watches, given back when the watch ends.
struct Slot {
    caller: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("watch slots poisoned");
        if let Some(count) = open.get_mut(&self.caller) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.caller);
            }
        }
    }
}

impl Watches {
    pub fn new(shutdown: watch::Receiver<bool>) -> Self {
        Self {
            shutdown,
            open: Arc::default(),
        }
    }

    fn take_slot(&self, claims: &Claims) -> crate::Result<Slot> {
        let limit = if claims.is_service() {
            WATCHES_PER_SERVICE
        } else {
            WATCHES_PER_PERSON
        };
        let mut open = self.open.lock().expect("watch slots poisoned");
        let count = open.entry(claims.sub.clone()).or_default();
        if *count >= limit {
            return Err(crate::Error::ResourceExhausted(format!(
                "at most {limit} open watches per caller; close one first"
            )));
        }
        *count += 1;
        Ok(Slot {
            caller: claims.sub.clone(),
            open: self.open.clone(),
        })
    }

    /// Opens a watch for the caller of `claims`: subscribes, sends what `initial` returns (a
    /// "subscribed" marker, or a snapshot and a "synced" marker), then what `on_change` makes of each
    /// notice (any number of items: an `Option` or a `Vec`). `access` is the caller's access check
    /// (see [`Watches`]); an error from it or from `on_change` ends the watch with that error.
    /// A gap ends the watch with `UNAVAILABLE`, so the client resubscribes and resyncs; so does shutdown.
    /// Refused with `RESOURCE_EXHAUSTED` when the caller holds too many watches already.
    pub fn open<T, A, AFut, I, IFut, C, CFut, R>(
        &self,
        notifier: Notifier,
        claims: &Claims,
        mut access: A,
        initial: I,
        mut on_change: C,
    ) -> crate::Result<WatchStream<T>>
    where
        T: Send + 'static,
        A: FnMut() -> AFut + Send + 'static,
        AFut: std::future::Future<Output = crate::Result<()>> + Send,
        I: FnOnce() -> IFut + Send + 'static,
        IFut: std::future::Future<Output = crate::Result<Vec<T>>> + Send,
        C: FnMut(String) -> CFut + Send + 'static,
        CFut: std::future::Future<Output = crate::Result<R>> + Send,
        R: IntoIterator<Item = T> + Send,
        R::IntoIter: Send,
    {
        let slot = self.take_slot(claims)?;
        let expires_in = token_lifetime_left(claims);
        let mut shutdown = self.shutdown.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            let _slot = slot;
            let interrupted =
                || tonic::Status::unavailable("watch interrupted; watch again and resync");
            let run = async {
                let mut subscription = notifier.subscribe().await;
                access().await?;
                for item in initial().await? {
                    if tx.send(Ok(item)).await.is_err() {
                        return Ok(());
                    }
                }
                let mut recheck = tokio::time::interval(RECHECK_INTERVAL);
                recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    let notice = tokio::select! {
                        notice = subscription.next() => notice,
                        _ = recheck.tick() => {
                            access().await?;
                            continue;
                        }
                        _ = tx.closed() => return Ok(()),
                    };
                    match notice {
                        Notice::Changed(payload) => {
                            access().await?;
                            for item in on_change(payload).await? {
                                if tx.send(Ok(item)).await.is_err() {
                                    return Ok(());
                                }
                            }
                        }
                        Notice::Gap => return Err(interrupted()),
                    }
                }
            };
            let outcome = tokio::select! {
                outcome = run => outcome,
                _ = tokio::time::sleep(expires_in) => Err(tonic::Status::unauthenticated(
                    "the access token expired; watch again with a fresh one",
                )),
                _ = shutdown.wait_for(|s| *s) => Err(tonic::Status::unavailable("server shutting down")),
            };
            if let Err(status) = outcome {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

/// How long `claims`' token stays valid from now (zero when it has expired).
fn token_lifetime_left(claims: &Claims) -> Duration {
    let now_s = crate::time::now_us() / 1_000_000;
    Duration::from_secs(u64::try_from(claims.exp - now_s).unwrap_or(0))
}
