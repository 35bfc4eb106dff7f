//! Benchmark harness: run a command N times and report the wall time from
//! spawning it to the first byte on its stdout (the guest's first serial
//! byte, for the microvm), and the CPU time the whole process used.
//!
//! ```text
//! first_byte RUNS -- COMMAND [ARGS]...
//! ```

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

fn children_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage into the buffer, which is large
    // enough and initialised (zeroed) memory.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(runs), Some(sep)) = (
        args.first().and_then(|r| r.parse::<usize>().ok()),
        args.iter().position(|a| a == "--"),
    ) else {
        eprintln!("usage: first_byte RUNS -- COMMAND [ARGS]...");
        return ExitCode::from(2);
    };
    let cmd = &args[sep + 1..];
    if cmd.is_empty() || runs == 0 {
        eprintln!("usage: first_byte RUNS -- COMMAND [ARGS]...");
        return ExitCode::from(2);
    }
    let (mut first, mut total, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let cpu_before = children_cpu();
        let start = Instant::now();
        let mut child = match Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdout(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("first_byte: cannot run {}: {e}", cmd[0]);
                return ExitCode::FAILURE;
            }
        };
        let mut out = child.stdout.take().expect("stdout is piped");
        let mut byte = [0u8; 1];
        let got = out.read(&mut byte).unwrap_or(0);
        let t_first = start.elapsed();
        let mut rest = Vec::new();
        let _ = out.read_to_end(&mut rest);
        let status = child.wait().expect("the child can be waited for");
        let t_total = start.elapsed();
        if got == 0 || !status.success() {
            eprintln!(
                "first_byte: the command printed nothing or failed ({:?}, signal {:?})",
                status.code(),
                status.signal()
            );
            return ExitCode::FAILURE;
        }
        first.push(t_first);
        total.push(t_total);
        cpu.push(children_cpu().saturating_sub(cpu_before));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let min_first = first.iter().min().copied().unwrap_or_default();
    println!(
        "runs={runs} first_byte_ms_median={:.2} first_byte_ms_min={:.2} \
         process_total_ms_median={:.2} process_cpu_ms_median={:.2}",
        ms(median(first)),
        ms(min_first),
        ms(median(total)),
        ms(median(cpu)),
    );
    ExitCode::SUCCESS
}
