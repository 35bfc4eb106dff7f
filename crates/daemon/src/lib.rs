//! vessel daemon (in progress).
