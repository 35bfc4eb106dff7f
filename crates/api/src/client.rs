//! A small client of the daemon's API over its Unix socket (hyper, HTTP/1.1,
//! one connection per request). Needs a tokio runtime.

use std::path::{Path, PathBuf};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tokio::net::UnixStream;

use crate::types::{CreateInstance, ErrorBody, Instance, InstanceList};

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(
        "cannot reach the vessel daemon at {socket}: {error}. Start it with `vessel daemon` (as root), \
         or point VESSEL_SOCKET at the socket of a running one"
    )]
    Connect {
        socket: PathBuf,
        error: std::io::Error,
    },
    #[error("talking to the vessel daemon at {socket}: {source}")]
    Http {
        socket: PathBuf,
        source: hyper::Error,
    },
    #[error("building the request for {path}: {source}")]
    Request {
        path: String,
        source: hyper::http::Error,
    },
    /// The daemon answered with an error status.
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("the daemon's answer to {path} is not what this client expects: {source}")]
    Decode {
        path: String,
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The HTTP status of an API error, if the daemon answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A raw answer: status and body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
        }
    }

    /// A client of the socket named by `VESSEL_SOCKET`, or the default one.
    pub fn from_env() -> Self {
        Client::new(crate::socket_from_env())
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Send one request and return whatever the daemon answered.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<RawResponse, ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|error| ClientError::Connect {
                    socket: self.socket.clone(),
                    error,
                })?;
        let http = |source| ClientError::Http {
            socket: self.socket.clone(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        // The connection task ends when the request is answered and the
        // sender is dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "vessel");
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|source| ClientError::Request {
                path: path.to_string(),
                source,
            })?;
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(http)?
            .to_bytes()
            .to_vec();
        Ok(RawResponse {
            status,
            content_type,
            body,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let response = self.raw(method, path, body).await?;
        if !(200..300).contains(&response.status) {
            let message = serde_json::from_slice::<ErrorBody>(&response.body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&response.body).into_owned());
            return Err(ClientError::Api {
                status: response.status,
                message,
            });
        }
        serde_json::from_slice(&response.body).map_err(|source| ClientError::Decode {
            path: path.to_string(),
            source,
        })
    }

    pub async fn list(&self) -> Result<Vec<Instance>, ClientError> {
        let list: InstanceList = self.call(Method::GET, "/v1/instances", None).await?;
        Ok(list.instances)
    }

    pub async fn get(&self, name: &str) -> Result<Instance, ClientError> {
        self.call(Method::GET, &instance_path(name, ""), None).await
    }

    pub async fn create(&self, request: &CreateInstance) -> Result<Instance, ClientError> {
        // Serializing these plain types cannot fail.
        let body = serde_json::to_vec(request).unwrap_or_default();
        self.call(Method::POST, "/v1/instances", Some(body)).await
    }

    pub async fn start(&self, name: &str) -> Result<Instance, ClientError> {
        self.call(Method::POST, &instance_path(name, "/start"), None)
            .await
    }

    /// Stop gracefully; kill after `timeout_secs` (the daemon's default if None).
    pub async fn stop(
        &self,
        name: &str,
        timeout_secs: Option<u64>,
    ) -> Result<Instance, ClientError> {
        let mut path = instance_path(name, "/stop");
        if let Some(t) = timeout_secs {
            path.push_str(&format!("?timeout={t}"));
        }
        self.call(Method::POST, &path, None).await
    }

    pub async fn kill(&self, name: &str) -> Result<Instance, ClientError> {
        self.call(Method::POST, &instance_path(name, "/kill"), None)
            .await
    }

    /// Delete; with `force`, a running instance is killed first.
    pub async fn delete(&self, name: &str, force: bool) -> Result<Instance, ClientError> {
        let mut path = instance_path(name, "");
        if force {
            path.push_str("?force=true");
        }
        self.call(Method::DELETE, &path, None).await
    }

    /// Run a command in a running container; waits at most `timeout_secs`
    /// (the daemon's default, 300 s, if None).
    pub async fn exec(
        &self,
        name: &str,
        request: &crate::ExecRequest,
        timeout_secs: Option<u64>,
    ) -> Result<crate::ExecResult, ClientError> {
        let mut path = instance_path(name, "/exec");
        if let Some(t) = timeout_secs {
            path.push_str(&format!("?timeout={t}"));
        }
        let body = serde_json::to_vec(request).unwrap_or_default();
        self.call(Method::POST, &path, Some(body)).await
    }

    /// The Prometheus text exposition at `/metrics`.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let response = self.raw(Method::GET, "/metrics", None).await?;
        if response.status != 200 {
            return Err(ClientError::Api {
                status: response.status,
                message: String::from_utf8_lossy(&response.body).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&response.body).into_owned())
    }

    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, "/openapi.json", None).await
    }
}

/// `/v1/instances/{name}{suffix}`, with the name percent-encoded so that
/// whatever a user typed reaches the daemon's validation intact.
pub(crate) fn instance_path(name: &str, suffix: &str) -> String {
    let mut path = String::from("/v1/instances/");
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            path.push(byte as char);
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path.push_str(suffix);
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_encode_names() {
        assert_eq!(instance_path("web1", "/start"), "/v1/instances/web1/start");
        assert_eq!(instance_path("a/b c", ""), "/v1/instances/a%2Fb%20c");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn missing_daemon_says_how_to_start_it() {
        let dir = std::env::temp_dir().join(format!("vessel-api-client-{}", std::process::id()));
        let client = Client::new(dir.join("nothing.sock"));
        let err = client.list().await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ClientError::Connect { .. }), "{text}");
        assert!(text.contains("vessel daemon"), "{text}");
    }
}
