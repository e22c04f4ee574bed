//! Emergency call handling: detection, location, country rules, PSAP selection.

pub mod detect;
pub mod location;
pub mod pidf;
pub mod psap;
pub mod rules;
