//! Resources and admission: what an instance may use (memory, vCPUs), read
//! from its spec, and the check that starting it does not overcommit the
//! host beyond the daemon's ratios (`--memory-overcommit`,
//! `--cpu-overcommit`), as Incus' and libvirt's limits do.
//!
//! A VM has `vessel run`'s `--memory` (default 512 MiB) and `--cpus`
//! (default 1). A container has what its config.json limits; what it leaves
//! unlimited is not counted (Incus does the same with unset limits).

use std::path::Path;

use serde_json::Value;
use thiserror::Error;
use vessel_api::{ContainerSpec, Instance, InstanceSpec, Resources, VmSpec};

use crate::allowed::{AllowedDirs, PathError};
use crate::config::Config;

/// `vessel run`'s default guest RAM.
pub const DEFAULT_VM_MEMORY: u64 = 512 << 20;
/// `vessel run`'s default vCPU count.
pub const DEFAULT_VM_CPUS: f64 = 1.0;
/// `vessel run --cpus` accepts 1..=255.
const MAX_VM_CPUS: u64 = 255;

#[derive(Debug, Error)]
pub enum AdmissionError {
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("spec.args: {flag} {value:?} is invalid: {why}")]
    BadVmArg {
        flag: &'static str,
        value: String,
        why: String,
    },
    #[error("spec.args: {flag} needs a value")]
    MissingValue { flag: &'static str },
    #[error("{path}: {why}")]
    BadConfig { path: String, why: String },
    /// Starting would overcommit the host: the message says what was
    /// asked, what is free and how to make room.
    #[error("{0}")]
    NoRoom(String),
}

/// What the host has, before overcommit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Host {
    pub memory_bytes: u64,
    pub cpus: u64,
}

impl Host {
    /// MemTotal from /proc/meminfo and the CPUs this process may run on.
    pub fn probe() -> Host {
        let memory_bytes = procfs::Current::current()
            .map(|m: procfs::Meminfo| m.mem_total)
            .unwrap_or(0);
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1);
        Host { memory_bytes, cpus }
    }
}

/// The daemon's overcommit ratios (1.0: no overcommit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overcommit {
    pub memory: f64,
    pub cpu: f64,
}

impl Default for Overcommit {
    /// libvirt/Incus practice: memory is not overcommitted (a guest's RAM is
    /// real host memory once touched), vCPUs are time-shared 4:1.
    fn default() -> Self {
        Overcommit {
            memory: 1.0,
            cpu: 4.0,
        }
    }
}

/// Refuse `asked` for `name` when the instances in `active` (those whose
/// process runs) already hold too much of `host` x `ratio`.
pub fn admit(
    name: &str,
    asked: &Resources,
    active: &[Instance],
    host: Host,
    ratio: Overcommit,
) -> Result<(), AdmissionError> {
    let others = active.iter().filter(|i| i.name != name);
    let used_memory: u64 = others
        .clone()
        .filter_map(|i| i.resources.memory_bytes)
        .fold(0u64, u64::saturating_add);
    let used_cpus: f64 = others.filter_map(|i| i.resources.cpus).sum();
    if let Some(memory) = asked.memory_bytes {
        let cap = (host.memory_bytes as f64 * ratio.memory) as u64;
        let free = cap.saturating_sub(used_memory);
        if memory > free {
            return Err(AdmissionError::NoRoom(format!(
                "cannot start {name:?}: it needs {} of memory but only {} is free \
                 (host {} x memory overcommit {} = {}; {} held by running instances): \
                 stop an instance, lower its memory, or start the daemon with a higher \
                 --memory-overcommit",
                size(memory),
                size(free),
                size(host.memory_bytes),
                ratio.memory,
                size(cap),
                size(used_memory)
            )));
        }
    }
    if let Some(cpus) = asked.cpus {
        let cap = host.cpus as f64 * ratio.cpu;
        let free = (cap - used_cpus).max(0.0);
        // A hundredth of a CPU of slack for sums of fractional quotas.
        if cpus > free + 0.005 {
            return Err(AdmissionError::NoRoom(format!(
                "cannot start {name:?}: it needs {cpus} vCPUs but only {} are free \
                 (host {} CPUs x cpu overcommit {} = {}; {} held by running instances): \
                 stop an instance, give it fewer --cpus, or start the daemon with a higher \
                 --cpu-overcommit",
                round2(free),
                host.cpus,
                ratio.cpu,
                round2(cap),
                round2(used_cpus)
            )));
        }
    }
    Ok(())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A byte count for people: "512 MiB", "1.5 GiB", "300 KiB", "17 B".
pub fn size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, scale) in UNITS {
        if bytes >= scale {
            let value = bytes as f64 / scale as f64;
            return if bytes.is_multiple_of(scale) {
                format!("{} {unit}", bytes / scale)
            } else {
                format!("{value:.1} {unit}")
            };
        }
    }
    format!("{bytes} B")
}

