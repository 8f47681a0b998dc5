//! actorchat: an actor-model chat server.
//!
//! Where a chat message travels (see docs/architecture.md for the diagram):
//!
//! 1. `listener` accepts the TCP connection and bounds its HTTP phase;
//!    `http` checks the upgrade (origin, connection and room limits) and
//!    upgrades `GET /ws` ([`websocket`] does the RFC 6455 part), then starts a
//!    `connection` task-actor.
//! 2. The connection decodes and validates the frame, rate-limits it and casts
//!    it to its `room` actor (found or created by the `registry`), unless the
//!    room's inbox is full.
//! 3. The room stamps author, id and time, encodes the frame once, hands it
//!    to its stream in `history` (one writer thread commits every room's
//!    batch in one transaction) and, once committed, offers the bytes to
//!    every member's `mailbox` without waiting.
//! 4. Each connection drains its mailbox into its socket, one flush per batch.
//!
//! A chat text like `200!` takes a detour first: the connection hands it to
//! the `calc` scheduler and holds the client's later messages until the
//! result comes back (`calc::holdback`), then casts it to the room with its
//! `calc` object.
//!
//! The registry and the scheduler are supervised by a root actor
//! (`supervisor`) that restarts them; `/readyz` reports while one is down.
//!
//! The public API is what the binary and tests need ([`start`], [`Config`],
//! [`metrics`]) plus the [`websocket`] layer, which the Autobahn example and
//! the fuzz targets drive directly; everything else is crate-private.

pub(crate) mod assets;
pub mod auth;
pub(crate) mod calc;
pub(crate) mod clock;
pub mod cluster;
pub mod config;
pub(crate) mod connection;
pub mod history;
pub(crate) mod http;
pub(crate) mod identity;
pub(crate) mod listener;
pub(crate) mod mailbox;
pub mod metrics;
pub(crate) mod observer;
pub(crate) mod origin;
pub(crate) mod rate_limit;
pub(crate) mod registry;
pub(crate) mod room;
pub(crate) mod server;
pub(crate) mod supervisor;
pub mod websocket;

pub use config::{Config, ConfigError};
pub use observer::AdminToken;
pub use server::{RunningServer, StartError, raise_fd_limit, start};
pub use supervisor::TopLevel;
