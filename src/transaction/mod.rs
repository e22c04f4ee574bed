//! RFC 3261 transactions, sans-IO.
//!
//! Transaction matching lives in [`key`].

#![warn(missing_docs)]

pub mod key;

pub use key::{new_branch, KeyKind, RequestKeyParts, TransactionKey, MAGIC_COOKIE};
