//! `vessel-runtime`: an OCI runtime with runc's command line, so that
//! containerd (`--runc-binary`), Podman (`--runtime`) and Kubernetes (a
//! RuntimeClass handler) drive vessel's container engine unchanged.
//!
//! Thin: flags are parsed here; the work is in `vessel-container`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use vessel_container as vc;

#[derive(Debug, Parser)]
#[command(
    name = "vessel-runtime",
    about = "vessel's OCI container runtime (runc-compatible command line)"
)]
#[command(disable_version_flag = true)]
struct Cli {
    /// Directory for container state.
    #[arg(long, global = true, default_value = vc::DEFAULT_ROOT)]
    root: PathBuf,
    /// Write log messages to this file (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log debug messages too.
    #[arg(long, global = true)]
    debug: bool,
    /// cgroupsPath is slice:prefix:name (accepted; without systemd vessel uses cgroupfs).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Accepted as crun does (cgroupfs or systemd).
    #[arg(long = "cgroup-manager", global = true)]
    cgroup_manager: Option<String>,
    /// Accepted for compatibility (vessel decides from the uid).
    #[arg(long, global = true)]
    rootless: Option<String>,
    /// Print the version.
    #[arg(short = 'v', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Format {
    Table,
    Json,
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// Bundle directory (holds config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Pass this many extra fds (from fd 3) to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Move the rootfs over / and chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted (vessel does not create session keyrings).
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    id: String,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a container (its process waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Print the state JSON of a container.
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init, or --all processes.
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container (--force: in any state).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container; wait for it unless --detach.
    Run {
        #[arg(short, long)]
        detach: bool,
        /// Keep the container after it exits.
        #[arg(long)]
        keep: bool,
        #[command(flatten)]
        create: CreateArgs,
    },
    /// Run a new process in a running container.
    Exec(ExecArgs),
    /// List the processes of a container.
    Ps {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        id: String,
        /// Accepted for compatibility (ps(1) options).
        #[arg(trailing_var_arg = true)]
        ps_args: Vec<String>,
    },
    /// List containers.
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change the resource limits of a container.
    Update(UpdateArgs),
    /// Print resource usage events (cpu, memory, pids; OOM kills) as JSON lines.
    Events {
        /// Print the stats once and exit.
        #[arg(long)]
        stats: bool,
        /// Time between stats events (a Go duration: 5s, 500ms, 1m).
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Print the features JSON.
    Features,
    /// Write a default config.json into the bundle.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        #[arg(long)]
        rootless: bool,
    },
}

#[derive(Debug, Args)]
struct ExecArgs {
    /// process.json describing the process.
    #[arg(short, long)]
    process: Option<PathBuf>,
    #[arg(short, long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    #[arg(short, long)]
    tty: bool,
    #[arg(short, long)]
    env: Vec<String>,
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// uid[:gid]
    #[arg(short, long)]
    user: Option<String>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    #[arg(long)]
    cap: Vec<String>,
    id: String,
    #[arg(trailing_var_arg = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
struct UpdateArgs {
    /// LinuxResources JSON file, or - for stdin.
    #[arg(short, long)]
    resources: Option<String>,
    #[arg(long)]
    memory: Option<i64>,
    #[arg(long = "memory-swap")]
    memory_swap: Option<i64>,
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<i64>,
    #[arg(long = "cpu-shares")]
    cpu_shares: Option<u64>,
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    id: String,
}

struct Logger {
    file: Option<std::fs::File>,
    json: bool,
    debug: bool,
}

impl Logger {
    fn log(&mut self, level: &str, msg: &str) {
        if level == "debug" && !self.debug {
            return;
        }
        let time = vc::state::rfc3339(vc::state::now_secs());
        let line = if self.json {
            format!(
                "{}\n",
                serde_json::json!({"level": level, "msg": msg, "time": time})
            )
        } else {
            format!("time=\"{time}\" level={level} msg={msg:?}\n")
        };
        match &mut self.file {
            Some(f) => {
                let _ = f.write_all(line.as_bytes());
            }
            None if level != "error" => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            None => {}
        }
    }
}

/// The log of this run, shared with the library's warning handler.
static LOG: std::sync::Mutex<Option<Logger>> = std::sync::Mutex::new(None);

fn log_warning(msg: &str) {
    if let Ok(mut g) = LOG.lock()
        && let Some(l) = g.as_mut()
    {
        l.log("warning", msg);
    }
}

fn create_opts(cli: &Cli, a: &CreateArgs) -> vc::CreateOpts {
    vc::CreateOpts {
        root: cli.root.clone(),
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        console_fd: None,
        preserve_fds: a.preserve_fds,
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        systemd_cgroup: cli.systemd_cgroup || cli.cgroup_manager.as_deref() == Some("systemd"),
        foreground: false,
    }
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn read_resources(a: &UpdateArgs) -> anyhow::Result<serde_json::Value> {
    let mut v = match a.resources.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read resources from stdin")?;
            serde_json::from_str(&s).context("stdin: resources are not LinuxResources JSON")?
        }
        Some(f) => {
            let s = std::fs::read_to_string(f).with_context(|| format!("cannot read {f}"))?;
            serde_json::from_str(&s).with_context(|| format!("{f}: not LinuxResources JSON"))?
        }
        None => serde_json::json!({}),
    };
    let obj = v
        .as_object_mut()
        .context("resources must be a JSON object")?;
    let mut set = |section: &str, key: &str, val: serde_json::Value| {
        let s = obj.entry(section).or_insert_with(|| serde_json::json!({}));
        if let Some(o) = s.as_object_mut() {
            o.insert(key.into(), val);
        }
    };
    if let Some(m) = a.memory {
        set("memory", "limit", m.into());
    }
    if let Some(m) = a.memory_swap {
        set("memory", "swap", m.into());
    }
    if let Some(m) = a.memory_reservation {
        set("memory", "reservation", m.into());
    }
    if let Some(c) = a.cpu_shares {
        set("cpu", "shares", c.into());
    }
    if let Some(c) = a.cpu_quota {
        set("cpu", "quota", c.into());
    }
    if let Some(c) = a.cpu_period {
        set("cpu", "period", c.into());
    }
    if let Some(c) = &a.cpuset_cpus {
        set("cpu", "cpus", c.clone().into());
    }
    if let Some(p) = a.pids_limit {
        set("pids", "limit", p.into());
    }
    Ok(v)
}

fn ps_table(pids: &[i32]) -> String {
    let mut out = String::from("PID\tPPID\tCMD\n");
    for p in pids {
        let ppid = vc::state::proc_stat(*p).map(|_| ()).and_then(|_| {
            let text = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            text[text.rfind(')')? + 2..]
                .split(' ')
                .nth(1)
                .map(str::to_string)
        });
        let cmd = std::fs::read(format!("/proc/{p}/cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "{p}\t{}\t{cmd}\n",
            ppid.unwrap_or_else(|| "?".into())
        ));
    }
    out
}

fn run(cli: &Cli, log: &mut Logger) -> anyhow::Result<u8> {
    if cli.version {
        println!(
            "vessel-runtime version {}\nspec: {}",
            env!("CARGO_PKG_VERSION"),
            vc::state::OCI_VERSION
        );
        return Ok(0);
    }
    if cli.systemd_cgroup || cli.cgroup_manager.as_deref() == Some("systemd") {
        log.log("warning", "systemd cgroup driver requested, but vessel-runtime does not talk to systemd: using cgroupfs paths (slice:prefix:name -> /slice/prefix-name.scope)");
    }
    let Some(cmd) = &cli.command else {
        bail!("no command given; see vessel-runtime --help");
    };
    let root = &cli.root;
    match cmd {
        Cmd::Create(a) => {
            log.log(
                "debug",
                &format!("create {} bundle {}", a.id, a.bundle.display()),
            );
            vc::create(&create_opts(cli, a))?;
        }
        Cmd::Start { id } => vc::start(root, id)?,
        Cmd::State { id } => print_json(&vc::state(root, id)?)?,
        Cmd::Kill { all, id, signal } => vc::kill(root, id, vc::parse_kill_signal(signal)?, *all)?,
        Cmd::Delete { force, id } => vc::delete(root, id, *force)?,
        Cmd::Run {
            detach,
            keep,
            create,
        } => {
            let opts = create_opts(cli, create);
            if *detach {
                vc::create(&opts)?;
                vc::start(root, &create.id)?;
            } else {
                let code = vc::run(&opts, *keep)?;
                return Ok(code.clamp(0, 255) as u8);
            }
        }
        Cmd::Exec(a) => {
            let opts = vc::exec::ExecOpts {
                root: root.clone(),
                id: a.id.clone(),
                process: a.process.clone(),
                detach: a.detach,
                pid_file: a.pid_file.clone(),
                console_socket: a.console_socket.clone(),
                tty: a.tty,
                env: a.env.clone(),
                cwd: a.cwd.clone(),
                user: a.user.clone(),
                preserve_fds: a.preserve_fds,
                no_new_privs: a.no_new_privs,
                caps: a.cap.clone(),
                args: a.command.clone(),
            };
            let code = vc::exec::exec(&opts)?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Cmd::Ps { format, id, .. } => {
            let pids = vc::ps(root, id)?;
            match format {
                Format::Json => print_json(&pids)?,
                Format::Table => print!("{}", ps_table(&pids)),
            }
        }
        Cmd::List { format, quiet } => {
            let all = vc::list(root)?;
            if *quiet {
                for s in &all {
                    println!("{}", s.id);
                }
            } else if *format == Format::Json {
                print_json(&all)?;
            } else {
                println!("ID\tPID\tSTATUS\tBUNDLE\tCREATED");
                for s in &all {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        s.id,
                        s.pid,
                        s.status,
                        s.bundle.display(),
                        s.created
                    );
                }
            }
        }
        Cmd::Pause { id } => vc::set_paused(root, id, true)?,
        Cmd::Resume { id } => vc::set_paused(root, id, false)?,
        Cmd::Update(a) => {
            let v = read_resources(a)?;
            let res: oci_resources::LinuxResources =
                serde_json::from_value(v).context("resources: not valid LinuxResources")?;
            vc::update(root, &a.id, &res)?;
        }
        Cmd::Events {
            stats,
            interval,
            id,
        } => {
            if *stats {
                let ev = vc::events::Event {
                    typ: "stats",
                    id,
                    data: Some(vc::events::stats(root, id)?),
                };
                println!("{}", serde_json::to_string(&ev)?);
            } else {
                let every = vc::events::parse_interval(interval)?;
                vc::events::watch(root, id, every, |ev| {
                    let mut out = std::io::stdout().lock();
                    serde_json::to_writer(&mut out, ev).is_ok()
                        && writeln!(out).is_ok()
                        && out.flush().is_ok()
                })?;
            }
        }
        Cmd::Features => print_json(&vc::features::features())?,
        Cmd::Spec { bundle, rootless } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{} already exists; remove it first", path.display());
            }
            let spec = vc::spec::default_spec(*rootless);
            let text = serde_json::to_string_pretty(&spec)?;
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    Ok(0)
}

mod oci_resources {
    pub use vessel_container::spec::LinuxResources;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = cli.log.as_deref().and_then(|p: &Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    let mut log = Logger {
        file,
        json: cli.log_format == LogFormat::Json,
        debug: cli.debug,
    };
    // Warnings from the library (fields the host cannot honour, failed
    // poststart/poststop hooks) go to the same log.
    if let Ok(mut g) = LOG.lock() {
        *g = Some(Logger {
            file: log.file.as_ref().and_then(|f| f.try_clone().ok()),
            json: log.json,
            debug: log.debug,
        });
    }
    vc::set_warning_handler(log_warning);
    match run(&cli, &mut log) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = format!("{e:#}");
            log.log("error", &msg);
            eprintln!("vessel-runtime: {msg}");
            ExitCode::FAILURE
        }
    }
}
