//! Latency of whole purchases (terminal flow, card and PSAM round trips) for
//! `docs/benchmarks.md`: median and 99th percentile over N purchases.

use std::time::{Duration, Instant};

use chip::CardChannel;
use chip::terminal::{FlowError, PurchaseOutcome, PurchaseRequest, purchase};

/// Largest number of purchases one measurement runs (a card's offline counter is 16 bits).
pub const PURCHASES_MAX: usize = 10_000;

/// The distribution of N purchase latencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyReport {
    pub purchases: usize,
    pub median: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Nearest-rank percentile of sorted samples (`pct` in 1..=100).
pub fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    assert!(!sorted.is_empty() && (1..=100).contains(&pct));
    let rank = (pct * sorted.len()).div_ceil(100);
    sorted[rank.max(1) - 1]
}

/// Runs `n` purchases of `request` and times each; `check` sees every outcome (e.g. to
/// verify the TAC host-side), outside the timed span.
pub fn measure_purchases<C, P>(
    card: &mut C,
    psam: &mut P,
    request: &PurchaseRequest,
    n: usize,
    check: &mut dyn FnMut(&PurchaseOutcome),
) -> Result<LatencyReport, FlowError>
where
    C: CardChannel + ?Sized,
    P: CardChannel + ?Sized,
{
    assert!(
        (1..=PURCHASES_MAX).contains(&n),
        "1..={PURCHASES_MAX} purchases"
    );
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let outcome = purchase(card, psam, request, &|_| false)?;
        samples.push(start.elapsed());
        check(&outcome);
    }
    samples.sort();
    Ok(LatencyReport {
        purchases: n,
        median: percentile(&samples, 50),
        p99: percentile(&samples, 99),
        max: samples[n - 1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&s, 50), Duration::from_millis(50));
        assert_eq!(percentile(&s, 99), Duration::from_millis(99));
        assert_eq!(percentile(&s[..1], 99), Duration::from_millis(1));
        let three = [1, 2, 3].map(Duration::from_millis);
        assert_eq!(percentile(&three, 50), Duration::from_millis(2));
    }
}
