//! Client-side limits: the open-file limit and the loopback source ports.
//!
//! A load generator that runs out of file descriptors or source ports would
//! otherwise look like a server that refuses connections. These helpers raise
//! what can be raised and name the limit when one is hit, so the summary can
//! say "the client stopped here, not the server".

use std::io;

use serde::{Deserialize, Serialize};

/// A limit on the load generator's side that stops new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientLimit {
    /// `EMFILE`/`ENFILE`: this process (or the system) is out of file descriptors.
    OpenFiles,
    /// `EADDRNOTAVAIL`/`EADDRINUSE`: no free source port for this source address.
    SourcePorts,
}

impl ClientLimit {
    /// Classifies an OS error, if it is one of the client-side limits.
    pub fn of(err: &io::Error) -> Option<ClientLimit> {
        match err.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE) => Some(ClientLimit::OpenFiles),
            Some(libc::EADDRNOTAVAIL | libc::EADDRINUSE) => Some(ClientLimit::SourcePorts),
            _ => None,
        }
    }

    /// A sentence for the summary: what stopped the run and what to do.
    pub fn explain(self) -> String {
        match self {
            ClientLimit::OpenFiles => {
                let (soft, hard) = nofile();
                format!(
                    "the load generator hit its open-file limit (EMFILE; soft {soft}, hard {hard}): \
                     a client-side limit stopped the run, not the server; spread clients over \
                     processes with --procs N"
                )
            }
            ClientLimit::SourcePorts => {
                "the load generator ran out of source ports (EADDRNOTAVAIL): \
                 a client-side limit stopped the run, not the server; add loopback source \
                 addresses with --source-ips 127.0.0.1,127.0.0.2,... (and --procs N for more \
                 file descriptors)"
                    .to_owned()
            }
        }
    }
}

/// The current (soft, hard) open-file limits; (0, 0) if unknown.
pub fn nofile() -> (u64, u64) {
    rlimit::Resource::NOFILE.get().unwrap_or((0, 0))
}

/// Raises the open-file soft limit to the hard limit; returns the new
/// (soft, hard) pair. Failure is not fatal: the run goes on with what it has.
pub fn raise_nofile() -> (u64, u64) {
    let (soft, hard) = nofile();
    if soft < hard {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
    nofile()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_limits() {
        let e = io::Error::from_raw_os_error(libc::EMFILE);
        assert_eq!(ClientLimit::of(&e), Some(ClientLimit::OpenFiles));
        let e = io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
        assert_eq!(ClientLimit::of(&e), Some(ClientLimit::SourcePorts));
        let e = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(ClientLimit::of(&e), None);
        assert!(ClientLimit::OpenFiles.explain().contains("--procs"));
        assert!(ClientLimit::SourcePorts.explain().contains("--source-ips"));
    }
}
