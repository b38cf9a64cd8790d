//! Request rate and latency over the last hour, per app, for the
//! dashboard's pictures.
//!
//! The proxy only keeps cumulative counters (atomics, no lock on the request
//! path). A background task samples them every few seconds and adds the
//! difference since the previous sample to the current minute's bucket: one
//! bucket per minute, the last [`MINUTES`] kept per app. The charts are
//! drawn here too, as inline SVG strings (no JavaScript, no external file).

use crate::proxy::{AppStats, RouteTable, LATENCY_BUCKETS_MS};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Minutes of history kept per app.
pub const MINUTES: usize = 60;

/// How often the sampler reads the proxy's counters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// What the proxy answered for one app in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Minutes since the epoch.
    pub minute: i64,
    pub requests: u64,
    pub errors_5xx: u64,
    /// Requests of this minute at or under each of [`LATENCY_BUCKETS_MS`]
    /// (cumulative over the bounds, like the proxy's histogram).
    pub latency_le: [u64; LATENCY_BUCKETS_MS.len()],
}

impl Minute {
    /// The `q` quantile of this minute's latency in milliseconds,
    /// interpolated inside its histogram bucket; `None` without requests.
    /// Past the last bound it answers the last bound.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        if self.requests == 0 {
            return None;
        }
        let rank = (q * self.requests as f64).ceil().max(1.0);
        let mut below = 0u64;
        let mut lower = 0.0;
        for (bound, count) in LATENCY_BUCKETS_MS.iter().zip(self.latency_le) {
            let upper = *bound as f64;
            if count as f64 >= rank {
                let inside = (count - below).max(1) as f64;
                return Some(lower + (upper - lower) * (rank - below as f64) / inside);
            }
            below = count;
            lower = upper;
        }
        Some(lower)
    }
}

/// The last hour of every app (kept next to the proxy's counters, in
/// [`RouteTable`]).
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The counters at the previous sample.
    last: HashMap<String, AppStats>,
    /// Newest minute last.
    series: HashMap<String, VecDeque<Minute>>,
}

impl History {
    /// Adds what the counters grew by since the previous sample to the
    /// minute `now` (seconds since the epoch) falls in.
    pub fn record(&self, now: i64, stats: &[(String, AppStats)]) {
        let minute = now.div_euclid(60);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        for (app, s) in stats {
            let prev = inner.last.insert(app.clone(), *s).unwrap_or_default();
            // Counters only grow; if they were reset, count them afresh.
            let d = |new: u64, old: u64| if new >= old { new - old } else { new };
            let requests = d(s.requests, prev.requests);
            let errors = d(s.status_5xx, prev.status_5xx);
            let series = inner.series.entry(app.clone()).or_default();
            if series.back().is_none_or(|m| m.minute != minute) {
                series.push_back(Minute {
                    minute,
                    ..Default::default()
                });
            }
            let m = series.back_mut().expect("just pushed");
            m.requests += requests;
            m.errors_5xx += errors;
            for (i, slot) in m.latency_le.iter_mut().enumerate() {
                *slot += d(s.latency_le[i], prev.latency_le[i]);
            }
            while series
                .front()
                .is_some_and(|m| m.minute <= minute - MINUTES as i64)
            {
                series.pop_front();
            }
        }
    }

    /// The last [`MINUTES`] minutes before `now` of `app`, oldest first,
    /// minutes without traffic as zeros.
    pub fn series(&self, app: &str, now: i64) -> Vec<Minute> {
        let end = now.div_euclid(60);
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let kept = inner.series.get(app);
        (end - MINUTES as i64 + 1..=end)
            .map(|minute| {
                kept.and_then(|s| s.iter().find(|m| m.minute == minute).copied())
                    .unwrap_or(Minute {
                        minute,
                        ..Default::default()
                    })
            })
            .collect()
    }
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Samples the proxy's counters into its history every [`SAMPLE_EVERY`],
/// for as long as the daemon runs.
pub fn spawn_sampler(routes: RouteTable) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            routes.history().record(now(), &routes.stats());
        }
    })
}

// ------------------------------------------------------------------ SVG

/// A requests-per-minute sparkline: a filled line, no axes.
pub fn sparkline(series: &[Minute]) -> String {
    let (w, h) = (120.0, 24.0);
    let max = series.iter().map(|m| m.requests).max().unwrap_or(0).max(1) as f64;
    let step = w / (series.len().max(2) - 1) as f64;
    let mut pts = String::new();
    for (i, m) in series.iter().enumerate() {
        let x = i as f64 * step;
        let y = h - 1.0 - (m.requests as f64 / max) * (h - 2.0);
        let _ = write!(pts, "{x:.1},{y:.1} ");
    }
    let total: u64 = series.iter().map(|m| m.requests).sum();
    format!(
        "<svg class=\"spark\" viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"none\" role=\"img\"><title>{total} requests in the last hour</title>\
<polygon points=\"0,{h} {pts}{w},{h}\" fill=\"#dbeafe\"/><polyline points=\"{pts}\" fill=\"none\" stroke=\"#2563eb\" stroke-width=\"1.2\"/></svg>"
    )
}

