//! Accepting impersonation tokens: is the token's assist session (`sid`) still live? Answered by
//! `CheckSession` on first sight and then from a cache that `WatchRevocations` keeps honest: an end
//! pushed by the impersonation service drops the session at once, and while the watch is not connected
//! nothing is answered from the cache. Also records each call made with such a token in the session's
//! audit log, in batches (`RecordActions`): one background writer takes whatever has queued up while
//! its last batch was being written, so a thousand audited requests a second cost a few dozen
//! transactions, not a thousand.
//!
//! The audit's guarantee, as far as one verifier process can give it: a call made with an
//! impersonation token is recorded in its session's audit, or it is refused. Every action is
//! normalised and bounded before it is queued ([`crate::audit`]), so the service cannot refuse it;
//! each carries an idempotency key, so a batch that failed on a transient error is retried until it
//! is written without ever being appended twice; and while the oldest unwritten action is older than
//! [`AUDIT_LAG_MAX`] (5 s) or the queue is full, [`SessionLiveness::audit_keeps_up`] refuses new
//! calls (503) instead of letting them run unaudited. What is queued is in memory: a crash of the
//! verifier loses at most what it had not written yet (at most 5 s of calls, by the bound).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use assist_proto::impersonation::v1 as pb;
use assist_proto::impersonation::v1::impersonation_client::ImpersonationClient;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use crate::audit::ActionText;
use crate::client::Outgoing;
use crate::error::{Error, Result};

/// The impersonation client a verifier uses: its service token and trace context attached.
pub type Client = ImpersonationClient<InterceptedService<Channel, Outgoing>>;

/// Past this many cached sessions the oldest knowledge is dropped (it is re-read when needed).
const CACHE_LIMIT: usize = 100_000;

/// Past this many actions waiting to be recorded, impersonation tokens are refused (see
/// [`SessionLiveness::audit_keeps_up`]) until the queue drains.
const RECORD_QUEUE: usize = 100_000;
/// Past this many, an action is dropped (and counted): the room above [`RECORD_QUEUE`] is for the
/// records of requests admitted before the queue filled, which are bounded by the server's
/// concurrency limit.
const RECORD_QUEUE_HARD: usize = 2 * RECORD_QUEUE;
/// Most actions in one `RecordActions` call.
const RECORD_BATCH: usize = 500;
/// How far the audit may fall behind: while an action has waited longer than this to be written,
/// calls made with impersonation tokens are refused (`UNAVAILABLE`, a 503) rather than carried out
/// unaudited. Long enough for a database failover or a restart of impersonation-token under way;
/// short enough that an unreachable audit stops assisting within seconds.
pub const AUDIT_LAG_MAX: Duration = Duration::from_secs(5);
/// Backoff between attempts of a batch that failed on a transient error.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Attempts of a failing batch once the verifier is going away (it is shutting down).
const ATTEMPTS_WHEN_CLOSED: u32 = 3;

/// The liveness of assist sessions as one verifier process knows it.
pub struct SessionLiveness {
    client: Client,
    state: RwLock<State>,
    recorder: Arc<Recorder>,
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
        let recorder = Arc::new(Recorder::default());
        tokio::spawn(record_batches(client.clone(), recorder.clone()));
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

    /// `Ok` while this process's audit keeps up: nothing queued longer than [`AUDIT_LAG_MAX`] and the
    /// queue not full. Checked before a call made with an impersonation token is carried out, so that
    /// a call is recorded or not done; otherwise `UNAVAILABLE`.
    pub fn audit_keeps_up(&self) -> Result<()> {
        match self.recorder.lock().behind(Instant::now()) {
            None => Ok(()),
            Some(reason) => {
                tracing::warn!(
                    reason,
                    "refusing an impersonation token: the audit is behind"
                );
                Err(Error::Unavailable(reason.into()))
            }
        }
    }

