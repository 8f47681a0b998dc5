//! The errors that end a benchmark run.
//!
//! Failures of individual clients (a refused connection, a dropped socket) do
//! not end a run: they are counted and reported in the summary. These errors
//! are the ones that leave nothing to report.

use std::path::PathBuf;

/// Why a benchmark run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid --url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error("invalid options: {0}")]
    InvalidOption(String),

    #[error("could not start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),

    #[error("could not resolve {host}: {reason}")]
    Resolve { host: String, reason: String },

    #[error("no client could connect to {url} ({reason}); is the server running there?")]
    NoClients { url: String, reason: String },

    #[error("worker process {index}: {reason}")]
    Worker { index: usize, reason: String },

    #[error("could not write the report to {}: {source}", path.display())]
    Report {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("could not encode or decode JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error("latency histogram: {0}")]
    Histogram(String),

    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
