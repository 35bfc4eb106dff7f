//! 20 clients create, start, stop, kill and delete busybox containers
//! (running `sleep`) on a shared set of names for a minute
//! (`VESSEL_CONCURRENCY_SECS`, default 60), then the registry is checked:
//! no duplicate, lost or half-made record, and every instance in the
//! database matches a real process (or none). At the end no zombie child
//! is left under the daemon (a child subreaper): orphans are reaped.

mod busybox;
mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vessel_api::{Client, ClientError, CreateInstance, InstanceState};

const CLIENTS: usize = 20;
const NAMES: usize = 12;

fn create(name: &str, bundle: &str) -> CreateInstance {
    serde_json::from_value(serde_json::json!({
        "name": name, "spec": {"kind": "container", "bundle": bundle}
    }))
    .unwrap()
}

/// A small xorshift generator: the test needs variety, not quality.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_clients_leave_a_consistent_registry() {
    let Some(runtime) = busybox::runtime_binary() else {
        return;
    };
    let secs: u64 = std::env::var("VESSEL_CONCURRENCY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut d = busybox::daemon(&runtime, |c| {
        c.stop_timeout = Duration::from_secs(2);
    })
    .await;
    let config = d.config.clone();
    let bundle = busybox::bundle(
        d.dir.path(),
        "sleeper",
        &busybox::config(&["sleep", "1000"]),
    );
    let bundle = Arc::new(bundle.to_string_lossy().into_owned());
    let socket = d.daemon.as_ref().unwrap().socket().to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for client_no in 0..CLIENTS {
        let socket = socket.clone();
        let bundle = Arc::clone(&bundle);
        tasks.push(tokio::spawn(async move {
            let c = Client::new(socket);
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ ((client_no as u64 + 1) * 0x1234_5678_9ABC));
            let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
            while Instant::now() < deadline {
                let name = format!("c{}", rng.next(NAMES));
                let (op, result) = match rng.next(6) {
                    0 | 1 => (
                        "create",
                        c.create(&create(&name, &bundle)).await.map(|_| ()),
                    ),
                    2 => ("start", c.start(&name).await.map(|_| ())),
                    3 => ("stop", c.stop(&name, Some(2)).await.map(|_| ())),
                    4 => ("kill", c.kill(&name).await.map(|_| ())),
                    _ => (
                        "delete",
                        c.delete(&name, rng.next(2) == 0).await.map(|_| ()),
                    ),
                };
                let key = match &result {
                    Ok(()) => format!("{op} ok"),
                    Err(ClientError::Api { status, message }) => {
                        assert!(
                            matches!(status, 404 | 409),
                            "{op} {name}: unexpected {status}: {message}"
                        );
                        format!("{op} {status}")
                    }
                    Err(e) => panic!("{op} {name}: {e}"),
                };
                *statuses.entry(key).or_default() += 1;
            }
            statuses
        }));
    }
    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *totals.entry(k).or_default() += v;
        }
    }
    eprintln!("{CLIENTS} clients for {secs} s: {totals:?}");
    assert!(
        totals.get("start ok").copied().unwrap_or(0) > 0,
        "{totals:?}"
    );
    assert!(
        totals.get("delete ok").copied().unwrap_or(0) > 0,
        "{totals:?}"
    );

    let c = &d.client;
    let list = c.list().await.unwrap();
    // No duplicate names.
    let names: HashSet<_> = list.iter().map(|i| i.name.clone()).collect();
    assert_eq!(names.len(), list.len(), "duplicate records: {list:?}");
    let runtime_root = config.runtime_root();
    let mut containers = Vec::new();
    for i in &list {
        assert_ne!(
            i.state,
            InstanceState::Stopping,
            "{} stuck stopping",
            i.name
        );
        // Every record is whole: its directory exists, its spec is the bundle.
        assert!(
            config.instance_dir(&i.name).is_dir(),
            "{}: no directory",
            i.name
        );
        match i.state {
            InstanceState::Running => {
                // The instance's pid is its monitor (`vessel run
                // --container --name NAME`); the container's sleep is the
                // monitor's child.
                let pid = i.pid.expect("a running instance has a pid");
                let monitor = cmdline(pid);
                assert!(
                    monitor.contains("\0--container\0")
                        && monitor.contains(&format!("\0--name\0{}\0", i.name)),
                    "{}: pid {pid} is not its monitor: {monitor:?}",
                    i.name
                );
                let mut sleeps = false;
                // Bounded: only a broken monitor would make it run out.
                for _ in 0..100 {
                    sleeps = vessel_daemon::reaper::children(pid)
                        .iter()
                        .any(|&c| cmdline(c).starts_with("sleep\0"));
                    if sleeps {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                assert!(sleeps, "{}: monitor {pid} runs no sleep", i.name);
                containers.extend(vessel_daemon::reaper::children(pid));
            }
            _ => {
                assert_eq!(i.pid, None, "{}: a pid without a process", i.name);
                assert!(
                    !runtime_root.join(&i.name).exists(),
                    "{}: the runtime still has a container for a stopped instance",
                    i.name
                );
            }
        }
    }
    // No directory or container is left for a deleted instance.
    for entry in std::fs::read_dir(config.state_dir.join("instances")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            names.contains(&name),
            "instances/{name} left without a record"
        );
    }
    if let Ok(entries) = std::fs::read_dir(&runtime_root) {
        for entry in entries {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                list.iter()
                    .any(|i| i.name == name && i.state == InstanceState::Running),
                "runtime state {name} left without a running instance"
            );
        }
    }
    // Clean up: every process ends with its record.
    let mut pids: Vec<i32> = list.iter().filter_map(|i| i.pid).collect();
    pids.extend(containers);
    for i in &list {
        c.delete(&i.name, true).await.unwrap();
    }
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "pid {pid} still runs"
        );
    }
    assert!(c.list().await.unwrap().is_empty());
    // No zombie is left under the daemon (this process): the orphaned
    // runtime helpers are reaped after vessel_daemon::reaper::GRACE. The
    // bound only keeps a broken reaper from hanging the test.
    let me = std::process::id() as i32;
    let mut zombies = Vec::new();
    for _ in 0..600 {
        zombies = vessel_daemon::reaper::zombie_children(me);
        if zombies.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let described: Vec<String> = zombies
        .iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .trim()
                .chars()
                .take(60)
                .collect()
        })
        .collect();
    assert!(
        zombies.is_empty(),
        "{} zombie children left: {described:?}",
        zombies.len()
    );
    d.stop().await;
}

/// A process's command line (NUL-separated), empty once it has gone.
fn cmdline(pid: i32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
        .into_owned()
}
