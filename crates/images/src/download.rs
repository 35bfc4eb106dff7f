//! HTTP downloads that are verified before they exist.
//!
//! A download streams into a temporary file in the destination's directory
//! while its SHA256 and length are computed; only a file that matches what the
//! signed index says is renamed into place. A mismatch, an error or an
//! interrupted process leaves no file behind under the final name.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Errors downloading or checking a file.
#[derive(Debug, Error)]
pub enum DownloadError {
    #[error("cannot reach {url}: {message}; check the network or set VESSEL_DEBIAN_MIRROR")]
    Unreachable { url: String, message: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error(
        "checksum mismatch for {url}: expected {expected_size} bytes sha256 {expected}, got \
         {got_size} bytes sha256 {got}; the bad download was deleted, try again or use \
         another mirror"
    )]
    Mismatch {
        url: String,
        expected: String,
        expected_size: u64,
        got: String,
        got_size: u64,
    },
    #[error("{url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What a file must be: its length and SHA256 (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub size: u64,
    pub sha256: String,
}

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA256 of a byte string, as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// SHA256 and length of a file.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut len = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hex(&hasher.finalize())))
}

/// Whether `path` exists and matches `expected`.
pub fn file_matches(path: &Path, expected: &Expected) -> bool {
    match hash_file(path) {
        Ok((len, hash)) => len == expected.size && hash == expected.sha256,
        Err(_) => false,
    }
}

/// An HTTP client with progress display.
pub struct Downloader {
    agent: ureq::Agent,
    progress: bool,
}

impl Downloader {
    /// `progress`: draw indicatif bars (use when stderr is a terminal).
    pub fn new(progress: bool) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .http_status_as_error(false)
            .build();
        Downloader {
            agent: ureq::Agent::new_with_config(config),
            progress,
        }
    }

    fn get(&self, url: &str) -> Result<ureq::Body, DownloadError> {
        let response = self
            .agent
            .get(url)
            .call()
            .map_err(|e| DownloadError::Unreachable {
                url: url.to_owned(),
                message: e.to_string(),
            })?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(DownloadError::Status {
                url: url.to_owned(),
                status,
            });
        }
        Ok(response.into_body())
    }

    /// Fetch a small file into memory (at most `limit` bytes).
    pub fn fetch_bytes(&self, url: &str, limit: u64) -> Result<Vec<u8>, DownloadError> {
        let body = self.get(url)?;
        let mut out = Vec::new();
        body.into_reader()
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| DownloadError::Unreachable {
                url: url.to_owned(),
                message: e.to_string(),
            })?;
        if out.len() as u64 > limit {
            return Err(DownloadError::TooLarge {
                url: url.to_owned(),
                limit,
            });
        }
        Ok(out)
    }

    /// Download `url` to `dest`, verifying it against `expected` before the
    /// file appears under its name. `label` names it in the progress bar.
    pub fn fetch_verified(
        &self,
        url: &str,
        dest: &Path,
        expected: &Expected,
        label: &str,
    ) -> Result<(), DownloadError> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        let werr = |source| DownloadError::Write {
            path: dest.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(werr)?;
        let body = self.get(url)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(dir)
            .map_err(werr)?;
        let bar = if self.progress {
            let bar = ProgressBar::new(expected.size);
            let style = ProgressStyle::with_template(
                "{msg:32!} {bar:30} {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(label.to_owned());
            Some(bar)
        } else {
            None
        };
        // Read at most one byte more than expected: enough to detect a longer file.
        let mut reader = body.into_reader().take(expected.size + 1);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut got_size = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| DownloadError::Unreachable {
                    url: url.to_owned(),
                    message: e.to_string(),
                })?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(werr)?;
            got_size += n as u64;
            if let Some(bar) = &bar {
                bar.set_position(got_size);
            }
        }
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        let got = hex(&hasher.finalize());
        if got_size != expected.size || got != expected.sha256 {
            // Dropping `tmp` deletes the bad download.
            return Err(DownloadError::Mismatch {
                url: url.to_owned(),
                expected: expected.sha256.clone(),
                expected_size: expected.size,
                got,
                got_size,
            });
        }
        tmp.as_file()
            .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .map_err(werr)?;
        tmp.as_file().sync_all().map_err(werr)?;
        tmp.persist(dest).map_err(|e| werr(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::Arc;

    /// A tiny HTTP/1.1 server on 127.0.0.1 serving fixed paths; stops when
    /// the test process ends. Returns its base URL.
    pub(crate) fn serve(files: HashMap<String, Vec<u8>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let files = Arc::new(files);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let files = Arc::clone(&files);
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let reply = match files.get(&path) {
                        Some(body) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(body);
                            r
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec(),
                    };
                    let _ = stream.write_all(&reply);
                });
            }
        });
        format!("http://{addr}")
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn good_download_is_verified_and_renamed() {
        let body = b"hello debian".to_vec();
        let base = serve(HashMap::from([("/pool/a.deb".to_owned(), body.clone())]));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.deb");
        let expected = Expected {
            size: body.len() as u64,
            sha256: sha256_hex(&body),
        };
        Downloader::new(false)
            .fetch_verified(&format!("{base}/pool/a.deb"), &dest, &expected, "a")
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), body);
        assert!(file_matches(&dest, &expected));
        assert_eq!(leftovers(dir.path()), vec!["a.deb"]);
    }

    #[test]
    fn checksum_mismatch_deletes_the_file_and_names_it() {
        let body = b"tampered contents".to_vec();
        let base = serve(HashMap::from([("/pool/b.deb".to_owned(), body.clone())]));
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("b.deb");
        let expected = Expected {
            size: body.len() as u64,
            sha256: sha256_hex(b"original contents"),
        };
        let e = Downloader::new(false)
            .fetch_verified(&format!("{base}/pool/b.deb"), &dest, &expected, "b")
            .unwrap_err();
        assert!(matches!(e, DownloadError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains("/pool/b.deb"), "{e}");
        assert!(
            leftovers(dir.path()).is_empty(),
            "{:?}",
            leftovers(dir.path())
        );

        // A longer file with a matching prefix is a mismatch too.
        let expected = Expected {
            size: 3,
            sha256: sha256_hex(&body[..3]),
        };
        let e = Downloader::new(false)
            .fetch_verified(&format!("{base}/pool/b.deb"), &dest, &expected, "b")
            .unwrap_err();
        assert!(
            matches!(e, DownloadError::Mismatch { got_size: 4, .. }),
            "{e}"
        );
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn missing_file_and_unreachable_server_are_errors() {
        let base = serve(HashMap::new());
        let d = Downloader::new(false);
        let e = d.fetch_bytes(&format!("{base}/nothing"), 10).unwrap_err();
        assert!(
            matches!(e, DownloadError::Status { status: 404, .. }),
            "{e}"
        );
        // A port nobody listens on: bind one, note it, drop the listener.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = d
            .fetch_bytes(&format!("http://127.0.0.1:{port}/x"), 10)
            .unwrap_err();
        assert!(matches!(e, DownloadError::Unreachable { .. }), "{e}");
    }

    #[test]
    fn fetch_bytes_enforces_its_limit() {
        let base = serve(HashMap::from([("/big".to_owned(), vec![7u8; 100])]));
        let d = Downloader::new(false);
        assert_eq!(
            d.fetch_bytes(&format!("{base}/big"), 100).unwrap().len(),
            100
        );
        assert!(matches!(
            d.fetch_bytes(&format!("{base}/big"), 99),
            Err(DownloadError::TooLarge { .. })
        ));
    }
}
