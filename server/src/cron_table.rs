//! The `[cron.NAME]` tables of a repository's `paas.toml`: scheduled jobs,
//! checked at push time and kept with the release (pure; no clock, no I/O).
//!
//! ```toml
//! [cron.clearsessions]
//! schedule = "0 3 * * *"          # minute hour day-of-month month day-of-week
//! command = "python manage.py clearsessions"
//! timeout = 600                   # seconds, optional (default 3600)
//! ```
//!
//! Schedules are standard 5-field cron expressions (parsed by `croner`),
//! read in UTC unless the app's `TZ` config var names a time zone. A sixth,
//! leading seconds field is also accepted (`*/10 * * * * *`), for jobs that
//! must run more often than once a minute.

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::{tz::TimeZone, Timestamp, Zoned};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A job's timeout when `paas.toml` gives none.
pub const DEFAULT_TIMEOUT_SECS: u64 = 3600;
/// The longest timeout a job may ask for: a day.
pub const MAX_TIMEOUT_SECS: u64 = 24 * 3600;

/// One `[cron.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronJob {
    /// A cron expression, e.g. `0 3 * * *`.
    pub schedule: String,
    /// A shell command line, run with `sh -c` in a one-off container.
    pub command: String,
    /// Seconds the run may take before it is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
}

impl CronJob {
    /// The run's time limit.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout.unwrap_or(DEFAULT_TIMEOUT_SECS))
    }
}

#[derive(Deserialize)]
struct RepoFile {
    #[serde(default)]
    cron: BTreeMap<String, toml::Value>,
}

/// The `[cron.*]` tables of a `paas.toml` (empty when there are none), or
/// one sentence saying what to fix. Other tables are left to whoever reads
/// them.
pub fn parse_repo_file(text: &str) -> Result<BTreeMap<String, CronJob>, String> {
    let file: RepoFile = toml::from_str(text).map_err(|e| {
        format!(
            "paas.toml in the pushed code is not valid ({}); fix it (see the README for its [cron.NAME] tables) and push again",
            e.message().trim_end_matches('.')
        )
    })?;
    let mut jobs = BTreeMap::new();
    for (name, value) in file.cron {
        let at = format!("paas.toml [cron.{name}]");
        if !valid_job_name(&name) {
            return Err(format!(
                "{at}: {name:?} is not a job name; use up to 40 lowercase letters, digits, - or _, then push again"
            ));
        }
        let job: CronJob = value.try_into().map_err(|e: toml::de::Error| {
            format!(
                "{at} is not valid ({}); give it schedule = \"0 3 * * *\" and command = \"...\" (optional timeout = seconds), then push again",
                e.message().trim_end_matches('.')
            )
        })?;
        if let Err(why) = parse_schedule(&job.schedule) {
            return Err(format!(
                "{at} schedule = {:?} is not a cron schedule ({why}); write five fields, minute hour day-of-month month day-of-week such as \"0 3 * * *\" for 03:00 daily, then push again",
                job.schedule
            ));
        }
        if job.command.trim().is_empty() {
            return Err(format!(
                "{at} command is empty; give the command to run, such as command = \"python manage.py clearsessions\", then push again"
            ));
        }
        if let Some(t) = job.timeout {
            if !(1..=MAX_TIMEOUT_SECS).contains(&t) {
                return Err(format!(
                    "{at} timeout = {t} is out of range; give whole seconds from 1 to {MAX_TIMEOUT_SECS}, then push again"
                ));
            }
        }
        jobs.insert(name, job);
    }
    Ok(jobs)
}

/// `clearsessions`, `digest-mail`, `import_2`.
pub fn valid_job_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A schedule: five fields, or six with leading seconds; no year field.
pub fn parse_schedule(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!("it has {fields} fields"));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string().trim_end_matches('.').to_string())
}

/// The time zone schedules are read in: the app's `TZ` config var when set,
/// else UTC; or the sentence that says the var is not a time zone.
pub fn time_zone(vars: &BTreeMap<String, String>) -> Result<TimeZone, String> {
    match vars.get("TZ").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|_| {
            format!(
                "config var TZ = {name:?} is not a time zone, so the cron schedules cannot be read; set an IANA name such as Europe/Paris with `paas config:set TZ=Europe/Paris` (or unset it for UTC)"
            )
        }),
    }
}