const CHART_W: f64 = 600.0;
const CHART_H: f64 = 140.0;
const PAD_L: f64 = 44.0;
const PAD_B: f64 = 18.0;

/// The frame of an hour chart: the max label, the time labels.
fn frame(max_label: &str, unit: &str) -> String {
    let (x0, y1) = (PAD_L, CHART_H - PAD_B);
    format!(
        "<line x1=\"{x0}\" y1=\"4\" x2=\"{x0}\" y2=\"{y1}\" stroke=\"#cbd5e1\"/>\
<line x1=\"{x0}\" y1=\"{y1}\" x2=\"{CHART_W}\" y2=\"{y1}\" stroke=\"#cbd5e1\"/>\
<text x=\"{tx}\" y=\"12\" text-anchor=\"end\" font-size=\"10\" fill=\"#6b7280\">{max_label}</text>\
<text x=\"{tx}\" y=\"24\" text-anchor=\"end\" font-size=\"10\" fill=\"#6b7280\">{unit}</text>\
<text x=\"{tx}\" y=\"{y1}\" text-anchor=\"end\" font-size=\"10\" fill=\"#6b7280\">0</text>\
<text x=\"{x0}\" y=\"{ty}\" font-size=\"10\" fill=\"#6b7280\">−60 min</text>\
<text x=\"{CHART_W}\" y=\"{ty}\" text-anchor=\"end\" font-size=\"10\" fill=\"#6b7280\">now</text>",
        tx = PAD_L - 4.0,
        ty = CHART_H - 4.0,
    )
}

/// Requests per minute over the last hour: one bar a minute, 5xx in red.
pub fn rate_chart(series: &[Minute]) -> String {
    let max = series.iter().map(|m| m.requests).max().unwrap_or(0).max(1);
    let plot_h = CHART_H - PAD_B - 4.0;
    let bw = (CHART_W - PAD_L) / series.len().max(1) as f64;
    let mut bars = String::new();
    for (i, m) in series.iter().enumerate() {
        if m.requests == 0 {
            continue;
        }
        let x = PAD_L + i as f64 * bw + 0.5;
        let h = m.requests as f64 / max as f64 * plot_h;
        let y = CHART_H - PAD_B - h;
        let eh = m.errors_5xx as f64 / max as f64 * plot_h;
        let _ = write!(
            bars,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#3b82f6\"><title>{} requests</title></rect>",
            (bw - 1.0).max(0.5),
            m.requests
        );
        if eh > 0.0 {
            let _ = write!(
                bars,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{eh:.1}\" fill=\"#dc2626\"><title>{} answered 5xx</title></rect>",
                CHART_H - PAD_B - eh,
                (bw - 1.0).max(0.5),
                m.errors_5xx
            );
        }
    }
    format!(
        "<svg class=\"chart\" id=\"rate-chart\" viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"requests per minute over the last hour\">{}{bars}</svg>",
        frame(&max.to_string(), "req/min")
    )
}

