//! Request and response bodies of the API.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The longest instance name accepted.
pub const MAX_NAME_LEN: usize = 63;
/// The most arguments a VM spec may pass to `vessel run`.
pub const MAX_VM_ARGS: usize = 256;
/// The longest single argument or path in a spec, in bytes.
pub const MAX_ARG_LEN: usize = 4096;

/// What runs an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceKind {
    /// A virtual machine: one `vessel run` process (emulator or KVM engine).
    Vm,
    /// An OCI container run by `vessel-runtime`.
    Container,
}

impl InstanceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceKind::Vm => "vm",
            InstanceKind::Container => "container",
        }
    }
}

/// What to run, by kind. On the wire: `{"kind": "vm", "args": [...]}` or
/// `{"kind": "container", "bundle": "/path"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum InstanceSpec {
    Vm(VmSpec),
    Container(ContainerSpec),
}

impl InstanceSpec {
    pub fn kind(&self) -> InstanceKind {
        match self {
            InstanceSpec::Vm(_) => InstanceKind::Vm,
            InstanceSpec::Container(_) => InstanceKind::Container,
        }
    }

    /// Check what can be checked without touching the host.
    pub fn validate(&self) -> Result<(), SpecError> {
        match self {
            InstanceSpec::Vm(vm) => {
                if vm.args.len() > MAX_VM_ARGS {
                    return Err(SpecError::TooManyArgs(vm.args.len()));
                }
                for (index, arg) in vm.args.iter().enumerate() {
                    if arg.len() > MAX_ARG_LEN {
                        return Err(SpecError::ArgTooLong(index));
                    }
                    if arg.contains('\0') {
                        return Err(SpecError::NulInArg(index));
                    }
                }
                Ok(())
            }
            InstanceSpec::Container(c) => {
                let Some(rootfs) = &c.rootfs else {
                    if !c.command.is_empty() {
                        return Err(SpecError::CommandWithoutRootfs);
                    }
                    if c.bundle.is_empty() || !c.bundle.starts_with('/') {
                        return Err(SpecError::BundleNotAbsolute(c.bundle.clone()));
                    }
                    if c.bundle.len() > MAX_ARG_LEN || c.bundle.contains('\0') {
                        return Err(SpecError::BadBundle);
                    }
                    return Ok(());
                };
                if !c.bundle.is_empty() {
                    return Err(SpecError::BundleAndRootfs);
                }
                if !rootfs.starts_with('/') {
                    return Err(SpecError::RootfsNotAbsolute(rootfs.clone()));
                }
                if rootfs.len() > MAX_ARG_LEN || rootfs.contains('\0') {
                    return Err(SpecError::BadRootfs);
                }
                if c.command.len() > MAX_VM_ARGS {
                    return Err(SpecError::TooManyCommandArgs(c.command.len()));
                }
                for (index, arg) in c.command.iter().enumerate() {
                    if arg.len() > MAX_ARG_LEN || arg.contains('\0') {
                        return Err(SpecError::BadCommandArg(index));
                    }
                }
                Ok(())
            }
        }
    }
}

/// A VM: the arguments of `vessel run` (for example
/// `["--arch", "riscv64", "--firmware", "/path/fw.elf"]` or
/// `["debian-riscv64"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    pub args: Vec<String>,
}

/// A container: an OCI bundle directory (holding `config.json`), or a root
/// file system and a command, for which the daemon writes a default config
/// (as `podman run --rootfs`): the instance then records that bundle, under
/// its own directory, in `bundle`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    #[serde(default)]
    pub bundle: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    /// The command run in `rootfs` (default `sh`), on a terminal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// `POST /v1/instances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInstance {
    pub name: String,
    pub spec: InstanceSpec,
    /// What the daemon does when the instance's process ends by itself.
    #[serde(default)]
    pub restart: RestartPolicy,
}

/// Whether the daemon starts an instance again when its process ends by
/// itself (never after a stop or kill request), with a backoff of 1 s,
/// 2 s, 4 s ... up to 60 s between quick failures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    #[serde(rename = "no")]
    No,
    /// When it crashed: a VM that did not power off cleanly, a container
    /// that exited with a non-zero code or a signal.
    #[serde(rename = "on-failure")]
    OnFailure,
    /// Whenever it ends by itself.
    #[serde(rename = "always")]
    Always,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "no" => RestartPolicy::No,
            "on-failure" => RestartPolicy::OnFailure,
            "always" => RestartPolicy::Always,
            _ => return None,
        })
    }
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Recorded, never started (or stopped and not restarted).
    Created,
    /// Its process runs.
    Running,
    /// Its process exists but the guest does not run (`pause`).
    Paused,
    /// A stop was requested; the process has not ended yet.
    Stopping,
    /// Its process ended; `exit` says why.
    Stopped,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Created => "created",
            InstanceState::Running => "running",
            InstanceState::Paused => "paused",
            InstanceState::Stopping => "stopping",
            InstanceState::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => InstanceState::Created,
            "running" => InstanceState::Running,
            "paused" => InstanceState::Paused,
            "stopping" => InstanceState::Stopping,
            "stopped" => InstanceState::Stopped,
            _ => return None,
        })
    }

    /// Whether a process may exist for an instance in this state.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            InstanceState::Running | InstanceState::Paused | InstanceState::Stopping
        )
    }
}

