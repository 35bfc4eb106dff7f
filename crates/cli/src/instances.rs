//! The instance commands, clients of the daemon's API: `create`, `start`,
//! `stop`, `kill`, `rm`, `ls`, `inspect`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Parser, Subcommand};
use vessel_api::{
    Client, ContainerSpec, CreateInstance, ExitReason, Instance, InstanceSpec, InstanceState,
    VmSpec,
};

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an instance: `vessel create NAME --vm -- RUN FLAGS`, `--container --bundle DIR`
    /// or `--container --rootfs DIR -- CMD ARGS`.
    Create(CreateArgs),
    /// Start an instance's process.
    Start(NameArgs),
    /// Stop an instance: SIGTERM, then SIGKILL after a timeout.
    Stop(StopArgs),
    /// Kill an instance's process (SIGKILL).
    Kill(NameArgs),
    /// Delete instances (`-f` kills running ones first).
    Rm(RmArgs),
    /// List instances.
    Ls(LsArgs),
    /// Show an instance as JSON.
    Inspect(NameArgs),
    /// Run a command in a running container: `vessel exec NAME -- CMD ARGS`.
    Exec(ExecArgs),
}

#[derive(Debug, Parser)]
pub struct ExecArgs {
    pub name: String,
    /// Set an environment variable (NAME=VALUE); repeatable.
    #[arg(short, long, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// The working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Give up (and kill the command) after this many seconds (daemon default 300).
    #[arg(short, long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print the result (exit code, stdout, stderr) as JSON.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Parser)]
pub struct CreateArgs {
    /// The instance's name: letters, digits, `_`, `.`, `-`.
    pub name: String,
    /// A virtual machine: the arguments after `--` are `vessel run`'s.
    #[arg(
        long,
        conflicts_with = "container",
        required_unless_present = "container"
    )]
    pub vm: bool,
    /// An OCI container: from a bundle directory, or a root file system and
    /// the command after `--` (default `sh`, on a terminal).
    #[arg(long)]
    pub container: bool,
    /// The container's OCI bundle (a directory with config.json and the rootfs).
    #[arg(
        long,
        value_name = "DIR",
        requires = "container",
        conflicts_with = "rootfs"
    )]
    pub bundle: Option<PathBuf>,
    /// The container's root file system; the daemon writes its config.
    #[arg(long, value_name = "DIR", requires = "container")]
    pub rootfs: Option<PathBuf>,
    /// Start it right away.
    #[arg(long)]
    pub start: bool,
    /// Start it again when it ends by itself: no, on-failure or always
    /// (with a backoff of 1 s doubling to 60 s).
    #[arg(long, value_name = "POLICY", default_value = "no", value_parser = parse_restart)]
    pub restart: vessel_api::RestartPolicy,
    /// Print the instance as JSON.
    #[arg(long)]
    pub json: bool,
    /// `vessel run` flags for a VM, e.g. `-- --arch riscv64 --firmware fw.elf`.
    #[arg(last = true, value_name = "RUN FLAGS")]
    pub run_args: Vec<String>,
}

#[derive(Debug, Parser)]
pub struct NameArgs {
    pub name: String,
    /// Print the instance as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Parser)]
pub struct StopArgs {
    pub name: String,
    /// Seconds to wait after SIGTERM before SIGKILL (the daemon's default: 10).
    #[arg(short, long, value_name = "SECONDS")]
    pub time: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Parser)]
pub struct RmArgs {
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Kill running instances first.
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Parser)]
pub struct LsArgs {
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    block_on(run_async(command, Client::from_env()))
}

/// Run a client command on a single-threaded async runtime.
pub(crate) fn block_on<T>(
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(future)
}

/// An instance as JSON, or its name.
pub(crate) fn print_instance(instance: &Instance, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(instance).unwrap_or_default()
        );
    } else {
        println!("{}", instance.name);
    }
}

