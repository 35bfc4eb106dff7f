//! The control socket end to end, over a real Unix socket: status, pause,
//! resume, shutdown, and a console with two readers and one writer.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vessel_control::client::{self, ClientError};
use vessel_control::{ConsoleHub, ControlServer, Controlled, Request, RunState};

#[derive(Default)]
struct Fake {
    state: AtomicU8,
}

impl Controlled for Fake {
    fn pause(&self) -> Result<(), String> {
        match self.state.swap(1, Ordering::SeqCst) {
            0 => Ok(()),
            _ => Err("already paused".into()),
        }
    }
    fn resume(&self) -> Result<(), String> {
        self.state.store(0, Ordering::SeqCst);
        Ok(())
    }
    fn shutdown(&self) -> Result<(), String> {
        self.state.store(2, Ordering::SeqCst);
        Ok(())
    }
    fn state(&self) -> RunState {
        match self.state.load(Ordering::SeqCst) {
            0 => RunState::Running,
            1 => RunState::Paused,
            _ => RunState::Stopping,
        }
    }
}

fn read_until(stream: &mut impl Read, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.windows(needle.len()).any(|w| w == needle) {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before {:?}: {:?}", needle, got);
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[test]
fn control_socket_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("control.sock");
    let log = dir.path().join("console.log");
    let hub = ConsoleHub::new(Some(&log), 1 << 20).unwrap();
    // The "guest" echoes its input, upper-cased, to its output.
    let echo_hub = Arc::downgrade(&hub);
    let inputs = Arc::new(Mutex::new(Vec::new()));
    let seen = inputs.clone();
    hub.set_input(move |bytes| {
        seen.lock().unwrap().extend_from_slice(bytes);
        if let Some(h) = echo_hub.upgrade() {
            h.output(&bytes.to_ascii_uppercase());
        }
    });
    hub.output(b"boot line 1\nboot line 2\n");
    let fake = Arc::new(Fake::default());
    let _server = ControlServer::start(&sock, fake.clone(), hub.clone()).unwrap();
    let t = Duration::from_secs(10);

    let st = client::status(&sock, t).unwrap();
    assert_eq!(st.state, RunState::Running);
    assert_eq!(st.pid, std::process::id());
    client::call(&sock, &Request::Pause {}, t).unwrap();
    assert_eq!(client::status(&sock, t).unwrap().state, RunState::Paused);
    let err = client::call(&sock, &Request::Pause {}, t).unwrap_err();
    assert!(matches!(err, ClientError::Refused(ref m) if m == "already paused"));
    client::call(&sock, &Request::Resume {}, t).unwrap();

    // A reader with history, a writer, and a second writer refused.
    let mut reader = client::attach(&sock, false, 12).unwrap();
    let got = read_until(&mut reader, b"boot line 2\n");
    assert_eq!(got, b"boot line 2\n", "exactly the asked history");
    let mut writer = client::attach(&sock, true, 0).unwrap();
    let err = client::attach(&sock, true, 0).unwrap_err();
    assert!(err.to_string().contains("already has a writer"), "{err}");
    writer.write_all(b"hello\n").unwrap();
    read_until(&mut writer, b"HELLO\n");
    read_until(&mut reader, b"HELLO\n");
    // A reader's input goes nowhere.
    reader.write_all(b"ignored").unwrap();
    let st = client::status(&sock, t).unwrap();
    assert!(st.console_writer);
    assert_eq!(st.console_readers, 2);
    drop(writer);
    // Once the writer has gone, another may attach.
    let mut again = None;
    for _ in 0..200 {
        match client::attach(&sock, true, 0) {
            Ok(s) => {
                again = Some(s);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let mut again = again.expect("the writer slot was never freed");
    again.write_all(b"x").unwrap();
    read_until(&mut reader, b"X");
    assert_eq!(&*inputs.lock().unwrap(), b"hello\nx");
    assert!(std::fs::read_to_string(&log).unwrap().contains("HELLO\nX"));

    // Garbage gets an error line and the connection stays usable.
    let mut raw = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    raw.write_all(b"{\"op\":\"reboot\"}\n{\"op\":\"status\"}\n")
        .unwrap();
    let text = String::from_utf8(read_until(&mut raw, b"\"status\"")).unwrap();
    assert!(text.contains("not a control request"), "{text}");

    client::call(&sock, &Request::Shutdown {}, t).unwrap();
    assert_eq!(fake.state(), RunState::Stopping);
}
