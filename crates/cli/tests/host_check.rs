//! `vessel host-check` as a user runs it.

use std::path::PathBuf;
use std::process::{Command, Output};

fn vessel(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vessel"))
        .args(args)
        .output()
        .expect("vessel runs")
}

fn fixture(name: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../hostcheck/tests/fixtures");
    dir.join(name).to_string_lossy().into_owned()
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn live_json_has_the_promised_shape() {
    let v = json(&vessel(&["host-check", "--json"]));
    assert!(v["cpu"]["vendor"].is_string());
    assert!(v["cpu"]["model"].is_string());
    assert!(v["cpu"]["extensions"].is_array());
    assert!(v["kvm"]["present"].is_boolean());
    assert!(v["kvm"]["hardware_assisted"].is_boolean());
    assert!(v["kvm"]["guest_speed_ratio"].is_number() || v["kvm"]["guest_speed_ratio"].is_null());
    for engine in ["emu", "kvm", "container"] {
        let verdict = v["engines"][engine]["verdict"].as_str().unwrap();
        assert!(
            ["ok", "degraded", "unavailable"].contains(&verdict),
            "{engine}: {verdict}"
        );
        assert!(v["engines"][engine]["reason"].is_string());
    }
    assert_eq!(v["engines"]["emu"]["verdict"], "ok");
    assert_eq!(v["pick"]["riscv64"], "emu");
}

/// On this project's machines (`kvm_pvm`, no VT-x/AMD-V) the honest answer is
/// known: emu ok, container ok, kvm degraded with a measured slow guest.
#[test]
fn live_answer_on_a_nested_kvm_layer() {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let has_ext = cpuinfo.split_whitespace().any(|w| w == "vmx" || w == "svm");
    if has_ext || !std::path::Path::new("/sys/module/kvm_pvm").exists() {
        eprintln!("skipped: this host is not a nested kvm_pvm host without VT-x/AMD-V");
        return;
    }
    let v = json(&vessel(&["host-check", "--json"]));
    assert_eq!(v["kvm"]["present"], true);
    assert_eq!(v["kvm"]["hardware_assisted"], false);
    assert_eq!(v["kvm"]["nested_layer"], "kvm_pvm");
    let ratio = v["kvm"]["guest_speed_ratio"]
        .as_f64()
        .expect("a measured ratio");
    assert!(ratio > 0.0 && ratio < 0.01, "ratio {ratio}");
    assert_eq!(v["engines"]["emu"]["verdict"], "ok");
    assert_eq!(v["engines"]["kvm"]["verdict"], "degraded");
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(
            v["engines"]["container"]["verdict"], "ok",
            "{}",
            v["engines"]["container"]
        );
    }
}

#[test]
fn text_output_is_aligned_and_gives_reasons() {
    let out = vessel(&["host-check", "--sysroot", &fixture("no-kvm")]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Engines"), "{text}");
    let kvm = text
        .lines()
        .find(|l| l.trim_start().starts_with("kvm "))
        .expect("a kvm row");
    assert!(
        kvm.contains("unavailable") && kvm.contains("/dev/kvm does not exist"),
        "{kvm}"
    );
    assert!(
        text.contains("what to do:"),
        "non-ok verdicts say what to do: {text}"
    );
    // Verdicts start in the same column.
    let cols: Vec<usize> = text
        .lines()
        .filter(|l| {
            ["  emu ", "  kvm ", "  container "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| l.find(|c: char| c != ' ').unwrap() + l.trim_start().find(' ').unwrap())
        .collect();
    assert_eq!(cols.len(), 3, "{text}");
}

#[test]
fn recorded_hosts_through_the_command() {
    let v = json(&vessel(&[
        "host-check",
        "--json",
        "--sysroot",
        &fixture("vmx-kvm"),
    ]));
    assert_eq!(v["cpu"]["extensions"], serde_json::json!(["vmx"]));
    assert_eq!(v["kvm"]["hardware_assisted"], true);
    assert_eq!(v["engines"]["kvm"]["verdict"], "ok");
    assert_eq!(v["pick"]["x86_64"], "kvm");
}

#[test]
fn bad_input_is_one_line_and_nonzero() {
    for args in [
        &["host-check", "--bogus"][..],
        &["no-such-command"][..],
        &["host-check", "--sysroot", "/nonexistent/dir"][..],
        &["host-check", "--sysroot", "/dev"][..], // a directory without /proc
    ] {
        let out = vessel(args);
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {err:?}"
        );
        assert!(err.starts_with("vessel: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
