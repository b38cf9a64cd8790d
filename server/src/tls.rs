//! The certificate keeper: every name paas serves (each app's hosts, and
//! the control host `paas.<domain>`) has a certificate, got when the name
//! goes live and renewed when a third of its lifetime is left.
//!
//! Only names in the route table (and the control host) are ever issued:
//! a stranger's Host header or SNI name never starts an order. Names under
//! `localhost` are signed by paas's local CA at once; others are ordered
//! from the ACME CA ([`acme`]), one order in flight per name, a failure
//! retried after a wait that doubles up to a day. A stored certificate is
//! never ordered again before its renewal time: deploys, restarts and
//! daemon restarts order nothing, and a failure's wait outlives a daemon
//! restart (`certs/orders.json`). A name no app owns any more (a removed
//! domain, a destroyed app) has its certificate forgotten: files removed,
//! never renewed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::certs::{self, CertInfo};
use crate::ctx::Ctx;

pub mod acme;

/// The longest the keeper sleeps between two looks (renewals are checked
/// at least this often, whatever else happens).
pub const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// The wait after a first failed order; doubled by each further failure.
pub const FIRST_RETRY: i64 = 60;
/// The longest wait between two failed orders.
pub const MAX_RETRY: i64 = 86_400;

/// The wait before the next order after `failures` failures in a row.
pub fn backoff(failures: u32) -> i64 {
    let doublings = failures.saturating_sub(1).min(20);
    (FIRST_RETRY << doublings).min(MAX_RETRY)
}

/// The names that should have a certificate now, sorted.
pub fn wanted_names(ctx: &Ctx) -> Vec<String> {
    let mut names = ctx.routes.hosts();
    names.push(ctx.config.control_host());
    names.sort();
    names.dedup();
    names
}

/// The names paas keeps certificates for: every host of every app (live
/// or not: a stopped app keeps its certificates) and the control host.
/// `None` when the apps cannot be read (then nothing is forgotten).
pub fn owned_names(ctx: &Ctx) -> Option<HashSet<String>> {
    let apps = match ctx.store.apps() {
        Ok(apps) => apps,
        Err(e) => {
            tracing::warn!("the apps cannot be read, so no certificate is forgotten now: {e}");
            return None;
        }
    };
    let mut names: HashSet<String> = HashSet::new();
    for app in &apps {
        match ctx.store.domains(app) {
            Ok(domains) => names.extend(domains),
            Err(e) => {
                tracing::warn!(app = %app.name, "the domains cannot be read, so no certificate is forgotten now: {e}");
                return None;
            }
        }
        names.insert(ctx.config.app_host(&app.name));
    }
    names.insert(ctx.config.control_host());
    Some(names)
}

/// Whether `info` (the stored certificate, if any) needs a new one at `now`.
pub fn due(info: Option<&CertInfo>, now: i64) -> bool {
    match info {
        None => true,
        Some(info) => now >= info.renew_at() || !info.valid_at(now),
    }
}