async fn run_async(command: Command, client: Client) -> anyhow::Result<ExitCode> {
    match command {
        Command::Create(args) => {
            let spec = if args.container {
                let absolute = |flag: &str, p: PathBuf| -> anyhow::Result<String> {
                    let p = std::path::absolute(&p)
                        .with_context(|| format!("{flag} {}", p.display()))?;
                    Ok(p.to_string_lossy().into_owned())
                };
                match (args.bundle, args.rootfs) {
                    (Some(bundle), _) => {
                        if !args.run_args.is_empty() {
                            anyhow::bail!(
                                "a bundle's command is in its config.json: drop the `--` \
                                 arguments, or give --rootfs DIR -- CMD ARGS instead"
                            );
                        }
                        InstanceSpec::Container(ContainerSpec {
                            bundle: absolute("--bundle", bundle)?,
                            ..Default::default()
                        })
                    }
                    (None, Some(rootfs)) => InstanceSpec::Container(ContainerSpec {
                        rootfs: Some(absolute("--rootfs", rootfs)?),
                        command: args.run_args,
                        ..Default::default()
                    }),
                    (None, None) => anyhow::bail!(
                        "a container needs --bundle DIR (with config.json) or --rootfs DIR -- CMD ARGS"
                    ),
                }
            } else {
                InstanceSpec::Vm(VmSpec {
                    args: absolute_file_args(args.run_args),
                })
            };
            let request = CreateInstance {
                name: args.name,
                spec,
                restart: args.restart,
            };
            let mut instance = client.create(&request).await?;
            if args.start {
                instance = client.start(&instance.name).await?;
            }
            print_instance(&instance, args.json);
        }
        Command::Start(args) => print_instance(&client.start(&args.name).await?, args.json),
        Command::Stop(args) => {
            print_instance(&client.stop(&args.name, args.time).await?, args.json)
        }
        Command::Kill(args) => print_instance(&client.kill(&args.name).await?, args.json),
        Command::Rm(args) => {
            let mut failed = false;
            for name in &args.names {
                match client.delete(name, args.force).await {
                    Ok(instance) => println!("{}", instance.name),
                    Err(e) => {
                        eprintln!("vessel: {e}");
                        failed = true;
                    }
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Ls(args) => {
            let instances = client.list().await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&instances).unwrap_or_default()
                );
            } else {
                print!("{}", table(&instances, unix_now()));
            }
        }
        Command::Inspect(args) => print_instance(&client.get(&args.name).await?, true),
        Command::Exec(args) => {
            let request = vessel_api::ExecRequest {
                args: args.command,
                env: args.env,
                cwd: args.workdir,
            };
            let result = client.exec(&args.name, &request, args.timeout).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&result).unwrap_or_default()
                );
            } else {
                use std::io::Write;
                let _ = std::io::stdout().write_all(result.stdout.as_bytes());
                let _ = std::io::stderr().write_all(result.stderr.as_bytes());
                if result.truncated {
                    eprintln!(
                        "vessel: the output was cut at {} bytes",
                        vessel_api::MAX_EXEC_OUTPUT
                    );
                }
            }
            return Ok(ExitCode::from(result.exit_code.clamp(0, 255) as u8));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The daemon resolves paths itself, from its own working directory: make
/// the file arguments of `vessel run` (`--firmware`, `--kernel`, `--initrd`,
/// `--disk` paths are left as given) absolute from the client's.
fn absolute_file_args(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut file_next = false;
    for arg in args {
        let is_file_flag = matches!(
            arg.as_str(),
            "--firmware" | "--kernel" | "--initrd" | "--disk"
        );
        if file_next && !arg.starts_with('/') {
            match std::path::absolute(&arg) {
                Ok(p) => out.push(p.to_string_lossy().into_owned()),
                Err(_) => out.push(arg),
            }
        } else if let Some((flag, value)) = arg.split_once('=').filter(|(f, v)| {
            matches!(*f, "--firmware" | "--kernel" | "--initrd" | "--disk") && !v.starts_with('/')
        }) {
            let value = std::path::absolute(value)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| value.to_string());
            out.push(format!("{flag}={value}"));
        } else {
            out.push(arg);
        }
        file_next = is_file_flag;
    }
    out
}

