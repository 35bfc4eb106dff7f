//! `vessel host-check`: does this host have what each engine needs?
//!
//! The lecture vessel grew from asks "does my CPU have the virtualization
//! extensions?". This crate answers that question in full, as libvirt's
//! `virt-host-validate` does: the CPU's extensions, whether `/dev/kvm` is
//! hardware-assisted or a nested software layer (measured by running a tiny
//! guest, not guessed from names), what the kernel offers containers, and a
//! verdict per engine.
//!
//! Every probe reads its files relative to a root directory, so the tests run
//! the same code on recorded `/proc` and `/sys` samples of other hosts. The
//! live probes (opening `/dev/kvm`, running a guest, creating namespaces)
//! run only against the real root.

pub mod container;
pub mod cpu;
pub mod kvm;
mod render;
pub mod verdict;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use container::ContainerFacts;
pub use cpu::CpuFacts;
pub use kvm::KvmFacts;
pub use render::render_text;
pub use verdict::{EngineVerdict, Engines, Pick, Verdict};

/// Errors of the host check: only a file every Linux host has can cause one.
#[derive(Debug, thiserror::Error)]
pub enum HostCheckError {
    #[error("cannot read {path}: {source} (is {root} a Linux root with /proc mounted?)")]
    Read {
        path: PathBuf,
        root: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where the probes look, and whether they may touch the live system.
#[derive(Debug, Clone)]
pub struct Probe {
    root: PathBuf,
    live: bool,
}

impl Probe {
    /// Probe the running host: read `/proc` and `/sys`, open `/dev/kvm`, run a
    /// tiny guest, create namespaces.
    pub fn live() -> Self {
        Self {
            root: PathBuf::from("/"),
            live: true,
        }
    }

    /// Probe a recorded host: read files under `root` only, run nothing.
    pub fn recorded(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            live: false,
        }
    }

    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The host path for an absolute path as seen on the probed host.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Read a file every Linux host has; its absence is an error.
    pub fn read_required(&self, abs: &str) -> Result<String, HostCheckError> {
        let path = self.path(abs);
        std::fs::read_to_string(&path).map_err(|source| HostCheckError::Read {
            path,
            root: self.root.clone(),
            source,
        })
    }

    /// Read a file that some hosts lack.
    pub fn read_optional(&self, abs: &str) -> Option<String> {
        std::fs::read_to_string(self.path(abs)).ok()
    }

    pub fn exists(&self, abs: &str) -> bool {
        self.path(abs).exists()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Facts about the host that are not about one subsystem.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostFacts {
    /// The machine architecture (`uname -m`).
    pub arch: String,
    /// The kernel release, when known.
    pub kernel: Option<String>,
    /// Whether the check ran as root (containers and tap devices need it).
    pub root: bool,
}

/// Everything the host check found, and what it concludes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub host: HostFacts,
    pub cpu: CpuFacts,
    pub kvm: KvmFacts,
    pub containers: ContainerFacts,
    pub engines: Engines,
    /// The engine `vessel run` would pick for a guest of each architecture.
    pub pick: Pick,
}

/// Run every probe and judge each engine.
pub fn check(probe: &Probe) -> Result<Report, HostCheckError> {
    let host = host_facts(probe);
    let cpu = cpu::probe(probe)?;
    let kvm = kvm::probe(probe, &cpu);
    let containers = container::probe(probe, host.root)?;
    let engines = verdict::judge(&host, &cpu, &kvm, &containers);
    let pick = verdict::pick(&host, &engines);
    Ok(Report {
        host,
        cpu,
        kvm,
        containers,
        engines,
        pick,
    })
}

fn host_facts(probe: &Probe) -> HostFacts {
    let kernel = probe
        .read_optional("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if probe.is_live() {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        HostFacts {
            arch: std::env::consts::ARCH.to_string(),
            kernel,
            root: euid == 0,
        }
    } else {
        // A recorded host says what it was in a small file beside /proc.
        let arch = probe
            .read_optional("/recorded/arch")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "x86_64".to_string());
        let root = probe
            .read_optional("/recorded/euid")
            .is_none_or(|s| s.trim() == "0");
        HostFacts { arch, kernel, root }
    }
}