/// Runs the keeper until the daemon stops: a look at start, at every
/// change of the route table, when asked ([`crate::certs::Certs::look_again`]),
/// when a renewal or a retry falls due, and at least every [`CHECK_EVERY`].
pub fn spawn_keeper(ctx: Arc<Ctx>) {
    let acme = Arc::new(acme::Acme::new(acme::AcmeSettings {
        directory: ctx.config.acme_directory.clone(),
        email: ctx.config.acme_email.clone(),
        ca_file: ctx.config.acme_ca_file.clone(),
    }));
    tokio::spawn(async move {
        let mut changes = ctx.routes.changes();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        loop {
            keep(&ctx, &acme, &done_tx);
            let wait = next_look(&ctx, certs::now());
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = done_rx.recv() => {}
                () = ctx.certs.woken() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    });
}

/// How long until something falls due: a renewal, a retry, or the
/// regular look (between 1 s and [`CHECK_EVERY`]).
fn next_look(ctx: &Ctx, now: i64) -> Duration {
    let mut soonest = now + CHECK_EVERY.as_secs() as i64;
    for name in wanted_names(ctx) {
        if let Some(info) = ctx.certs.info(&name) {
            soonest = soonest.min(info.renew_at());
        }
        let order = ctx.certs.order_state(&name);
        if order.last_error.is_some() && !order.in_flight {
            soonest = soonest.min(order.next_try);
        }
    }
    Duration::from_secs((soonest - now).clamp(1, CHECK_EVERY.as_secs() as i64) as u64)
}

/// One look: forgets the certificates of names no app owns, then issues
/// what is missing or due; ACME orders run in their own task and say on
/// `done` when they end.
pub fn keep(ctx: &Arc<Ctx>, acme: &Arc<acme::Acme>, done: &tokio::sync::mpsc::UnboundedSender<()>) {
    if let Some(owned) = owned_names(ctx) {
        for name in ctx.certs.forget_unowned(&owned) {
            tracing::info!(domain = %name, "certificate forgotten: no app has this name any more");
        }
    }
    let now = certs::now();
    let names = wanted_names(ctx);
    let looked_at = names.len();
    for name in names {
        if !due(ctx.certs.info(&name).as_ref(), now) {
            continue;
        }
        if !certs::is_local(&name) {
            let start = ctx.certs.update_order(&name, |s| {
                if s.in_flight {
                    return Err(None);
                }
                if now < s.next_try {
                    return Err(Some((s.failures, s.next_try)));
                }
                s.in_flight = true;
                s.requested_at = Some(now);
                s.orders += 1;
                Ok(())
            });
            if let Err(Some((failures, next_try))) = start {
                tracing::debug!(
                    domain = %name,
                    failures,
                    next_try = %rfc3339(next_try),
                    "certificate order held back after a failure"
                );
            }
            if start.is_ok() {
                tracing::info!(domain = %name, "certificate requested from the ACME CA");
                let (ctx, acme, done) = (ctx.clone(), acme.clone(), done.clone());
                tokio::spawn(async move {
                    order_one(&ctx, &acme, &name).await;
                    let _ = done.send(());
                });
            }
            continue;
        }
        {
            ctx.certs.update_order(&name, |s| {
                s.requested_at = Some(now);
                s.orders += 1;
            });
            match ctx.certs.issue_local(&name) {
                Ok(info) => {
                    ctx.certs.update_order(&name, |s| {
                        s.obtained_at = Some(certs::now());
                        s.last_error = None;
                        s.failures = 0;
                    });
                    tracing::info!(
                        domain = %name,
                        not_after = info.not_after,
                        "certificate issued by the local CA"
                    )
                }
                Err(e) => {
                    ctx.certs
                        .update_order(&name, |s| s.last_error = Some(e.to_string()));
                    tracing::warn!(domain = %name, "local certificate failed: {e}")
                }
            }
        }
    }
    tracing::debug!(names = looked_at, "certificates looked at");
}

/// One ACME order for `name`, its outcome recorded in the order state.
async fn order_one(ctx: &Ctx, acme: &acme::Acme, name: &str) {
    let result = acme
        .order(&ctx.certs, name)
        .await
        .and_then(|(chain, key, challenge)| {
            let info = ctx
                .certs
                .install(name, &chain, &key)
                .map_err(|e| e.to_string())?;
            Ok((info, challenge))
        });
    let now = certs::now();
    match result {
        Ok((info, challenge)) => {
            ctx.certs.update_order(name, |s| {
                s.in_flight = false;
                s.challenge = Some(challenge);
                s.obtained_at = Some(now);
                s.last_error = None;
                s.failures = 0;
                s.next_try = 0;
            });
            tracing::info!(domain = %name, issuer = %info.issuer, not_after = %rfc3339(info.not_after), "certificate obtained");
        }
        Err(e) => {
            let retry = ctx.certs.update_order(name, |s| {
                s.in_flight = false;
                s.failures += 1;
                s.next_try = now + backoff(s.failures);
                s.last_error = Some(format!(
                    "the certificate for {name} could not be obtained: {e}. Check that {name}'s DNS points at this server and that ports 80 and 443 reach paas"
                ));
                s.next_try
            });
            tracing::warn!(domain = %name, next_try = %rfc3339(retry), "certificate order failed: {e}");
        }
    }
}

/// How long a push waits for a new name's certificate before it goes on.
pub const PUSH_WAIT: Duration = Duration::from_secs(15);

/// What a push says of the certificates of the app's `hosts` once they are
/// live (the keeper orders them as the route table changes): each name's
/// certificate got, requested, or failed, waiting up to [`PUSH_WAIT`] for
/// those in flight. Also the app's URL: https once its first name has a
/// certificate.
pub async fn push_report(ctx: &Ctx, hosts: &[String]) -> (Option<String>, Vec<String>) {
    let Some(https) = ctx.config.https else {
        return (None, Vec::new());
    };
    let deadline = tokio::time::Instant::now() + PUSH_WAIT;
    let pending =
        |name: &String| !ctx.certs.serves(name) && ctx.certs.order_state(name).last_error.is_none();
    while hosts.iter().any(pending) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = certs::now();
    let mut lines = Vec::new();
    for name in hosts {
        let order = ctx.certs.order_state(name);
        let fresh = order.requested_at.is_some_and(|t| now - t < 3600);
        match ctx.certs.info(name) {
            Some(info) if info.valid_at(now) => {
                if fresh {
                    lines.push(format!(
                        "certificate for {name} obtained from {} (valid until {})",
                        info.issuer,
                        rfc3339(info.not_after)
                    ));
                }
            }
            _ => match &order.last_error {
                Some(e) => lines.push(format!("NO CERTIFICATE for {name}: {e}")),
                None if order.in_flight => lines.push(format!(
                    "certificate for {name} requested; `paas certs` shows when it is in (HTTPS for it starts then)"
                )),
                None => {}
            },
        }
    }
    let url = hosts
        .first()
        .filter(|h| ctx.certs.serves(h))
        .map(|h| match https.port() {
            443 => format!("https://{h}/"),
            port => format!("https://{h}:{port}/"),
        });
    (url, lines)
}

/// What `paas certs` shows of one name.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CertStatus {
    pub domain: String,
    /// valid, expired, missing.
    pub state: &'static str,
    pub issuer: Option<String>,
    /// RFC 3339, UTC.
    pub not_after: Option<String>,
    /// When it is renewed (RFC 3339, UTC).
    pub renew_at: Option<String>,
    pub last_error: Option<String>,
    /// Failed orders in a row (0 once one succeeds).
    pub failures: u32,
    /// When the next order may start after a failure (RFC 3339, UTC).
    pub next_try: Option<String>,
    pub requested_at: Option<String>,
    pub obtained_at: Option<String>,
    /// The ACME challenge the last certificate was got with.
    pub challenge: Option<&'static str>,
}