/// Why an instance's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// A VM whose guest powered off (exit code 0).
    PoweredOff,
    /// A container whose process exited by itself (see `code`).
    Exited,
    /// Ended on its own with an error code or a signal (see `message`).
    Crashed,
    /// A container killed by the kernel for going past its memory limit
    /// (code 137).
    Oom,
    /// Ended after a stop request.
    Stopped,
    /// Ended after a kill request.
    Killed,
    /// The process could not be started (see `message`).
    StartFailed,
    /// Its process ended while the daemon was not running, and left no
    /// exit record saying why.
    Lost,
}

impl ExitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::PoweredOff => "powered_off",
            ExitReason::Exited => "exited",
            ExitReason::Crashed => "crashed",
            ExitReason::Oom => "oom",
            ExitReason::Stopped => "stopped",
            ExitReason::Killed => "killed",
            ExitReason::StartFailed => "start_failed",
            ExitReason::Lost => "lost",
        }
    }
}

/// How an instance's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub reason: ExitReason,
    /// The exit code, when the process exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// The signal number, when a signal ended it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// More detail: the error, or the last line of the console log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What an instance may use of the host: memory and vCPUs. A VM always
/// has both (`vessel run`'s `--memory`, default 512 MiB, and `--cpus`,
/// default 1); a container has what its config.json limits
/// (`linux.resources.memory.limit`, `cpu.quota`/`cpu.period` or `cpu.cpus`),
/// and no entry for what it leaves unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// vCPUs; a container's CPU quota may make this fractional (0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
}

/// An instance as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub name: String,
    pub kind: InstanceKind,
    pub spec: InstanceSpec,
    pub state: InstanceState,
    /// The supervised process (the VMM, or the container's init).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
    /// Unix time (seconds) of creation.
    pub created_at: i64,
    /// Unix time (seconds) of the last start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// Unix time (seconds) the last run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// The console log (stdout and stderr of the process), bounded in size.
    pub log_path: String,
    /// Memory and vCPUs, counted against the host when it starts.
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// How many times the restart policy has started it again.
    #[serde(default)]
    pub restart_count: u32,
}

/// `POST /v1/instances/{name}/exec`: run a command in a running container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The command and its arguments (`["ls", "-l", "/"]`).
    pub args: Vec<String>,
    /// Extra `NAME=VALUE` environment entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// The working directory inside the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

/// The outcome of an exec: the command's exit code and output (each
/// stream cut at `MAX_EXEC_OUTPUT` bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    /// True when the output was longer than `MAX_EXEC_OUTPUT` and was cut.
    #[serde(default)]
    pub truncated: bool,
}

/// The most output an exec returns per stream, in bytes.
pub const MAX_EXEC_OUTPUT: usize = 1024 * 1024;

/// `GET /v1/instances`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceList {
    pub instances: Vec<Instance>,
}

/// Every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// A spec or a name the daemon refuses before touching the host.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    #[error("name is empty: give the instance a name such as `web1`")]
    EmptyName,
    #[error("name is longer than {MAX_NAME_LEN} characters")]
    NameTooLong,
    #[error(
        "name {0:?} is invalid: use letters, digits, `_`, `.` and `-`, starting with a letter or digit"
    )]
    BadName(String),
    #[error("spec.args has {0} arguments; at most {MAX_VM_ARGS} are allowed")]
    TooManyArgs(usize),
    #[error("spec.args[{0}] is longer than {MAX_ARG_LEN} bytes")]
    ArgTooLong(usize),
    #[error("spec.args[{0}] contains a NUL byte")]
    NulInArg(usize),
    #[error(
        "spec.bundle {0:?} is not an absolute path: give the bundle directory as /path/to/bundle"
    )]
    BundleNotAbsolute(String),
    #[error("spec.bundle is too long or contains a NUL byte")]
    BadBundle,
    #[error("spec.command goes with spec.rootfs: a bundle's command is in its config.json")]
    CommandWithoutRootfs,
    #[error("give spec.bundle or spec.rootfs, not both")]
    BundleAndRootfs,
    #[error(
        "spec.rootfs {0:?} is not an absolute path: give the root file system as /path/to/rootfs"
    )]
    RootfsNotAbsolute(String),
    #[error("spec.rootfs is too long or contains a NUL byte")]
    BadRootfs,
    #[error("spec.command has {0} arguments; at most {MAX_VM_ARGS} are allowed")]
    TooManyCommandArgs(usize),
    #[error("spec.command[{0}] is longer than {MAX_ARG_LEN} bytes or contains a NUL byte")]
    BadCommandArg(usize),
    #[error("spec.rootfs: {0}")]
    RootfsUnusable(String),
}

