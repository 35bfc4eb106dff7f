//! vessel's REST API, shared by the daemon (`vessel-daemon`) and its clients
//! (the `vessel` command): the request and response types, the OpenAPI 3
//! document that describes them, and a small client over the daemon's Unix
//! socket.
//!
//! The API is versioned by path (`/v1/...`). Every error response is a JSON
//! object `{"error": "..."}` whose message says what failed and what to do.

pub mod client;
pub mod console;
pub mod size;
pub mod types;

pub use client::{Client, ClientError, RawResponse};
pub use console::{CONSOLE_PROTOCOL, ConsoleStream, LogStream};
pub use hyper::Method;
pub use size::parse_size;
pub use types::*;

/// The OpenAPI 3 document of the API, as kept in the repository
/// (`crates/api/openapi.json`) and served at `GET /openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vessel/vessel.sock";
/// Where the daemon keeps its state unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/vessel";
/// Clients read the socket path from this variable when it is set.
pub const SOCKET_ENV: &str = "VESSEL_SOCKET";
/// The largest request body the daemon accepts, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The socket a client should use: `VESSEL_SOCKET` or the default.
pub fn socket_from_env() -> std::path::PathBuf {
    match std::env::var_os(SOCKET_ENV) {
        Some(path) if !path.is_empty() => path.into(),
        _ => DEFAULT_SOCKET.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_document_is_json_and_names_every_path() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert_eq!(doc["openapi"].as_str().unwrap().chars().next(), Some('3'));
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/openapi.json",
            "/v1/instances",
            "/v1/instances/{name}",
            "/v1/instances/{name}/start",
            "/v1/instances/{name}/stop",
            "/v1/instances/{name}/kill",
            "/v1/instances/{name}/pause",
            "/v1/instances/{name}/resume",
            "/v1/instances/{name}/restart",
            "/v1/instances/{name}/logs",
            "/v1/instances/{name}/console",
            "/v1/instances/{name}/exec",
            "/metrics",
        ] {
            assert!(paths.contains_key(path), "openapi.json lacks {path}");
        }
    }
}
