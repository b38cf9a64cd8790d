//! The certificate keeper: every name paas serves (each app's hosts, and
//! the control host `paas.<domain>`) has a certificate, got when the name
//! goes live and renewed when a third of its lifetime is left.
//!
//! Only names in the route table (and the control host) are ever issued:
//! a stranger's Host header or SNI name never starts an order. Names under
//! `localhost` are signed by paas's local CA at once.

use std::sync::Arc;
use std::time::Duration;

use crate::certs::{self, CertInfo};
use crate::ctx::Ctx;

/// The longest the keeper sleeps between two looks (renewals are checked
/// at least this often, whatever else happens).
pub const CHECK_EVERY: Duration = Duration::from_secs(3600);

/// The names that should have a certificate now, sorted.
pub fn wanted_names(ctx: &Ctx) -> Vec<String> {
    let mut names = ctx.routes.hosts();
    names.push(ctx.config.control_host());
    names.sort();
    names.dedup();
    names
}

/// Whether `info` (the stored certificate, if any) needs a new one at `now`.
pub fn due(info: Option<&CertInfo>, now: i64) -> bool {
    match info {
        None => true,
        Some(info) => now >= info.renew_at() || !info.valid_at(now),
    }
}

/// Runs the keeper until the daemon stops: a look at start, at every
/// change of the route table, and at least every [`CHECK_EVERY`].
pub fn spawn_keeper(ctx: Arc<Ctx>) {
    tokio::spawn(async move {
        let mut changes = ctx.routes.changes();
        loop {
            keep(&ctx);
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    });
}

/// One look: issues what is missing or due.
pub fn keep(ctx: &Ctx) {
    let now = certs::now();
    for name in wanted_names(ctx) {
        if !due(ctx.certs.info(&name).as_ref(), now) {
            continue;
        }
        if certs::is_local(&name) {
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
    /// When the next order may start after a failure (RFC 3339, UTC).
    pub next_try: Option<String>,
    pub requested_at: Option<String>,
    pub obtained_at: Option<String>,
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
                next_try: (order.last_error.is_some() && order.next_try > now)
                    .then(|| rfc3339(order.next_try)),
                requested_at: order.requested_at.map(rfc3339),
                obtained_at: order.obtained_at.map(rfc3339),
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
}
