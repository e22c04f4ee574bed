//! PIDF-LO location documents (RFC 4119, 5139, 5491).
