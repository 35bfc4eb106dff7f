//! End to end over the Unix socket: a daemon on a temp socket and state
//! dir, driven with vessel-api's client. VM processes here are shell
//! scripts standing in for `vessel run` (see riscv_vm.rs for the real one),
//! so the supervision is tested independently of the emulator.

mod common;

use common::{TestDaemon, script, wait_for, wait_for_text};
use vessel_api::Method;
use vessel_api::{
    ContainerSpec, CreateInstance, ExitReason, InstanceKind, InstanceSpec, InstanceState,
    MAX_BODY_BYTES, VmSpec,
};

fn vm(name: &str, args: &[&str]) -> CreateInstance {
    CreateInstance {
        name: name.to_string(),
        spec: InstanceSpec::Vm(VmSpec {
            args: args.iter().map(|s| s.to_string()).collect(),
        }),
        restart: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_inspect_delete_and_openapi() {
    let mut d = TestDaemon::start(None).await;
    let c = &d.client;
    assert!(c.list().await.unwrap().is_empty());
    let created = c.create(&vm("web2", &["debian-riscv64"])).await.unwrap();
    assert_eq!(created.state, InstanceState::Created);
    assert_eq!(created.kind, InstanceKind::Vm);
    c.create(&vm("web1", &["--arch", "riscv64"])).await.unwrap();
    let names: Vec<_> = c
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["web1", "web2"]);
    let got = c.get("web2").await.unwrap();
    assert_eq!(got, created);
    let deleted = c.delete("web2", false).await.unwrap();
    assert_eq!(deleted.name, "web2");
    assert_eq!(c.get("web2").await.unwrap_err().status(), Some(404));
    assert_eq!(c.list().await.unwrap().len(), 1);

    let doc = c.openapi().await.unwrap();
    let kept: serde_json::Value = serde_json::from_str(vessel_api::OPENAPI_JSON).unwrap();
    assert_eq!(doc, kept);

    // The state survives a daemon restart.
    d.stop().await;
    let config = d.config.clone();
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    let mut d2 = TestDaemon::with_config(dir, config).await;
    assert_eq!(
        d2.client.get("web1").await.unwrap().state,
        InstanceState::Created
    );
    d2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx_with_a_json_message() {
    let mut d = TestDaemon::start(None).await;
    let c = &d.client;
    c.create(&vm("taken", &[])).await.unwrap();
    let bundle_without_config = d.dir.path().join("empty-bundle");
    std::fs::create_dir_all(&bundle_without_config).unwrap();
    let huge = format!(
        r#"{{"name":"big","spec":{{"kind":"vm","args":["{}"]}}}}"#,
        "x".repeat(MAX_BODY_BYTES)
    );
    let cases: Vec<(Method, String, Option<String>, u16, &str)> = vec![
        (
            Method::POST,
            "/v1/instances".into(),
            Some("{not json".into()),
            400,
            "not a valid create request",
        ),
        (
            Method::POST,
            "/v1/instances".into(),
            Some(String::new()),
            400,
            "not a valid create request",
        ),
        (
            Method::POST,
            "/v1/instances".into(),
            Some(r#"{"name":"a","spec":{"kind":"vm","args":[]},"color":"red"}"#.into()),
            400,
            "unknown field `color`",
        ),
        (
            Method::POST,
            "/v1/instances".into(),
            Some(r#"{"name":"a","spec":{"kind":"vm","args":[],"mem":1}}"#.into()),
            400,
            "unknown field `mem`",
        ),
        (
            Method::POST,
            "/v1/instances".into(),
            Some(r#"{"name":"a","spec":{"kind":"pod"}}"#.into()),
            400,
            "unknown variant",
        ),
        (
            Method::POST,
            "/v1/instances".into(),
            Some(r#"{"name":"../etc","spec":{"kind":"vm","args":[]}}"#.into()),
            400,
            "is invalid",
        ),
        (
            Method::POST,
            "/v1/instances".into(),
            Some(r#"{"name":"","spec":{"kind":"vm","args":[]}}"#.into()),
            400,
            "name is empty",
        ),
        (
            Method::POST,
            "/v1/instances".into(),
            Some(r#"{"name":"taken","spec":{"kind":"vm","args":[]}}"#.into()),
            409,
            "exists",
        ),
        (
            Method::POST,
            "/v1/instances".into(),
            Some(r#"{"name":"c1","spec":{"kind":"container","bundle":"relative/dir"}}"#.into()),
            400,
            "not an absolute path",
        ),
        (
            Method::POST,
            "/v1/instances".into(),
            Some(format!(
                r#"{{"name":"c1","spec":{{"kind":"container","bundle":"{}"}}}}"#,
                bundle_without_config.display()
            )),
            400,
            "no config.json",
        ),
        (
            Method::POST,
            "/v1/instances".into(),
            Some(huge),
            413,
            "larger than",
        ),
        (
            Method::GET,
            "/v1/instances/nope".into(),
            None,
            404,
            "no instance named",
        ),
        (
            Method::GET,
            "/v1/instances/a%2Fb".into(),
            None,
            400,
            "is invalid",
        ),
        (
            Method::POST,
            "/v1/instances/nope/start".into(),
            None,
            404,
            "no instance named",
        ),
        (
            Method::POST,
            "/v1/instances/taken/stop".into(),
            None,
            409,
            "does not run",
        ),
        (
            Method::POST,
            "/v1/instances/taken/kill".into(),
            None,
            409,
            "does not run",
        ),
        (
            Method::POST,
            "/v1/instances/taken/stop?timeout=abc".into(),
            None,
            400,
            "timeout",
        ),
        (
            Method::POST,
            "/v1/instances/taken/stop?timeout=999999".into(),
            None,
            400,
            "at most",
        ),
        (
            Method::DELETE,
            "/v1/instances/taken?force=maybe".into(),
            None,
            400,
            "force",
        ),
        (
            Method::DELETE,
            "/v1/instances/taken?recursive=1".into(),
            None,
            400,
            "force",
        ),
        (Method::GET, "/v2/things".into(), None, 404, "openapi.json"),
    ];
    for (method, path, body, status, needle) in cases {
        let r = c
            .raw(method.clone(), &path, body.map(String::into_bytes))
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, status, "{method} {path}: {text}");
        assert_eq!(
            r.content_type.as_deref(),
            Some("application/json"),
            "{method} {path}"
        );
        let err: vessel_api::ErrorBody = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{method} {path}: not a JSON error ({e}): {text}"));
        assert!(
            err.error.contains(needle),
            "{method} {path}: {:?} lacks {needle:?}",
            err.error
        );
    }
    // Nothing was half-made, and the daemon still answers.
    let names: Vec<_> = c
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["taken"]);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_process_exit_is_recorded_with_its_log() {
    let scratch = tempfile::tempdir().unwrap();
    let vmm = script(
        scratch.path(),
        "fake-vessel",
        r#"for last; do :; done
echo "args: $last"
case "$last" in
  poweroff) exit 0 ;;
  *) echo "error: firmware not found" >&2; exit 3 ;;
esac"#,
    );
    let mut d = TestDaemon::start(Some(vmm)).await;
    let c = &d.client;

    c.create(&vm("off", &["poweroff"])).await.unwrap();
    let started = c.start("off").await.unwrap();
    assert!(started.started_at.is_some());
    let done = wait_for(c, "off", "stopped", |i| i.state == InstanceState::Stopped).await;
    let exit = done.exit.expect("an exit status");
    assert_eq!((exit.reason, exit.code), (ExitReason::PoweredOff, Some(0)));
    assert_eq!(done.pid, None);
    let log = std::fs::read_to_string(&done.log_path).unwrap();
    assert_eq!(log, "args: poweroff\n");

    c.create(&vm("bad", &["crash"])).await.unwrap();
    c.start("bad").await.unwrap();
    let done = wait_for(c, "bad", "stopped", |i| i.state == InstanceState::Stopped).await;
    let exit = done.exit.unwrap();
    assert_eq!((exit.reason, exit.code), (ExitReason::Crashed, Some(3)));
    let message = exit.message.unwrap();
    assert!(message.contains("firmware not found"), "{message}");

    // Started again: the log is appended to, the exit cleared then set anew.
    c.start("off").await.unwrap();
    let done = wait_for(c, "off", "stopped again", |i| {
        i.state == InstanceState::Stopped
    })
    .await;
    assert_eq!(done.exit.unwrap().reason, ExitReason::PoweredOff);
    assert_eq!(
        std::fs::read_to_string(&done.log_path).unwrap(),
        "args: poweroff\n".repeat(2)
    );
    // Deleting removes the log with the record.
    c.delete("off", false).await.unwrap();
    assert!(!std::path::Path::new(&done.log_path).exists());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_is_graceful_then_forced_and_kill_kills() {
    let scratch = tempfile::tempdir().unwrap();
    let vmm = script(
        scratch.path(),
        "fake-vessel",
        r#"for last; do :; done
if [ "$last" = stubborn ]; then trap '' TERM; fi
echo ready
while :; do sleep 1; done"#,
    );
    let mut d = TestDaemon::start(Some(vmm)).await;
    let c = &d.client;
    for name in ["polite", "stubborn", "victim"] {
        c.create(&vm(name, &[name])).await.unwrap();
        let running = c.start(name).await.unwrap();
        assert_eq!(running.state, InstanceState::Running);
        let pid = running.pid.unwrap();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        wait_for_text(&running.log_path, "ready").await;
        // Starting twice is refused.
        assert_eq!(c.start(name).await.unwrap_err().status(), Some(409));
        // So is deleting without force.
        assert_eq!(c.delete(name, false).await.unwrap_err().status(), Some(409));
    }
    let listed = c.list().await.unwrap();
    assert!(listed.iter().all(|i| i.state == InstanceState::Running));

    let polite = c.stop("polite", Some(60)).await.unwrap();
    let exit = polite.exit.unwrap();
    assert_eq!(polite.state, InstanceState::Stopped);
    assert_eq!((exit.reason, exit.signal), (ExitReason::Stopped, Some(15)));

    let stubborn = c.stop("stubborn", Some(1)).await.unwrap();
    let exit = stubborn.exit.unwrap();
    assert_eq!((exit.reason, exit.signal), (ExitReason::Stopped, Some(9)));

    let pid = c.get("victim").await.unwrap().pid.unwrap();
    let victim = c.kill("victim").await.unwrap();
    let exit = victim.exit.unwrap();
    assert_eq!((exit.reason, exit.signal), (ExitReason::Killed, Some(9)));
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still there"
    );

    // rm -f of a running instance kills it first.
    let running = c.start("polite").await.unwrap();
    let pid = running.pid.unwrap();
    c.delete("polite", true).await.unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still there"
    );
    assert_eq!(c.get("polite").await.unwrap_err().status(), Some(404));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_running_when_the_daemon_restarts_are_reattached() {
    let scratch = tempfile::tempdir().unwrap();
    let vmm = script(scratch.path(), "fake-vessel", "echo ready; exec sleep 600");
    let mut d = TestDaemon::start(Some(vmm)).await;
    d.client.create(&vm("orphan", &[])).await.unwrap();
    let running = d.client.start("orphan").await.unwrap();
    let pid = running.pid.unwrap();
    wait_for_text(&running.log_path, "ready").await;
    d.stop().await;
    // The instance process outlives the daemon.
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

    let config = d.config.clone();
    let dir = std::mem::replace(&mut d.dir, tempfile::tempdir().unwrap());
    let mut d2 = TestDaemon::with_config(dir, config).await;
    // The same process (pid and start time), supervised again, though
    // this stand-in serves no control socket.
    let again = d2.client.get("orphan").await.unwrap();
    assert_eq!(again.state, InstanceState::Running);
    assert_eq!(again.pid, Some(pid));
    let killed = d2.client.kill("orphan").await.unwrap();
    assert_eq!(killed.exit.unwrap().reason, ExitReason::Killed);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists() || {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            stat.contains(") Z")
        }
    );
    let _ = nix_kill(pid);
    d2.stop().await;
}

fn nix_kill(pid: i32) -> std::io::Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill {pid}: {status}")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_needs_a_bundle_and_records_start_failures() {
    let mut d = TestDaemon::start(None).await;
    let bundle = d.dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("config.json"), "{}").unwrap();
    let c = &d.client;
    let created = c
        .create(&CreateInstance {
            name: "box".into(),
            spec: InstanceSpec::Container(ContainerSpec {
                bundle: bundle.to_string_lossy().into_owned(),
                ..Default::default()
            }),
            restart: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(created.kind, InstanceKind::Container);
    // The runtime refuses this config.json (or is missing): the start fails
    // with a message, is recorded, and the daemon goes on.
    let err = c.start("box").await.unwrap_err();
    assert!(matches!(err.status(), Some(422) | Some(500)), "{err}");
    let failed = c.get("box").await.unwrap();
    assert_eq!(failed.state, InstanceState::Stopped);
    assert_eq!(failed.exit.unwrap().reason, ExitReason::StartFailed);
    c.delete("box", false).await.unwrap();
    d.stop().await;
}
