//! LoST, the Location-to-Service Translation protocol (RFC 5222), sans-IO.
//!
//! - [`write`]: the requests the router sends to an ECRF (`findService`,
//!   `listServicesByLocation`) with the location as the call carried it
//!   (an RFC 5491 shape, or an RFC 5139 civic address), and the responses
//!   its own LoST server gives.
//! - [`read`]: responses (`findServiceResponse`, `listServicesByLocationResponse`,
//!   `redirect`, `errors`) and requests, through the same bounded,
//!   namespace-aware reader as PIDF-LO (`pidf::dom`: no DTD, no entity
//!   expansion, size, depth and element count checked before anything is
//!   stored), with further bounds on mappings and URIs ([`Limits`]).
//! - [`cache`]: mappings kept until they expire, found again by the same
//!   point or civic address, or by any point inside their service boundary;
//!   expired ones stay for when the ECRF cannot answer.
//!
//! Nothing here opens a socket or reads the clock: the time a mapping is
//! checked against is always given (`now`).

pub mod cache;
pub mod read;
pub mod route;
pub mod write;

#[cfg(test)]
mod tests;

use time::OffsetDateTime;

pub use cache::{Cache, CacheKey, Hit};
pub use read::{read_request, read_response, read_response_with};

use crate::pidf::{CivicAddress, Shape};

/// The LoST namespace.
pub const NS: &str = "urn:ietf:params:xml:ns:lost1";
/// The media type of LoST messages (RFC 5222 s17.2).
pub const CONTENT_TYPE: &str = "application/lost+xml";
/// The service asked for when the call names none more precise.
pub const DEFAULT_SERVICE: &str = "urn:service:sos";

/// A location sent in, or read from, a LoST request.
#[derive(Clone, Debug, PartialEq)]
pub enum Location {
    /// Profile `geodetic-2d`: an RFC 5491 shape. Three-dimensional shapes are
    /// written as their two-dimensional counterparts.
    Geodetic(Shape),
    /// Profile `civic`: an RFC 5139 civic address.
    Civic(CivicAddress),
}

impl Location {
    /// The RFC 5222 location profile name.
    pub fn profile(&self) -> &'static str {
        match self {
            Location::Geodetic(_) => "geodetic-2d",
            Location::Civic(_) => "civic",
        }
    }
}

/// The `expires` attribute of a mapping (RFC 5222 s5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expires {
    At(OffsetDateTime),
    /// `NO-CACHE`: the mapping must not be kept.
    NoCache,
    /// `NO-EXPIRATION`: valid until replaced.
    NoExpiration,
}

/// A service boundary given by value (RFC 5222 s5.5): shapes of the
/// `geodetic-2d` profile and civic addresses, each the area or part of it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Boundary {
    pub geodetic: Vec<Shape>,
    pub civic: Vec<CivicAddress>,
    /// Boundary parts that could not be read (an unknown profile, a shape
    /// that does not parse): kept as reasons, the mapping is still used.
    pub unreadable: Vec<String>,
}

/// A `serviceBoundaryReference` (RFC 5222 s5.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundaryReference {
    pub source: String,
    pub key: String,
}

/// One `<mapping>` (RFC 5222 s5).
#[derive(Clone, Debug, PartialEq)]
pub struct Mapping {
    pub expires: Expires,
    pub last_updated: Option<OffsetDateTime>,
    pub source: String,
    pub source_id: String,
    /// `(xml:lang, name)` of each `displayName`.
    pub display_names: Vec<(Option<String>, String)>,
    pub service: String,
    pub boundary: Option<Boundary>,
    pub boundary_reference: Option<BoundaryReference>,
    /// The `sip:` and `sips:` URIs, in the order given.
    pub uris: Vec<String>,
    /// URIs of other schemes (`xmpp:`, `tel:`...), which the router cannot
    /// route a call to.
    pub other_uris: Vec<String>,
    pub service_number: Option<String>,
}

impl Mapping {
    /// Whether the mapping may be used at `now` without asking again.
    pub fn fresh_at(&self, now: OffsetDateTime) -> bool {
        match self.expires {
            Expires::At(t) => now < t,
            Expires::NoExpiration => true,
            Expires::NoCache => false,
        }
    }

    /// The first display name, for records and logs.
    pub fn display_name(&self) -> Option<&str> {
        self.display_names.first().map(|(_, n)| n.as_str())
    }
}

/// A warning of a response (RFC 5222 s13.2): its element name, message and
/// the server that gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub source: String,
    pub kind: String,
    pub message: Option<String>,
}

/// `<findServiceResponse>` (RFC 5222 s8.3).
#[derive(Clone, Debug, PartialEq)]
pub struct FindServiceResponse {
    /// At least one, and at least one of them with a SIP or SIPS URI.
    pub mappings: Vec<Mapping>,
    pub warnings: Vec<Warning>,
    /// The `source` of each `<via>` of `<path>`, in order.
    pub path: Vec<String>,
    /// The `id` of the location the server used.
    pub location_used: Option<String>,
    /// `<locationValidation>` (RFC 5222 s8.4.2), when the server checked
    /// the civic address.
    pub validation: Option<Validation>,
}

/// `<locationValidation>`: the civic elements of the request by what the
/// server found of them, each by its local name (`country`, `A1`, `HNO`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validation {
    pub valid: Vec<String>,
    pub invalid: Vec<String>,
    pub unchecked: Vec<String>,
}

impl FindServiceResponse {
    /// The first mapping that names a SIP or SIPS URI.
    pub fn routable(&self) -> Option<&Mapping> {
        self.mappings.iter().find(|m| !m.uris.is_empty())
    }
}

