//! Request rate and latency over the last hour, per app, for the
//! dashboard's pictures.
//!
//! The proxy only keeps cumulative counters (atomics, no lock on the request
//! path). A background task samples them every few seconds and adds the
//! difference since the previous sample to the current minute's bucket: one
//! bucket per minute, the last [`MINUTES`] kept per app. The charts are
//! drawn here too, as inline SVG strings (no JavaScript, no external file).
//!
//! Memory and CPU of each app's running containers come from a second,
//! slower task (the usage sampler, every [`STATS_EVERY`] or
//! `PAAS_STATS_INTERVAL_SECS`): one one-shot stats call per container, the
//! app's containers summed, averaged per minute, the last [`MINUTES`] kept.
//! Nothing of it runs on a request's path.

use crate::docker::ContainerStats;
use crate::proxy::{AppStats, LATENCY_BUCKETS_MS};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Minutes of history kept per app.
pub const MINUTES: usize = 60;

/// How often the sampler reads the proxy's counters.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The [`MINUTES`] minutes up to `now` (seconds), oldest first, from `kept`;
/// a minute it lacks is `blank(minute)`.
fn last_hour<T: Copy>(
    kept: Option<&VecDeque<T>>,
    now: i64,
    minute_of: impl Fn(&T) -> i64,
    blank: impl Fn(i64) -> T,
) -> Vec<T> {
    let end = now.div_euclid(60);
    (end - MINUTES as i64 + 1..=end)
        .map(|minute| {
            kept.and_then(|s| s.iter().find(|m| minute_of(m) == minute).copied())
                .unwrap_or_else(|| blank(minute))
        })
        .collect()
}

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
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        last_hour(
            inner.series.get(app),
            now,
            |m| m.minute,
            |minute| Minute {
                minute,
                ..Default::default()
            },
        )
    }
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// ------------------------------------------------------------ containers

/// How often the container sampler reads memory and CPU, unless
/// `PAAS_STATS_INTERVAL_SECS` says otherwise.
pub const STATS_EVERY: Duration = Duration::from_secs(30);

/// The container sampler's interval: `PAAS_STATS_INTERVAL_SECS` (whole
/// seconds, at least 1) when set to a number, else [`STATS_EVERY`]. Read
/// once, when the sampler starts.
pub fn stats_interval() -> Duration {
    parse_interval(std::env::var("PAAS_STATS_INTERVAL_SECS").ok().as_deref())
}

fn parse_interval(v: Option<&str>) -> Duration {
    v.and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.max(1)))
        .unwrap_or(STATS_EVERY)
}

/// One sample of an app: its running containers, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub containers: u32,
    pub memory_bytes: u64,
    /// The sum of the containers' limits, when every one has a limit.
    pub memory_limit: Option<u64>,
    /// The sum over the containers with a CPU share this time (a container
    /// gets one from its second reading on); `None` when none has.
    pub cpu_percent: Option<f64>,
}

impl Usage {
    /// Adds one container's reading and CPU share. A limit of 0 or at
    /// least `host_memory` (what the engine reports for a container
    /// without a limit) makes the app's limit unknown.
    pub fn add(&mut self, s: &ContainerStats, cpu: Option<f64>, host_memory: Option<u64>) {
        let limited = s.memory_limit > 0 && host_memory.is_none_or(|h| s.memory_limit < h);
        self.memory_limit = match (self.containers, self.memory_limit) {
            (0, _) if limited => Some(s.memory_limit),
            (_, Some(l)) if limited => Some(l + s.memory_limit),
            _ => None,
        };
        self.containers += 1;
        self.memory_bytes += s.memory_bytes;
        if let Some(c) = cpu {
            self.cpu_percent = Some(self.cpu_percent.unwrap_or(0.0) + c);
        }
    }
}

/// The samples of one app in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UsageMinute {
    /// Minutes since the epoch.
    pub minute: i64,
    samples: u32,
    memory_sum: u64,
    cpu_samples: u32,
    cpu_sum: f64,
    /// The limit at the minute's last sample.
    pub memory_limit: Option<u64>,
}

impl UsageMinute {
    /// Mean memory over the minute's samples; `None` without a sample.
    pub fn memory_bytes(&self) -> Option<u64> {
        (self.samples > 0).then(|| self.memory_sum / self.samples as u64)
    }