/// Check a spec's host paths against the allowed dirs and read its
/// resources. Returns the spec with its paths resolved (at create, and
/// again at start: files may have changed in between).
pub fn prepare(
    config: &Config,
    spec: &InstanceSpec,
) -> Result<(InstanceSpec, Resources), AdmissionError> {
    let allowed = AllowedDirs::new(&config.allow_dirs);
    match spec {
        InstanceSpec::Vm(vm) => {
            let args = allowed.check_vm_args(&vm.args)?;
            let resources = vm_resources(&args)?;
            Ok((InstanceSpec::Vm(VmSpec { args }), resources))
        }
        InstanceSpec::Container(c) => {
            let (bundle, json) = allowed.check_bundle(&c.bundle)?;
            let resources = container_resources(&bundle.join("config.json"), &json)?;
            let bundle = bundle.to_string_lossy().into_owned();
            let spec = ContainerSpec {
                bundle,
                ..c.clone()
            };
            Ok((InstanceSpec::Container(spec), resources))
        }
    }
}

/// A VM's memory and vCPUs from `vessel run`'s arguments.
pub fn vm_resources(args: &[String]) -> Result<Resources, AdmissionError> {
    let mut memory = DEFAULT_VM_MEMORY;
    let mut cpus = DEFAULT_VM_CPUS;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            break;
        }
        for (flag, is_memory) in [("--memory", true), ("--cpus", false)] {
            let value = if arg == flag {
                Some(
                    iter.next()
                        .ok_or(AdmissionError::MissingValue { flag })?
                        .as_str(),
                )
            } else {
                arg.strip_prefix(flag).and_then(|v| v.strip_prefix('='))
            };
            let Some(value) = value else { continue };
            let bad = |why: String| AdmissionError::BadVmArg {
                flag,
                value: value.to_string(),
                why,
            };
            if is_memory {
                memory = vessel_api::parse_size(value).map_err(bad)?;
                if memory == 0 {
                    return Err(bad("the guest needs some memory".into()));
                }
            } else {
                let n: u64 = value
                    .parse()
                    .map_err(|_| bad("give a whole number of vCPUs".into()))?;
                if !(1..=MAX_VM_CPUS).contains(&n) {
                    return Err(bad(format!("use 1 to {MAX_VM_CPUS}")));
                }
                cpus = n as f64;
            }
        }
    }
    Ok(Resources {
        memory_bytes: Some(memory),
        cpus: Some(cpus),
    })
}

/// A container's limits from its bundle's parsed config.json
/// (`linux.resources.memory.limit`; `cpu.quota`/`cpu.period`, else the
/// number of CPUs in `cpu.cpus`).
pub fn container_resources(
    config_path: &Path,
    config: &Value,
) -> Result<Resources, AdmissionError> {
    let bad = |why: String| AdmissionError::BadConfig {
        path: config_path.display().to_string(),
        why,
    };
    let resources = &config["linux"]["resources"];
    let memory_bytes = match &resources["memory"]["limit"] {
        Value::Null => None,
        v => match v.as_i64() {
            Some(n) if n > 0 => Some(n as u64),
            // -1 (and 0, which runc treats as unset) mean no limit.
            Some(n) if n == -1 || n == 0 => None,
            _ => {
                return Err(bad(format!(
                    "linux.resources.memory.limit {v} is not a byte count"
                )));
            }
        },
    };
    let cpu = &resources["cpu"];
    let quota = match &cpu["quota"] {
        Value::Null => None,
        v => match v.as_i64() {
            Some(n) if n > 0 => Some(n as f64),
            Some(n) if n == -1 || n == 0 => None,
            _ => {
                return Err(bad(format!(
                    "linux.resources.cpu.quota {v} is not a number of microseconds"
                )));
            }
        },
    };
    let period = match &cpu["period"] {
        Value::Null => 100_000.0,
        v => match v.as_u64() {
            Some(n) if n > 0 => n as f64,
            _ => {
                return Err(bad(format!(
                    "linux.resources.cpu.period {v} is not a positive number of microseconds"
                )));
            }
        },
    };
    let cpus = match (quota, &cpu["cpus"]) {
        (Some(q), _) => Some(round2(q / period)),
        (None, Value::String(set)) if !set.trim().is_empty() => {
            Some(cpuset_count(set).ok_or_else(|| {
                bad(format!(
                    "linux.resources.cpu.cpus {set:?} is not a CPU list such as \"0-1,3\""
                ))
            })? as f64)
        }
        _ => None,
    };
    Ok(Resources { memory_bytes, cpus })
}

