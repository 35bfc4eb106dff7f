//! Process isolation building blocks shared by the OCI container runtime
//! (`vessel-container`) and the VMM jailer: Linux namespaces, cgroups (v1,
//! v2 and hybrid hosts), seccomp filters, capability sets, rlimits and the
//! small per-process knobs (no_new_privs, oom_score_adj, sysctl).
//!
//! The functions here act on the calling process or on a cgroup directory;
//! they never fork. Callers decide the order (the container runtime follows
//! runc's: namespaces, mounts, rlimits, user, capabilities, seccomp, exec).

pub mod capabilities;
pub mod cgroups;
pub mod namespaces;
pub mod process;
pub mod rlimits;
pub mod seccomp;
