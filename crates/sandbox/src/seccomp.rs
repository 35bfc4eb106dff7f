//! seccomp filters from an OCI `linux.seccomp` section, built and loaded
//! with libseccomp.

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

/// A built seccomp filter, ready to load.
pub use libseccomp::ScmpFilterContext as Filter;

/// Errors from building or loading a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("linux.seccomp.{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("cannot {what} the seccomp filter: {source}")]
    Lib {
        what: &'static str,
        source: libseccomp::error::SeccompError,
    },
}

fn action(
    a: LinuxSeccompAction,
    errno: Option<u32>,
    field: &str,
) -> Result<ScmpAction, SeccompError> {
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32)
        }
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16)
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::Invalid {
                field: field.into(),
                reason: "SCMP_ACT_NOTIFY (a seccomp agent) is not supported; use SCMP_ACT_ERRNO or SCMP_ACT_KILL".into(),
            });
        }
    })
}

fn arch(a: Arch) -> Option<ScmpArch> {
    Some(match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        _ => return None,
    })
}

fn compare(op: LinuxSeccompOperator, value: u64, value_two: Option<u64>) -> (ScmpCompareOp, u64) {
    match op {
        LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        // OCI: value is the mask, valueTwo the datum.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            (ScmpCompareOp::MaskedEqual(value), value_two.unwrap_or(0))
        }
    }
}

/// Builds (but does not load) the filter. Syscall names this libseccomp
/// does not know are skipped, as runc does, so that one profile serves
/// several kernels and architectures.
pub fn build(spec: &LinuxSeccomp) -> Result<ScmpFilterContext, SeccompError> {
    let lib = |what| move |source| SeccompError::Lib { what, source };
    let default = action(
        spec.default_action(),
        spec.default_errno_ret(),
        "defaultAction",
    )?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("create"))?;
    // Loading is done after no_new_privs or with CAP_SYS_ADMIN; do not let
    // libseccomp set no_new_privs on its own.
    ctx.set_ctl_nnp(false).map_err(lib("configure"))?;
    for a in spec.architectures().iter().flatten() {
        if let Some(sa) = arch(*a).filter(|sa| *sa != ScmpArch::Native) {
            // An architecture that is already present is fine.
            let _ = ctx.add_arch(sa);
        }
    }
    for (i, sc) in spec.syscalls().iter().flatten().enumerate() {
        let field = format!("syscalls[{i}].action");
        let act = action(sc.action(), sc.errno_ret(), &field)?;
        if act == default {
            continue;
        }
        let mut conds = Vec::new();
        for (j, a) in sc.args().iter().flatten().enumerate() {
            if a.index() > 5 {
                return Err(SeccompError::Invalid {
                    field: format!("syscalls[{i}].args[{j}].index"),
                    reason: format!("{} is out of range 0..=5", a.index()),
                });
            }
            let (op, datum) = compare(a.op(), a.value(), a.value_two());
            conds.push(ScmpArgCompare::new(a.index() as u32, op, datum));
        }
        for name in sc.names() {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                continue;
            };
            let res = if conds.is_empty() {
                ctx.add_rule(act, nr)
            } else {
                ctx.add_rule_conditional(act, nr, &conds)
            };
            res.map_err(|source| SeccompError::Invalid {
                field: format!("syscalls[{i}]"),
                reason: format!("libseccomp refused the rule for {name}: {source}"),
            })?;
        }
    }
    Ok(ctx)
}

/// Loads a built filter into the calling thread (and its future children).
pub fn load(ctx: &ScmpFilterContext) -> Result<(), SeccompError> {
    ctx.load().map_err(|source| SeccompError::Lib {
        what: "load",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).expect("valid seccomp json")
    }

    #[test]
    fn builds_filter_with_args_and_errno() {
        let s = spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
               "syscalls":[{"names":["mkdir","mkdirat","no_such_call"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
                           {"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        let ctx = build(&s).expect("filter builds");
        drop(ctx);
    }

    #[test]
    fn notify_is_refused_with_the_field() {
        let s = spec(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        );
        let err = build(&s).map(|_| ()).expect_err("notify unsupported");
        assert!(err.to_string().contains("syscalls[0].action"), "{err}");
    }
}
