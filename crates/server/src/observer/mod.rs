//! The observer: a live view of the actor system for a person, at
//! `/observer` (the page is part of the embedded web client), fed by one
//! snapshot a second over Server-Sent Events.
//!
//! How it stays off the hot path (docs/architecture.md has the long form):
//! - the actors only bump relaxed atomics they own or share with no one
//!   busy: a room counts its messages and deliveries in its own
//!   [`RoomStats`]; the connections count why they closed;
//! - delivery latency is *sampled*: at most one broadcast per
//!   [`latency::PROBE_INTERVAL`] is marked, and a connection compares one
//!   pointer per frame it writes (see [`latency`]);
//! - one sampler task ([`sampler`]) reads those atomics once a second,
//!   O(rooms) for the totals and top-100 selection and never O(connections),
//!   turns counters into rates, keeps five minutes of history, and publishes
//!   one encoded snapshot that every open observer page shares.
//!
//! - [`figures`]: what the actors write (room stats, close reasons, the
//!   calculation board), reachable through [`crate::metrics::Metrics`].
//! - [`snapshot`]: the snapshot's shape and how it is computed.
//! - [`access`]: who may watch and who may act (`--admin-token`).
//! - [`routes`]: the stream and the actions (kill a room, close a
//!   connection, cancel a calculation).

pub(crate) mod access;
pub(crate) mod figures;
pub(crate) mod latency;
pub(crate) mod process;
pub(crate) mod routes;
pub(crate) mod sampler;
pub(crate) mod snapshot;

pub use access::AdminToken;
pub(crate) use figures::{CloseReason, Figures, RoomStats};
pub(crate) use sampler::Hub;
