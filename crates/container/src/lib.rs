//! vessel OCI runtime library.
