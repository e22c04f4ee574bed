//! Parse errors, each mapped to the SIP status a request gets for it.

use std::fmt;

/// What was wrong with a message. Every kind maps to a status code (for
/// requests) and a reason phrase naming the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The start line is not a request line or a status line.
    BadStartLine(&'static str),
    /// The SIP version is not SIP/2.0 (answered 505).
    BadVersion,
    /// A header line without a colon, or a malformed name.
    BadHeaderLine,
    /// A header value that does not follow its grammar.
    BadHeader(&'static str),
    /// A header every request needs is missing.
    MissingHeader(&'static str),
    /// A header that may appear only once appears twice.
    DuplicateHeader(&'static str),
    /// The request URI does not follow its grammar.
    BadRequestUri(&'static str),
    /// CSeq's method differs from the request method.
    CSeqMismatch,
    /// Content-Length is not a number, or conflicts with another.
    BadContentLength,
    /// A datagram shorter than its Content-Length says.
    BodyTruncated,
    /// No empty line ends the headers of a datagram.
    NoEndOfHeaders,
    /// More headers than the configured limit.
    TooManyHeaders,
    /// A line longer than the configured limit.
    LineTooLong,
    /// A message larger than the configured limit (answered 513).
    MessageTooLarge,
    /// A status code outside 100..=699.
    BadStatusCode,
}

impl ParseError {
    /// The status code a request with this fault is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ParseError::BadVersion => 505,
            ParseError::MessageTooLarge => 513,
            _ => 400,
        }
    }

    /// A short machine-readable name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ParseError::BadStartLine(_) => "bad-start-line",
            ParseError::BadVersion => "bad-version",
            ParseError::BadHeaderLine => "bad-header-line",
            ParseError::BadHeader(_) => "bad-header",
            ParseError::MissingHeader(_) => "missing-header",
            ParseError::DuplicateHeader(_) => "duplicate-header",
            ParseError::BadRequestUri(_) => "bad-request-uri",
            ParseError::CSeqMismatch => "cseq-mismatch",
            ParseError::BadContentLength => "bad-content-length",
            ParseError::BodyTruncated => "body-truncated",
            ParseError::NoEndOfHeaders => "no-end-of-headers",
            ParseError::TooManyHeaders => "too-many-headers",
            ParseError::LineTooLong => "line-too-long",
            ParseError::MessageTooLarge => "message-too-large",
            ParseError::BadStatusCode => "bad-status-code",
        }
    }

    /// The reason phrase: names the fault, so the sender can fix it.
    pub fn reason(&self) -> String {
        match self {
            ParseError::BadStartLine(what) => format!("Bad Request Line ({what})"),
            ParseError::BadVersion => "Version Not Supported".to_string(),
            ParseError::BadHeaderLine => "Bad Header Line".to_string(),
            ParseError::BadHeader(name) => format!("Bad {name} Header"),
            ParseError::MissingHeader(name) => format!("Missing {name} Header"),
            ParseError::DuplicateHeader(name) => format!("Duplicate {name} Header"),
            ParseError::BadRequestUri(what) => format!("Bad Request-URI ({what})"),
            ParseError::CSeqMismatch => "CSeq Method Does Not Match Request Method".to_string(),
            ParseError::BadContentLength => "Bad Content-Length".to_string(),
            ParseError::BodyTruncated => "Body Shorter Than Content-Length".to_string(),
            ParseError::NoEndOfHeaders => "No Empty Line After Headers".to_string(),
            ParseError::TooManyHeaders => "Too Many Headers".to_string(),
            ParseError::LineTooLong => "Header Line Too Long".to_string(),
            ParseError::MessageTooLarge => "Message Too Large".to_string(),
            ParseError::BadStatusCode => "Bad Status Code".to_string(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.reason())
    }
}

impl std::error::Error for ParseError {}