/// How many CPUs a cpuset list ("0-3,6") names.
fn cpuset_count(set: &str) -> Option<u64> {
    let mut n = 0u64;
    for part in set.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?),
            None => {
                let c = part.parse::<u64>().ok()?;
                (c, c)
            }
        };
        if hi < lo || hi > 65_535 {
            return None;
        }
        n += hi - lo + 1;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn vm_resources_follow_vessel_run() {
        let r = vm_resources(&args(&["debian-riscv64"])).unwrap();
        assert_eq!((r.memory_bytes, r.cpus), (Some(512 << 20), Some(1.0)));
        let r = vm_resources(&args(&["--memory", "16M", "--cpus=3"])).unwrap();
        assert_eq!((r.memory_bytes, r.cpus), (Some(16 << 20), Some(3.0)));
        let r = vm_resources(&args(&["--memory=2G", "--cpus", "2"])).unwrap();
        assert_eq!((r.memory_bytes, r.cpus), (Some(2 << 30), Some(2.0)));
        for bad in [
            &["--memory", "lots"][..],
            &["--memory"],
            &["--cpus", "0"],
            &["--cpus", "1.5"],
            &["--cpus=256"],
            &["--memory=0"],
            &["--memory", "99999999999T"],
        ] {
            assert!(vm_resources(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn container_resources_from_config() {
        let p = Path::new("/b/config.json");
        let none = container_resources(p, &json!({"process": {}})).unwrap();
        assert_eq!(none, Resources::default());
        let c = json!({"linux": {"resources": {"memory": {"limit": 67108864},
            "cpu": {"quota": 50000, "period": 100000}}}});
        let r = container_resources(p, &c).unwrap();
        assert_eq!((r.memory_bytes, r.cpus), (Some(64 << 20), Some(0.5)));
        let c = json!({"linux": {"resources": {"cpu": {"cpus": "0-1,3"}}}});
        assert_eq!(container_resources(p, &c).unwrap().cpus, Some(3.0));
        let c = json!({"linux": {"resources": {"memory": {"limit": -1}}}});
        assert_eq!(container_resources(p, &c).unwrap().memory_bytes, None);
        for bad in [
            json!({"linux": {"resources": {"memory": {"limit": "1G"}}}}),
            json!({"linux": {"resources": {"cpu": {"quota": 1000, "period": 0}}}}),
            json!({"linux": {"resources": {"cpu": {"cpus": "2-1"}}}}),
        ] {
            let err = container_resources(p, &bad).unwrap_err().to_string();
            assert!(err.starts_with("/b/config.json: linux.resources"), "{err}");
        }
    }

    fn running(name: &str, memory: u64, cpus: f64) -> Instance {
        serde_json::from_value(json!({
            "name": name, "kind": "vm", "spec": {"kind": "vm", "args": []},
            "state": "running", "created_at": 0, "log_path": "/l",
            "resources": {"memory_bytes": memory, "cpus": cpus}
        }))
        .unwrap()
    }

    #[test]
    fn admission_counts_running_instances() {
        let host = Host {
            memory_bytes: 1 << 30,
            cpus: 2,
        };
        let ratio = Overcommit::default();
        let active = [running("a", 512 << 20, 4.0), running("b", 256 << 20, 2.0)];
        let ask = |m: u64, c: f64| Resources {
            memory_bytes: Some(m),
            cpus: Some(c),
        };
        admit("c", &ask(256 << 20, 2.0), &active, host, ratio).unwrap();
        let err = admit("c", &ask(257 << 20, 1.0), &active, host, ratio).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("needs 257 MiB") && text.contains("only 256 MiB is free"),
            "{text}"
        );
        assert!(text.contains("--memory-overcommit"), "{text}");
        let err = admit("c", &ask(1 << 20, 2.5), &active, host, ratio).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("needs 2.5 vCPUs but only 2 are free"),
            "{text}"
        );
        assert!(text.contains("--cpu-overcommit"), "{text}");
        // An instance does not compete with its own earlier record.
        admit("a", &ask(768 << 20, 6.0), &active, host, ratio).unwrap();
        // Unlimited containers are not counted and always fit.
        admit(
            "d",
            &Resources::default(),
            &active,
            host,
            Overcommit {
                memory: 0.1,
                cpu: 0.1,
            },
        )
        .unwrap();
        // Overcommit 2.0 doubles what fits.
        admit(
            "c",
            &ask(1 << 30, 1.0),
            &active,
            host,
            Overcommit {
                memory: 2.0,
                cpu: 4.0,
            },
        )
        .unwrap();
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(size(512 << 20), "512 MiB");
        assert_eq!(size(3 << 29), "1.5 GiB");
        assert_eq!(size(17), "17 B");
    }
}
