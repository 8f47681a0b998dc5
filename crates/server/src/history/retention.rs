//! Retention in the background: every [`PERIOD`], remove what
//! `--history-max-per-room` and `--history-max-age` no longer keep, one
//! small batch at a time with pauses between, never on the chat path.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Streams;

const PERIOD: Duration = Duration::from_secs(30);
/// Pause between two trim batches, so commits interleave with trimming.
const PAUSE: Duration = Duration::from_millis(20);

pub(crate) fn spawn_retention(streams: Streams, shutdown: CancellationToken) {
    let retention = streams.retention;
    if retention.max_per_room.is_none() && retention.max_age.is_none() {
        return;
    }
    tokio::spawn(async move {
        loop {
            let mut removed = 0;
            loop {
                match streams.trim().await {
                    Ok(0) => break,
                    Ok(n) => removed += n,
                    Err(e) => {
                        warn!(error = %e, "history retention failed; retrying later");
                        break;
                    }
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(PAUSE) => {}
                }
            }
            if removed > 0 {
                info!(removed, "history retention removed old messages");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(PERIOD) => {}
            }
        }
    });
}
