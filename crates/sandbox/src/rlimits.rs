//! POSIX resource limits (`process.rlimits`).

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

/// Errors from setting rlimits.
#[derive(Debug, thiserror::Error)]
pub enum RlimitError {
    #[error("process.rlimits: cannot set {name} to soft {soft} hard {hard}: {source}; {hint}")]
    Set {
        name: String,
        soft: u64,
        hard: u64,
        source: std::io::Error,
        /// Why, as far as can be told: the current hard limit and whether
        /// this process may raise it.
        hint: String,
    },
}

/// The kernel resource number of an OCI rlimit type.
pub fn resource(t: PosixRlimitType) -> libc::__rlimit_resource_t {
    match t {
        PosixRlimitType::RlimitCpu => libc::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => libc::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => libc::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => libc::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => libc::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => libc::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => libc::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => libc::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => libc::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => libc::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => libc::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => libc::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// Sets every rlimit on the calling process.
pub fn apply(limits: &[PosixRlimit]) -> Result<(), RlimitError> {
    for l in limits {
        let r = libc::rlimit {
            rlim_cur: l.soft(),
            rlim_max: l.hard(),
        };
        // SAFETY: setrlimit reads the rlimit struct we pass by pointer; it
        // lives for the whole call.
        let rc = unsafe { libc::setrlimit(resource(l.typ()), &r) };
        if rc != 0 {
            let source = std::io::Error::last_os_error();
            return Err(RlimitError::Set {
                name: l.typ().to_string(),
                soft: l.soft(),
                hard: l.hard(),
                hint: hint(resource(l.typ()), l.soft(), l.hard()),
                source,
            });
        }
    }
    Ok(())
}

/// Explains a refused setrlimit: soft above hard, or a hard limit above the
/// current one without CAP_SYS_RESOURCE (hosts that drop that capability
/// for root, such as some sandboxes, refuse every runtime alike).
fn hint(res: libc::__rlimit_resource_t, soft: u64, hard: u64) -> String {
    if soft > hard {
        return "the soft limit must not exceed the hard one".into();
    }
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own for the whole call.
    let known = unsafe { libc::getrlimit(res, &mut cur) } == 0;
    let can_raise = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    match (known, can_raise) {
        (true, false) if hard > cur.rlim_max => format!(
            "the runtime's hard limit is {} and it lacks CAP_SYS_RESOURCE, so no runtime can raise it here: ask for at most {} (Podman: --ulimit)",
            cur.rlim_max, cur.rlim_max
        ),
        (true, _) if res == libc::RLIMIT_NOFILE => {
            "RLIMIT_NOFILE cannot exceed the sysctl fs.nr_open".into()
        }
        _ => "raising a hard limit needs CAP_SYS_RESOURCE".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_above_hard_is_refused_with_the_name() {
        let l: PosixRlimit = oci_spec::runtime::PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitCore)
            .soft(10u64)
            .hard(5u64)
            .build()
            .expect("rlimit");
        let err = apply(&[l]).expect_err("soft > hard");
        assert!(err.to_string().contains("RLIMIT_CORE"), "{err}");
        assert!(err.to_string().contains("must not exceed"), "{err}");
    }
}
