//! Resources, overcommit refusal and allowed directories over the API,
//! with a shell script standing in for `vessel run` (VMs that only sleep).

mod common;

use common::{TestDaemon, script};
use vessel_api::{CreateInstance, InstanceState};
use vessel_daemon::admission::{Host, Overcommit};

fn vm(name: &str, args: &[String]) -> CreateInstance {
    serde_json::from_value(serde_json::json!({
        "name": name, "spec": {"kind": "vm", "args": args}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_that_would_overcommit_the_host_are_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let vmm = script(scratch.path(), "fake-vessel", "exec sleep 1000");
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        vessel_daemon::Config::new(dir.path().join("vessel.sock"), dir.path().join("state"));
    config.vmm_program = vmm;
    config.overcommit = Overcommit {
        memory: 1.0,
        cpu: 1.0,
    };
    let mut d = TestDaemon::with_config(dir, config).await;
    let c = &d.client;
    let host = Host::probe();
    // Each asks for 40% of the host's memory: two fit, the third does not.
    let mib = (host.memory_bytes * 2 / 5) >> 20;
    let mem = |n: &str| vm(n, &["--memory".into(), format!("{mib}M")]);
    for n in ["a", "b", "c"] {
        let i = c.create(&mem(n)).await.unwrap();
        assert_eq!(i.resources.memory_bytes, Some(mib << 20));
        assert_eq!(i.resources.cpus, Some(1.0));
    }
    c.start("a").await.unwrap();
    c.start("b").await.unwrap();
    let err = c.start("c").await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.status(), Some(409), "{text}");
    assert!(
        text.contains(&format!(
            "needs {} of memory but only",
            vessel_daemon::admission::size(mib << 20)
        )),
        "{text}"
    );
    assert!(text.contains("--memory-overcommit"), "{text}");
    assert_eq!(c.get("c").await.unwrap().state, InstanceState::Created);
    // Room is given back when an instance stops.
    c.stop("a", Some(5)).await.unwrap();
    c.start("c").await.unwrap();

    // vCPUs: with ratio 1.0 the host's CPUs are the limit; b and c hold 2.
    let cpus = host.cpus.to_string();
    c.create(&vm(
        "wide",
        &["--cpus".into(), cpus, "--memory".into(), "1M".into()],
    ))
    .await
    .unwrap();
    let err = c.start("wide").await.unwrap_err();
    let text = err.to_string();
    assert_eq!(err.status(), Some(409), "{text}");
    assert!(
        text.contains("vCPUs but only") && text.contains("--cpu-overcommit"),
        "{text}"
    );

    // Bad resource flags are refused at create.
    let err = c
        .create(&vm("bad", &["--memory".into(), "lots".into()]))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    for n in ["a", "b", "c", "wide"] {
        c.delete(n, true).await.unwrap();
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_the_allowed_dirs_are_refused() {
    let mut d = TestDaemon::start(None).await;
    let c = &d.client;
    let inside = d.dir.path().join("files");
    std::fs::create_dir_all(inside.join("bundle/rootfs")).unwrap();
    std::fs::write(inside.join("bundle/config.json"), "{}").unwrap();
    std::fs::write(inside.join("fw.elf"), "x").unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("bundle/rootfs")).unwrap();
    std::fs::write(outside.path().join("bundle/config.json"), "{}").unwrap();
    std::fs::write(outside.path().join("kernel"), "x").unwrap();
    std::os::unix::fs::symlink(outside.path().join("kernel"), inside.join("link")).unwrap();
    let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
    let container = |n: &str, b: String| -> CreateInstance {
        serde_json::from_value(serde_json::json!({
            "name": n, "spec": {"kind": "container", "bundle": b}
        }))
        .unwrap()
    };

    let refused = [
        c.create(&container("c1", s(&outside.path().join("bundle"))))
            .await,
        c.create(&container(
            "c2",
            format!(
                "{}/{}{}",
                s(&inside),
                "../".repeat(inside.components().count() - 1),
                s(&outside.path().join("bundle")).trim_start_matches('/')
            ),
        ))
        .await,
        c.create(&vm(
            "v1",
            &["--kernel".into(), s(&outside.path().join("kernel"))],
        ))
        .await,
        c.create(&vm(
            "v2",
            &[format!("--initrd={}", s(&inside.join("link")))],
        ))
        .await,
        c.create(&vm(
            "v3",
            &[
                "--disk".into(),
                format!("{},ro", s(&outside.path().join("kernel"))),
            ],
        ))
        .await,
    ];
    for r in refused {
        let err = r.unwrap_err();
        let text = err.to_string();
        assert_eq!(err.status(), Some(403), "{text}");
        assert!(text.contains("--allow-dir"), "{text}");
        assert!(
            text.contains(&s(outside.path())) || text.contains("resolves to"),
            "{text}"
        );
    }
    // A missing file inside is a 400 that says so; one outside tells nothing.
    let err = c
        .create(&vm(
            "v4",
            &["--firmware".into(), s(&inside.join("missing"))],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    let err = c
        .create(&vm(
            "v5",
            &["--firmware".into(), s(&outside.path().join("missing"))],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    // Inside: accepted, with the paths resolved.
    let ok = c
        .create(&vm(
            "fine",
            &[
                "--firmware".into(),
                format!("{}/../files/fw.elf", s(&inside)),
            ],
        ))
        .await
        .unwrap();
    let vessel_api::InstanceSpec::Vm(spec) = ok.spec else {
        panic!("not a vm")
    };
    assert_eq!(
        spec.args[1],
        s(&std::fs::canonicalize(inside.join("fw.elf")).unwrap())
    );
    c.create(&container("box", s(&inside.join("bundle"))))
        .await
        .unwrap();
    let names: Vec<_> = c
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["box", "fine"], "nothing half-made by the refusals");
    d.stop().await;
}
