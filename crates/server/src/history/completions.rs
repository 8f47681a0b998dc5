//! How the writer thread tells rooms that their batch is committed.
//!
//! A Tokio task woken from a thread outside the runtime goes to the back of
//! the runtime's global queue. In a big room that queue is long exactly
//! when it matters: a broadcast to 1,000 members wakes 1,000 connection
//! tasks, a worker's own queue holds 256, and the rest overflow into the
//! global queue. A room woken by the writer waited behind them: in the
//! fan-out benchmark (1,000 members) the room's storage round trip had a
//! p99 of 23 ms while the commit itself took 0.6 ms.
//!
//! So the writer does not wake rooms itself. It queues each completion and
//! makes a socket readable; one task on the runtime, woken by the I/O
//! driver (which the workers poll every few dozen tasks), runs the
//! completions. Their wake-ups of the rooms then come from a worker and
//! land in its own queue, ahead of the backlog.
//!
//! The socket is written only when the dispatcher has drained everything
//! (one write per burst of commits, not per commit).
//!
//! Only rooms big enough to cause that backlog use it (see
//! `history::Append::via_dispatcher`). For small rooms the global queue is
//! short, and a direct wake-up is quicker than waiting for a busy worker to
//! poll the I/O driver: at 7,500 msg/s over 500 rooms of 4 members, routing
//! every completion through here raised the delivery p99 from 28 to 43 ms
//! (three interleaved pairs).

use std::io::{ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::mpsc;

use tracing::warn;

use super::StoreError;

/// A batch's `done`, with its result.
type Completion = (
    Box<dyn FnOnce(Result<(), StoreError>) + Send>,
    Result<(), StoreError>,
);

/// The writer's side.
pub(crate) enum Completions {
    /// Through the dispatcher task.
    Dispatched {
        queue: mpsc::Sender<Completion>,
        signal: UnixStream,
        /// Set when the socket has been written and the dispatcher has not
        /// yet drained the queue: no need to write again.
        signalled: Arc<AtomicBool>,
    },
    /// No Tokio runtime to dispatch on (a synchronous caller): `done` runs
    /// on the writer thread.
    Direct,
}

impl Completions {
    /// Starts the dispatcher on the current Tokio runtime, if there is one.
    pub(crate) fn start() -> std::io::Result<Completions> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Ok(Completions::Direct);
        };
        let (signal, wake) = UnixStream::pair()?;
        signal.set_nonblocking(true)?;
        wake.set_nonblocking(true)?;
        let wake = {
            let _entered = runtime.enter();
            tokio::net::UnixStream::from_std(wake)?
        };
        let (queue, completions) = mpsc::channel();
        let signalled = Arc::new(AtomicBool::new(false));
        runtime.spawn(dispatch(wake, completions, signalled.clone()));
        Ok(Completions::Dispatched {
            queue,
            signal,
            signalled,
        })
    }

    pub(crate) fn complete(
        &mut self,
        done: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
        result: Result<(), StoreError>,
    ) {
        let Completions::Dispatched {
            queue,
            signal,
            signalled,
        } = self
        else {
            return done(result);
        };
        if let Err(mpsc::SendError((done, result))) = queue.send((done, result)) {
            // The dispatcher is gone (the runtime is shutting down).
            return done(result);
        }
        if signalled.swap(true, SeqCst) {
            return;
        }
        match signal.write(&[1]) {
            // A full socket is already readable: the dispatcher will run.
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => {
                // The completion stays queued (switching to `Direct` here
                // would strand it): the next one tries the socket again,
                // and if the dispatcher is gone, sending fails and `done`
                // runs here.
                signalled.store(false, SeqCst);
                warn!(error = %e, "could not wake the storage completion dispatcher; trying again with the next commit");
            }
        }
    }
}

async fn dispatch(
    wake: tokio::net::UnixStream,
    completions: mpsc::Receiver<Completion>,
    signalled: Arc<AtomicBool>,
) {
    let mut buf = [0; 64];
    loop {
        if wake.readable().await.is_err() {
            break;
        }
        match wake.try_read(&mut buf) {
            // The writer (and its end of the socket) is gone.
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(e) => {
                warn!(error = %e, "storage completion dispatcher stops");
                break;
            }
        }
        // Cleared before draining: a completion queued after the drain
        // finds it clear and writes the socket again.
        signalled.store(false, SeqCst);
        while let Ok((done, result)) = completions.try_recv() {
            done(result);
        }
    }
    // Whatever is left (the writer stopped) is still answered.
    while let Ok((done, result)) = completions.try_recv() {
        done(result);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::sync::oneshot;

    fn done_into(tx: oneshot::Sender<(Result<(), StoreError>, bool)>) -> Completion {
        let done = Box::new(move |r| {
            // Whether it ran on a runtime worker (not the writer thread).
            let on_runtime = tokio::runtime::Handle::try_current().is_ok();
            let _ = tx.send((r, on_runtime));
        });
        (done, Ok(()))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn completions_from_another_thread_run_on_the_runtime() {
        let mut completions = Completions::start().unwrap();
        assert!(matches!(completions, Completions::Dispatched { .. }));
        let mut answers = Vec::new();
        let mut batch = Vec::new();
        for _ in 0..1000 {
            let (tx, rx) = oneshot::channel();
            answers.push(rx);
            batch.push(done_into(tx));
        }
        // From a plain thread, in bursts, as the writer does.
        std::thread::spawn(move || {
            for (i, (done, result)) in batch.into_iter().enumerate() {
                completions.complete(done, result);
                if i % 100 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        })
        .join()
        .unwrap();
        for rx in answers {
            let (result, on_runtime) = rx.await.unwrap();
            assert!(result.is_ok());
            assert!(on_runtime, "done ran on the runtime");
        }
    }

    #[test]
    fn without_a_runtime_done_runs_at_once() {
        let mut completions = Completions::start().unwrap();
        assert!(matches!(completions, Completions::Direct));
        let (tx, mut rx) = oneshot::channel();
        let (done, result) = done_into(tx);
        completions.complete(done, result);
        let (result, on_runtime) = rx.try_recv().unwrap();
        assert!(result.is_ok() && !on_runtime);
    }
}
