//! Reliability with the real `vessel` binary and emulated RISC-V guests
//! that tick on the console and echo what they are sent:
//! - the daemon killed with SIGKILL while instances run, then started
//!   again: the running ones are reattached (listed running, consoles
//!   attach, take input and show new output), the ones that ended while
//!   it was away are marked with why;
//! - pause/resume observably stop and restart console output;
//! - the on-failure restart policy restarts a crashing VM and stops once
//!   it succeeds.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{TestDaemon, wait_for, wait_for_text};
use tokio::io::AsyncWriteExt;
use vessel_api::{Client, ExitReason, InstanceState, RestartPolicy};

/// A guest that says `up`, then prints `tick N` ten times a second (its
/// hart sleeps in WFI on the timer in between) and echoes every byte it
/// receives on the UART.
const TICKER: &str = r#"
    .section .text
    .globl _start
_start:
    csrr t0, mhartid
    bnez t0, park
    li s0, 0x10000000
    li s2, 0
    li t0, 0x80
    csrs mie, t0          # MTIE: the timer ends WFI (mstatus.MIE stays 0: no trap)
    la s1, banner
    call puts
loop:
    rdtime t0
    li t1, 1000000        # 0.1 s at the board's 10 MHz timebase
    add s3, t0, t1
    li t2, 0x2004000      # mtimecmp of hart 0
    sd s3, 0(t2)
wait:
    call echo
    wfi
    rdtime t0
    bltu t0, s3, wait
    la s1, tick
    call puts
    li t2, 10
    remu a0, s2, t2
    addi a0, a0, 48
    call putc
    li a0, 10
    call putc
    addi s2, s2, 1
    j loop
echo:
    lbu t1, 5(s0)
    andi t1, t1, 1
    beqz t1, 9f
    lbu a0, 0(s0)
8:  lbu t1, 5(s0)
    andi t1, t1, 0x20
    beqz t1, 8b
    sb a0, 0(s0)
    j echo
9:  ret
puts:
    lbu a0, 0(s1)
    beqz a0, 2f
1:  lbu t1, 5(s0)
    andi t1, t1, 0x20
    beqz t1, 1b
    sb a0, 0(s0)
    addi s1, s1, 1
    j puts
2:  ret
putc:
    lbu t1, 5(s0)
    andi t1, t1, 0x20
    beqz t1, putc
    sb a0, 0(s0)
    ret
park:
    wfi
    j park
    .section .rodata
banner: .asciz "ticker up\n"
tick: .asciz "tick "
"#;

/// Fails through the test device with code 3 after a line.
const CRASHER: &str = "    li t0, 0x100000\n    li t1, 0x33333\n    sw t1, 0(t0)\n    j park\n";

/// The console output with the guest's own tick lines taken out, so that
/// an echo split by a tick still reads whole.
fn without_ticks(text: &str) -> String {
    let mut out = text.to_string();
    for d in 0..10 {
        out = out.replace(&format!("tick {d}\n"), "");
    }
    out
}

/// `vessel daemon` as a process of its own, so that it can be SIGKILLed.
struct DaemonProcess {
    child: Child,
}

impl DaemonProcess {
    // The child is waited for in `sigkill` or on drop.
    #[allow(clippy::zombie_processes)]
    async fn start(vessel: &Path, socket: &Path, state: &Path, log: &Path) -> DaemonProcess {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(vessel)
            .arg("daemon")
            .arg("--socket")
            .arg(socket)
            .arg("--state-dir")
            .arg(state)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting vessel daemon");
        let client = Client::new(socket);
        for _ in 0..1200 {
            if client.list().await.is_ok() {
                return DaemonProcess { child };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("vessel daemon never answered on {}", socket.display());
    }

    fn sigkill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Guest processes are not the test's children once their daemon is gone:
/// kill whatever is left when the test ends, pass or fail.
struct Reaper(Vec<i32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for &pid in &self.0 {
            signal(pid, nix_sigkill());
        }
    }
}

fn nix_sigkill() -> i32 {
    9
}

fn signal(pid: i32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|s| s == "Z" || s == "X"),
    }
}

