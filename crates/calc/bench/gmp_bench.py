#!/usr/bin/env python3
"""GMP baseline for the calculation engine benchmark ("Calculations" in docs/benchmarks.md).

Times gmpy2.fac(n) (GMP's mpz_fac_ui) and decimal conversion (str(), i.e.
mpz_get_str) for n = 10^4, 10^5, 10^6, best of several runs, reporting both
wall time and thread CPU time (the machine is shared, so CPU time is the
fairer number), and the end-to-end CPU time (fac plus str) to compare with
the bench's `compute_decimal` column. Run it right after `examples/bench.rs`:

    pip install gmpy2
    python3 crates/calc/bench/gmp_bench.py
"""

import time

import gmpy2


def best_of(reps, f):
    best_wall = best_cpu = float("inf")
    out = None
    for _ in range(reps):
        w, c = time.perf_counter(), time.thread_time()
        out = f()
        best_cpu = min(best_cpu, time.thread_time() - c)
        best_wall = min(best_wall, time.perf_counter() - w)
    return best_wall, best_cpu, out


def main():
    print(f"gmpy2 {gmpy2.version()}, {gmpy2.mp_version()}")
    print("| n | GMP fac wall | GMP fac CPU | GMP str wall | GMP str CPU "
          "| GMP end to end CPU | digits |")
    print("|---|---|---|---|---|---|---|")
    for n, reps in ((10**4, 20), (10**5, 5), (10**6, 3)):
        fw, fc, value = best_of(reps, lambda: gmpy2.fac(n))
        sw, sc, text = best_of(reps, lambda: str(value))
        print(f"| 10^{len(str(n)) - 1} | {fw * 1e3:.1f} ms | {fc * 1e3:.1f} ms "
              f"| {sw * 1e3:.1f} ms | {sc * 1e3:.1f} ms | {(fc + sc) * 1e3:.1f} ms "
              f"| {len(text):,} |")


if __name__ == "__main__":
    main()
