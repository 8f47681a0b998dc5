use actorchat_calc::{Natural, to_decimal};
use malachite_base::num::arithmetic::traits::Factorial;
use std::time::{Duration, Instant};
use std::cell::Cell;
fn cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}
fn main() {
    for n in [100_000u64, 1_000_000] {
        let x = Natural::factorial(n);
        let mut best = (f64::MAX, f64::MAX, 0.0);
        for _ in 0..2 {
            let last = Cell::new(Instant::now()); let max = Cell::new(Duration::ZERO);
            let (w, c) = (Instant::now(), cpu());
            let s = to_decimal(&x, &|| { let now = Instant::now(); max.set(max.get().max(now - last.get())); last.set(now); false }).unwrap();
            let cc = cpu() - c; let ww = w.elapsed().as_secs_f64()*1e3;
            if cc < best.0 { best = (cc, ww, max.get().as_secs_f64()*1e3); }
            drop(s);
        }
        println!("n={n}: to_decimal cpu {:.1} wall {:.1} maxstep {:.1}", best.0, best.1, best.2);
    }
}