/// Unix seconds as RFC 3339 (UTC, whole seconds).
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// The certificate state of each of `names`.
pub fn status(ctx: &Ctx, names: &[String]) -> Vec<CertStatus> {
    let now = certs::now();
    names
        .iter()
        .map(|name| {
            let info = ctx.certs.info(name);
            let order = ctx.certs.order_state(name);
            let state = match &info {
                Some(i) if i.valid_at(now) => "valid",
                Some(_) => "expired",
                None => "missing",
            };
            CertStatus {
                domain: name.clone(),
                state,
                issuer: info.as_ref().map(|i| i.issuer.clone()),
                not_after: info.as_ref().map(|i| rfc3339(i.not_after)),
                renew_at: info.as_ref().map(|i| rfc3339(i.renew_at())),
                last_error: order.last_error.clone(),
                failures: order.failures,
                next_try: (order.last_error.is_some() && order.next_try > now)
                    .then(|| rfc3339(order.next_try)),
                requested_at: order.requested_at.map(rfc3339),
                obtained_at: order.obtained_at.map(rfc3339),
                challenge: order.challenge,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_when_a_third_of_the_lifetime_is_left() {
        let info = CertInfo {
            domain: "a.localhost".into(),
            issuer: "x".into(),
            not_before: 0,
            not_after: 90,
        };
        assert!(due(None, 0));
        assert!(!due(Some(&info), 0));
        assert!(!due(Some(&info), 59));
        assert!(due(Some(&info), 60));
        assert!(due(Some(&info), 91));
    }

    #[test]
    fn failed_orders_back_off_exponentially_up_to_a_day() {
        let waits: Vec<i64> = (1..=12).map(backoff).collect();
        assert_eq!(&waits[..5], &[60, 120, 240, 480, 960]);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert!(backoff(11) < MAX_RETRY);
        assert_eq!(backoff(12), MAX_RETRY);
        assert_eq!(backoff(u32::MAX), MAX_RETRY);
    }
}
