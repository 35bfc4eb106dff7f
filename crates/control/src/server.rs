//! The control server inside a guest process: a Unix socket served by
//! plain threads (one per connection), and the console hub that fans the
//! guest's console output out to the log file and to attached readers, and
//! takes input from at most one writer.
//!
//! A reader that falls behind by more than [`READER_BACKLOG`] chunks is
//! disconnected rather than allowed to slow the guest down. Each reader's
//! thread writes whatever has queued up at once, so it catches up in one
//! system call however many chunks a burst left.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use thiserror::Error;

use crate::protocol::{MAX_HISTORY, MAX_REQUEST, Request, Response, RunState, Status};

/// Output chunks queued for one reader before it is dropped. A UART
/// writes a chunk per byte: this lets a reader's thread be away for 64 KiB
/// of a boot's printk burst (4096 was too few on a loaded machine once the
/// emulated CPU ran at a few hundred MIPS).
pub const READER_BACKLOG: usize = 65536;
/// Bytes a reader's thread gathers from its queue into one write.
const READER_BATCH: usize = 64 << 10;
/// Connections served at once; more are refused with a message.
pub const MAX_CONNECTIONS: usize = 64;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("control socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("console log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("starting the control thread: {0}")]
    Thread(std::io::Error),
}

/// What the control socket drives: the guest process's machine.
pub trait Controlled: Send + Sync + 'static {
    fn pause(&self) -> Result<(), String>;
    fn resume(&self) -> Result<(), String>;
    /// Ask the guest process to end cleanly (it writes its exit record).
    fn shutdown(&self) -> Result<(), String>;
    fn state(&self) -> RunState;
}

type InputSink = Arc<dyn Fn(&[u8]) + Send + Sync>;

struct Reader {
    id: u64,
    tx: SyncSender<Arc<[u8]>>,
}

struct Hub {
    log: Option<(PathBuf, File)>,
    limit: u64,
    readers: Vec<Reader>,
    writer: Option<u64>,
    next_id: u64,
    input: Option<InputSink>,
}

/// The guest console: output goes to the bounded log and to every reader;
/// input comes from one writer.
pub struct ConsoleHub {
    hub: Mutex<Hub>,
}