async fn wait_gone(pid: i32) {
    for _ in 0..2400 {
        if gone(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("process {pid} never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_daemon_reattaches_to_running_guests_and_marks_the_dead() {
    let Some(vessel) = common::vessel_binary() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Paths in specs must be under the daemon's allowed dirs (its state dir).
    let guests = state.join("guests");
    let Some(ticker) = vessel_testkit::riscv::assemble(&guests, "ticker", TICKER) else {
        return;
    };
    let socket = dir.path().join("vessel.sock");
    let daemon_log = dir.path().join("daemon.log");
    let first = DaemonProcess::start(&vessel, &socket, &state, &daemon_log).await;
    let c = Client::new(&socket);
    let names = ["a", "b", "c", "termed", "killed"];
    let mut reaper = Reaper(Vec::new());
    let mut pids = Vec::new();
    for name in names {
        c.create(&common::riscv_vm(name, &ticker, RestartPolicy::No))
            .await
            .unwrap();
        let started = c.start(name).await.unwrap();
        let pid = started.pid.unwrap();
        reaper.0.push(pid);
        pids.push(pid);
    }
    for name in names {
        let log = c.get(name).await.unwrap().log_path;
        wait_for_text(&log, "tick 1\n").await;
    }

    first.sigkill();
    // While no daemon watches: one guest process is asked to end (SIGTERM:
    // a clean exit with an exit record), one is killed outright.
    signal(pids[3], 15);
    signal(pids[4], 9);
    wait_gone(pids[3]).await;
    wait_gone(pids[4]).await;

    let second = DaemonProcess::start(&vessel, &socket, &state, &daemon_log).await;
    let listed = c.list().await.unwrap();
    for (i, name) in names[..3].iter().enumerate() {
        let inst = listed.iter().find(|x| x.name == *name).unwrap();
        assert_eq!(inst.state, InstanceState::Running, "{inst:?}");
        assert_eq!(inst.pid, Some(pids[i]), "the same process");
    }
    let termed = c.get("termed").await.unwrap();
    assert_eq!(termed.state, InstanceState::Stopped);
    let exit = termed.exit.unwrap();
    assert_eq!(exit.reason, ExitReason::Stopped, "{exit:?}");
    let message = exit.message.unwrap_or_default();
    assert!(
        message.contains("while the daemon was not running") && message.contains("signal 15"),
        "{message}"
    );
    let killed = c.get("killed").await.unwrap();
    assert_eq!(
        killed.exit.as_ref().map(|e| e.reason),
        Some(ExitReason::Lost)
    );

    // Every reattached console works: live output, and input echoed back.
    for name in &names[..3] {
        let mut console = c.console(name, true, 0).await.unwrap();
        // Live output: a tick (read as it comes; `without_ticks` would
        // take whole tick lines out and see one only when a read splits it).
        common::read_console_until(&mut console, "tick", str::to_string).await;
        let word = format!("ping-{name}");
        console.write_all(word.as_bytes()).await.unwrap();
        common::read_console_until(&mut console, &word, without_ticks).await;
        if *name == "a" {
            // One writer: a second is refused with a reason; readers are welcome.
            let err = c.console(name, true, 0).await.unwrap_err();
            assert_eq!(err.status(), Some(409), "{err}");
            assert!(err.to_string().contains("already has a writer"), "{err}");
            let mut reader = c.console(name, false, 4096).await.unwrap();
            common::read_console_until(&mut reader, "ping-a", without_ticks).await;
        }
        console.shutdown().await.unwrap();
    }

    // A reattached VM still stops cleanly through its control socket.
    let stopped = c.stop("a", Some(30)).await.unwrap();
    let exit = stopped.exit.unwrap();
    assert_eq!(exit.reason, ExitReason::Stopped, "{exit:?}");
    let log = std::fs::read_to_string(&stopped.log_path).unwrap();
    assert!(
        log.contains("shut down at the supervisor's request"),
        "{log}"
    );
    for name in ["b", "c"] {
        let killed = c.kill(name).await.unwrap();
        assert_eq!(killed.exit.unwrap().reason, ExitReason::Killed);
    }
    for &pid in &pids {
        wait_gone(pid).await;
    }
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_console_output_and_resume_restarts_it() {
    let Some(vessel) = common::vessel_binary() else {
        return;
    };
    let mut d = TestDaemon::start(Some(vessel)).await;
    let guests = d.config.state_dir.join("guests");
    let Some(ticker) = vessel_testkit::riscv::assemble(&guests, "ticker", TICKER) else {
        return;
    };
    let c = d.client.clone();
    c.create(&common::riscv_vm("p", &ticker, RestartPolicy::No))
        .await
        .unwrap();
    let started = c.start("p").await.unwrap();
    let log = started.log_path.clone();
    wait_for_text(&log, "tick 2\n").await;
    let paused = c.pause("p").await.unwrap();
    assert_eq!(paused.state, InstanceState::Paused);
    assert_eq!(c.pause("p").await.unwrap_err().status(), Some(409));
    // Paused: nothing is printed, whatever the wait (ten tick periods here).
    let before = std::fs::read(&log).unwrap().len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        std::fs::read(&log).unwrap().len(),
        before,
        "output while paused"
    );
    let resumed = c.resume("p").await.unwrap();
    assert_eq!(resumed.state, InstanceState::Running);
    assert_eq!(c.resume("p").await.unwrap_err().status(), Some(409));
    for _ in 0..2400 {
        if std::fs::read(&log).unwrap().len() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        std::fs::read(&log).unwrap().len() > before,
        "no output after resume"
    );
    // A paused VM stops too, and the log can be read through the API.
    c.pause("p").await.unwrap();
    let stopped = c.stop("p", Some(30)).await.unwrap();
    assert_eq!(stopped.exit.unwrap().reason, ExitReason::Stopped);
    let text = String::from_utf8(c.logs("p", None).await.unwrap()).unwrap();
    assert!(text.starts_with("ticker up\n"), "{text}");
    let tail = c.logs("p", Some(20)).await.unwrap();
    assert!(tail.len() <= 20);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_restarts_a_crashing_vm_until_it_succeeds() {
    let Some(vessel) = common::vessel_binary() else {
        return;
    };
    let mut d = TestDaemon::start(Some(vessel)).await;
    let guests = d.config.state_dir.join("guests");
    let src = uart_guest(&guests, "crash", "crashing\\n", CRASHER);
    let Some(crash) = src else { return };
    let Some(good) = uart_guest(
        &guests,
        "good",
        "all good\\n",
        vessel_testkit::riscv::POWEROFF,
    ) else {
        return;
    };
    // The instance boots `current`: the crashing program until the test
    // swaps in the good one.
    let current = guests.join("current.elf");
    std::fs::copy(&crash, &current).unwrap();
    let c = d.client.clone();
    let created = c
        .create(&common::riscv_vm(
            "flaky",
            &current,
            RestartPolicy::OnFailure,
        ))
        .await
        .unwrap();
    assert_eq!(created.restart_policy, RestartPolicy::OnFailure);
    c.start("flaky").await.unwrap();
    let seen = wait_for(&c, "flaky", "restarted twice", |i| i.restart_count >= 2).await;
    assert!(
        std::fs::read_to_string(&seen.log_path)
            .unwrap()
            .contains("crashing")
    );
    // Swap atomically, then wait for the next (good) run.
    let tmp = guests.join("next.elf");
    std::fs::copy(&good, &tmp).unwrap();
    std::fs::rename(&tmp, &current).unwrap();
    let done = wait_for(&c, "flaky", "powered off", |i| {
        i.state == InstanceState::Stopped
            && i.exit.as_ref().map(|e| e.reason) == Some(ExitReason::PoweredOff)
    })
    .await;
    assert!(done.restart_count >= 2);
    let sup = d.daemon.as_ref().unwrap().supervisor().clone();
    assert!(
        !sup.restart_pending("flaky"),
        "a clean power-off is not restarted by on-failure"
    );
    assert!(
        std::fs::read_to_string(&done.log_path)
            .unwrap()
            .contains("all good")
    );
    // The crashes themselves were recorded as crashes with the reason.
    d.stop().await;
}

fn uart_guest(dir: &Path, name: &str, message: &str, tail: &str) -> Option<PathBuf> {
    let source = vessel_testkit::riscv::uart_program(message, tail);
    vessel_testkit::riscv::assemble(dir, name, &source)
}
