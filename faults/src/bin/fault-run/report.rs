//! What the run prints: a row per fault, the checks, the soak's memory.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::cluster::Service;
use crate::load::{Op, Record};
use crate::schedule::Window;
use faults::check::Finding;

/// Why an answer is an anomaly, if it is one.
pub(crate) fn anomaly(r: &Record, windows: &[Window]) -> Option<&'static str> {
    if !r.failed() {
        return None;
    }
    if r.status == 500 {
        return Some("500");
    }
    if (400..500).contains(&r.status) {
        return Some("unexpected 4xx");
    }
    // Faults follow one another: a request can overlap the settling time of
    // one and the injection of the next, and is judged against both.
    let mut overlapping = windows
        .iter()
        .filter(|w| r.start_ms < w.end_ms && r.end_ms >= w.injected_ms)
        .peekable();
    if overlapping.peek().is_none() {
        return Some("error outside every fault window");
    }
    if r.status == 503 {
        return None;
    }
    // Sent while a killed process was down: in flight at the kill, or sent
    // over a pooled connection to the dead process before the gateway saw it
    // close (502: no valid answer, the outcome unknown to the client).
    if overlapping.any(|w| w.fault.kills() && r.start_ms <= w.recovered_ms) {
        return None;
    }
    Some("5xx other than 503, or no answer, during a fault")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Op;
    use crate::schedule::Fault;

    fn window(fault: Fault, injected_ms: u64, end_ms: u64) -> Window {
        Window {
            fault,
            injected_ms,
            recovered_ms: injected_ms + 2_000,
            end_ms,
        }
    }

    fn record(start_ms: u64, end_ms: u64, status: u16) -> Record {
        Record {
            op: Op::PlaceOrder,
            start_ms,
            end_ms,
            status,
            error: None,
        }
    }

    /// A 502 sent as one fault's settling time ends and the next kill starts
    /// is the kill's, not an anomaly of the fault before it; a 502 after the
    /// killed process is back is an anomaly.
    #[test]
    fn a_request_at_a_kill_is_judged_by_every_window_it_overlaps() {
        let windows = [
            window(Fault::KillInventory, 23_000, 32_100),
            window(Fault::KillOrders, 32_100, 41_000),
        ];
        assert_eq!(anomaly(&record(32_099, 32_150, 502), &windows), None);
        assert_eq!(anomaly(&record(32_102, 32_150, 502), &windows), None);
        assert!(anomaly(&record(35_000, 35_050, 502), &windows).is_some());
        assert!(anomaly(&record(50_000, 50_010, 503), &windows).is_some());
        assert_eq!(anomaly(&record(24_000, 24_010, 503), &windows), None);
    }
}

fn status_name(status: u16) -> String {
    if status == 0 {
        "no answer".to_owned()
    } else {
        status.to_string()
    }
}

/// The latency percentile `p` (0..=100) of `records`, in ms.
pub(crate) fn percentile_ms<'a>(records: impl Iterator<Item = &'a Record>, p: f64) -> u64 {
    let mut v: Vec<u64> = records.map(|r| r.end_ms - r.start_ms).collect();
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i]
}