fn parse_restart(s: &str) -> Result<vessel_api::RestartPolicy, String> {
    vessel_api::RestartPolicy::parse(s)
        .ok_or_else(|| format!("invalid restart policy '{s}': use no, on-failure or always"))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// "5 seconds", "3 minutes", "2 hours", "4 days".
fn ago(seconds: i64) -> String {
    let s = seconds.max(0);
    let (n, unit) = match s {
        0..60 => (s, "second"),
        60..3600 => (s / 60, "minute"),
        3600..86400 => (s / 3600, "hour"),
        _ => (s / 86400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn status(instance: &Instance, now: i64) -> String {
    match instance.state {
        InstanceState::Created => "Created".to_string(),
        InstanceState::Running => format!("Up {}", ago(now - instance.started_at.unwrap_or(now))),
        InstanceState::Stopping => "Stopping".to_string(),
        InstanceState::Paused => "Paused".to_string(),
        InstanceState::Stopped => {
            let when = instance
                .finished_at
                .map(|t| format!(" {} ago", ago(now - t)))
                .unwrap_or_default();
            match &instance.exit {
                Some(exit) => {
                    let how = match (exit.reason, exit.code, exit.signal) {
                        (ExitReason::PoweredOff, ..) => "Powered off".to_string(),
                        (reason, Some(code), _) => format!("Exited ({code}) {}", reason.as_str()),
                        (reason, None, Some(sig)) => {
                            format!("Exited (signal {sig}) {}", reason.as_str())
                        }
                        (reason, None, None) => format!("Exited {}", reason.as_str()),
                    };
                    format!("{how}{when}")
                }
                None => format!("Exited{when}"),
            }
        }
    }
}

/// "512M", "1.5G", "64K": the unit `vessel run --memory` takes.
fn memory_size(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        let scale = 1u64 << shift;
        if bytes >= scale {
            return if bytes.is_multiple_of(scale) {
                format!("{}{unit}", bytes / scale)
            } else {
                format!("{:.1}{unit}", bytes as f64 / scale as f64)
            };
        }
    }
    bytes.to_string()
}

/// A `podman ps`-like table.
fn table(instances: &[Instance], now: i64) -> String {
    let rows: Vec<[String; 8]> = instances
        .iter()
        .map(|i| {
            [
                i.name.clone(),
                i.kind.as_str().to_string(),
                i.state.as_str().to_string(),
                i.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                i.resources
                    .memory_bytes
                    .map(memory_size)
                    .unwrap_or_else(|| "-".into()),
                i.resources
                    .cpus
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "-".into()),
                format!("{} ago", ago(now - i.created_at)),
                status(i, now),
            ]
        })
        .collect();
    let header = [
        "NAME", "KIND", "STATE", "PID", "MEMORY", "CPUS", "CREATED", "STATUS",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vessel_api::{ExitStatus, InstanceKind};

    fn instance(name: &str, state: InstanceState) -> Instance {
        Instance {
            name: name.into(),
            kind: InstanceKind::Vm,
            spec: InstanceSpec::Vm(VmSpec { args: vec![] }),
            state,
            pid: (state == InstanceState::Running).then_some(77),
            exit: None,
            created_at: 1000,
            started_at: Some(1000),
            finished_at: Some(1100),
            log_path: String::new(),
            resources: vessel_api::Resources {
                memory_bytes: Some(512 << 20),
                cpus: Some(1.0),
            },
            restart_policy: Default::default(),
            restart_count: 0,
        }
    }

    #[test]
    fn table_lines_up() {
        let mut stopped = instance("longer-name", InstanceState::Stopped);
        stopped.exit = Some(ExitStatus {
            reason: ExitReason::Crashed,
            code: Some(3),
            signal: None,
            message: None,
        });
        let text = table(&[instance("a", InstanceState::Running), stopped], 1120);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("NAME         KIND  STATE    PID  MEMORY  CPUS  CREATED"),
            "{text}"
        );
        assert!(
            lines[1].contains("77   512M    1     ") && lines[1].ends_with("Up 2 minutes"),
            "{text}"
        );
        assert!(
            lines[2].ends_with("Exited (3) crashed 20 seconds ago"),
            "{text}"
        );
    }

    #[test]
    fn relative_firmware_paths_become_absolute() {
        let args = absolute_file_args(
            [
                "--arch",
                "riscv64",
                "--firmware",
                "fw.elf",
                "--kernel=/k",
                "--initrd=i",
            ]
            .map(String::from)
            .to_vec(),
        );
        assert_eq!(args[..3], ["--arch", "riscv64", "--firmware"]);
        assert!(args[3].starts_with('/') && args[3].ends_with("/fw.elf"));
        assert_eq!(args[4], "--kernel=/k");
        assert!(args[5].starts_with("--initrd=/"));
    }
}