    /// Mean CPU percent over the minute's samples that had one.
    pub fn cpu_percent(&self) -> Option<f64> {
        (self.cpu_samples > 0).then(|| self.cpu_sum / self.cpu_samples as f64)
    }
}

/// The last hour of memory and CPU of every app.
#[derive(Default)]
pub struct UsageHistory {
    inner: Mutex<UsageInner>,
}

#[derive(Default)]
struct UsageInner {
    /// Newest minute last.
    series: HashMap<String, VecDeque<UsageMinute>>,
    /// The latest sample and when (seconds since the epoch).
    latest: HashMap<String, (i64, Usage)>,
}

impl UsageHistory {
    /// Adds a sample of `app` taken at `now` (seconds since the epoch).
    pub fn record(&self, now: i64, app: &str, u: Usage) {
        let minute = now.div_euclid(60);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.latest.insert(app.to_string(), (now, u));
        let series = inner.series.entry(app.to_string()).or_default();
        if series.back().is_none_or(|m| m.minute != minute) {
            series.push_back(UsageMinute {
                minute,
                ..Default::default()
            });
        }
        let m = series.back_mut().expect("just pushed");
        m.samples += 1;
        m.memory_sum += u.memory_bytes;
        m.memory_limit = u.memory_limit;
        if let Some(c) = u.cpu_percent {
            m.cpu_samples += 1;
            m.cpu_sum += c;
        }
        while series
            .front()
            .is_some_and(|m| m.minute <= minute - MINUTES as i64)
        {
            series.pop_front();
        }
    }

    /// Forgets every app not in `apps` (deleted ones).
    pub fn retain(&self, apps: &HashSet<String>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.series.retain(|a, _| apps.contains(a));
        inner.latest.retain(|a, _| apps.contains(a));
    }

    /// The last [`MINUTES`] minutes before `now` of `app`, oldest first;
    /// minutes without a sample have none.
    pub fn series(&self, app: &str, now: i64) -> Vec<UsageMinute> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        last_hour(
            inner.series.get(app),
            now,
            |m| m.minute,
            |minute| UsageMinute {
                minute,
                ..Default::default()
            },
        )
    }

    /// The latest sample of `app` and when it was taken.
    pub fn latest(&self, app: &str) -> Option<(i64, Usage)> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.latest.get(app).copied()
    }
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

/// A line over the hour, one point a minute (`max` at the top); a minute
/// without a value breaks it, and every point is a dot with its value
/// (`label`) as title, so a lone minute still shows.
fn hour_line(
    vals: &[Option<f64>],
    max: f64,
    color: &str,
    name: &str,
    label: &dyn Fn(f64) -> String,
) -> String {
    let plot_h = CHART_H - PAD_B - 4.0;
    let step = (CHART_W - PAD_L) / vals.len().max(1) as f64;
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
            Some(v) => {
                let x = PAD_L + (i as f64 + 0.5) * step;
                let y = CHART_H - PAD_B - v / max * plot_h;
                let _ = write!(pts, "{x:.1},{y:.1} ");
                let _ = write!(
                    dots,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2\" fill=\"{color}\"><title>{name} {}</title></circle>",
                    label(*v)
                );
            }
            None => flush(&mut pts, &mut out),
        }
    }
    flush(&mut pts, &mut out);
    out.push_str(&dots);
    out
}

/// p50 and p99 latency per minute over the last hour, as two lines.
pub fn latency_chart(series: &[Minute]) -> String {
    let p50: Vec<Option<f64>> = series.iter().map(|m| m.quantile_ms(0.5)).collect();
    let p99: Vec<Option<f64>> = series.iter().map(|m| m.quantile_ms(0.99)).collect();
    let max = p99.iter().flatten().fold(1.0f64, |a, b| a.max(*b));
    let ms = |v: f64| format!("{v:.0} ms");
    format!(
        "<svg class=\"chart\" id=\"latency-chart\" viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"p50 and p99 latency over the last hour\">{}{}{}\
<text x=\"{lx}\" y=\"12\" font-size=\"10\" fill=\"#16a34a\">p50</text><text x=\"{lx2}\" y=\"12\" font-size=\"10\" fill=\"#ea580c\">p99</text></svg>",
        frame(&format!("{max:.0}"), "ms"),
        hour_line(&p50, max, "#16a34a", "p50", &ms),
        hour_line(&p99, max, "#ea580c", "p99", &ms),
        lx = PAD_L + 8.0,
        lx2 = PAD_L + 36.0,
    )
}