/// The first time strictly after `after` that `cron` matches, read in `tz`.
pub fn next_after(cron: &Cron, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    let start = Zoned::new(after, tz.clone());
    cron.find_next_occurrence(&start, false)
        .ok()
        .map(|z| z.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_are_read_with_their_defaults() {
        let jobs = parse_repo_file(
            "[healthcheck]\npath = \"/\"\n\n[cron.clearsessions]\nschedule = \"0 3 * * *\"\ncommand = \"python manage.py clearsessions\"\n\n[cron.tick]\nschedule = \"*/2 * * * * *\"\ncommand = \"date\"\ntimeout = 5\n",
        )
        .unwrap();
        assert_eq!(jobs.len(), 2);
        let c = &jobs["clearsessions"];
        assert_eq!(c.command, "python manage.py clearsessions");
        assert_eq!(
            c.timeout(),
            std::time::Duration::from_secs(DEFAULT_TIMEOUT_SECS)
        );
        assert_eq!(jobs["tick"].timeout(), std::time::Duration::from_secs(5));
        assert!(parse_repo_file("").unwrap().is_empty());
        // The table survives the trip through a release's stored facts.
        let json = serde_json::to_value(&jobs).unwrap();
        assert_eq!(
            serde_json::from_value::<BTreeMap<String, CronJob>>(json).unwrap(),
            jobs
        );
    }

    #[test]
    fn bad_jobs_are_one_sentence_saying_what_to_fix() {
        for (text, want) in [
            (
                "[cron.x]\nschedule = \"0 3 * *\"\ncommand = \"true\"\n",
                "it has 4 fields",
            ),
            (
                "[cron.x]\nschedule = \"61 * * * *\"\ncommand = \"true\"\n",
                "is not a cron schedule",
            ),
            (
                "[cron.x]\nschedule = \"every day\"\ncommand = \"true\"\n",
                "is not a cron schedule",
            ),
            (
                "[cron.x]\nschedule = \"0 0 3 * * * 2030\"\ncommand = \"true\"\n",
                "it has 7 fields",
            ),
            (
                "[cron.x]\nschedule = \"0 3 * * *\"\ncommand = \" \"\n",
                "command is empty",
            ),
            (
                "[cron.x]\nschedule = \"0 3 * * *\"\n",
                "missing field `command`",
            ),
            (
                "[cron.x]\nschedule = \"0 3 * * *\"\ncommand = \"true\"\ntimeout = 0\n",
                "from 1 to 86400",
            ),
            (
                "[cron.x]\nschedule = \"0 3 * * *\"\ncommand = \"true\"\ntimout = 5\n",
                "unknown field `timout`",
            ),
            (
                "[cron.Big]\nschedule = \"0 3 * * *\"\ncommand = \"true\"\n",
                "is not a job name",
            ),
            ("[cron]\nx = 1\n", "is not valid"),
            ("[cron.x\n", "not valid"),
        ] {
            let e = parse_repo_file(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.contains("paas.toml"), "{e}");
            assert!(e.ends_with("push again"), "{e}");
            assert_eq!(e.matches(". ").count(), 0, "one sentence: {e}");
        }
    }

    #[test]
    fn next_runs_follow_the_schedule_and_the_time_zone() {
        let daily = parse_schedule("0 3 * * *").unwrap();
        let t: Timestamp = "2026-11-30T10:00:00Z".parse().unwrap();
        let utc = time_zone(&BTreeMap::new()).unwrap();
        assert_eq!(
            next_after(&daily, t, &utc).unwrap().to_string(),
            "2026-12-01T03:00:00Z"
        );
        let vars = [("TZ".to_string(), "Europe/Paris".to_string())].into();
        let paris = time_zone(&vars).unwrap();
        assert_eq!(
            next_after(&daily, t, &paris).unwrap().to_string(),
            "2026-12-01T02:00:00Z",
            "03:00 in Paris is 02:00 UTC in winter"
        );
        // Strictly after: a run at the matching second is not due again.
        let every2 = parse_schedule("*/2 * * * * *").unwrap();
        let at: Timestamp = "2026-11-30T10:00:02Z".parse().unwrap();
        assert_eq!(
            next_after(&every2, at, &utc).unwrap().to_string(),
            "2026-11-30T10:00:04Z"
        );
        let bad = [("TZ".to_string(), "Mars/Olympus".to_string())].into();
        let e = time_zone(&bad).unwrap_err();
        assert!(e.contains("paas config:set TZ="), "{e}");
    }
}