/// `<listServicesByLocationResponse>` (RFC 5222 s10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceList {
    pub services: Vec<String>,
    pub warnings: Vec<Warning>,
    pub path: Vec<String>,
    pub location_used: Option<String>,
}

/// `<redirect>` (RFC 5222 s13.3): ask `target` instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub target: String,
    pub source: String,
    pub message: Option<String>,
}

/// The error kinds of RFC 5222 s13.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    BadRequest,
    InternalError,
    ServiceSubstitution,
    DefaultMappingReturned,
    Forbidden,
    NotFound,
    Loop,
    ServiceNotImplemented,
    ServerTimeout,
    ServerError,
    LocationInvalid,
    LocationProfileUnrecognized,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::BadRequest,
        ErrorKind::InternalError,
        ErrorKind::ServiceSubstitution,
        ErrorKind::DefaultMappingReturned,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::Loop,
        ErrorKind::ServiceNotImplemented,
        ErrorKind::ServerTimeout,
        ErrorKind::ServerError,
        ErrorKind::LocationInvalid,
        ErrorKind::LocationProfileUnrecognized,
    ];

    /// The element name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "badRequest",
            ErrorKind::InternalError => "internalError",
            ErrorKind::ServiceSubstitution => "serviceSubstitution",
            ErrorKind::DefaultMappingReturned => "defaultMappingReturned",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotFound => "notFound",
            ErrorKind::Loop => "loop",
            ErrorKind::ServiceNotImplemented => "serviceNotImplemented",
            ErrorKind::ServerTimeout => "serverTimeout",
            ErrorKind::ServerError => "serverError",
            ErrorKind::LocationInvalid => "locationInvalid",
            ErrorKind::LocationProfileUnrecognized => "locationProfileUnrecognized",
        }
    }

    pub fn from_name(name: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// Whether asking again (this server later, or another) may succeed:
    /// the server's own trouble rather than something wrong with the query.
    pub fn transient(self) -> bool {
        matches!(
            self,
            ErrorKind::InternalError | ErrorKind::ServerTimeout | ErrorKind::ServerError
        )
    }
}

/// One error of an `<errors>` response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: ErrorKind,
    pub message: Option<String>,
}

/// `<errors>` (RFC 5222 s13.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Errors {
    pub source: String,
    pub message: Option<String>,
    /// Each error the server named; unknown element names are left out.
    pub faults: Vec<Fault>,
}

/// Longest reason string [`Errors::reason`] gives.
pub const REASON_MAX: usize = 120;

impl Errors {
    /// A short line for a call record: `notFound from ecrf.example: no
    /// mapping` (the first error with its message, the others by name),
    /// at most [`REASON_MAX`] bytes, one line.
    pub fn reason(&self) -> String {
        let mut out = String::new();
        match self.faults.first() {
            Some(f) => out.push_str(f.kind.as_str()),
            None => out.push_str("error"),
        }
        for f in self.faults.iter().skip(1) {
            out.push('+');
            out.push_str(f.kind.as_str());
        }
        if !self.source.is_empty() {
            out.push_str(" from ");
            out.push_str(&self.source);
        }
        let message = self
            .faults
            .first()
            .and_then(|f| f.message.as_deref())
            .or(self.message.as_deref());
        if let Some(m) = message {
            out.push_str(": ");
            out.push_str(m);
        }
        one_line(&out, REASON_MAX)
    }

    /// Whether every error is the server's own trouble.
    pub fn transient(&self) -> bool {
        !self.faults.is_empty() && self.faults.iter().all(|f| f.kind.transient())
    }
}

/// `s` with control characters made spaces, cut at `max` bytes on a
/// character boundary.
pub(crate) fn one_line(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// What a LoST server answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    Found(FindServiceResponse),
    Listed(ServiceList),
    Redirect(Redirect),
    Errors(Errors),
}

/// Why a document could not be read as LoST.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum LostError {
    #[error("not well-formed XML: {0}")]
    NotWellFormed(String),
    #[error("document larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("elements nested deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("more than {limit} elements")]
    TooManyElements { limit: usize },
    #[error("root element {0} is not a LoST message")]
    NotLost(String),
    #[error("{0}")]
    Invalid(String),
    #[error("more than {limit} {what}")]
    TooMany { what: &'static str, limit: usize },
    #[error("no mapping has a SIP or SIPS URI")]
    NoSipUri,
}

impl LostError {
    /// A short, stable name for records and metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            LostError::NotWellFormed(_) => "not-well-formed",
            LostError::TooLarge { .. } => "too-large",
            LostError::TooDeep { .. } => "too-deep",
            LostError::TooManyElements { .. } => "too-many-elements",
            LostError::NotLost(_) => "not-lost",
            LostError::Invalid(_) => "invalid",
            LostError::TooMany { .. } => "too-many",
            LostError::NoSipUri => "no-sip-uri",
        }
    }

    /// One line for a call record, at most [`REASON_MAX`] bytes.
    pub fn reason(&self) -> String {
        one_line(&self.to_string(), REASON_MAX)
    }
}

/// Bounds on what [`read_response_with`] accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
    /// `<mapping>` elements in one response.
    pub max_mappings: usize,
    /// `<uri>` elements in one mapping.
    pub max_uris: usize,
    /// Services in a service list, vias in a path, warnings.
    pub max_items: usize,
}

impl Default for Limits {
    /// 1 MiB, 48 levels, 50 000 elements (a county boundary written as one
    /// `gml:pos` per vertex), 16 mappings, 16 URIs each, 64 other items.
    fn default() -> Self {
        Limits {
            max_bytes: 1 << 20,
            max_depth: 48,
            max_elements: 50_000,
            max_mappings: 16,
            max_uris: 16,
            max_items: 64,
        }
    }
}