    /// Appends one call made with an impersonation token to its session's audit log, in the
    /// background (the caller's answer does not wait for it). The action is normalised and bounded
    /// here ([`ActionText::normalised`]), so the audit never refuses it.
    pub fn record(&self, sid: String, method: &str, target: &str, outcome: &str) {
        if !self
            .recorder
            .push(queued(sid, method, target, outcome), Instant::now())
        {
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

impl Drop for SessionLiveness {
    fn drop(&mut self) {
        self.recorder.close();
    }
}

/// The action [`SessionLiveness::record`] queues: normalised, with a fresh idempotency key that
/// every attempt to write it sends again.
fn queued(sid: String, method: &str, target: &str, outcome: &str) -> pb::RecordActionRequest {
    let text = ActionText::normalised(method, target, outcome);
    pb::RecordActionRequest {
        session_id: sid,
        method: text.method,
        target: text.target,
        outcome: text.outcome,
        idempotency_key: uuid::Uuid::now_v7().to_string(),
    }
}

/// The actions waiting to be written, shared by the verifier and its writer task.
#[derive(Default)]
struct Recorder {
    queue: Mutex<Queue>,
    wake: tokio::sync::Notify,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<(Instant, pb::RecordActionRequest)>,
    /// When the oldest action of the batch being written was queued.
    writing_since: Option<Instant>,
    /// Set when the verifier is gone: the writer drains what is left and stops.
    closed: bool,
}

impl Queue {
    /// Why calls with impersonation tokens must be refused at `now`, if they must.
    fn behind(&self, now: Instant) -> Option<&'static str> {
        if self.waiting.len() >= RECORD_QUEUE {
            return Some("the audit queue is full");
        }
        let oldest = self
            .writing_since
            .or_else(|| self.waiting.front().map(|(at, _)| *at))?;
        (now.saturating_duration_since(oldest) > AUDIT_LAG_MAX).then_some("the audit is behind")
    }
}

impl Recorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().expect("audit queue poisoned")
    }

    /// Queues `action`; false when the queue is past its hard limit.
    fn push(&self, action: pb::RecordActionRequest, now: Instant) -> bool {
        {
            let mut queue = self.lock();
            if queue.waiting.len() >= RECORD_QUEUE_HARD {
                return false;
            }
            queue.waiting.push_back((now, action));
        }
        self.wake.notify_one();
        true
    }

