//! Benchmarks of the calculation engine against malachite's one-call
//! built-ins, plus the measurements behind the time and memory model.
//!
//! ```text
//! CARGO_TARGET_DIR=target-calc cargo run --release -p actorchat-calc --example bench
//! CARGO_TARGET_DIR=target-calc cargo run --release -p actorchat-calc --example bench -- --calibrate
//! ```
//!
//! Prints, for n = 10^4, 10^5, 10^6, best-of-several thread CPU times (wall
//! times in parentheses) of the cancellable product tree against
//! `Natural::factorial`, the cancellable decimal conversion against
//! `Natural::to_string`, and `compute_decimal` (what the server runs: the
//! product without its trailing zeros, converted, the zeros appended) against
//! malachite's two calls; the longest gap between two cancel checks in each
//! (the largest uninterruptible step, including the stretch from the last
//! check to the return); and the peak heap use of `compute_decimal` relative
//! to the result. Then cancellation latency at n = 10^6: a second thread
//! sets the flag once the calculation has used a given amount of CPU, and
//! the CPU and wall time from the store to the return are reported. `--calibrate` measures the time and memory model of
//! `src/estimate.rs` against `compute_decimal`.
//! Compare with GMP using `crates/calc/bench/gmp_bench.py` in the same run.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actorchat_calc::{Natural, Request, compute, compute_decimal, estimate, to_decimal};
use malachite_base::num::arithmetic::traits::Factorial;

/// Counts live heap bytes and their high-water mark.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates every call to the system allocator unchanged and only
// adds bookkeeping on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let live = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Resets the high-water mark to the current live size; returns that size.
fn reset_peak() -> usize {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(live, Ordering::Relaxed);
    live
}

/// A cancel "flag" that never cancels but records the longest gap, in
/// thread CPU time (so preemption on the shared machine does not count),
/// between two consecutive polls.
struct GapMeter {
    last: Cell<Duration>,
    max: Cell<Duration>,
}

