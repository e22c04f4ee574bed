//! RFC 3261 transactions, sans-IO.
