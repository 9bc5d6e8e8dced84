//! Password hashing off the async runtime: one thread per core takes argon2 computations from a
//! bounded queue. A thread goes from one computation straight to the next, so the cores stay on
//! argon2 while sign-ins wait (handing each one to a fresh blocking task left gaps), and a full queue
//! answers RESOURCE_EXHAUSTED (429 at the gateway) at once, so a flood of sign-ins or set-password
//! requests neither piles up memory nor delays everyone's sign-in without bound.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use assist_runtime::{Error, Result};
use tokio::sync::oneshot;

/// At most this many computations wait; more are refused.
pub const QUEUE: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads and their queue; the threads end when this is dropped.
pub struct Hashing {
    jobs: SyncSender<Job>,
}

impl Hashing {
    /// One thread per core.
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(QUEUE);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || work(&queue))
                .expect("a hashing thread starts");
        }
        Self { jobs }
    }

    /// Runs `compute` on a hashing thread; RESOURCE_EXHAUSTED when [`QUEUE`] computations wait
    /// already. A computation whose caller has gone away (the request was dropped) is skipped.
    pub async fn run<T: Send + 'static>(
        &self,
        compute: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (done, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            if !done.is_closed() {
                let _ = done.send(compute());
            }
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(Error::ResourceExhausted(
                    "too many password checks at once, try again shortly".into(),
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(Error::internal(anyhow::anyhow!(
                    "the hashing threads ended"
                )));
            }
        }
        answer
            .await
            .map_err(|_| Error::internal(anyhow::anyhow!("a hashing thread failed")))
    }
}

impl Default for Hashing {
    fn default() -> Self {
        Self::new()
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        match job {
            // A panic in one computation answers its caller with an error and keeps the thread.
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}
