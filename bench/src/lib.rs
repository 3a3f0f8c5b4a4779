//! Shared helpers for weft's benchmarks (ratio printing against baselines).
//!
//! Criterion gives the detailed statistics; these helpers take a quick,
//! independent per-iteration time of a candidate and of its baseline so a
//! bench can print the one number that matters: candidate / baseline.

use std::time::{Duration, Instant};

/// Nanoseconds per call of `f`: the fastest of `rounds` rounds of about
/// `round` each (the iteration count is calibrated first). The minimum, not
/// the median, because on a shared machine preemption only ever adds time.
pub fn ns_per_iter(mut f: impl FnMut(), rounds: usize, round: Duration) -> f64 {
    let mut iters: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed() >= round / 4 || iters >= 1 << 30 {
            break;
        }
        iters *= 2;
    }
    iters *= 4;
    let mut samples: Vec<f64> = (0..rounds.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() * 1e9 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[0]
}

/// Times `candidate` and `baseline` in alternating rounds and returns
/// (candidate ns, baseline ns, median of the per-round ratios). Alternating
/// cancels the clock-speed and neighbour-load drift of a shared machine
/// that separate runs would fold into the ratio.
pub fn interleaved(
    mut candidate: impl FnMut(),
    mut baseline: impl FnMut(),
    rounds: usize,
    round: Duration,
) -> (f64, f64, f64) {
    let mut c = Vec::with_capacity(rounds);
    let mut b = Vec::with_capacity(rounds);
    let mut r = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let tb = ns_per_iter(&mut baseline, 1, round / 2);
        let tc = ns_per_iter(&mut candidate, 1, round / 2);
        b.push(tb);
        c.push(tc);
        r.push(tc / tb);
    }
    for v in [&mut c, &mut b, &mut r] {
        v.sort_by(f64::total_cmp);
    }
    (c[0], b[0], r[r.len() / 2])
}

/// One result row: a candidate's time beside its baseline's.
#[derive(Debug, Clone)]
pub struct Ratio {
    /// What was measured, e.g. "vxlan encap+decap 1400B".
    pub name: String,
    /// Candidate nanoseconds per iteration.
    pub ns: f64,
    /// What the baseline is, e.g. "memcpy 1400B".
    pub baseline: String,
    /// Baseline nanoseconds per iteration.
    pub baseline_ns: f64,
    /// candidate / baseline, median of interleaved rounds.
    pub ratio: f64,
}

impl Ratio {
    /// Measures `candidate` against `baseline` with [`interleaved`].
    pub fn measure(
        name: String,
        candidate: impl FnMut(),
        baseline: String,
        base: impl FnMut(),
    ) -> Self {
        let (ns, baseline_ns, ratio) = interleaved(candidate, base, 21, Duration::from_millis(30));
        Self {
            name,
            ns,
            baseline,
            baseline_ns,
            ratio,
        }
    }
}

/// Prints rows as an aligned table (ratio: median of interleaved rounds).
pub fn print_ratios(title: &str, rows: &[Ratio]) {
    println!("\n{title}");
    println!(
        "{:<40} {:>8} {:<14} {:>8} {:>7}",
        "candidate", "min ns", "baseline", "min ns", "ratio"
    );
    for r in rows {
        println!(
            "{:<40} {:>8.2} {:<14} {:>8.2} {:>7.2}",
            r.name, r.ns, r.baseline, r.baseline_ns, r.ratio
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slower_work_measures_slower() {
        let mut x = 0u64;
        let fast = ns_per_iter(
            || x = std::hint::black_box(x + 1),
            3,
            Duration::from_millis(5),
        );
        let slow = ns_per_iter(
            || {
                for i in 0..200 {
                    x = std::hint::black_box(x ^ i);
                }
            },
            3,
            Duration::from_millis(5),
        );
        assert!(slow > fast, "{slow} vs {fast}");
        let mut y = 0u64;
        let (c, b, r) = interleaved(
            || {
                for i in 0..200 {
                    y = std::hint::black_box(y ^ i);
                }
            },
            || x = std::hint::black_box(x + 1),
            3,
            Duration::from_millis(5),
        );
        assert!(c > b && r > 1.0, "{c} {b} {r}");
    }
}
