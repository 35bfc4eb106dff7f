//! Network back ends.
