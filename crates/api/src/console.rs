//! The client side of the console and lifecycle routes: pause, resume,
//! restart, logs (whole or followed) and the interactive console, an HTTP
//! upgrade to a raw byte stream.

use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::client::{Client, ClientError, instance_path};
use crate::types::{ErrorBody, Instance};

/// The `Upgrade:` protocol name of `GET /v1/instances/{name}/console`.
pub const CONSOLE_PROTOCOL: &str = "vessel-console";

/// An attached console: raw bytes both ways (tokio AsyncRead + AsyncWrite).
pub type ConsoleStream = TokioIo<Upgraded>;

/// A followed log: chunks as they come.
pub struct LogStream(Incoming);

impl LogStream {
    /// The next chunk; None at the end (the instance ended).
    pub async fn next(&mut self) -> Option<Result<Bytes, ClientError>> {
        loop {
            match self.0.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(Ok(data));
                    }
                }
                Err(e) => {
                    return Some(Err(ClientError::Api {
                        status: 0,
                        message: format!("the log stream broke: {e}"),
                    }));
                }
            }
        }
    }
}

impl Client {
    async fn send(
        &self,
        method: Method,
        path: &str,
        upgrade: bool,
    ) -> Result<Response<Incoming>, ClientError> {
        let socket = self.socket().to_path_buf();
        let stream = UnixStream::connect(&socket)
            .await
            .map_err(|error| ClientError::Connect {
                socket: socket.clone(),
                error,
            })?;
        let http = |source| ClientError::Http {
            socket: socket.clone(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "vessel");
        if upgrade {
            builder = builder
                .header(hyper::header::CONNECTION, "upgrade")
                .header(hyper::header::UPGRADE, CONSOLE_PROTOCOL);
        }
        let request =
            builder
                .body(Empty::<Bytes>::new())
                .map_err(|source| ClientError::Request {
                    path: path.to_string(),
                    source,
                })?;
        sender.send_request(request).await.map_err(http)
    }

    /// An error answer as a ClientError.
    async fn failure(response: Response<Incoming>) -> ClientError {
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        let message = serde_json::from_slice::<ErrorBody>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
        ClientError::Api { status, message }
    }

    async fn instance_call(&self, path: &str) -> Result<Instance, ClientError> {
        let response = self.send(Method::POST, path, false).await?;
        if !response.status().is_success() {
            return Err(Self::failure(response).await);
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|source| ClientError::Http {
                socket: self.socket().to_path_buf(),
                source,
            })?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|source| ClientError::Decode {
            path: path.to_string(),
            source,
        })
    }

    pub async fn pause(&self, name: &str) -> Result<Instance, ClientError> {
        self.instance_call(&instance_path(name, "/pause")).await
    }

    pub async fn resume(&self, name: &str) -> Result<Instance, ClientError> {
        self.instance_call(&instance_path(name, "/resume")).await
    }

    /// Stop (kill after `timeout_secs`) if it runs, then start.
    pub async fn restart(
        &self,
        name: &str,
        timeout_secs: Option<u64>,
    ) -> Result<Instance, ClientError> {
        let mut path = instance_path(name, "/restart");
        if let Some(t) = timeout_secs {
            path.push_str(&format!("?timeout={t}"));
        }
        self.instance_call(&path).await
    }

    /// The console log (its last `tail` bytes if given).
    pub async fn logs(&self, name: &str, tail: Option<u64>) -> Result<Vec<u8>, ClientError> {
        let mut path = instance_path(name, "/logs");
        if let Some(t) = tail {
            path.push_str(&format!("?tail={t}"));
        }
        let response = self.send(Method::GET, &path, false).await?;
        if !response.status().is_success() {
            return Err(Self::failure(response).await);
        }
        Ok(response
            .into_body()
            .collect()
            .await
            .map_err(|source| ClientError::Http {
                socket: self.socket().to_path_buf(),
                source,
            })?
            .to_bytes()
            .to_vec())
    }

    /// The console log, then what the instance writes until it ends.
    pub async fn follow_logs(
        &self,
        name: &str,
        tail: Option<u64>,
    ) -> Result<LogStream, ClientError> {
        let mut path = instance_path(name, "/logs?follow=true");
        if let Some(t) = tail {
            path.push_str(&format!("&tail={t}"));
        }
        let response = self.send(Method::GET, &path, false).await?;
        if !response.status().is_success() {
            return Err(Self::failure(response).await);
        }
        Ok(LogStream(response.into_body()))
    }

    /// Attach to a VM's console: `write` to type into it (one writer at a
    /// time), `history` bytes of past output first.
    pub async fn console(
        &self,
        name: &str,
        write: bool,
        history: u64,
    ) -> Result<ConsoleStream, ClientError> {
        let path = instance_path(name, &format!("/console?write={write}&history={history}"));
        let mut response = self.send(Method::GET, &path, true).await?;
        if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            return Err(Self::failure(response).await);
        }
        let upgraded =
            hyper::upgrade::on(&mut response)
                .await
                .map_err(|source| ClientError::Http {
                    socket: self.socket().to_path_buf(),
                    source,
                })?;
        Ok(TokioIo::new(upgraded))
    }
}
