//! The process figures: memory, CPU, threads, descriptors and the Tokio
//! runtime, read from `/proc/self` (Linux; zeros elsewhere).
//!
//! `/proc/self/status` and `/proc/self/stat` cost the same however many
//! connections are open. Counting open descriptors lists `/proc/self/fd`,
//! one entry per connection, so the sampler does that only every
//! [`FDS_EVERY`] seconds and on a blocking thread.

use serde::Serialize;

/// Seconds between two counts of the open descriptors.
pub(crate) const FDS_EVERY: u64 = 10;

/// `VmRSS` and `Threads` from `/proc/self/status`.
pub(crate) fn status() -> (u64, u64) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (0, 0);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:") * 1024, field("Threads:"))
}

/// Open descriptors; O(descriptors), so call it on a blocking thread.
pub(crate) fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The Tokio runtime's own figures (stable metrics only).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub(crate) struct Runtime {
    pub workers: usize,
    pub alive_tasks: usize,
    pub global_queue_depth: usize,
}

impl Runtime {
    pub(crate) fn current() -> Self {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Runtime::default();
        };
        let m = handle.metrics();
        Runtime {
            workers: m.num_workers(),
            alive_tasks: m.num_alive_tasks(),
            global_queue_depth: m.global_queue_depth(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn proc_figures_are_read() {
        let (rss, threads) = status();
        assert!(rss > 0 && threads > 0);
        assert!(open_fds() > 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runtime_figures_name_the_workers() {
        assert_eq!(Runtime::current().workers, 2);
    }
}
