//! A minimal front end for the x86_64 microvm until `vessel run --arch
//! x86_64` calls the library: boots a kernel with the serial console on
//! stdout and stdin (line-buffered: the terminal is not put in raw mode).
//!
//! ```text
//! microvm --kernel FILE [--initrd FILE] [--append STR] [--memory MIB]
//!         [--cpus N] [--disk PATH[,ro][,format=raw|qcow2][,serial=ID]]... [--net tap=NAME[,mac=MAC]]... [--report]
//! ```
//!
//! `--report` prints, on stderr when the guest ends, the VMM's resident
//! memory and how much of it is guest memory the guest touched.

use std::path::PathBuf;
use std::process::ExitCode;

use vessel_devices::net::NetSpec;
use vessel_machine::vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};
use vessel_x86::{DiskSpec, ExitReason, Microvm, NetConfig, VmConfig};

fn usage() -> ExitCode {
    eprintln!(
        "usage: microvm --kernel FILE [--initrd FILE] [--append STR] [--memory MIB] \
         [--cpus N] [--disk PATH[,ro][,format=raw|qcow2][,serial=ID]]... [--net tap=NAME[,mac=MAC]]... [--report]"
    );
    ExitCode::from(2)
}

/// Resident kilobytes of the mappings that start at `starts`, and of the process.
fn resident_kib(starts: &[u64]) -> (u64, u64) {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut guest = 0;
    let mut in_guest = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((start, _)) = first.split_once('-')
            && let Ok(start) = u64::from_str_radix(start, 16)
        {
            in_guest = starts.contains(&start);
        } else if in_guest && let Some(rest) = line.strip_prefix("Rss:") {
            guest += rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let total = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    (guest, total)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut kernel = None;
    let mut config = VmConfig::new("");
    let mut report = false;
    while let Some(arg) = args.next() {
        let mut value = || args.next();
        match arg.as_str() {
            "--kernel" => kernel = value().map(PathBuf::from),
            "--initrd" => config.initrd = value().map(PathBuf::from),
            "--append" => match value() {
                Some(v) => config.cmdline = v,
                None => return usage(),
            },
            "--memory" => match value().and_then(|v| v.parse::<u64>().ok()) {
                Some(mib) => config.memory = mib << 20,
                None => return usage(),
            },
            "--cpus" => match value().and_then(|v| v.parse().ok()) {
                Some(n) => config.vcpus = n,
                None => return usage(),
            },
            "--disk" => match value().map(|v| v.parse::<DiskSpec>()) {
                Some(Ok(spec)) => config.disks.push(spec),
                Some(Err(e)) => {
                    eprintln!("microvm: {e}");
                    return ExitCode::from(2);
                }
                None => return usage(),
            },
            "--net" => {
                let spec = match value().map(|v| v.parse::<NetSpec>()) {
                    Some(Ok(spec)) => spec,
                    Some(Err(e)) => {
                        eprintln!("microvm: {e}");
                        return usage();
                    }
                    None => return usage(),
                };
                match NetConfig::tap(&spec) {
                    Ok(net) => config.nets.push(net),
                    Err(e) => {
                        eprintln!("microvm: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            "--report" => report = true,
            _ => return usage(),
        }
    }
    let Some(kernel) = kernel else {
        return usage();
    };
    config.kernel = kernel;
    // The console's input: stdin goes to the guest's serial port.
    config.serial_in = Some(Box::new(std::io::stdin()));
    let vm = match Microvm::new(config) {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("microvm: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Keep guest memory mapped after the VM ends, to measure it.
    let memory = vm.memory().clone();
    let starts: Vec<u64> = memory
        .iter()
        .filter_map(|r| r.get_host_address(MemoryRegionAddress(0)).ok())
        .map(|p| p as u64)
        .collect();
    let reason = match vm.start() {
        Ok(running) => running.wait(),
        Err(e) => {
            eprintln!("microvm: {e}");
            return ExitCode::FAILURE;
        }
    };
    if report {
        let (guest, total) = resident_kib(&starts);
        eprintln!(
            "microvm report: vmm_rss_kib={total} guest_touched_kib={guest} overhead_kib={}",
            total.saturating_sub(guest)
        );
    }
    match reason {
        ExitReason::Reset | ExitReason::PowerOff => ExitCode::SUCCESS,
        other => {
            eprintln!("microvm: {other}");
            ExitCode::FAILURE
        }
    }
}
