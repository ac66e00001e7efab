//! Reading the gateway's `GET /metrics` (Prometheus text format). Pure functions.

/// The metric name of one sample line (`name{labels} value` or `name value`), or `None`
/// for comments and blank lines.
fn sample(line: &str) -> Option<(&str, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    // The value follows the closing brace (labels may hold spaces) or the name.
    let after = match line[name_end..].starts_with('{') {
        true => &line[name_end + line[name_end..].find('}')? + 1..],
        false => &line[name_end..],
    };
    let value: f64 = after.split_whitespace().next()?.parse().ok()?;
    Some((name, value))
}

/// Sum of every sample of the named metrics (all label sets), or `None` when the text has
/// no sample of any of them.
pub fn sum_metrics(text: &str, names: &[&str]) -> Option<f64> {
    let mut found = false;
    let mut sum = 0.0;
    for (name, v) in text.lines().filter_map(sample) {
        if names.contains(&name) {
            found = true;
            sum += v;
        }
    }
    found.then_some(sum)
}

/// The gauges whose sum is "still waiting": events the gateway holds but has not delivered
/// nor dead-lettered.
pub const WAITING_GAUGES: &[&str] = &[
    "fasthook_events_queued",
    "fasthook_events_scheduled",
    "fasthook_events_hold",
];

/// Names tried, in order, for the number of store flushes (group commits).
pub const FLUSH_COUNTERS: &[&str] = &[
    "fasthook_store_flushes_total",
    "fasthook_store_flush_total",
    "fasthook_store_flush_duration_seconds_count",
    "fasthook_store_group_commits_total",
];

/// The number of store flushes the gateway reports, with the metric it came from: one of
/// [`FLUSH_COUNTERS`], else any counter or histogram count whose name mentions "flush".
pub fn flush_count(text: &str) -> Option<(String, f64)> {
    for name in FLUSH_COUNTERS {
        if let Some(v) = sum_metrics(text, &[name]) {
            return Some((name.to_string(), v));
        }
    }
    let guess = text.lines().filter_map(sample).find_map(|(name, _)| {
        (name.starts_with("fasthook_")
            && name.contains("flush")
            && (name.ends_with("_total") || name.ends_with("_count")))
        .then(|| name.to_string())
    })?;
    let v = sum_metrics(text, &[guess.as_str()])?;
    Some((guess, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP fasthook_events_queued live backlog
# TYPE fasthook_events_queued gauge
fasthook_events_queued{destination_id=\"des_1\"} 3
fasthook_events_queued{destination_id=\"des 2\"} 4
fasthook_events_hold{connection_id=\"web_1\"} 1
fasthook_events_delivered_total{connection_id=\"web_1\",destination_id=\"des_1\"} 100
fasthook_store_flush_duration_seconds_count 42
fasthook_engine_paused 0
";

    #[test]
    fn sums_all_label_sets() {
        assert_eq!(sum_metrics(TEXT, WAITING_GAUGES), Some(8.0));
        assert_eq!(sum_metrics(TEXT, &["fasthook_engine_paused"]), Some(0.0));
        assert_eq!(sum_metrics(TEXT, &["fasthook_nothing"]), None);
        assert_eq!(sum_metrics("", WAITING_GAUGES), None);
    }

    #[test]
    fn finds_flush_counter() {
        assert_eq!(
            flush_count(TEXT),
            Some(("fasthook_store_flush_duration_seconds_count".into(), 42.0))
        );
        let other = "fasthook_writer_flushes_total 7\n";
        assert_eq!(
            flush_count(other),
            Some(("fasthook_writer_flushes_total".into(), 7.0))
        );
        assert_eq!(flush_count("fasthook_engine_paused 0\n"), None);
    }

    #[test]
    fn parses_unlabelled_and_odd_lines() {
        assert_eq!(sample("x 1.5"), Some(("x", 1.5)));
        assert_eq!(sample("x{a=\"b c\"} 2 1700000000"), Some(("x", 2.0)));
        assert_eq!(sample("# TYPE x gauge"), None);
        assert_eq!(sample("garbage"), None);
    }
}
