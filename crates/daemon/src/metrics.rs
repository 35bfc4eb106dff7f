//! Prometheus metrics at `GET /metrics` (text format 0.0.4, from the
//! `prometheus` crate):
//!
//! - `vessel_instances{kind, state}`: instances by kind and state;
//! - `vessel_api_request_duration_seconds{method, route, status}`: a
//!   histogram of API latency, by route template (`/v1/instances/{name}`);
//! - `vessel_instance_cpu_seconds_total{name, kind}` and
//!   `vessel_instance_memory_bytes{name, kind}`: for each running instance,
//!   the CPU time and memory of its VMM process (from /proc/PID: utime +
//!   stime, RSS) or of its container's cgroup (cpuacct usage or cpu.stat,
//!   memory usage);
//! - `vessel_host_memory_bytes`, `vessel_host_cpus` and
//!   `vessel_allocated_memory_bytes`, `vessel_allocated_cpus` (what running
//!   instances hold, as admission counts it).

use std::path::{Path, PathBuf};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, HistogramOpts, HistogramVec, Registry, TextEncoder};
use thiserror::Error;
use vessel_api::{Instance, InstanceKind, InstanceState};

use crate::admission::Host;

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("registering a metric: {0}")]
    Register(#[from] prometheus::Error),
}

/// The daemon's metrics: the request histogram lives in a registry; the
/// instance metrics are read from the store and /proc at each scrape.
pub struct Metrics {
    registry: Registry,
    requests: HistogramVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let requests = HistogramVec::new(
            HistogramOpts::new(
                "vessel_api_request_duration_seconds",
                "Time to answer an API request, by method, route template and status",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["method", "route", "status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        Ok(Metrics { registry, requests })
    }

    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .observe(seconds);
    }

    /// The text exposition of every metric.
    pub fn render(&self, instances: &[Instance], host: Host) -> String {
        let mut families = self.registry.gather();
        families.extend(instance_families(instances, host));
        // The encoder refuses a family without samples (no instance runs).
        families.retain(|f| !f.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = Vec::new();
        // Encoding well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Axum middleware (a route layer, so the matched route template is known):
/// time each request.
pub async fn track(
    State(metrics): State<std::sync::Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    response
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name(k.to_string());
            l.set_value(v.to_string());
            l
        })
        .collect()
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn gauge(pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut m = Metric::default();
    m.set_label(labels(pairs));
    let mut g = Gauge::default();
    g.set_value(value);
    m.set_gauge(g);
    m
}

fn counter(pairs: &[(&str, &str)], value: f64) -> Metric {
    let mut m = Metric::default();
    m.set_label(labels(pairs));
    let mut c = Counter::default();
    c.set_value(value);
    m.set_counter(c);
    m
}

const STATES: [InstanceState; 4] = [
    InstanceState::Created,
    InstanceState::Running,
    InstanceState::Stopping,
    InstanceState::Stopped,
];
const KINDS: [InstanceKind; 2] = [InstanceKind::Vm, InstanceKind::Container];

fn instance_families(instances: &[Instance], host: Host) -> Vec<MetricFamily> {
    let mut by_state = Vec::new();
    for kind in KINDS {
        for state in STATES {
            let n = instances
                .iter()
                .filter(|i| i.kind == kind && i.state == state)
                .count();
            by_state.push(gauge(
                &[("kind", kind.as_str()), ("state", state.as_str())],
                n as f64,
            ));
        }
    }
    let mut cpu = Vec::new();
    let mut memory = Vec::new();
    let (mut held_memory, mut held_cpus) = (0f64, 0f64);
    for i in instances.iter().filter(|i| i.state.is_active()) {
        held_memory += i.resources.memory_bytes.unwrap_or(0) as f64;
        held_cpus += i.resources.cpus.unwrap_or(0.0);
        let Some(pid) = i.pid.filter(|p| *p > 0) else {
            continue;
        };
        let usage = match i.kind {
            InstanceKind::Vm => process_usage(pid),
            InstanceKind::Container => {
                // The container's process, under its monitor.
                let process = crate::supervisor::container_process(pid).unwrap_or(pid);
                cgroup_usage(process).or_else(|| process_usage(process))
            }
        };
        if let Some(u) = usage {
            let l = [("kind", i.kind.as_str()), ("name", i.name.as_str())];
            cpu.push(counter(&l, u.cpu_seconds));
            memory.push(gauge(&l, u.memory_bytes as f64));
        }
    }
    vec![
        family(
            "vessel_instances",
            "Instances by kind and state",
            MetricType::GAUGE,
            by_state,
        ),
        family(
            "vessel_instance_cpu_seconds_total",
            "CPU time used by a running instance: its VMM process, or its container's cgroup",
            MetricType::COUNTER,
            cpu,
        ),
        family(
            "vessel_instance_memory_bytes",
            "Memory of a running instance: the VMM process's RSS, or its container cgroup's usage",
            MetricType::GAUGE,
            memory,
        ),
        family(
            "vessel_host_memory_bytes",
            "The host's memory (MemTotal), before overcommit",
            MetricType::GAUGE,
            vec![gauge(&[], host.memory_bytes as f64)],
        ),
        family(
            "vessel_host_cpus",
            "The CPUs the daemon may use, before overcommit",
            MetricType::GAUGE,
            vec![gauge(&[], host.cpus as f64)],
        ),
        family(
            "vessel_allocated_memory_bytes",
            "Memory held by running instances (their configured size)",
            MetricType::GAUGE,
            vec![gauge(&[], held_memory)],
        ),
        family(
            "vessel_allocated_cpus",
            "vCPUs held by running instances",
            MetricType::GAUGE,
            vec![gauge(&[], held_cpus)],
        ),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub cpu_seconds: f64,
    pub memory_bytes: u64,
}

/// CPU time (user + system, with waited-for children) and RSS of a process.
pub fn process_usage(pid: i32) -> Option<Usage> {
    use procfs::WithCurrentSystemInfo;
    let process = procfs::process::Process::new(pid).ok()?;
    let stat = process.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    let cpu_ticks = stat.utime + stat.stime + stat.cutime.max(0) as u64 + stat.cstime.max(0) as u64;
    Some(Usage {
        cpu_seconds: cpu_ticks as f64 / ticks,
        memory_bytes: stat.rss_bytes().get(),
    })
}

/// CPU time and memory of the cgroup `pid` is in (cgroup v1 memory and
/// cpuacct controllers, or v2's unified hierarchy).
pub fn cgroup_usage(pid: i32) -> Option<Usage> {
    let process = procfs::process::Process::new(pid).ok()?;
    let groups = process.cgroups().ok()?;
    let mut memory = None;
    let mut cpu = None;
    for g in groups.0.iter() {
        let rel = g.pathname.trim_start_matches('/');
        if g.hierarchy == 0 && g.controllers.is_empty() {
            let dir = Path::new("/sys/fs/cgroup").join(rel);
            if memory.is_none() {
                memory = read_u64(&dir.join("memory.current"));
            }
            if cpu.is_none() {
                cpu = std::fs::read_to_string(dir.join("cpu.stat"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("usage_usec "))
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(|us| us as f64 / 1e6)
                    });
            }
            continue;
        }
        let joined = g.controllers.join(",");
        let mounts = [
            PathBuf::from("/sys/fs/cgroup").join(&joined),
            PathBuf::from("/sys/fs/cgroup")
                .join(g.controllers.first().map(String::as_str).unwrap_or("")),
        ];
        if g.controllers.iter().any(|c| c == "memory") {
            memory = mounts
                .iter()
                .find_map(|m| read_u64(&m.join(rel).join("memory.usage_in_bytes")));
        }
        if g.controllers.iter().any(|c| c == "cpuacct") {
            cpu = mounts
                .iter()
                .find_map(|m| read_u64(&m.join(rel).join("cpuacct.usage")))
                .map(|ns| ns as f64 / 1e9);
        }
    }
    Some(Usage {
        cpu_seconds: cpu?,
        memory_bytes: memory?,
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_usage_is_read() {
        let u = process_usage(std::process::id() as i32).unwrap();
        assert!(u.memory_bytes > 0);
        assert!(u.cpu_seconds >= 0.0);
        assert!(process_usage(i32::MAX).is_none());
    }

    #[test]
    fn exposition_has_every_family_and_counts_states() {
        let metrics = Metrics::new().unwrap();
        metrics.observe("GET", "/v1/instances", 200, 0.002);
        let instances: Vec<Instance> = serde_json::from_value(serde_json::json!([
            {"name": "a", "kind": "vm", "spec": {"kind": "vm", "args": []}, "state": "stopped",
             "created_at": 0, "log_path": "/l"},
            {"name": "b", "kind": "vm", "spec": {"kind": "vm", "args": []}, "state": "running",
             "pid": std::process::id(), "created_at": 0, "log_path": "/l",
             "resources": {"memory_bytes": 1024, "cpus": 2.0}}
        ]))
        .unwrap();
        let text = metrics.render(
            &instances,
            Host {
                memory_bytes: 4096,
                cpus: 2,
            },
        );
        assert!(
            text.contains("vessel_instances{kind=\"vm\",state=\"stopped\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("vessel_instances{kind=\"container\",state=\"running\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE vessel_instance_cpu_seconds_total counter"),
            "{text}"
        );
        assert!(
            text.contains("vessel_instance_memory_bytes{kind=\"vm\",name=\"b\"} "),
            "{text}"
        );
        assert!(
            text.contains("vessel_allocated_memory_bytes 1024"),
            "{text}"
        );
        assert!(text.contains(
            "vessel_api_request_duration_seconds_count{method=\"GET\",route=\"/v1/instances\",status=\"200\"} 1"
        ), "{text}");
    }
}
