//! sosrouter: an emergency call router.
//!
//! The crate is a library with a thin binary. The core modules are sans-IO:
//! they never touch a socket or the clock, so tests drive them with plain
//! values.
//!
//! - [`sip`]: the message layer: zero-copy parser, URIs, bodies, edits.
//! - [`transaction`]: RFC 3261 transaction state machines, time as an input.
//! - [`pidf`]: PIDF-LO location documents, read and written; a format layer
//!   beside [`sip`].
//! - [`emergency`]: detection, location (PIDF-LO), country rules, PSAP lookup,
//!   and the router that plugs them into the proxy.
//! - [`inventory`]: the number inventory snapshot.
//! - [`store`]: the database (inventory, call records, audit log) behind
//!   the operators' API in [`admin`].

pub mod admin;
pub mod cdr;
pub mod check;
pub mod config;
pub mod driver;
pub mod emergency;
pub mod fds;
pub mod held;
pub mod inspect;
pub mod inventory;
pub mod logbuf;
pub mod logging;
pub mod lost;
pub mod metrics;
pub mod notify;
pub mod outbound;
pub mod pidf;
pub mod proxy;
pub mod sip;
pub mod store;
pub mod token;
pub mod transaction;
pub mod transport;
pub mod wire;
