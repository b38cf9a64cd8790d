//! One ACME order (RFC 8555) with instant-acme: HTTP-01 answered by the
//! plain listener (`/.well-known/acme-challenge/`), TLS-ALPN-01 (RFC 8737)
//! by the TLS listener's resolver, each tried in turn. One account per
//! directory, kept in `<data-dir>/certs/acme-account.json` (0600).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::certs::Certs;

/// The account file, beside the certificates.
const ACCOUNT_FILE: &str = "acme-account.json";

/// How long an order may take, challenge and issuance included.
const ORDER_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the ACME server is and who the account is.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub directory: String,
    pub email: Option<String>,
    pub ca_file: Option<PathBuf>,
}

/// The ACME client of one daemon: its settings and, once made, its account.
pub struct Acme {
    settings: AcmeSettings,
    account: tokio::sync::Mutex<Option<Account>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

fn text(e: instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(p) => p.detail.clone().unwrap_or_else(|| format!("{p:?}")),
        other => other.to_string(),
    }
}

impl Acme {
    pub fn new(settings: AcmeSettings) -> Acme {
        Acme {
            settings,
            account: tokio::sync::Mutex::new(None),
        }
    }

    fn builder(&self) -> Result<instant_acme::AccountBuilder, String> {
        match &self.settings.ca_file {
            Some(root) => Account::builder_with_root(root),
            None => Account::builder(),
        }
        .map_err(|e| format!("cannot set up the ACME client: {}", text(e)))
    }

    /// The account: the stored one for this directory, or a new one
    /// (stored at once).
    async fn account(&self, certs: &Certs) -> Result<Account, String> {
        let mut slot = self.account.lock().await;
        if let Some(account) = &*slot {
            return Ok(account.clone());
        }
        let path = certs.dir().join(ACCOUNT_FILE);
        let stored: Option<StoredAccount> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|s: &StoredAccount| s.directory == self.settings.directory);
        let unreachable = |e: instant_acme::Error| {
            format!(
                "the ACME server at {} cannot be used: {}; check --acme-directory and that this machine reaches it",
                self.settings.directory,
                text(e)
            )
        };
        let account = match stored {
            Some(s) => self
                .builder()?
                .from_credentials(s.credentials)
                .await
                .map_err(unreachable)?,
            None => {
                let contact = self.settings.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, credentials) = self
                    .builder()?
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.settings.directory.clone(),
                        None,
                    )
                    .await
                    .map_err(unreachable)?;
                let stored = StoredAccount {
                    directory: self.settings.directory.clone(),
                    credentials,
                };
                let json = serde_json::to_vec_pretty(&stored).map_err(|e| e.to_string())?;
                crate::certs::write_private(&path, &json).map_err(|e| e.to_string())?;
                tracing::info!(directory = %self.settings.directory, "ACME account created");
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// Orders a certificate for `name`, HTTP-01 first, then TLS-ALPN-01:
    /// (chain PEM, key PEM, the challenge that passed), or why neither worked.
    pub async fn order(
        &self,
        certs: &Arc<Certs>,
        name: &str,
    ) -> Result<(String, String, &'static str), String> {
        let account = self.account(certs).await?;
        let mut reasons = Vec::new();
        for kind in [ChallengeType::Http01, ChallengeType::TlsAlpn01] {
            let attempt = tokio::time::timeout(
                ORDER_TIMEOUT,
                order_with(&account, certs, name, kind.clone()),
            );
            match attempt.await {
                Ok(Ok((chain, key))) => return Ok((chain, key, label(&kind))),
                Ok(Err(e)) => reasons.push(format!("{}: {e}", label(&kind))),
                Err(_) => reasons.push(format!(
                    "{}: no answer within {} s",
                    label(&kind),
                    ORDER_TIMEOUT.as_secs()
                )),
            }
            tracing::info!(domain = name, reason = %reasons.last().map_or("", String::as_str), "ACME challenge failed");
        }
        Err(reasons.join("; "))
    }
}

