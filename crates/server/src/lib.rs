//! actorchat: an actor-model chat server.
//!
//! Where a chat message travels (see docs/architecture.md for the diagram):
//!
//! 1. [`listener`] accepts the TCP connection and bounds its HTTP phase;
//!    [`http`] upgrades `GET /ws` ([`websocket`] does the RFC 6455 part) and
//!    starts a [`connection`] task-actor.
//! 2. The connection decodes and validates the frame, rate-limits it and casts
//!    it to its [`room`] actor (found or created by the [`registry`]).
//! 3. The room stamps author, sequence number and time, encodes the frame once
//!    and offers the bytes to every member's [`mailbox`] without waiting.
//! 4. Each connection drains its mailbox into its socket, one flush per batch.
//!
//! A chat text like `200!` takes a detour first: the connection hands it to
//! the [`calc`] scheduler and holds the client's later messages until the
//! result comes back, then casts it to the room with its `calc` object.

pub mod assets;
pub mod calc;
pub mod clock;
pub mod config;
pub mod connection;
pub mod http;
pub mod listener;
pub mod mailbox;
pub mod metrics;
pub mod rate_limit;
pub mod registry;
pub mod room;
pub mod server;
pub mod session;
pub mod websocket;

pub use config::Config;
pub use server::{RunningServer, StartError, raise_fd_limit, start};
