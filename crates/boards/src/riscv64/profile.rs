//! An opt-in sampling profiler of the guest: `VESSEL_PROFILE=PATH`.
//!
//! While it is on, the run loop runs shorter slices of a jittered length
//! (`VESSEL_PROFILE_SLICE`, default 5,000 instructions, each slice drawn
//! from half to one and a half times that, so a guest loop cannot alias
//! with the sampling period) and, after every slice that used up its
//! budget, counts the hart's privilege and pc. A sample therefore stands
//! for about one slice of retired instructions: the profile says where the
//! guest's instructions go, not how long each took. Time every hart spent
//! waiting (WFI with nothing due) is counted apart as idle seconds, and
//! each window also tells the run-loop thread's own CPU time (user and
//! system: system time is mostly device work done inline, such as tap
//! writes) and its MMIO accesses (each one leaves the CPU for the bus).
//!
//! Samples are grouped in windows of wall-clock time
//! (`VESSEL_PROFILE_WINDOW` seconds, default 1; 0 = one window for the
//! whole run), so one phase of a run can be picked out afterwards by Unix
//! time (`bench/riscv/profile.py --from T0 --to T1`). The file, written as
//! windows close:
//!
//! ```text
//! # vessel guest profile v1: slice 5000 instructions (jittered), window 1 s
//! window 1764344400.000 1764344401.000 samples 3120 instructions 15600211 idle 0.012 user 0.950 sys 0.031 mmio 2211
//! S ffffffff80a1b2c4 97
//! U 0000003f8e0012a0 3
//! ...
//! total samples 412345 instructions 2061725000 idle 10.500 user 80.100 sys 3.210 mmio 921334
//! ```
//!
//! Lines under a window: privilege (`U`, `S`, `M`, or the number), pc in
//! hex, count; most samples first.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Instructions per slice while profiling, before jitter.
pub const DEFAULT_SLICE: u64 = 5_000;
/// Seconds per window.
pub const DEFAULT_WINDOW: f64 = 1.0;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("VESSEL_PROFILE {path}: cannot create the profile: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("VESSEL_PROFILE {path}: cannot write the profile: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{name}={value}: {what}")]
    Setting {
        name: &'static str,
        value: String,
        what: &'static str,
    },
}

/// Samples per (privilege, pc).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Histogram {
    counts: HashMap<(u8, u64), u64>,
    samples: u64,
}

impl Histogram {
    pub fn add(&mut self, privilege: u8, pc: u64) {
        *self.counts.entry((privilege, pc)).or_insert(0) += 1;
        self.samples += 1;
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The entries, most samples first (then by privilege and pc).
    pub fn sorted(&self) -> Vec<((u8, u64), u64)> {
        let mut v: Vec<_> = self.counts.iter().map(|(k, c)| (*k, *c)).collect();
        v.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// One line per entry: `S ffffffff80001000 12`.
    pub fn write_lines(&self, out: &mut dyn Write) -> std::io::Result<()> {
        for ((privilege, pc), count) in self.sorted() {
            writeln!(out, "{} {pc:016x} {count}", privilege_name(privilege))?;
        }
        Ok(())
    }
}

fn privilege_name(p: u8) -> String {
    match p {
        0 => "U".into(),
        1 => "S".into(),
        3 => "M".into(),
        n => n.to_string(),
    }
}

/// CPU seconds (user, system) the calling thread has used.
pub fn thread_cpu() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid rusage to fill; RUSAGE_THREAD is Linux's.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

/// Counters of a window or of the whole run.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Tally {
    samples: u64,
    instructions: u64,
    idle: f64,
    user: f64,
    sys: f64,
    mmio: u64,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.samples += o.samples;
        self.instructions += o.instructions;
        self.idle += o.idle;
        self.user += o.user;
        self.sys += o.sys;
        self.mmio += o.mmio;
    }

    fn is_empty(&self) -> bool {
        *self == Tally::default()
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "samples {} instructions {} idle {:.3} user {:.3} sys {:.3} mmio {}",
            self.samples, self.instructions, self.idle, self.user, self.sys, self.mmio
        )
    }
}

/// One window of samples.
#[derive(Debug)]
struct Window {
    start: f64,
    hist: Histogram,
    tally: Tally,
    /// The thread's CPU time when the window opened.
    cpu_at_start: (f64, f64),
}

impl Window {
    fn new(start: f64, cpu_at_start: (f64, f64)) -> Self {
        Self {
            start,
            hist: Histogram::default(),
            tally: Tally::default(),
            cpu_at_start,
        }
    }
}

/// The profiler's settings and state; the output goes to `out` as windows
/// close.
pub struct Profiler {
    path: PathBuf,
    out: Box<dyn Write + Send>,
    slice: u64,
    /// Seconds per window; 0 = one window.
    window: f64,
    current: Window,
    total: Tally,
    /// Reads the thread's CPU time (a fake one in tests).
    cpu: fn() -> (f64, f64),
    rng: u64,
}

