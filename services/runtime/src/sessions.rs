//! Accepting impersonation tokens: is the token's assist session (`sid`) still live? Answered by
//! `CheckSession` on first sight and then from a cache that `WatchRevocations` keeps honest: an end
//! pushed by the impersonation service drops the session at once, and while the watch is not connected
//! nothing is answered from the cache. Also records each call made with such a token in the session's
//! audit log, in batches (`RecordActions`): one background writer takes whatever has queued up while
//! its last batch was being written, so a thousand audited requests a second cost a few dozen
//! transactions, not a thousand.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use assist_proto::impersonation::v1 as pb;
use assist_proto::impersonation::v1::impersonation_client::ImpersonationClient;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use crate::client::Outgoing;
use crate::error::{Error, Result};

/// The impersonation client a verifier uses: its service token and trace context attached.
pub type Client = ImpersonationClient<InterceptedService<Channel, Outgoing>>;

/// Past this many cached sessions the oldest knowledge is dropped (it is re-read when needed).
const CACHE_LIMIT: usize = 100_000;

/// Past this many actions waiting to be recorded, new ones are dropped (and counted) rather than
/// letting memory grow while the impersonation service is unreachable.
const RECORD_QUEUE: usize = 100_000;
/// Most actions in one `RecordActions` call.
const RECORD_BATCH: usize = 500;

/// The liveness of assist sessions as one verifier process knows it.
pub struct SessionLiveness {
    client: Client,
    state: RwLock<State>,
    recorder: tokio::sync::mpsc::Sender<pb::RecordActionRequest>,
}

#[derive(Default)]
struct State {
    /// Set while `WatchRevocations` is connected; bumped on every (re)connection.
    connected: Option<u64>,
    epoch: u64,
    /// Session id → time (µs) until which it is live unless an end is pushed.
    live: HashMap<String, i64>,
    /// Sessions known to have ended; an end is final.
    ended: HashMap<String, ()>,
}

impl SessionLiveness {
    /// Starts following `WatchRevocations` in the background (reconnecting with backoff) until
    /// `shutdown`.
    pub fn start(client: Client, shutdown: tokio::sync::watch::Receiver<bool>) -> Arc<Self> {
        let (recorder, queue) = tokio::sync::mpsc::channel(RECORD_QUEUE);
        tokio::spawn(record_batches(client.clone(), queue));
        let this = Arc::new(Self {
            client,
            state: RwLock::new(State::default()),
            recorder,
        });
        tokio::spawn(follow(Arc::downgrade(&this), shutdown));
        this
    }

    /// Whether the watch is connected (and the cache in use).
    pub fn is_following(&self) -> bool {
        self.state
            .read()
            .expect("session cache poisoned")
            .connected
            .is_some()
    }

    /// `Ok` while the session is live. An ended session is `UNAUTHENTICATED`; when liveness cannot be
    /// established (the impersonation service unreachable) the answer is `UNAVAILABLE`: never live.
    pub async fn check(&self, sid: &str) -> Result<()> {
        let now = crate::time::now_us();
        let epoch = {
            let state = self.state.read().expect("session cache poisoned");
            if state.ended.contains_key(sid) {
                return Err(ended());
            }
            match state.connected {
                Some(_) if state.live.get(sid).is_some_and(|until| *until > now) => {
                    return Ok(());
                }
                connected => connected,
            }
        };
        let reply = self
            .client
            .clone()
            .check_session(pb::CheckSessionRequest {
                session_id: sid.to_owned(),
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound | tonic::Code::InvalidArgument => ended(),
                _ => {
                    tracing::warn!(error = %status.message(), "cannot check an assist session");
                    Error::Unavailable("cannot check the assist session".into())
                }
            })?
            .into_inner();
        let mut state = self.state.write().expect("session cache poisoned");
        if !reply.active {
            if state.ended.len() >= CACHE_LIMIT {
                state.ended.clear();
            }
            state.live.remove(sid);
            state.ended.insert(sid.to_owned(), ());
            return Err(ended());
        }
        // Cache only what was read while one and the same watch connection was up: an end committed
        // after that read is then sure to arrive through the watch.
        if epoch.is_some() && state.connected == epoch {
            if state.live.len() >= CACHE_LIMIT {
                state.live.retain(|_, until| *until > now);
                if state.live.len() >= CACHE_LIMIT {
                    state.live.clear();
                }
            }
            state.live.insert(sid.to_owned(), reply.live_until_us);
        }
        Ok(())
    }

