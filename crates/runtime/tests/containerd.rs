//! containerd drives vessel-runtime: the test starts its own containerd
//! (Debian's package; config, root, state and socket in a temp dir, no
//! systemd), imports a busybox rootfs as an OCI image archive built here,
//! and runs containers with `ctr run --runc-binary <vessel-runtime>`
//! through containerd's runc shim: output and exit code, exec, pause,
//! resume and ps, an OOM-killed container (137), kill and rm.

mod clients;
mod common;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use clients::{have, kill_matching, show, tar_dir, temp_dir, unmount_under};
use oci_spec::image::{
    ConfigBuilder, DescriptorBuilder, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, OciLayoutBuilder, RootFsBuilder, Sha256Digest,
};
use sha2::Digest as _;

const IMAGE: &str = "docker.io/library/vessel-busybox:test";

fn skip_reason() -> Option<String> {
    if let Some(r) = common::skip_reason() {
        return Some(r);
    }
    for p in ["containerd", "ctr", "containerd-shim-runc-v2"] {
        if !have(p) {
            return Some(format!(
                "needs {p} (Debian package containerd, in scripts/packages.txt)"
            ));
        }
    }
    None
}

/// Our own containerd. Drop kills its tasks, shims and the daemon, removes
/// the runtime's containers and unmounts whatever is left in the temp dir.
struct Containerd {
    dir: PathBuf,
    sock: PathBuf,
    runc_root: PathBuf,
    ns: String,
    daemon: Option<Child>,
    ids: RefCell<Vec<String>>,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = temp_dir("containerd");
        let sock = dir.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = "{sock}.debug"
"#,
            root = dir.join("root").display(),
            state = dir.join("state").display(),
            sock = sock.display(),
        );
        std::fs::write(dir.join("config.toml"), config).expect("containerd config");
        let log = std::fs::File::create(dir.join("containerd.log")).expect("log");
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut c = Containerd {
            runc_root: dir.join("runc-root"),
            dir,
            sock,
            ns: format!("vessel-test-{}", std::process::id()),
            daemon: Some(daemon),
            ids: Default::default(),
        };
        c.wait_ready();
        c
    }

    /// Waits (bounded by tries, not by a clock) until `ctr version` answers.
    fn wait_ready(&mut self) {
        for _ in 0..600 {
            if let Some(Ok(Some(st))) = self.daemon.as_mut().map(|d| d.try_wait()) {
                panic!("containerd exited with {st}: {}", self.log());
            }
            if self.sock.exists() && self.ctr(&["version"]).status.success() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!(
            "containerd did not answer on {}: {}",
            self.sock.display(),
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }

    /// Runs `ctr` against our daemon, in our namespace.
    fn ctr(&self, args: &[&str]) -> Output {
        clients::run(
            &self.dir,
            Command::new("ctr")
                .arg("--address")
                .arg(&self.sock)
                .arg("--namespace")
                .arg(&self.ns)
                .args(args),
        )
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let o = self.ctr(args);
        assert!(o.status.success(), "ctr {args:?}: {}", show(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `ctr run` with vessel-runtime as the shim's runc; `opts` go before
    /// the image, `cmd` after the container id.
    fn run(&self, opts: &[&str], id: &str, cmd: &[&str]) -> Output {
        self.ids.borrow_mut().push(id.to_string());
        let root = self.runc_root.to_str().expect("utf-8 path");
        let mut args = vec!["run", "--runc-binary", common::BIN, "--runc-root", root];
        args.extend_from_slice(opts);
        args.push(IMAGE);
        args.push(id);
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    /// vessel-runtime on the shim's state root (the shim adds the namespace).
    fn runtime(&self, args: &[&str]) -> Output {
        clients::run(
            &self.dir,
            Command::new(common::BIN)
                .arg("--root")
                .arg(self.runc_root.join(&self.ns))
                .args(args),
        )
    }

    /// Polls `ctr task ls` (bounded) until the task has `status`.
    fn wait_task(&self, id: &str, status: &str) {
        for _ in 0..400 {
            let ls = self.ctr_ok(&["task", "ls"]);
            if ls
                .lines()
                .any(|l| l.split_whitespace().next() == Some(id) && l.contains(status))
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!(
            "task {id} never became {status}: {}",
            self.ctr_ok(&["task", "ls"])
        );
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in self.ids.borrow().iter() {
            let _ = self.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
            let _ = self.ctr(&["task", "rm", "--force", id]);
            let _ = self.ctr(&["container", "rm", id]);
            let _ = self.runtime(&["delete", "--force", id]);
        }
        let _ = self.ctr(&["image", "rm", IMAGE]);
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        // Shims are started with our socket's address on their command line.
        kill_matching(&self.sock.to_string_lossy());
        // The namespace's parent cgroup (kept by runc and vessel alike).
        clients::remove_cgroup(&self.ns);
        unmount_under(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sha256(data: &[u8]) -> (Sha256Digest, String) {
    let hex: String = sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (hex.parse().expect("sha256 digest"), hex)
}

/// Builds an OCI image layout archive (oci-layout, index.json, blobs) with
/// one uncompressed layer holding `rootfs`, named `name`.
fn oci_image_archive(rootfs: &Path, work: &Path, name: &str) -> PathBuf {
    let layer_tar = work.join("layer.tar");
    tar_dir(rootfs, &layer_tar);
    let layer = std::fs::read(&layer_tar).expect("layer");
    let (layer_digest, layer_hex) = sha256(&layer);
    let config = ImageConfigurationBuilder::default()
        .config(
            ConfigBuilder::default()
                .env(vec!["PATH=/bin".to_string()])
                .cmd(vec!["/bin/sh".to_string()])
                .build()
                .expect("image config"),
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![format!("sha256:{layer_hex}")])
                .build()
                .expect("rootfs"),
        )
        .build()
        .expect("image configuration");
    let config = serde_json::to_vec(&config).expect("config json");
    let (config_digest, config_hex) = sha256(&config);
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(
            DescriptorBuilder::default()
                .media_type(MediaType::ImageConfig)
                .digest(config_digest)
                .size(config.len() as u64)
                .build()
                .expect("config descriptor"),
        )
        .layers(vec![
            DescriptorBuilder::default()
                .media_type(MediaType::ImageLayer)
                .digest(layer_digest)
                .size(layer.len() as u64)
                .build()
                .expect("layer descriptor"),
        ])
        .build()
        .expect("manifest");
    let manifest = serde_json::to_vec(&manifest).expect("manifest json");
    let (manifest_digest, manifest_hex) = sha256(&manifest);
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .manifests(vec![
            DescriptorBuilder::default()
                .media_type(MediaType::ImageManifest)
                .digest(manifest_digest)
                .size(manifest.len() as u64)
                .annotations([
                    (
                        "org.opencontainers.image.ref.name".to_string(),
                        "test".to_string(),
                    ),
                    ("io.containerd.image.name".to_string(), name.to_string()),
                ])
                .build()
                .expect("manifest descriptor"),
        ])
        .build()
        .expect("index");
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()
        .expect("oci-layout");

    let out = work.join("image.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&out).expect("image tar"));
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, path, data).expect("append blob");
    };
    add(
        "oci-layout",
        &serde_json::to_vec(&layout).expect("layout json"),
    );
    add(
        "index.json",
        &serde_json::to_vec(&index).expect("index json"),
    );
    add(&format!("blobs/sha256/{manifest_hex}"), &manifest);
    add(&format!("blobs/sha256/{config_hex}"), &config);
    add(&format!("blobs/sha256/{layer_hex}"), &layer);
    b.into_inner().expect("finish image tar");
    out
}

#[test]
fn ctr_runs_execs_oom_kills_and_removes_through_vessel_runtime() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED containerd: {why}");
        return;
    }
    let c = Containerd::start();
    let rootfs = c.dir.join("rootfs");
    common::busybox_rootfs(&rootfs);
    let archive = oci_image_archive(&rootfs, &c.dir, IMAGE);
    let imported = c.ctr_ok(&["images", "import", archive.to_str().expect("path")]);
    assert!(imported.contains(IMAGE), "{imported}");

    // Run: output and exit code come back through the shim.
    let o = c.run(
        &["--rm"],
        "vt-run",
        &["sh", "-c", "echo hello from pid $$; exit 3"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("hello from pid 1"),
        "{}",
        show(&o)
    );

    // A failed create: ctr shows vessel-runtime's error (the shim reads
    // its JSON log) and no container is left.
    let o = c.run(&["--rm"], "vt-bad", &["/bin/no-such-program"]);
    assert!(!o.status.success(), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("executable file not found"),
        "{}",
        show(&o)
    );
    assert!(!c.ctr_ok(&["container", "ls", "-q"]).contains("vt-bad"));

    // A detached container is vessel-runtime's (its state is under the
    // root the shim gave it); exec runs inside it with its own exit code.
    let o = c.run(&["--detach"], "vt-exec", &["sleep", "1000"]);
    assert!(o.status.success(), "{}", show(&o));
    c.wait_task("vt-exec", "RUNNING");
    let st = c.runtime(&["state", "vt-exec"]);
    assert!(st.status.success(), "vessel-runtime state: {}", show(&st));
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).expect("state json");
    assert_eq!(st["status"], "running");
    let o = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "vt-exec",
        "sh",
        "-c",
        "echo exec sees $(cat /proc/1/cmdline); exit 5",
    ]);
    assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("exec sees sleep1000"),
        "{}",
        show(&o)
    );

    // Pause, resume and ps go through the runtime too.
    c.ctr_ok(&["task", "pause", "vt-exec"]);
    c.wait_task("vt-exec", "PAUSED");
    let paused: serde_json::Value =
        serde_json::from_slice(&c.runtime(&["state", "vt-exec"]).stdout).expect("state json");
    assert_eq!(paused["status"], "paused");
    c.ctr_ok(&["task", "resume", "vt-exec"]);
    c.wait_task("vt-exec", "RUNNING");
    let ps = c.ctr_ok(&["task", "ps", "vt-exec"]);
    let init = st["pid"].as_i64().expect("pid").to_string();
    assert!(
        ps.lines()
            .any(|l| l.split_whitespace().next() == Some(init.as_str())),
        "ctr task ps lists the init {init}: {ps}"
    );

    // Kill and rm: the task stops with 137 and everything is removed.
    c.ctr_ok(&["task", "kill", "--signal", "SIGKILL", "vt-exec"]);
    c.wait_task("vt-exec", "STOPPED");
    let rm = c.ctr(&["task", "rm", "vt-exec"]);
    assert!(rm.status.success(), "{}", show(&rm));
    assert!(
        String::from_utf8_lossy(&rm.stderr).contains("137"),
        "ctr reports the exit code: {}",
        show(&rm)
    );
    c.ctr_ok(&["container", "rm", "vt-exec"]);
    assert!(
        !c.runtime(&["state", "vt-exec"]).status.success(),
        "vessel-runtime's state is gone after rm"
    );
    let cg = common::memory_cgroup(&format!("/{}/vt-exec", c.ns));
    assert!(!cg.exists(), "cgroup {} removed", cg.display());
    assert!(!c.ctr_ok(&["container", "ls", "-q"]).contains("vt-exec"));
    assert!(
        !c.runc_root.join(&c.ns).join("vt-exec").exists(),
        "state dir removed"
    );

    // A memory-limited container that allocates past its limit is
    // OOM-killed: 137.
    let o = c.run(
        &["--rm", "--memory-limit", "33554432"],
        "vt-oom",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
    );
    assert_eq!(o.status.code(), Some(137), "{}", show(&o));
}