const MB: f64 = 1024.0 * 1024.0;

/// A number for an axis or a title: one decimal under 10.
fn short(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Memory of the app's containers per minute over the last hour, in MB, and
/// their limit (the latest one known) as a dashed line on top.
pub fn memory_chart(series: &[UsageMinute]) -> String {
    let mb: Vec<Option<f64>> = series
        .iter()
        .map(|m| m.memory_bytes().map(|b| b as f64 / MB))
        .collect();
    let limit = series
        .iter()
        .rev()
        .find(|m| m.samples > 0)
        .and_then(|m| m.memory_limit)
        .map(|l| l as f64 / MB);
    let max = mb
        .iter()
        .flatten()
        .chain(limit.iter())
        .fold(1.0f64, |a, b| a.max(*b));
    let mut limit_line = String::new();
    if let Some(l) = limit {
        let y = CHART_H - PAD_B - l / max * (CHART_H - PAD_B - 4.0);
        let _ = write!(
            limit_line,
            "<line x1=\"{PAD_L}\" y1=\"{y:.1}\" x2=\"{CHART_W}\" y2=\"{y:.1}\" stroke=\"#dc2626\" stroke-dasharray=\"4 3\"><title>limit {l:.0} MB</title></line>\
<text x=\"{CHART_W}\" y=\"{ty:.1}\" text-anchor=\"end\" font-size=\"10\" fill=\"#dc2626\">limit {l:.0} MB</text>",
            ty = (y + 12.0).min(CHART_H - PAD_B - 2.0),
        );
    }
    format!(
        "<svg class=\"chart\" id=\"memory-chart\" viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"memory of the app's containers over the last hour\">{}{limit_line}{}</svg>",
        frame(&short(max), "MB"),
        hour_line(&mb, max, "#7c3aed", "memory", &|v| format!("{} MB", short(v))),
    )
}

/// CPU of the app's containers per minute over the last hour, in percent
/// of one CPU (two busy CPUs: 200).
pub fn cpu_chart(series: &[UsageMinute]) -> String {
    let cpu: Vec<Option<f64>> = series.iter().map(|m| m.cpu_percent()).collect();
    let max = cpu.iter().flatten().fold(1.0f64, |a, b| a.max(*b));
    format!(
        "<svg class=\"chart\" id=\"cpu-chart\" viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"CPU of the app's containers over the last hour\">{}{}</svg>",
        frame(&short(max), "% CPU"),
        hour_line(&cpu, max, "#0891b2", "CPU", &|v| format!("{} %", short(v))),
    )
}

/// The latest sample in words, for the page.
pub fn usage_text(u: &Usage) -> String {
    let mut t = format!("{} MB", short(u.memory_bytes as f64 / MB));
    if let Some(l) = u.memory_limit {
        let _ = write!(t, " of {:.0} MB", l as f64 / MB);
    }
    match u.cpu_percent {
        Some(c) => {
            let _ = write!(t, " · {} % CPU", short(c));
        }
        None => t.push_str(" · CPU after the next sample"),
    }
    let _ = write!(
        t,
        " · {} running container{}",
        u.containers,
        if u.containers == 1 { "" } else { "s" }
    );
    t
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

    fn reading(memory_mb: u64, limit_mb: u64) -> ContainerStats {
        ContainerStats {
            memory_bytes: memory_mb << 20,
            memory_limit: limit_mb << 20,
            ..Default::default()
        }
    }

    #[test]
    fn the_interval_comes_from_the_environment_or_defaults() {
        assert_eq!(parse_interval(None), STATS_EVERY);
        assert_eq!(parse_interval(Some("2")), Duration::from_secs(2));
        assert_eq!(parse_interval(Some("0")), Duration::from_secs(1));
        assert_eq!(parse_interval(Some("soon")), STATS_EVERY);
    }

    #[test]
    fn an_apps_containers_add_up() {
        let host = Some(4096 << 20);
        let mut u = Usage::default();
        u.add(&reading(100, 512), Some(10.0), host);
        u.add(&reading(50, 256), None, host);
        assert_eq!(u.containers, 2);
        assert_eq!(u.memory_bytes, 150 << 20);
        assert_eq!(u.memory_limit, Some(768 << 20));
        assert_eq!(u.cpu_percent, Some(10.0), "the first reading has no share");
        u.add(&reading(1, 0), Some(2.5), host);
        assert_eq!(u.memory_limit, None, "a container without a limit");
        assert_eq!(u.cpu_percent, Some(12.5));
        // The engine reports the host's memory for a container without one.
        let mut v = Usage::default();
        v.add(&reading(10, 4096), None, host);
        assert_eq!(v.memory_limit, None);
        assert_eq!(v.cpu_percent, None);
        let mut w = Usage::default();
        w.add(&reading(10, 4096), None, None);
        assert_eq!(w.memory_limit, Some(4096 << 20), "no host size known");
    }

    #[test]
    fn usage_is_averaged_per_minute_and_old_minutes_fall_off() {
        let h = UsageHistory::default();
        let t0 = 1_000_000 * 60;
        let u = |mb: u64, cpu: Option<f64>| Usage {
            containers: 1,
            memory_bytes: mb << 20,
            memory_limit: Some(512 << 20),
            cpu_percent: cpu,
        };
        h.record(t0, "blog", u(100, None));
        h.record(t0 + 30, "blog", u(200, Some(40.0)));
        h.record(t0 + 60, "blog", u(300, Some(10.0)));
        let s = h.series("blog", t0 + 60);
        assert_eq!(s.len(), MINUTES);
        assert_eq!(s[MINUTES - 2].memory_bytes(), Some(150 << 20));
        assert_eq!(
            s[MINUTES - 2].cpu_percent(),
            Some(40.0),
            "only samples with one"
        );
        assert_eq!(s[MINUTES - 1].memory_bytes(), Some(300 << 20));
        assert_eq!(s[MINUTES - 1].memory_limit, Some(512 << 20));
        assert!(s[..MINUTES - 2].iter().all(|m| m.memory_bytes().is_none()));
        assert_eq!(h.latest("blog").unwrap().0, t0 + 60);
        assert!(h
            .series("other", t0)
            .iter()
            .all(|m| m.cpu_percent().is_none()));
        h.record(t0 + 3600 + 60, "blog", u(1, None));
        assert_eq!(h.inner.lock().unwrap().series["blog"].len(), 1);
        // A deleted app is forgotten.
        h.retain(&HashSet::new());
        assert!(h.latest("blog").is_none());
        assert!(h.inner.lock().unwrap().series.is_empty());
    }

    #[test]
    fn usage_charts_scale_to_their_data_and_the_limit() {
        let h = UsageHistory::default();
        let t0 = 1_000_000 * 60;
        let mut u = Usage {
            containers: 2,
            memory_bytes: 64 << 20,
            memory_limit: Some(256 << 20),
            cpu_percent: None,
        };
        h.record(t0, "a", u);
        u.cpu_percent = Some(30.0);
        h.record(t0 + 120, "a", u);
        let s = h.series("a", t0 + 120);
        let mem = memory_chart(&s);
        assert!(mem.starts_with("<svg") && mem.ends_with("</svg>"));
        assert!(mem.contains("id=\"memory-chart\""));
        assert_eq!(
            mem.matches("<polyline").count(),
            2,
            "broken by the gap: {mem}"
        );
        assert_eq!(mem.matches("<circle").count(), 2);
        assert!(mem.contains(">256<"), "the limit tops the axis: {mem}");
        assert!(mem.contains("limit 256 MB"), "{mem}");
        assert!(mem.contains("memory 64 MB"), "{mem}");
        let cpu = cpu_chart(&s);
        assert_eq!(cpu.matches("<circle").count(), 1, "{cpu}");
        assert!(cpu.contains(">30<") && cpu.contains("CPU 30 %"), "{cpu}");
        assert_eq!(
            usage_text(&u),
            "64 MB of 256 MB · 30 % CPU · 2 running containers"
        );
        // No limit, no sample: no line.
        u.memory_limit = None;
        h.record(t0 + 180, "b", u);
        assert!(!memory_chart(&h.series("b", t0 + 180)).contains("limit"));
        let empty = h.series("none", t0);
        assert_eq!(memory_chart(&empty).matches("<polyline").count(), 0);
        assert!(cpu_chart(&empty).contains("% CPU"));
    }
}