impl ConsoleHub {
    /// A hub appending to `log` (created if missing), which is copied to
    /// `LOG.1` and emptied once past `limit` bytes.
    pub fn new(log: Option<&Path>, limit: u64) -> Result<Arc<ConsoleHub>, ServerError> {
        let log = match log {
            Some(path) => {
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .read(true)
                    .open(path)
                    .map_err(|source| ServerError::Log {
                        path: path.to_path_buf(),
                        source,
                    })?;
                Some((path.to_path_buf(), file))
            }
            None => None,
        };
        Ok(Arc::new(ConsoleHub {
            hub: Mutex::new(Hub {
                log,
                limit: limit.max(4096),
                readers: Vec::new(),
                writer: None,
                next_id: 1,
                input: None,
            }),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where console input goes (the UART, a virtio-console pipe...).
    pub fn set_input(&self, sink: impl Fn(&[u8]) + Send + Sync + 'static) {
        self.lock().input = Some(Arc::new(sink));
    }

    /// Guest output: to the log and to every reader.
    pub fn output(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut hub = self.lock();
        let limit = hub.limit;
        if let Some((path, file)) = &mut hub.log {
            // A full disk loses log lines, never the guest.
            let _ = file.write_all(bytes);
            if file.metadata().is_ok_and(|m| m.len() > limit) {
                rotate(path, file);
            }
        }
        if hub.readers.is_empty() {
            return;
        }
        let chunk: Arc<[u8]> = Arc::from(bytes);
        hub.readers
            .retain(|r| match r.tx.try_send(Arc::clone(&chunk)) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            });
    }

    /// A `Write` that feeds [`ConsoleHub::output`], for the board's console.
    pub fn writer(self: &Arc<Self>) -> HubWriter {
        HubWriter(Arc::clone(self))
    }

    fn attach(&self, write: bool, history: u64) -> Result<Attached, String> {
        let mut hub = self.lock();
        if write && hub.writer.is_some() {
            return Err(
                "the console already has a writer (another `vessel console` is \
                        attached); detach it (Ctrl-A d) or attach read-only"
                    .to_string(),
            );
        }
        if write && hub.input.is_none() {
            return Err("this guest takes no console input".to_string());
        }
        let past = match &mut hub.log {
            Some((_, file)) => tail(file, history.min(MAX_HISTORY)),
            None => Vec::new(),
        };
        let id = hub.next_id;
        hub.next_id += 1;
        let (tx, rx) = sync_channel(READER_BACKLOG);
        hub.readers.push(Reader { id, tx });
        if write {
            hub.writer = Some(id);
        }
        Ok(Attached {
            id,
            past,
            rx,
            input: if write { hub.input.clone() } else { None },
        })
    }

    fn detach(&self, id: u64) {
        let mut hub = self.lock();
        hub.readers.retain(|r| r.id != id);
        if hub.writer == Some(id) {
            hub.writer = None;
        }
    }

    fn counts(&self) -> (bool, usize) {
        let hub = self.lock();
        (hub.writer.is_some(), hub.readers.len())
    }
}

/// See [`ConsoleHub::writer`].
pub struct HubWriter(Arc<ConsoleHub>);

impl Write for HubWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.output(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Attached {
    id: u64,
    past: Vec<u8>,
    rx: Receiver<Arc<[u8]>>,
    input: Option<InputSink>,
}

/// Copy the log to `LOG.1` and empty it (appends go on at the new end).
fn rotate(path: &Path, file: &mut File) {
    let mut old = path.as_os_str().to_owned();
    old.push(".1");
    let _ = std::fs::copy(path, &old);
    let _ = file.set_len(0);
}

/// The last `n` bytes of the log.
fn tail(file: &mut File, n: u64) -> Vec<u8> {
    if n == 0 {
        return Vec::new();
    }
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if file.seek(SeekFrom::Start(len.saturating_sub(n))).is_ok() {
        let _ = file.take(n).read_to_end(&mut out);
    }
    out
}

/// A serving control socket; the socket file is removed when it is dropped.
pub struct ControlServer {
    path: PathBuf,
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct Shared {
    controlled: Arc<dyn Controlled>,
    hub: Arc<ConsoleHub>,
    started_at: i64,
    connections: AtomicUsize,
}

impl ControlServer {
    /// Bind `path` (replacing a stale socket file; mode 0600) and serve it
    /// on a thread of its own.
    pub fn start(
        path: &Path,
        controlled: Arc<dyn Controlled>,
        hub: Arc<ConsoleHub>,
    ) -> Result<ControlServer, ServerError> {
        let bind_err = |source| ServerError::Bind {
            path: path.to_path_buf(),
            source,
        };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(bind_err(e)),
        }
        let listener = UnixListener::bind(path).map_err(bind_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
        let shared = Arc::new(Shared {
            controlled,
            hub,
            started_at: crate::unix_now(),
            connections: AtomicUsize::new(0),
        });
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    let shared = Arc::clone(&shared);
                    if shared.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                        shared.connections.fetch_sub(1, Ordering::SeqCst);
                        let mut s = stream;
                        let _ = s.write_all(
                            Response::error(format!(
                                "too many control connections (at most {MAX_CONNECTIONS})"
                            ))
                            .to_line()
                            .as_bytes(),
                        );
                        continue;
                    }
                    let spawned = std::thread::Builder::new()
                        .name("control-conn".into())
                        .spawn({
                            let shared = Arc::clone(&shared);
                            move || {
                                serve(&shared, stream);
                                shared.connections.fetch_sub(1, Ordering::SeqCst);
                            }
                        });
                    if spawned.is_err() {
                        shared.connections.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            })
            .map_err(ServerError::Thread)?;
        Ok(ControlServer {
            path: path.to_path_buf(),
        })
    }
}

/// Read one line (at most MAX_REQUEST bytes), byte by byte so that nothing
/// after it (console input) is consumed.
pub(crate) fn read_line(stream: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return Ok(if line.is_empty() { None } else { Some(line) }),
            Ok(_) if byte[0] == b'\n' => return Ok(Some(line)),
            Ok(_) => {
                if line.len() >= MAX_REQUEST {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("request line longer than {MAX_REQUEST} bytes"),
                    ));
                }
                line.push(byte[0]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn serve(shared: &Shared, mut stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    loop {
        let line = match read_line(&mut stream) {
            Ok(Some(line)) => line,
            Ok(None) => return,
            Err(e) => {
                let _ = stream.write_all(Response::error(e.to_string()).to_line().as_bytes());
                return;
            }
        };
        let request: Request = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                let msg = format!(
                    "not a control request ({e}); send one JSON object per line, such as \
                     {{\"op\":\"status\"}}"
                );
                let _ = stream.write_all(Response::error(msg).to_line().as_bytes());
                continue;
            }
        };
        let c = &shared.controlled;
        let answer = match request {
            Request::Status {} => {
                let (console_writer, console_readers) = shared.hub.counts();
                Response::status(Status {
                    pid: std::process::id(),
                    state: c.state(),
                    started_at: shared.started_at,
                    console_writer,
                    console_readers,
                })
            }
            Request::Pause {} => c.pause().map_or_else(Response::error, |()| Response::ok()),
            Request::Resume {} => c.resume().map_or_else(Response::error, |()| Response::ok()),
            Request::Shutdown {} => c
                .shutdown()
                .map_or_else(Response::error, |()| Response::ok()),
            Request::Attach { write, history } => match shared.hub.attach(write, history) {
                Ok(attached) => {
                    if stream
                        .write_all(Response::ok().to_line().as_bytes())
                        .is_ok()
                    {
                        console(&shared.hub, stream, attached);
                    } else {
                        shared.hub.detach(attached.id);
                    }
                    return;
                }
                Err(e) => Response::error(e),
            },
        };
        if stream.write_all(answer.to_line().as_bytes()).is_err() {
            return;
        }
    }
}

/// An attached console: past output, then live output until either side
/// goes away; input (for the writer) on a second thread.
fn console(hub: &Arc<ConsoleHub>, mut stream: UnixStream, attached: Attached) {
    let Attached {
        id,
        past,
        rx,
        input,
    } = attached;
    let _ = stream.set_read_timeout(None);
    let reader = stream.try_clone();
    if let Ok(mut reader) = reader {
        let in_hub = Arc::clone(hub);
        let spawned = std::thread::Builder::new()
            .name("console-in".into())
            .spawn(move || {
                let mut buf = [0u8; 1024];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if let Some(sink) = &input {
                                sink(&buf[..n]);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                // The client left: free the writer slot and end the output side.
                in_hub.detach(id);
            });
        if spawned.is_err() {
            hub.detach(id);
            return;
        }
    } else {
        hub.detach(id);
        return;
    }
    if stream.write_all(&past).is_ok() {
        let mut batch = Vec::with_capacity(READER_BATCH);
        while let Ok(chunk) = rx.recv() {
            batch.clear();
            batch.extend_from_slice(&chunk);
            while batch.len() < READER_BATCH {
                match rx.try_recv() {
                    Ok(more) => batch.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            if stream.write_all(&batch).is_err() {
                break;
            }
        }
    }
    hub.detach(id);
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_is_bounded_and_tail_reads_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        let hub = ConsoleHub::new(Some(&log), 4096).unwrap();
        hub.output(&[b'a'; 4000]);
        hub.output(b"0123456789");
        {
            let mut h = hub.lock();
            let (_, file) = h.log.as_mut().unwrap();
            assert_eq!(tail(file, 4), b"6789");
            assert_eq!(tail(file, 0), b"");
        }
        hub.output(&[b'b'; 200]);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0, "rotated");
        assert_eq!(
            std::fs::metadata(dir.path().join("console.log.1"))
                .unwrap()
                .len(),
            4210
        );
        hub.output(b"new");
        assert_eq!(std::fs::read(&log).unwrap(), b"new");
    }

    #[test]
    fn one_writer_many_readers() {
        let hub = ConsoleHub::new(None, 1 << 20).unwrap();
        assert!(hub.attach(true, 0).is_err(), "no input sink: no writer");
        hub.set_input(|_| {});
        let w = hub.attach(true, 0).unwrap();
        let err = hub.attach(true, 0).err().unwrap();
        assert!(err.contains("already has a writer"), "{err}");
        let r = hub.attach(false, 0).unwrap();
        assert_eq!(hub.counts(), (true, 2));
        hub.output(b"x");
        assert_eq!(&*r.rx.recv().unwrap(), b"x");
        assert_eq!(&*w.rx.recv().unwrap(), b"x");
        hub.detach(w.id);
        assert_eq!(hub.counts(), (false, 1));
        assert!(hub.attach(true, 0).is_ok(), "the slot is free again");
    }

    #[test]
    fn a_reader_holds_a_burst_of_byte_writes() {
        let hub = ConsoleHub::new(None, 1 << 20).unwrap();
        let r = hub.attach(false, 0).unwrap();
        let burst: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        for b in &burst {
            hub.output(std::slice::from_ref(b));
        }
        assert_eq!(hub.counts(), (false, 1), "the reader is still attached");
        let got: Vec<u8> = r.rx.try_iter().flat_map(|c| c.to_vec()).collect();
        assert_eq!(got, burst);
    }

    #[test]
    fn a_reader_that_stops_reading_is_dropped() {
        let hub = ConsoleHub::new(None, 1 << 20).unwrap();
        let slow = hub.attach(false, 0).unwrap();
        for _ in 0..=READER_BACKLOG {
            hub.output(b"y");
        }
        assert_eq!(hub.counts(), (false, 0));
        drop(slow);
    }
}