    /// The next batch, oldest first, marked as being written; `None` once closed and drained.
    async fn next_batch(&self) -> Option<Vec<pb::RecordActionRequest>> {
        loop {
            {
                let mut queue = self.lock();
                if let Some((oldest, _)) = queue.waiting.front() {
                    queue.writing_since = Some(*oldest);
                    let take = queue.waiting.len().min(RECORD_BATCH);
                    return Some(queue.waiting.drain(..take).map(|(_, a)| a).collect());
                }
                if queue.closed {
                    return None;
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a push between the check and here
            // is not missed.
            self.wake.notified().await;
        }
    }

    fn written(&self) {
        self.lock().writing_since = None;
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
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

/// Writes queued actions in batches, one batch at a time (so each session's actions stay in order),
/// until the verifier is gone and the queue drained.
async fn record_batches(client: Client, recorder: Arc<Recorder>) {
    while let Some(actions) = recorder.next_batch().await {
        write_batch(&client, &recorder, actions).await;
        recorder.written();
    }
}

/// Writes one batch. A transient failure is retried with backoff for as long as the verifier runs:
/// the actions stand for requests already carried out, and while they wait new ones are refused
/// ([`AUDIT_LAG_MAX`]). Retrying is safe because the service skips actions whose idempotency key it
/// already holds. Actions the service rejects, and batches it refuses outright, are counted as lost.
async fn write_batch(client: &Client, recorder: &Recorder, actions: Vec<pb::RecordActionRequest>) {
    let count = actions.len() as u64;
    let request = pb::RecordActionsRequest { actions };
    let mut delay = RETRY_FIRST;
    let mut attempts_when_closed = 0;
    loop {
        let status = match client.clone().record_actions(request.clone()).await {
            Ok(reply) => {
                let rejected = reply.into_inner().rejected;
                if let Some(first) = rejected.first() {
                    audit_lost(rejected.len() as u64);
                    tracing::error!(
                        count = rejected.len(),
                        position = first.position,
                        reason = %first.reason,
                        "the audit rejected assist actions"
                    );
                }
                return;
            }
            Err(status) => status,
        };
        let transient = matches!(
            status.code(),
            tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::ResourceExhausted
        );
        if recorder.is_closed() {
            attempts_when_closed += 1;
        }
        if !transient || attempts_when_closed >= ATTEMPTS_WHEN_CLOSED {
            audit_lost(count);
            tracing::error!(error = %status.message(), count, "recording assist actions failed");
            return;
        }
        tracing::warn!(
            error = %status.message(),
            count,
            retry_in_ms = delay.as_millis() as u64,
            "recording assist actions failed; retrying"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn action(sid: &str) -> pb::RecordActionRequest {
        queued(sid.to_owned(), "GET", "/cart", "200")
    }

    #[test]
    fn calls_are_refused_while_the_oldest_unwritten_action_is_older_than_the_bound() {
        let start = Instant::now();
        let mut queue = Queue::default();
        assert_eq!(
            queue.behind(start + Duration::from_secs(3600)),
            None,
            "empty"
        );
        queue.waiting.push_back((start, action("s")));
        assert_eq!(queue.behind(start + AUDIT_LAG_MAX), None, "at the bound");
        assert_eq!(
            queue.behind(start + AUDIT_LAG_MAX + Duration::from_millis(1)),
            Some("the audit is behind")
        );
        // A batch being written (say, retried while the service is unreachable) counts from when
        // its oldest action was queued, though it has left the queue.
        let mut writing = Queue {
            writing_since: Some(start),
            ..Queue::default()
        };
        writing
            .waiting
            .push_back((start + Duration::from_secs(10), action("s")));
        assert_eq!(
            writing.behind(start + Duration::from_secs(10)),
            Some("the audit is behind")
        );
        writing.writing_since = None;
        assert_eq!(writing.behind(start + Duration::from_secs(10)), None);
    }

    #[test]
    fn calls_are_refused_while_the_queue_is_full_but_admitted_ones_still_fit() {
        let now = Instant::now();
        let recorder = Recorder::default();
        for _ in 0..RECORD_QUEUE {
            assert!(recorder.push(action("s"), now));
        }
        assert_eq!(recorder.lock().behind(now), Some("the audit queue is full"));
        assert!(
            recorder.push(action("s"), now),
            "a call admitted before the queue filled is still recorded"
        );
    }

    #[tokio::test]
    async fn batches_are_taken_oldest_first_and_marked_until_written() {
        let recorder = Recorder::default();
        let start = Instant::now();
        for i in 0..RECORD_BATCH + 1 {
            recorder.push(
                action(&i.to_string()),
                start + Duration::from_millis(i as u64),
            );
        }
        let batch = recorder.next_batch().await.unwrap();
        assert_eq!(batch.len(), RECORD_BATCH);
        assert_eq!(batch[0].session_id, "0");
        assert_eq!(recorder.lock().writing_since, Some(start));
        recorder.written();
        recorder.close();
        let rest = recorder.next_batch().await.unwrap();
        assert_eq!(rest[0].session_id, RECORD_BATCH.to_string());
        recorder.written();
        assert!(recorder.next_batch().await.is_none(), "closed and drained");
    }

    #[test]
    fn what_is_queued_is_bounded_and_keyed() {
        let long = format!("/{}", "x".repeat(600));
        let first = queued("s".into(), "VERYLONGEXTENSIONMETHOD", &long, "404");
        let second = queued("s".into(), "GET", "/cart", "200");
        assert!(
            crate::audit::ActionText::checked(&first.method, &first.target, &first.outcome).is_ok()
        );
        assert!(first.target.ends_with(crate::audit::TRUNCATED));
        assert_ne!(first.idempotency_key, second.idempotency_key);
        assert!(uuid::Uuid::try_parse(&first.idempotency_key).is_ok());
    }
}