impl GapMeter {
    fn new() -> Self {
        Self {
            last: Cell::new(thread_cpu()),
            max: Cell::new(Duration::ZERO),
        }
    }
    fn poll(&self) -> bool {
        let now = thread_cpu();
        let gap = now - self.last.get();
        if gap > self.max.get() {
            self.max.set(gap);
        }
        self.last.set(now);
        false
    }
    /// Includes the stretch from the last poll to now (the end of the call).
    fn finish(&self) -> Duration {
        self.poll();
        self.max.get()
    }
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`). The machine
/// is shared, so CPU time is the fairer number; wall time is reported
/// alongside.
fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Best CPU and wall times (each the minimum over runs) of `reps` runs of
/// `f`, with the last run's output.
#[derive(Clone, Copy)]
struct Times {
    cpu: Duration,
    wall: Duration,
}

impl Times {
    fn show(self) -> String {
        format!("{} ms ({})", ms(self.cpu), ms(self.wall))
    }
}

fn best_of<T>(reps: u32, mut f: impl FnMut() -> T) -> (Times, T) {
    let mut best = Times {
        cpu: Duration::MAX,
        wall: Duration::MAX,
    };
    let mut out = None;
    for _ in 0..reps {
        let (cpu, wall) = (thread_cpu(), Instant::now());
        let value = f();
        best.wall = best.wall.min(wall.elapsed());
        best.cpu = best.cpu.min(thread_cpu() - cpu);
        out = Some(value);
    }
    match out {
        Some(value) => (best, value),
        None => panic!("reps must be at least 1"),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--calibrate") {
        calibrate();
        return;
    }
    println!(
        "Times: thread CPU time (wall time in parentheses), best of several runs; max step in CPU time."
    );
    println!(
        "| n | our compute | malachite factorial | our to_decimal | malachite to_string | our end to end | malachite end to end | max step compute | max step to_decimal | max step end to end | peak heap / result |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (n, reps) in [(10_000u64, 20), (100_000, 5), (1_000_000, 3)] {
        let req = Request { n, k: 1 };
        let (t_builtin, builtin) = best_of(reps, || Natural::factorial(n));
        let mut step_product = Duration::ZERO;
        let (t_tree, value) = best_of(reps, || {
            let meter = GapMeter::new();
            let v = compute(req, &|| meter.poll());
            step_product = step_product.max(meter.finish());
            v
        });
        let value = value.expect("never cancelled");
        assert_eq!(value, builtin);
        let (t_to_string, expected) = best_of(reps, || value.to_string());
        let mut step_decimal = Duration::ZERO;
        let (t_decimal, digits) = best_of(reps, || {
            let meter = GapMeter::new();
            let s = to_decimal(&value, &|| meter.poll());
            step_decimal = step_decimal.max(meter.finish());
            s
        });
        assert_eq!(digits.expect("never cancelled"), expected);
        drop(builtin);
        // What the server runs: compute_decimal leaves the trailing zeros
        // out of the arithmetic.
        let mut step_total = Duration::ZERO;
        let (t_total, digits) = best_of(reps, || {
            let meter = GapMeter::new();
            let s = compute_decimal(req, &|| meter.poll());
            step_total = step_total.max(meter.finish());
            s
        });
        assert_eq!(digits.expect("never cancelled"), expected);
        drop(expected);
        let malachite_total = t_builtin.cpu + t_to_string.cpu;

        let result_bytes = value.to_limbs_asc().len() * 8;
        drop(value);
        let base = reset_peak();
        let s = compute_decimal(req, &|| false).expect("never cancelled");
        let peak = PEAK.load(Ordering::Relaxed) - base;
        drop(s);
        println!(
            "| 10^{} | {} | {} | {} | {} | {} | {} ms | {} ms | {} ms | {} ms | {:.1}× |",
            n.ilog10(),
            t_tree.show(),
            t_builtin.show(),
            t_decimal.show(),
            t_to_string.show(),
            t_total.show(),
            ms(malachite_total),
            ms(step_product),
            ms(step_decimal),
            ms(step_total),
            peak as f64 / result_bytes as f64,
        );
    }
    cancellation();
}

/// Cancellation latency of `compute_decimal` for 10^6!: a second thread
/// watches the calculating thread's CPU clock and sets the flag once it has
/// used a given amount of CPU (covering both phases whatever the machine's
/// load). Reported: the CPU the calculation used from the store to its
/// return (what the engine controls: at most one step) and the wall time
/// (which on a shared machine also counts the time the thread waited for a
/// core).
fn cancellation() {
    let req = Request { n: 1_000_000, k: 1 };
    println!();
    println!(
        "Cancellation latency at n = 10^6 (compute_decimal; flag set by another thread once the calculation has used the given CPU time):"
    );
    println!("| flag set after (CPU) | set → returned (CPU) | set → returned (wall) |");
    println!("|---|---|---|");
    let mut worst_cpu = Duration::ZERO;
    let mut worst_wall = Duration::ZERO;
    for delay_ms in [1u64, 10, 30, 50, 70, 90, 120, 160, 200, 250, 300, 350] {
        let delay = Duration::from_millis(delay_ms);
        let flag = AtomicBool::new(false);
        // The calculating thread's CPU clock, published for the setter.
        let clock = AtomicI32::new(-1);
        let set_at = std::sync::Mutex::new(None::<(Instant, Duration)>);
        let (cpu_latency, wall_latency) = std::thread::scope(|s| {
            s.spawn(|| {
                let id = loop {
                    let id = clock.load(Ordering::Acquire);
                    if id != -1 {
                        break id;
                    }
                    std::thread::yield_now();
                };
                // The thread has run the whole bench so far: count from now.
                let until = cpu_clock(id) + delay;
                while cpu_clock(id) < until {
                    std::thread::sleep(Duration::from_micros(200));
                }
                let at = (Instant::now(), cpu_clock(id));
                flag.store(true, Ordering::Relaxed);
                *set_at.lock().expect("not poisoned") = Some(at);
            });
            clock.store(own_cpu_clock(), Ordering::Release);
            let cpu_start = thread_cpu();
            let result = compute_decimal(req, &flag).map(|s| s.len());
            let (returned, returned_cpu) = (Instant::now(), thread_cpu() - cpu_start);
            assert!(
                result.is_err(),
                "finished before the flag at {delay_ms} ms of CPU; drop this delay"
            );
            // Wait for the setter so `set_at` is filled in.
            let (set_wall, set_cpu) = loop {
                if let Some(at) = *set_at.lock().expect("not poisoned") {
                    break at;
                }
                std::thread::yield_now();
            };
            (
                (returned_cpu + cpu_start).saturating_sub(set_cpu),
                returned.saturating_duration_since(set_wall),
            )
        });
        worst_cpu = worst_cpu.max(cpu_latency);
        worst_wall = worst_wall.max(wall_latency);
        println!(
            "| {delay_ms} ms | {} ms | {} ms |",
            ms(cpu_latency),
            ms(wall_latency)
        );
    }
    println!(
        "Worst cancellation latency: {} ms of CPU, {} ms of wall time",
        ms(worst_cpu),
        ms(worst_wall)
    );
}

/// The calling thread's CPU clock id, for [`cpu_clock`] from other threads.
fn own_cpu_clock() -> libc::clockid_t {
    let mut id: libc::clockid_t = 0;
    // SAFETY: `id` is a valid, writable clockid_t; pthread_self is always valid.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) };
    if rc != 0 {
        return libc::CLOCK_THREAD_CPUTIME_ID;
    }
    id
}

/// The time of CPU clock `id`.
fn cpu_clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Measures `compute_decimal` time and peak heap against the models.
fn calibrate() {
    println!(
        "| n | k | bits | model est. | CPU | wall | (CPU − fixed) / B^e (ns) | peak / result bytes |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut worst_time = 0f64;
    let mut worst_peak = 0f64;
    for n in [
        10_000u64, 30_000, 100_000, 300_000, 1_000_000, 1_500_000, 2_000_000,
    ] {
        for k in [1u64, 2, 3] {
            let req = Request { n, k };
            let reps = if n >= 1_000_000 { 1 } else { 3 };
            let (t, _) = best_of(reps, || {
                compute_decimal(req, &|| false).expect("never cancelled")
            });
            let value = compute(req, &|| false).expect("never cancelled");
            let bits = value.to_limbs_asc().len() as f64 * 64.0;
            let result_bytes = bits / 8.0;
            drop(value);
            let base = reset_peak();
            let s = compute_decimal(req, &|| false).expect("never cancelled");
            let peak = (PEAK.load(Ordering::Relaxed) - base) as f64;
            drop(s);
            // The model is fitted to CPU time: on the shared machine the wall
            // time mostly measures the other processes.
            let work = t.cpu.saturating_sub(actorchat_calc::TIME_FIXED);
            let per = work.as_secs_f64() * 1e9 / bits.powf(actorchat_calc::TIME_EXPONENT);
            let peak_ratio = peak / result_bytes;
            worst_time = worst_time.max(per);
            worst_peak = worst_peak.max(peak_ratio);
            println!(
                "| {n} | {k} | {bits} | {} ms | {} ms | {} ms | {per:.3} | {peak_ratio:.2} |",
                ms(estimate(req).time),
                ms(t.cpu),
                ms(t.wall),
            );
        }
    }
    println!(
        "worst time coefficient {worst_time:.4} ns (model: {} ns, exponent {}), worst peak factor {worst_peak:.2} (model: {})",
        actorchat_calc::TIME_NS_COEFF,
        actorchat_calc::TIME_EXPONENT,
        actorchat_calc::PEAK_BYTES_PER_RESULT_BYTE
    );
}