impl std::fmt::Debug for Profiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profiler")
            .field("path", &self.path)
            .field("slice", &self.slice)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// Unix time in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn setting<T: std::str::FromStr>(
    name: &'static str,
    what: &'static str,
    ok: impl Fn(&T) -> bool,
) -> Result<Option<T>, ProfileError> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(value) => match value.trim().parse::<T>() {
            Ok(v) if ok(&v) => Ok(Some(v)),
            _ => Err(ProfileError::Setting { name, value, what }),
        },
    }
}

impl Profiler {
    /// The profiler `VESSEL_PROFILE` asks for, if any (the file is created
    /// now).
    pub fn from_env() -> Result<Option<Self>, ProfileError> {
        let Some(path) = std::env::var_os("VESSEL_PROFILE").filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let slice = setting(
            "VESSEL_PROFILE_SLICE",
            "instructions per slice, 100 to 10000000",
            |v: &u64| (100..=10_000_000).contains(v),
        )?
        .unwrap_or(DEFAULT_SLICE);
        let window = setting(
            "VESSEL_PROFILE_WINDOW",
            "seconds per window, 0 (whole run) to 86400",
            |v: &f64| (0.0..=86_400.0).contains(v),
        )?
        .unwrap_or(DEFAULT_WINDOW);
        let path = PathBuf::from(path);
        let file = File::create(&path).map_err(|source| ProfileError::Create {
            path: path.clone(),
            source,
        })?;
        Self::new(
            &path,
            Box::new(BufWriter::new(file)),
            slice,
            window,
            unix_now(),
        )
        .map(|p| Some(p.with_cpu_clock(thread_cpu)))
    }

    /// A profiler writing to `out` (`path` names it in errors), its first
    /// window opening at Unix time `now`.
    pub fn new(
        path: &Path,
        mut out: Box<dyn Write + Send>,
        slice: u64,
        window: f64,
        now: f64,
    ) -> Result<Self, ProfileError> {
        let header = writeln!(
            out,
            "# vessel guest profile v1: slice {slice} instructions (jittered), window {window} s"
        );
        let p = Self {
            path: path.to_owned(),
            out,
            slice: slice.max(2),
            window,
            current: Window::new(now, (0.0, 0.0)),
            total: Tally::default(),
            cpu: || (0.0, 0.0),
            rng: 0x9e37_79b9_7f4a_7c15 ^ now.to_bits(),
        };
        header.map_err(|e| p.write_error(e))?;
        Ok(p)
    }

    /// Take CPU times from `cpu` (from now on).
    pub fn with_cpu_clock(mut self, cpu: fn() -> (f64, f64)) -> Self {
        self.cpu = cpu;
        self.current.cpu_at_start = cpu();
        self
    }

    fn write_error(&self, source: std::io::Error) -> ProfileError {
        ProfileError::Write {
            path: self.path.clone(),
            source,
        }
    }

    /// The budget of the next slice: uniform in [slice/2, 3*slice/2).
    pub fn next_slice(&mut self) -> u64 {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.slice / 2 + self.rng % self.slice
    }

    /// Count one sample taken at Unix time `now`, after a slice that
    /// retired `instructions`.
    pub fn sample(
        &mut self,
        now: f64,
        privilege: u8,
        pc: u64,
        instructions: u64,
    ) -> Result<(), ProfileError> {
        self.roll(now)?;
        self.current.hist.add(privilege, pc);
        self.current.tally.instructions += instructions;
        Ok(())
    }

    /// Count instructions retired by a slice that ended early (WFI) and so
    /// is not a sample.
    pub fn retired(&mut self, now: f64, instructions: u64) -> Result<(), ProfileError> {
        self.roll(now)?;
        self.current.tally.instructions += instructions;
        Ok(())
    }

    /// Count `idle` spent with every hart waiting, ending at `now`.
    pub fn idle(&mut self, now: f64, idle: Duration) -> Result<(), ProfileError> {
        self.roll(now)?;
        self.current.tally.idle += idle.as_secs_f64();
        Ok(())
    }

    /// Count MMIO accesses (the caller's running count since it last told).
    pub fn mmio(&mut self, accesses: u64) {
        self.current.tally.mmio += accesses;
    }

    /// Close the current window if `now` is past it (empty windows in
    /// between are skipped).
    fn roll(&mut self, now: f64) -> Result<(), ProfileError> {
        if self.window <= 0.0 || now < self.current.start + self.window {
            return Ok(());
        }
        let end = self.current.start + self.window;
        self.flush_window(end)?;
        let skipped = ((now - end) / self.window).floor();
        self.current = Window::new(end + skipped * self.window, self.current.cpu_at_start);
        Ok(())
    }