/// Instance names: 1 to 63 of `[A-Za-z0-9_.-]`, starting with a letter or
/// digit (as Podman's container names). They become file names under the
/// state directory, so nothing else is allowed.
pub fn validate_name(name: &str) -> Result<(), SpecError> {
    if name.is_empty() {
        return Err(SpecError::EmptyName);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(SpecError::NameTooLong);
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(SpecError::BadName(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "web1", "vm-2.test_x", &"x".repeat(MAX_NAME_LEN)] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        assert_eq!(validate_name(""), Err(SpecError::EmptyName));
        assert_eq!(
            validate_name(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(SpecError::NameTooLong)
        );
        for bad in ["-a", ".", "..", "a/b", "a b", "é", "../etc"] {
            assert!(
                matches!(validate_name(bad), Err(SpecError::BadName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn create_request_wire_form() {
        let req: CreateInstance = serde_json::from_str(
            r#"{"name":"a","spec":{"kind":"vm","args":["--arch","riscv64"]}}"#,
        )
        .unwrap();
        assert_eq!(
            req.spec,
            InstanceSpec::Vm(VmSpec {
                args: vec!["--arch".into(), "riscv64".into()]
            })
        );
        let back = serde_json::to_value(&req).unwrap();
        assert_eq!(back["spec"]["kind"], "vm");
        let req: CreateInstance =
            serde_json::from_str(r#"{"name":"c","spec":{"kind":"container","bundle":"/b"}}"#)
                .unwrap();
        assert_eq!(req.spec.kind(), InstanceKind::Container);
    }

    #[test]
    fn unknown_fields_are_refused_at_every_level() {
        for body in [
            r#"{"name":"a","spec":{"kind":"vm","args":[]},"extra":1}"#,
            r#"{"name":"a","spec":{"kind":"vm","args":[],"memory":1}}"#,
            r#"{"name":"a","spec":{"kind":"container","bundle":"/b","x":true}}"#,
            r#"{"name":"a","spec":{"kind":"pod","args":[]}}"#,
        ] {
            assert!(
                serde_json::from_str::<CreateInstance>(body).is_err(),
                "accepted {body}"
            );
        }
    }

    #[test]
    fn spec_validation() {
        let vm = |args: Vec<&str>| {
            InstanceSpec::Vm(VmSpec {
                args: args.into_iter().map(String::from).collect(),
            })
        };
        assert_eq!(vm(vec!["debian-riscv64"]).validate(), Ok(()));
        assert_eq!(vm(vec!["a\0b"]).validate(), Err(SpecError::NulInArg(0)));
        let long = "x".repeat(MAX_ARG_LEN + 1);
        assert_eq!(
            vm(vec!["ok", &long]).validate(),
            Err(SpecError::ArgTooLong(1))
        );
        let many = vec!["a"; MAX_VM_ARGS + 1];
        assert_eq!(
            vm(many).validate(),
            Err(SpecError::TooManyArgs(MAX_VM_ARGS + 1))
        );
        let c = |b: &str| {
            InstanceSpec::Container(ContainerSpec {
                bundle: b.to_string(),
                ..Default::default()
            })
        };
        assert_eq!(c("/srv/bundle").validate(), Ok(()));
        assert!(matches!(
            c("rel/bundle").validate(),
            Err(SpecError::BundleNotAbsolute(_))
        ));
        let r = |rootfs: &str, bundle: &str, command: &[&str]| {
            InstanceSpec::Container(ContainerSpec {
                bundle: bundle.to_string(),
                rootfs: Some(rootfs.to_string()),
                command: command.iter().map(|s| s.to_string()).collect(),
            })
        };
        assert_eq!(r("/srv/rootfs", "", &["sleep", "1"]).validate(), Ok(()));
        assert!(matches!(
            r("rootfs", "", &[]).validate(),
            Err(SpecError::RootfsNotAbsolute(_))
        ));
        assert_eq!(
            r("/srv/rootfs", "/srv/bundle", &[]).validate(),
            Err(SpecError::BundleAndRootfs)
        );
        assert_eq!(
            r("/srv/rootfs", "", &["a\0b"]).validate(),
            Err(SpecError::BadCommandArg(0))
        );
        let command_alone = InstanceSpec::Container(ContainerSpec {
            bundle: "/srv/bundle".into(),
            command: vec!["sh".into()],
            ..Default::default()
        });
        assert_eq!(
            command_alone.validate(),
            Err(SpecError::CommandWithoutRootfs)
        );
    }
}