    /// Appends one call made with an impersonation token to its session's audit log, in the
    /// background (the caller's answer does not wait for it; failures are logged and counted).
    pub fn record(&self, sid: String, method: &str, target: &str, outcome: &str) {
        let request = pb::RecordActionRequest {
            session_id: sid,
            method: method.to_owned(),
            target: target.to_owned(),
            outcome: outcome.to_owned(),
            at_us: crate::time::now_us(),
        };
        if self.recorder.try_send(request).is_err() {
            audit_lost(1);
            tracing::error!("the audit queue is full: an assist action was not recorded");
        }
    }

    fn connected(&self) {
        let mut state = self.state.write().expect("session cache poisoned");
        state.epoch += 1;
        state.connected = Some(state.epoch);
    }

    fn disconnected(&self) {
        let mut state = self.state.write().expect("session cache poisoned");
        state.connected = None;
        state.live.clear();
    }

    /// Marks `sid` ended in this process at once: for the process that ended it, which should not
    /// wait for the end to come back through `WatchRevocations`.
    pub fn mark_ended(&self, sid: &str) {
        self.ended(sid.to_owned());
    }

    fn ended(&self, sid: String) {
        let mut state = self.state.write().expect("session cache poisoned");
        state.live.remove(&sid);
        if state.ended.len() >= CACHE_LIMIT {
            state.ended.clear();
        }
        state.ended.insert(sid, ());
    }
}

/// Counts actions that could not be recorded (`assist_audit_lost_actions`).
fn audit_lost(count: u64) {
    static LOST: std::sync::OnceLock<prometheus_client::metrics::counter::Counter> =
        std::sync::OnceLock::new();
    LOST.get_or_init(|| {
        let counter = prometheus_client::metrics::counter::Counter::default();
        crate::metrics::register(
            "audit_lost_actions",
            "assist actions that could not be recorded in their session's audit log",
            counter.clone(),
        );
        counter
    })
    .inc_by(count);
}

/// Writes queued actions in batches until every `SessionLiveness` holding the queue is gone.
async fn record_batches(
    client: Client,
    mut queue: tokio::sync::mpsc::Receiver<pb::RecordActionRequest>,
) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while queue.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let actions = std::mem::take(&mut batch);
        let count = actions.len() as u64;
        // Not retried on UNAVAILABLE: a repeat could append the actions twice.
        if let Err(status) = client
            .clone()
            .record_actions(pb::RecordActionsRequest { actions })
            .await
        {
            audit_lost(count);
            tracing::warn!(error = %status.message(), count, "recording assist actions failed");
        }
    }
}

fn ended() -> Error {
    Error::unauthenticated("assist session has ended")
}

async fn follow(
    liveness: std::sync::Weak<SessionLiveness>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        let Some(this) = liveness.upgrade() else {
            return;
        };
        let mut client = this.client.clone();
        drop(this);
        let opened = tokio::select! {
            opened = client.watch_revocations(pb::WatchRevocationsRequest {}) => opened,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match opened {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    let message = tokio::select! {
                        message = stream.message() => message,
                        _ = shutdown.wait_for(|s| *s) => return,
                    };
                    let Some(this) = liveness.upgrade() else {
                        return;
                    };
                    match message {
                        Ok(Some(event)) => match pb::revocation_event::Kind::try_from(event.kind) {
                            Ok(pb::revocation_event::Kind::Subscribed) => {
                                this.connected();
                                delay = Duration::from_millis(100);
                            }
                            Ok(pb::revocation_event::Kind::Ended) => this.ended(event.session_id),
                            _ => {}
                        },
                        Ok(None) | Err(_) => {
                            this.disconnected();
                            break;
                        }
                    }
                }
            }
            Err(status) => {
                tracing::debug!(error = %status.message(), "revocation watch not available yet");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}