    /// Write the current window (if anything happened in it) and add it to
    /// the totals; the next window's CPU time counts from now.
    fn flush_window(&mut self, end: f64) -> Result<(), ProfileError> {
        let cpu = (self.cpu)();
        let w = &mut self.current;
        w.tally.samples = w.hist.samples();
        w.tally.user = (cpu.0 - w.cpu_at_start.0).max(0.0);
        w.tally.sys = (cpu.1 - w.cpu_at_start.1).max(0.0);
        w.cpu_at_start = cpu;
        self.total.add(&w.tally);
        if w.tally.is_empty() {
            return Ok(());
        }
        let r = writeln!(self.out, "window {:.3} {end:.3} {}", w.start, w.tally)
            .and_then(|()| w.hist.write_lines(&mut self.out));
        r.map_err(|e| self.write_error(e))
    }

    /// Write the last window and the totals.
    pub fn finish(mut self, now: f64) -> Result<(), ProfileError> {
        self.roll(now)?;
        self.flush_window(now)?;
        let r = writeln!(self.out, "total {}", self.total).and_then(|()| self.out.flush());
        r.map_err(|e| self.write_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A `Write` whose bytes the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn histogram_sorts_by_count_then_key() {
        let mut h = Histogram::default();
        for (p, pc) in [
            (1, 0x20),
            (1, 0x10),
            (0, 0x30),
            (1, 0x20),
            (3, 0x5),
            (1, 0x20),
        ] {
            h.add(p, pc);
        }
        assert_eq!(h.samples(), 6);
        assert_eq!(
            h.sorted(),
            vec![
                ((1, 0x20), 3),
                ((0, 0x30), 1),
                ((1, 0x10), 1),
                ((3, 0x5), 1)
            ]
        );
        let mut out = Vec::new();
        h.write_lines(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "S 0000000000000020 3\nU 0000000000000030 1\nS 0000000000000010 1\nM 0000000000000005 1\n"
        );
    }

    #[test]
    fn windows_close_in_time_order_and_totals_add_up() {
        let out = Shared::default();
        // The fake thread clock advances 0.5 s user, 0.25 s system per read.
        static READS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        fn cpu() -> (f64, f64) {
            let n = READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as f64;
            (0.5 * n, 0.25 * n)
        }
        let mut p = Profiler::new(Path::new("mem"), Box::new(out.clone()), 1000, 1.0, 100.0)
            .unwrap()
            .with_cpu_clock(cpu);
        p.mmio(7);
        p.sample(100.1, 1, 0xffff_ffff_8000_0000, 900).unwrap();
        p.sample(100.5, 1, 0xffff_ffff_8000_0000, 1100).unwrap();
        p.idle(100.9, Duration::from_millis(250)).unwrap();
        // 101.x is empty: skipped; 102.x gets one sample and a WFI slice.
        p.sample(102.2, 0, 0x1000, 1000).unwrap();
        p.retired(102.3, 40).unwrap();
        p.finish(102.5).unwrap();
        assert_eq!(
            out.text(),
            "# vessel guest profile v1: slice 1000 instructions (jittered), window 1 s\n\
             window 100.000 101.000 samples 2 instructions 2000 idle 0.250 user 0.500 sys 0.250 mmio 7\n\
             S ffffffff80000000 2\n\
             window 102.000 102.500 samples 1 instructions 1040 idle 0.000 user 0.500 sys 0.250 mmio 0\n\
             U 0000000000001000 1\n\
             total samples 3 instructions 3040 idle 0.250 user 1.000 sys 0.500 mmio 7\n"
        );
    }

    #[test]
    fn window_zero_is_one_window() {
        let out = Shared::default();
        let mut p = Profiler::new(Path::new("mem"), Box::new(out.clone()), 1000, 0.0, 5.0).unwrap();
        for t in 0..50 {
            p.sample(5.0 + t as f64, 1, 0x40 + (t % 2), 10).unwrap();
        }
        p.finish(60.0).unwrap();
        let text = out.text();
        assert_eq!(text.matches("window ").count(), 2, "{text}"); // header + one
        assert!(text.contains("window 5.000 60.000 samples 50 instructions 500"));
        assert!(text.ends_with(
            "total samples 50 instructions 500 idle 0.000 user 0.000 sys 0.000 mmio 0\n"
        ));
    }

    #[test]
    fn slices_jitter_around_the_setting() {
        let mut p =
            Profiler::new(Path::new("mem"), Box::new(std::io::sink()), 1000, 1.0, 1.0).unwrap();
        let s: Vec<u64> = (0..1000).map(|_| p.next_slice()).collect();
        assert!(s.iter().all(|&n| (500..1500).contains(&n)));
        let mean = s.iter().sum::<u64>() / s.len() as u64;
        assert!((900..1100).contains(&mean), "mean {mean}");
        assert!(s.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn write_errors_name_the_file() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk full"))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let e = Profiler::new(Path::new("/x/p.txt"), Box::new(Broken), 1000, 1.0, 1.0)
            .err()
            .unwrap();
        assert!(e.to_string().contains("/x/p.txt") && e.to_string().contains("disk full"));
    }
}
