//! The runner of the property tests (`mod props` at the end of the modules
//! that parse outside input): each property is checked on `default_cases`
//! generated inputs, or `PROPTEST_CASES` when set, with a fresh random seed
//! per run. `bench/fuzz.sh` runs them for a fixed time and reads the
//! executions each run adds to the file named by `PAAS_FUZZ_COUNTS`.

#![cfg(test)]

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use std::cell::Cell;
use std::io::Write;

/// Checks `property` on inputs drawn from `strategy`; a failure panics with
/// the smallest failing input proptest shrank it to.
pub fn check<S: Strategy>(
    target: &str,
    default_cases: u32,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let runs = Cell::new(0u64);
    let result = TestRunner::new(config).run(&strategy, |input| {
        runs.set(runs.get() + 1);
        property(input)
    });
    let outcome = match &result {
        Ok(()) => "ok",
        Err(_) => "failed",
    };
    if let Ok(file) = std::env::var("PAAS_FUZZ_COUNTS") {
        let line = format!("{target}\t{}\t{outcome}\n", runs.get());
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, input)) => {
            panic!("{target}: {why}\nminimal failing input: {input:?}")
        }
        Err(TestError::Abort(why)) => panic!("{target}: gave up: {why}"),
    }
}

/// `Err` with `what` unless `cond`: `prop_assert!` for plain functions.
pub fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if cond {
        Ok(())
    } else {
        Err(TestCaseError::fail(what()))
    }
}
