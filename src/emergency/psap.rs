//! PSAP service areas and lookup.