/// The table of faults, one row each. `slowest` is the longest an order
/// placed in each window took to settle, in ms.
pub(crate) fn faults(records: &[Record], windows: &[Window], slowest: &[Option<i64>]) -> String {
    let mut out = String::new();
    out.push_str("| fault | requests during | clients saw errors for | errors by status | every kind of request succeeding again after recovery | slowest order placed during to settle | anomalies |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for (i, w) in windows.iter().enumerate() {
        let during: Vec<&Record> = records
            .iter()
            .filter(|r| r.start_ms >= w.injected_ms && r.start_ms < w.end_ms)
            .collect();
        let failed: Vec<&&Record> = during.iter().filter(|r| r.failed()).collect();
        let seen_for = match (
            failed.iter().map(|r| r.start_ms).min(),
            failed.iter().map(|r| r.end_ms).max(),
        ) {
            (Some(a), Some(b)) => format!("{:.1} s", (b - a) as f64 / 1000.0),
            _ => "0 s".to_owned(),
        };
        let mut by_status: BTreeMap<u16, u64> = BTreeMap::new();
        for r in &failed {
            *by_status.entry(r.status).or_default() += 1;
        }
        let by_status = if by_status.is_empty() {
            "none".to_owned()
        } else {
            by_status
                .iter()
                .map(|(s, n)| format!("{} x{n}", status_name(*s)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let back = [Op::PlaceOrder, Op::Adjust, Op::ReadStock, Op::ReadOrder]
            .iter()
            .map(|op| {
                records
                    .iter()
                    .filter(|r| r.op == *op && r.ok() && r.start_ms >= w.recovered_ms)
                    .map(|r| r.start_ms)
                    .min()
            })
            .try_fold(0u64, |acc, first| {
                first.map(|f| acc.max(f - w.recovered_ms))
            });
        let back = back.map_or("never".to_owned(), |ms| {
            format!("{:.2} s", ms as f64 / 1000.0)
        });
        let anomalies = during
            .iter()
            .filter(|r| anomaly(r, windows).is_some())
            .count();
        let slow = slowest
            .get(i)
            .copied()
            .flatten()
            .map_or("-".to_owned(), |ms| format!("{:.1} s", ms as f64 / 1000.0));
        let _ = writeln!(
            out,
            "| {} | {} | {seen_for} | {by_status} | {back} | {slow} | {anomalies} |",
            w.fault.name(),
            during.len()
        );
    }
    out
}

/// The totals of the whole run.
pub(crate) fn totals(records: &[Record], windows: &[Window], not_sent: u64, secs: f64) -> String {
    let ok = records.iter().filter(|r| r.ok()).count();
    let refused = records.iter().filter(|r| !r.ok() && !r.failed()).count();
    let failed = records.iter().filter(|r| r.failed()).count();
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for r in records {
        if let Some(k) = anomaly(r, windows) {
            *kinds.entry(k).or_default() += 1;
        }
    }
    let mut out = format!(
        "{} requests in {secs:.0} s ({:.1}/s): {ok} answered 2xx, {refused} refused as expected (409), {failed} errors, {not_sent} not sent (too many in flight); latency p50 {} ms, p99 {} ms\n",
        records.len(),
        records.len() as f64 / secs,
        percentile_ms(records.iter().filter(|r| r.ok()), 50.0),
        percentile_ms(records.iter().filter(|r| r.ok()), 99.0),
    );
    if kinds.is_empty() {
        out.push_str("answers that are anomalies: none\n");
    } else {
        for (k, n) in kinds {
            let _ = writeln!(out, "ANOMALY: {n} answers: {k}");
        }
        for r in records
            .iter()
            .filter(|r| anomaly(r, windows).is_some())
            .take(10)
        {
            let _ = writeln!(
                out,
                "  e.g. {:?} at {} ms: {} {}",
                r.op,
                r.start_ms,
                status_name(r.status),
                r.error.as_deref().unwrap_or("")
            );
        }
    }
    out
}

/// The checks, one row each.
pub(crate) fn findings(findings: &[Finding]) -> String {
    let mut out = String::from("| check | violations | examples |\n|---|---|---|\n");
    for f in findings {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            f.check,
            f.violations,
            f.examples.join("; ")
        );
    }
    out
}

/// One sample of the soak.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) at_s: u64,
    pub(crate) rss_kib: BTreeMap<Service, u64>,
    pub(crate) cpu_ms: BTreeMap<Service, u64>,
    pub(crate) requests: usize,
    /// Events waiting in the run's queues (the consumer's lag).
    pub(crate) queued: Option<u64>,
}

/// The soak's samples and the memory growth of each service after
/// `warmup_s` (least-squares slope, KiB per minute).
pub(crate) fn soak(samples: &[Sample], warmup_s: u64) -> String {
    let mut out = String::from("| t (s) | requests so far | events queued |");
    for s in Service::ALL {
        let _ = write!(out, " {} RSS (MiB) |", s.name());
    }
    out.push_str("\n|---|---|---|");
    for _ in Service::ALL {
        out.push_str("---|");
    }
    out.push('\n');
    for sample in samples {
        let queued = sample.queued.map_or("?".to_owned(), |q| q.to_string());
        let _ = write!(out, "| {} | {} | {queued} |", sample.at_s, sample.requests);
        for s in Service::ALL {
            let mib = sample.rss_kib.get(&s).map_or(0.0, |k| *k as f64 / 1024.0);
            let _ = write!(out, " {mib:.1} |");
        }
        out.push('\n');
    }
    out.push('\n');
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at_s >= warmup_s).collect();
    for s in Service::ALL {
        let points: Vec<(f64, f64)> = after
            .iter()
            .filter_map(|x| Some((x.at_s as f64 / 60.0, *x.rss_kib.get(&s)? as f64)))
            .collect();
        let slope = slope(&points);
        let first = points.first().map_or(0.0, |p| p.1 / 1024.0);
        let last = points.last().map_or(0.0, |p| p.1 / 1024.0);
        let _ = writeln!(
            out,
            "{}: RSS after {warmup_s} s warm-up {first:.1} MiB -> {last:.1} MiB, growth {slope:+.0} KiB/min (least squares over {} samples)",
            s.name(),
            points.len()
        );
    }
    if let (Some(a), Some(b)) = (samples.first(), samples.last()) {
        let requests = b.requests.saturating_sub(a.requests).max(1) as f64;
        for s in Service::ALL {
            let cpu = b.cpu_ms.get(&s).copied().unwrap_or(0) as f64
                - a.cpu_ms.get(&s).copied().unwrap_or(0) as f64;
            let _ = writeln!(
                out,
                "{}: {:.0} µs CPU per request",
                s.name(),
                cpu * 1000.0 / requests
            );
        }
    }
    out
}

fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}
