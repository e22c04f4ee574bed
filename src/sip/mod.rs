//! The SIP message layer.
//!
//! - [`parse`]: framing and the zero-copy header index ([`parse_datagram`],
//!   [`parse_stream`]), then validation.
//! - [`message`]: the parsed [`Message`] and its typed accessors.
//! - [`span`]: byte ranges into the received bytes ([`Span`]), below the
//!   message, its URIs and its header values.
//! - [`header`]: header names with their compact forms.
//! - [`uri`], [`values`]: URIs and header values, parsed on demand.
//! - [`body`]: multipart bodies.
//! - [`edit`]: outgoing messages as the received bytes plus edits.
//! - [`full`]: the path for messages the fast path declines.

pub mod body;
pub mod build;
pub mod edit;
pub mod error;
pub mod full;
pub mod header;
pub mod message;
pub mod parse;
pub mod span;
pub mod text;
pub mod uri;
pub mod values;

pub use error::ParseError;
pub use header::HeaderName;
pub use message::{Header, Message, Method, ParsePath, StartLine};
pub use parse::{
    check_strict, check_transaction, frame_stream, index_datagram, parse_datagram, parse_lenient,
    parse_stream, receive, validate, Limits, Status,
};
pub use span::Span;
pub use uri::{Scheme, Uri};
pub use values::{CSeq, MediaType, NameAddr, Via};
