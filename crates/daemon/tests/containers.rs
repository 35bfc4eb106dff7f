//! Container instances end to end over the API, with a real busybox bundle
//! run by `vessel-runtime`: create (resources read from config.json),
//! start, exec (API and `vessel exec`), metrics that follow the container,
//! stop, an exit code, kill, delete.

mod busybox;
mod common;

use std::path::Path;

use common::{wait_for, wait_for_text};
use vessel_api::{CreateInstance, ExecRequest, ExitReason, InstanceKind, InstanceState};

fn exec_req(args: &[&str]) -> ExecRequest {
    ExecRequest {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
        cwd: None,
    }
}

fn create(name: &str, bundle: &Path) -> CreateInstance {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "spec": {"kind": "container", "bundle": bundle.to_string_lossy()}
    }))
    .unwrap()
}

/// The value of the sample `prefix` (a metric name with its labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_lifecycle_exec_metrics() {
    let Some(runtime) = busybox::runtime_binary() else {
        return;
    };
    let mut d = busybox::daemon(&runtime, |_| {}).await;
    let c = &d.client;
    let mut config = busybox::config(&["sh", "-c", "echo started; exec sleep 1000"]);
    config["linux"]["resources"]["memory"] = serde_json::json!({"limit": 64 << 20});
    config["linux"]["resources"]["cpu"] = serde_json::json!({"quota": 50000, "period": 100000});
    let sleeper = busybox::bundle(d.dir.path(), "sleeper", &config);
    let exits = busybox::bundle(
        d.dir.path(),
        "exits",
        &busybox::config(&["sh", "-c", "echo bye; exit 3"]),
    );

    let created = c.create(&create("sleeper", &sleeper)).await.unwrap();
    assert_eq!(created.kind, InstanceKind::Container);
    assert_eq!(created.resources.memory_bytes, Some(64 << 20));
    assert_eq!(created.resources.cpus, Some(0.5));
    let before = c.metrics().await.unwrap();
    assert_eq!(
        sample(
            &before,
            "vessel_instances{kind=\"container\",state=\"created\"}"
        ),
        Some(1.0),
        "{before}"
    );

    let running = c.start("sleeper").await.unwrap();
    assert_eq!(running.state, InstanceState::Running);
    wait_for_text(&running.log_path, "started").await;

    // exec: output, exit code, env and cwd.
    let r = c
        .exec(
            "sleeper",
            &exec_req(&["sh", "-c", "echo out; echo err >&2; exit 7"]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (r.exit_code, r.stdout.as_str(), r.stderr.as_str()),
        (7, "out\n", "err\n")
    );
    let r = c
        .exec(
            "sleeper",
            &ExecRequest {
                args: vec![
                    "sh".into(),
                    "-c".into(),
                    "echo $GREETING; pwd; hostname".into(),
                ],
                env: vec!["GREETING=hello".into()],
                cwd: Some("/tmp".into()),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (r.exit_code, r.stdout.as_str()),
        (0, "hello\n/tmp\nvessel\n")
    );
    // The runtime's refusal is a 422 with its message, not an exit code.
    let err = c
        .exec("sleeper", &exec_req(&["/no/such/program"]), None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");
    let err = c.exec("sleeper", &exec_req(&[]), None).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");

    // Metrics: the running container's cgroup memory and CPU time, which
    // grows after a busy exec.
    let m1 = c.metrics().await.unwrap();
    let mem_key = "vessel_instance_memory_bytes{kind=\"container\",name=\"sleeper\"}";
    let cpu_key = "vessel_instance_cpu_seconds_total{kind=\"container\",name=\"sleeper\"}";
    assert!(sample(&m1, mem_key).unwrap_or(0.0) > 0.0, "{m1}");
    let cpu1 = sample(&m1, cpu_key).expect("cpu sample");
    let r = c
        .exec(
            "sleeper",
            &exec_req(&[
                "sh",
                "-c",
                "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo $i",
            ]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.stdout, "300000\n");
    let m2 = c.metrics().await.unwrap();
    let cpu2 = sample(&m2, cpu_key).expect("cpu sample");
    assert!(cpu2 > cpu1, "cpu {cpu1} -> {cpu2}");
    assert_eq!(
        sample(
            &m2,
            "vessel_instances{kind=\"container\",state=\"running\"}"
        ),
        Some(1.0)
    );
    let exec_count = "vessel_api_request_duration_seconds_count{method=\"POST\",route=\"/v1/instances/{name}/exec\",status=\"200\"}";
    assert_eq!(sample(&m2, exec_count), Some(3.0), "{m2}");
    assert_eq!(
        sample(&m2, "vessel_allocated_memory_bytes"),
        Some((64 << 20) as f64)
    );

    // `vessel exec` prints the output and exits with the command's code.
    if let Some(vessel) = busybox::vessel_binary() {
        let out = std::process::Command::new(&vessel)
            .env("VESSEL_SOCKET", d.daemon.as_ref().unwrap().socket())
            .args(["exec", "sleeper", "--", "sh", "-c", "echo from-cli; exit 5"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(5), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from-cli\n");
        let ls = std::process::Command::new(&vessel)
            .env("VESSEL_SOCKET", d.daemon.as_ref().unwrap().socket())
            .arg("ls")
            .output()
            .unwrap();
        let ls = String::from_utf8_lossy(&ls.stdout);
        assert!(
            ls.contains("MEMORY") && ls.contains("64M") && ls.contains("0.5"),
            "{ls}"
        );
    }

    // Stop: graceful; the exit is recorded and the metrics follow.
    let stopped = c.stop("sleeper", Some(5)).await.unwrap();
    assert_eq!(stopped.state, InstanceState::Stopped);
    assert_eq!(stopped.exit.unwrap().reason, ExitReason::Stopped);
    let err = c
        .exec("sleeper", &exec_req(&["true"]), None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(409), "{err}");
    let m3 = c.metrics().await.unwrap();
    assert_eq!(
        sample(
            &m3,
            "vessel_instances{kind=\"container\",state=\"running\"}"
        ),
        Some(0.0)
    );
    assert!(sample(&m3, mem_key).is_none(), "{m3}");

    // A process that exits by itself: its code is kept.
    c.create(&create("exits", &exits)).await.unwrap();
    c.start("exits").await.unwrap();
    let done = wait_for(c, "exits", "stopped", |i| i.state == InstanceState::Stopped).await;
    let exit = done.exit.unwrap();
    assert_eq!(
        (exit.reason, exit.code),
        (ExitReason::Exited, Some(3)),
        "{exit:?}"
    );
    assert!(
        std::fs::read_to_string(&done.log_path)
            .unwrap()
            .contains("bye")
    );

    // Kill, then delete everything.
    c.start("sleeper").await.unwrap();
    let killed = c.kill("sleeper").await.unwrap();
    assert_eq!(killed.exit.unwrap().reason, ExitReason::Killed);
    c.start("sleeper").await.unwrap();
    c.delete("sleeper", true).await.unwrap();
    c.delete("exits", false).await.unwrap();
    assert!(c.list().await.unwrap().is_empty());
    d.stop().await;
}