fn label(kind: &ChallengeType) -> &'static str {
    match kind {
        ChallengeType::Http01 => "http-01",
        ChallengeType::TlsAlpn01 => "tls-alpn-01",
        _ => "challenge",
    }
}

/// Removes what a challenge put up when the order ends, however it ends.
struct ChallengeCleanup<'a> {
    certs: &'a Certs,
    http_token: Option<String>,
    alpn_name: Option<String>,
}

impl Drop for ChallengeCleanup<'_> {
    fn drop(&mut self) {
        if let Some(token) = &self.http_token {
            self.certs.clear_http_challenge(token);
        }
        if let Some(name) = &self.alpn_name {
            self.certs.clear_alpn_challenge(name);
        }
    }
}

/// The TLS-ALPN-01 certificate for `name`: self-signed, the name as its
/// only SAN, and the critical acmeIdentifier extension.
fn alpn_certificate(name: &str, digest: &[u8]) -> Result<rustls::sign::CertifiedKey, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_string()]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `CertifiedKey::from_der`: its key check parses the certificate
    // with webpki, which refuses the critical acmeIdentifier extension.
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| e.to_string())?;
    Ok(rustls::sign::CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing_key,
    ))
}

async fn order_with(
    account: &Account,
    certs: &Arc<Certs>,
    name: &str,
    kind: ChallengeType,
) -> Result<(String, String), String> {
    let identifiers = [Identifier::Dns(name.to_string())];
    let mut order = account
        .new_order(&NewOrder::new(&identifiers))
        .await
        .map_err(text)?;
    let mut cleanup = ChallengeCleanup {
        certs,
        http_token: None,
        alpn_name: None,
    };
    {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(text)?;
            match authz.status {
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => return Err(format!("the authorization is {other:?}")),
            }
            let mut challenge = authz
                .challenge(kind.clone())
                .ok_or_else(|| format!("the ACME server offers no {} challenge", label(&kind)))?;
            let key_authorization = challenge.key_authorization();
            match kind {
                ChallengeType::Http01 => {
                    certs.set_http_challenge(&challenge.token, key_authorization.as_str());
                    cleanup.http_token = Some(challenge.token.clone());
                }
                _ => {
                    let key = alpn_certificate(name, key_authorization.digest().as_ref())?;
                    certs.set_alpn_challenge(name, Arc::new(key));
                    cleanup.alpn_name = Some(name.to_string());
                }
            }
            challenge.set_ready().await.map_err(text)?;
        }
    }
    let retry = RetryPolicy::new().timeout(ORDER_TIMEOUT);
    let status = order.poll_ready(&retry).await.map_err(text)?;
    if status != OrderStatus::Ready {
        // The reason is on the challenge.
        let mut why = format!("the order is {status:?}");
        let mut authorizations = order.authorizations();
        while let Some(Ok(mut authz)) = authorizations.next().await {
            if let Ok(state) = authz.refresh().await {
                if let Some(detail) = state
                    .challenges
                    .iter()
                    .filter_map(|c| c.error.as_ref())
                    .find_map(|p| p.detail.clone())
                {
                    why = detail;
                }
            }
        }
        return Err(why);
    }
    let key_pem = order.finalize().await.map_err(text)?;
    let chain_pem = order.poll_certificate(&retry).await.map_err(text)?;
    drop(cleanup);
    Ok((chain_pem, key_pem))
}

/// Where the account file is (for tests and the report).
pub fn account_path(certs_dir: &Path) -> PathBuf {
    certs_dir.join(ACCOUNT_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_alpn_certificate_carries_the_critical_acme_identifier() {
        let key = alpn_certificate("a.example.test", &[7u8; 32]).unwrap();
        let der = key.end_entity_cert().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        let acme = cert
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31")
            .expect("the acmeIdentifier extension");
        assert!(acme.critical);
        // An OCTET STRING of the 32-byte digest.
        assert_eq!(&acme.value[..2], &[0x04, 32]);
        assert_eq!(&acme.value[2..], &[7u8; 32]);
    }
}