/// p50 and p99 latency per minute over the last hour, as two lines.
pub fn latency_chart(series: &[Minute]) -> String {
    let p50: Vec<Option<f64>> = series.iter().map(|m| m.quantile_ms(0.5)).collect();
    let p99: Vec<Option<f64>> = series.iter().map(|m| m.quantile_ms(0.99)).collect();
    let max = p99.iter().flatten().fold(1.0f64, |a, b| a.max(*b));
    let plot_h = CHART_H - PAD_B - 4.0;
    let step = (CHART_W - PAD_L) / series.len().max(1) as f64;
    let line = |vals: &[Option<f64>], color: &str, name: &str| {
        // A minute without requests breaks the line.
        let mut out = String::new();
        let mut pts = String::new();
        let flush = |pts: &mut String, out: &mut String| {
            if !pts.is_empty() {
                let _ = write!(
                    out,
                    "<polyline points=\"{pts}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"><title>{name}</title></polyline>"
                );
                pts.clear();
            }
        };
        let mut dots = String::new();
        for (i, v) in vals.iter().enumerate() {
            match v {
                Some(ms) => {
                    let x = PAD_L + (i as f64 + 0.5) * step;
                    let y = CHART_H - PAD_B - ms / max * plot_h;
                    let _ = write!(pts, "{x:.1},{y:.1} ");
                    // A lone minute still shows: a dot on every point.
                    let _ = write!(
                        dots,
                        "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\" fill=\"{color}\"><title>{name} {ms:.0} ms</title></circle>"
                    );
                }
                None => flush(&mut pts, &mut out),
            }
        }
        flush(&mut pts, &mut out);
        out.push_str(&dots);
        out
    };
    format!(
        "<svg class=\"chart\" id=\"latency-chart\" viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"p50 and p99 latency over the last hour\">{}{}{}\
<text x=\"{lx}\" y=\"12\" font-size=\"10\" fill=\"#16a34a\">p50</text><text x=\"{lx2}\" y=\"12\" font-size=\"10\" fill=\"#ea580c\">p99</text></svg>",
        frame(&format!("{max:.0}"), "ms"),
        line(&p50, "#16a34a", "p50"),
        line(&p99, "#ea580c", "p99"),
        lx = PAD_L + 8.0,
        lx2 = PAD_L + 36.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: u64, fast: u64, errors: u64) -> AppStats {
        // `fast` requests within 5 ms, the rest within 100 ms.
        let mut le = [requests; LATENCY_BUCKETS_MS.len()];
        for slot in le.iter_mut().take(4) {
            *slot = fast;
        }
        AppStats {
            requests,
            status_2xx: requests - errors,
            status_5xx: errors,
            latency_le: le,
            ..Default::default()
        }
    }

    #[test]
    fn samples_add_up_per_minute_and_old_minutes_fall_off() {
        let h = History::default();
        let t0 = 1_000_000 * 60; // the start of a minute
        h.record(t0, &[("blog".into(), stats(10, 10, 0))]);
        h.record(t0 + 30, &[("blog".into(), stats(25, 20, 1))]);
        h.record(t0 + 65, &[("blog".into(), stats(40, 30, 1))]);
        let s = h.series("blog", t0 + 65);
        assert_eq!(s.len(), MINUTES);
        assert_eq!(s[MINUTES - 2].requests, 25, "first minute: 10 + 15");
        assert_eq!(s[MINUTES - 2].errors_5xx, 1);
        assert_eq!(s[MINUTES - 2].latency_le[0], 20);
        assert_eq!(s[MINUTES - 1].requests, 15, "second minute");
        assert_eq!(s[MINUTES - 1].errors_5xx, 0);
        assert!(s[..MINUTES - 2].iter().all(|m| m.requests == 0));
        assert!(h.series("other", t0).iter().all(|m| m.requests == 0));
        // An hour later the old minutes are gone, from the view and the store.
        h.record(t0 + 3600 + 65, &[("blog".into(), stats(41, 31, 1))]);
        let s = h.series("blog", t0 + 3600 + 65);
        assert_eq!(s.iter().map(|m| m.requests).sum::<u64>(), 1);
        let inner = h.inner.lock().unwrap();
        assert_eq!(inner.series["blog"].len(), 1);
    }

    #[test]
    fn a_reset_counter_counts_afresh() {
        let h = History::default();
        h.record(60, &[("a".into(), stats(100, 100, 0))]);
        h.record(61, &[("a".into(), stats(3, 3, 0))]);
        assert_eq!(h.series("a", 61).last().unwrap().requests, 103);
    }

    #[test]
    fn quantiles_come_from_the_histogram() {
        let mut m = Minute {
            requests: 100,
            ..Default::default()
        };
        // 90 within 5 ms, 10 more within 100 ms.
        m.latency_le = [90, 90, 90, 90, 100, 100, 100, 100, 100, 100, 100];
        let p50 = m.quantile_ms(0.5).unwrap();
        assert!(p50 > 0.0 && p50 <= 5.0, "{p50}");
        let p99 = m.quantile_ms(0.99).unwrap();
        assert!(p99 > 50.0 && p99 <= 100.0, "{p99}");
        assert_eq!(Minute::default().quantile_ms(0.5), None);
        // Slower than the last bound: the last bound.
        let slow = Minute {
            requests: 1,
            ..Default::default()
        };
        assert_eq!(slow.quantile_ms(0.5), Some(10_000.0));
    }

    #[test]
    fn charts_are_svg_scaled_to_their_data() {
        let mut s = vec![Minute::default(); MINUTES];
        s[59].requests = 10;
        s[59].latency_le = [10; LATENCY_BUCKETS_MS.len()];
        s[30].requests = 5;
        s[30].errors_5xx = 5;
        s[30].latency_le = [0, 0, 0, 0, 0, 5, 5, 5, 5, 5, 5];
        let spark = sparkline(&s);
        assert!(spark.starts_with("<svg") && spark.ends_with("</svg>"));
        assert!(spark.contains("15 requests in the last hour"), "{spark}");
        let rate = rate_chart(&s);
        assert_eq!(
            rate.matches("<rect").count(),
            3,
            "two bars, one red: {rate}"
        );
        assert!(rate.contains(">10<"), "the max is labelled");
        let lat = latency_chart(&s);
        assert_eq!(
            lat.matches("<polyline").count(),
            4,
            "two lines, broken by quiet minutes"
        );
        assert!(
            lat.contains(">250<"),
            "the p99 max of minute 30 labels the axis: {lat}"
        );
        // No data: still a chart.
        let empty = vec![Minute::default(); MINUTES];
        assert!(rate_chart(&empty).contains("req/min"));
        assert_eq!(latency_chart(&empty).matches("<polyline").count(), 0);
    }
}
