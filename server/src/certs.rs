//! Certificates: the store under `<data-dir>/certs/`, the SNI resolver the
//! TLS listener asks on every handshake, and paas's own local CA for names
//! under `localhost` (like Caddy's internal issuer).
//!
//! The resolver reads one [`ArcSwap`] snapshot of domain → certificate: a
//! certificate installed by [`Certs::install`] (a first issue, a renewal) is
//! served by the next handshake, without a restart. Files are the daemon's
//! own: the folder 0700, every file 0600 (the umask set at start, and the
//! mode set again on write).
//!
//! Layout: `certs/live/<domain>.crt` (the chain, leaf first) and
//! `certs/live/<domain>.key` (PKCS#8), `certs/local-ca/root.{crt,key}`,
//! `certs/orders.json` (each name's last order: its error and when the next
//! may start, so a failure's backoff outlives a daemon restart), and
//! whatever the ACME client keeps beside them (its account).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// How long a certificate of the local CA is valid.
const LOCAL_LEAF_DAYS: i64 = 30;
/// How long the local CA's root is valid.
const LOCAL_ROOT_DAYS: i64 = 3650;
/// The issuer name of the local CA's certificates.
pub const LOCAL_ISSUER: &str = "paas local CA";

/// A certificate problem, said so the owner can act on it.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot write {path}: {source}; check that the data dir is writable by paas")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the certificate for {domain} is not usable: {reason}")]
    Invalid { domain: String, reason: String },
    #[error("{0:?} is not a domain paas keeps certificates for")]
    BadName(String),
    #[error("the local CA could not make a certificate: {0}")]
    LocalCa(String),
}

/// What paas knows of one stored certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    pub domain: String,
    /// The issuer's common name (or its whole name when it has none).
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    /// Unix seconds.
    pub not_after: i64,
}

impl CertInfo {
    /// When a renewal is due: once a third of the lifetime is left.
    pub fn renew_at(&self) -> i64 {
        self.not_after - (self.not_after - self.not_before) / 3
    }

    /// Valid now (not expired, already started).
    pub fn valid_at(&self, now: i64) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// Where getting a certificate for one name stands. Kept in memory and, but
/// for `in_flight` and `orders`, in `orders.json`: a restarted daemon keeps
/// a failure's backoff and shows its error.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OrderState {
    /// An order is running for this name now.
    pub in_flight: bool,
    /// When the last order started (unix seconds).
    pub requested_at: Option<i64>,
    /// When the last certificate was got (unix seconds).
    pub obtained_at: Option<i64>,
    /// Why the last order failed, if it did and none succeeded since.
    pub last_error: Option<String>,
    /// Failed orders in a row.
    pub failures: u32,
    /// No new order before this (unix seconds; 0: any time).
    pub next_try: i64,
    /// Orders started since the daemon started.
    pub orders: u64,
    /// The ACME challenge the last certificate was got with (http-01,
    /// tls-alpn-01); none for the local CA.
    pub challenge: Option<&'static str>,
}

/// One certificate the resolver serves.
struct Live {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

type LiveMap = HashMap<String, Arc<Live>>;

/// The certificate store and what the TLS listener reads of it.
pub struct Certs {
    dir: PathBuf,
    /// Read lock-free on every handshake.
    live: ArcSwap<LiveMap>,
    /// TLS-ALPN-01 challenge certificates, by domain: served only to a
    /// client that offers `acme-tls/1` and nothing else is on them.
    alpn: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    /// HTTP-01 challenges: token → key authorization.
    http: ArcSwap<HashMap<String, String>>,
    /// Serialises writers of the three maps and of the files.
    writer: Mutex<()>,
    /// Orders by name.
    orders: Mutex<HashMap<String, OrderState>>,
    /// The local CA, once loaded or made.
    local_ca: OnceLock<LocalCa>,
    /// The name whose certificate a client that sends no SNI gets (the
    /// control host).
    without_sni: OnceLock<String>,
    /// Wakes the certificate keeper for a look now (a domain removed, an
    /// app destroyed).
    wake: tokio::sync::Notify,
}

/// The file of the order states, beside the certificates.
const ORDERS_FILE: &str = "orders.json";

/// What `orders.json` keeps of one name's [`OrderState`].
#[derive(Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct StoredOrder {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    obtained_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<String>,
    #[serde(default)]
    failures: u32,
    #[serde(default)]
    next_try: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    challenge: Option<String>,
}

/// The challenge names an order state may hold.
fn challenge_label(name: &str) -> Option<&'static str> {
    ["http-01", "tls-alpn-01"].into_iter().find(|c| *c == name)
}

/// The order states as `orders.json` keeps them: what outlives a restart
/// (not whether an order is in flight, nor the count since the start),
/// names with nothing to keep left out, sorted by name.
fn orders_to_json(orders: &HashMap<String, OrderState>) -> Vec<u8> {
    let stored: BTreeMap<&str, StoredOrder> = orders
        .iter()
        .map(|(name, s)| {
            let kept = StoredOrder {
                requested_at: s.requested_at,
                obtained_at: s.obtained_at,
                last_error: s.last_error.clone(),
                failures: s.failures,
                next_try: s.next_try,
                challenge: s.challenge.map(str::to_string),
            };
            (name.as_str(), kept)
        })
        .filter(|(_, kept)| *kept != StoredOrder::default())
        .collect();
    serde_json::to_vec_pretty(&stored).expect("order states serialise")
}

/// The order states `orders.json` holds; names paas cannot keep
/// certificates for are dropped.
fn orders_from_json(bytes: &[u8]) -> Result<HashMap<String, OrderState>, String> {
    let stored: BTreeMap<String, StoredOrder> =
        serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(stored
        .into_iter()
        .filter(|(name, _)| check_name(name).is_ok())
        .map(|(name, s)| {
            let state = OrderState {
                requested_at: s.requested_at,
                obtained_at: s.obtained_at,
                last_error: s.last_error,
                failures: s.failures,
                next_try: s.next_try,
                challenge: s.challenge.as_deref().and_then(challenge_label),
                ..OrderState::default()
            };
            (name, state)
        })
        .collect())
}

impl std::fmt::Debug for Certs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certs")
            .field("dir", &self.dir)
            .field("live", &self.live.load().keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whether paas's local CA (not ACME) serves this name.
pub fn is_local(domain: &str) -> bool {
    domain == "localhost" || domain.ends_with(".localhost")
}

/// A host name safe as a file name: letters, digits, `-` and `.`, no
/// leading dot, no empty label.
fn check_name(domain: &str) -> Result<(), CertError> {
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && domain.split('.').all(|l| !l.is_empty());
    if ok {
        Ok(())
    } else {
        Err(CertError::BadName(domain.to_string()))
    }
}

fn provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Writes `bytes` to `path` through a temporary file and a rename (a reader
/// never sees half a file), mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CertError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn private_dir(path: &Path) -> Result<(), CertError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| CertError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

/// The domain a file of `live/` belongs to: `<domain>.crt`, `<domain>.key`,
/// or either half-written (`.tmp`).
fn pair_name(file: &str) -> Option<&str> {
    let file = file.strip_suffix(".tmp").unwrap_or(file);
    file.strip_suffix(".crt")
        .or_else(|| file.strip_suffix(".key"))
        .filter(|name| check_name(name).is_ok())
}

/// Parses a PEM chain and key into what rustls serves, and reads the leaf.
fn parse_pair(domain: &str, chain_pem: &str, key_pem: &str) -> Result<Live, CertError> {
    let invalid = |reason: String| CertError::Invalid {
        domain: domain.to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("its chain is not PEM ({e})")))?;
    let Some(leaf) = chain.first() else {
        return Err(invalid("its chain is empty".into()));
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| invalid(format!("its key is not PEM ({e})")))?;
    let info = read_leaf(domain, leaf).map_err(invalid)?;
    let key = CertifiedKey::from_der(chain, key, provider())
        .map_err(|e| invalid(format!("its key does not fit ({e})")))?;
    Ok(Live {
        key: Arc::new(key),
        info,
    })
}

/// The issuer and validity of a leaf certificate.
fn read_leaf(domain: &str, der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("its certificate cannot be read ({e})"))?;
    let issuer = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok().map(str::to_string))
        .unwrap_or_else(|| cert.issuer().to_string());
    let validity = cert.validity();
    Ok(CertInfo {
        domain: domain.to_string(),
        issuer,
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
    })
}

impl Certs {
    /// A store over `dir` (`<data-dir>/certs`); nothing is read until [`Certs::load`].
    pub fn new(dir: PathBuf) -> Certs {
        Certs {
            dir,
            live: ArcSwap::default(),
            alpn: ArcSwap::default(),
            http: ArcSwap::default(),
            writer: Mutex::new(()),
            orders: Mutex::default(),
            local_ca: OnceLock::new(),
            without_sni: OnceLock::new(),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Serves `name`'s certificate to clients that send no SNI name (the
    /// control host's: a client that connects by address gets a
    /// certificate, and nothing is ordered for it). Set once.
    pub fn serve_without_sni(self, name: String) -> Certs {
        let _ = self.without_sni.set(name);
        self
    }

    /// Asks the certificate keeper for a look now (a name was given up).
    pub fn look_again(&self) {
        self.wake.notify_one();
    }

    /// Resolves when [`Certs::look_again`] was called (once per call, none lost).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// The folder (for the ACME account and the like).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn live_dir(&self) -> PathBuf {
        self.dir.join("live")
    }

    /// Makes the folders (0700) and loads every stored certificate; a pair
    /// that cannot be used is skipped with a warning (it is ordered again).
    pub fn load(&self) -> Result<usize, CertError> {
        private_dir(&self.dir)?;
        private_dir(&self.live_dir())?;
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let dir = self.live_dir();
        let entries = std::fs::read_dir(&dir).map_err(|source| CertError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut map = LiveMap::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "crt") {
                continue;
            }
            let Some(domain) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            if check_name(domain).is_err() {
                continue;
            }
            let pair = std::fs::read_to_string(&path).and_then(|chain| {
                Ok((chain, std::fs::read_to_string(path.with_extension("key"))?))
            });
            match pair
                .map_err(|e| e.to_string())
                .and_then(|(c, k)| parse_pair(domain, &c, &k).map_err(|e| e.to_string()))
            {
                Ok(live) => {
                    map.insert(domain.to_string(), Arc::new(live));
                }
                Err(e) => tracing::warn!(domain, "stored certificate skipped: {e}"),
            }
        }
        let n = map.len();
        self.live.store(Arc::new(map));
        drop(_w);
        self.load_orders();
        Ok(n)
    }

    fn orders_path(&self) -> PathBuf {
        self.dir.join(ORDERS_FILE)
    }

    /// Reads `orders.json` (a missing file: no order yet; an unreadable
    /// one is said and ignored: the next failure writes it anew).
    fn load_orders(&self) {
        let path = self.orders_path();
        let loaded = match std::fs::read(&path) {
            Ok(bytes) => orders_from_json(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => Err(e.to_string()),
        };
        match loaded {
            Ok(stored) => {
                let mut orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
                *orders = stored;
            }
            Err(e) => tracing::warn!(
                path = %path.display(),
                "the order states cannot be read, so past failures wait no longer: {e}"
            ),
        }
    }

    /// Writes the order states (called with them locked).
    fn save_orders(&self, orders: &HashMap<String, OrderState>) {
        if let Err(e) = write_private(&self.orders_path(), &orders_to_json(orders)) {
            tracing::warn!("the order states were not saved: {e}");
        }
    }

    /// Stores a chain and its key for `domain` (0600) and serves it from
    /// the next handshake on.
    pub fn install(
        &self,
        domain: &str,
        chain_pem: &str,
        key_pem: &str,
    ) -> Result<CertInfo, CertError> {
        check_name(domain)?;
        let live = parse_pair(domain, chain_pem, key_pem)?;
        let info = live.info.clone();
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        private_dir(&self.live_dir())?;
        let dir = self.live_dir();
        write_private(&dir.join(format!("{domain}.key")), key_pem.as_bytes())?;
        write_private(&dir.join(format!("{domain}.crt")), chain_pem.as_bytes())?;
        let mut map = LiveMap::clone(&self.live.load());
        map.insert(domain.to_string(), Arc::new(live));
        self.live.store(Arc::new(map));
        Ok(info)
    }

    /// The stored certificate of `domain`, if any (valid or not).
    pub fn info(&self, domain: &str) -> Option<CertInfo> {
        self.live.load().get(domain).map(|l| l.info.clone())
    }

    /// Every stored certificate, sorted by domain.
    pub fn all(&self) -> Vec<CertInfo> {
        let mut all: Vec<_> = self.live.load().values().map(|l| l.info.clone()).collect();
        all.sort_by(|a, b| a.domain.cmp(&b.domain));
        all
    }

    /// Whether a certificate valid now is served for `domain` (then plain
    /// HTTP for it redirects to HTTPS).
    pub fn serves(&self, domain: &str) -> bool {
        self.live
            .load()
            .get(domain)
            .is_some_and(|l| l.info.valid_at(now()))
    }

    /// Where ordering `domain`'s certificate stands.
    pub fn order_state(&self, domain: &str) -> OrderState {
        let orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        orders.get(domain).cloned().unwrap_or_default()
    }

    /// Changes `domain`'s order state under the lock, and saves the states
    /// when what `orders.json` keeps of it changed; returns what `f` returns.
    pub fn update_order<T>(&self, domain: &str, f: impl FnOnce(&mut OrderState) -> T) -> T {
        let mut orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        let state = orders.entry(domain.to_string()).or_default();
        let before = state.clone();
        let out = f(state);
        let kept = |s: &OrderState| OrderState {
            in_flight: false,
            orders: 0,
            ..s.clone()
        };
        if kept(&before) != kept(state) {
            self.save_orders(&orders);
        }
        out
    }

    /// Forgets every certificate and order state of a name not in `owned`
    /// (a removed domain, a destroyed app's names): its files go from
    /// `live/`, it is no longer served, so never renewed. A name whose
    /// order is in flight keeps its state until the order ends (the look
    /// after it forgets what it got). Returns the names forgotten, sorted.
    pub fn forget_unowned(&self, owned: &HashSet<String>) -> Vec<String> {
        let mut gone = std::collections::BTreeSet::new();
        {
            let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let live = self.live.load();
            if live.keys().any(|name| !owned.contains(name)) {
                let kept: LiveMap = live
                    .iter()
                    .filter(|(name, _)| owned.contains(*name))
                    .map(|(name, l)| (name.clone(), l.clone()))
                    .collect();
                gone.extend(live.keys().filter(|n| !owned.contains(*n)).cloned());
                self.live.store(Arc::new(kept));
            }
            // The files too, loaded or not (a pair that could not be used).
            if let Ok(entries) = std::fs::read_dir(self.live_dir()) {
                for e in entries.flatten() {
                    let path = e.path();
                    let Some(name) = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(pair_name)
                    else {
                        continue;
                    };
                    if owned.contains(name) {
                        continue;
                    }
                    match std::fs::remove_file(&path) {
                        Ok(()) => {
                            gone.insert(name.to_string());
                        }
                        Err(e) => tracing::warn!(
                            path = %path.display(),
                            "the certificate of a name paas no longer serves was not removed: {e}"
                        ),
                    }
                }
            }
        }
        let mut orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        let before = orders.len();
        orders.retain(|name, s| {
            let keep = owned.contains(name) || s.in_flight;
            if !keep {
                gone.insert(name.clone());
            }
            keep
        });
        if orders.len() != before {
            self.save_orders(&orders);
        }
        gone.into_iter().collect()
    }

    /// Answers TLS-ALPN-01 for `domain` with `key` until [`Certs::clear_alpn_challenge`].
    pub fn set_alpn_challenge(&self, domain: &str, key: Arc<CertifiedKey>) {
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut map = HashMap::clone(&self.alpn.load());
        map.insert(domain.to_string(), key);
        self.alpn.store(Arc::new(map));
    }

    pub fn clear_alpn_challenge(&self, domain: &str) {
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut map = HashMap::clone(&self.alpn.load());
        map.remove(domain);
        self.alpn.store(Arc::new(map));
    }

    /// Answers HTTP-01 for `token` with `key_authorization`.
    pub fn set_http_challenge(&self, token: &str, key_authorization: &str) {
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut map = HashMap::clone(&self.http.load());
        map.insert(token.to_string(), key_authorization.to_string());
        self.http.store(Arc::new(map));
    }

    pub fn clear_http_challenge(&self, token: &str) {
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut map = HashMap::clone(&self.http.load());
        map.remove(token);
        self.http.store(Arc::new(map));
    }

    /// The key authorization for an HTTP-01 token, if a challenge is open.
    pub fn http_challenge(&self, token: &str) -> Option<String> {
        self.http.load().get(token).cloned()
    }

    /// The local CA, loaded from disk or made on first use.
    pub fn local_ca(&self) -> Result<&LocalCa, CertError> {
        if let Some(ca) = self.local_ca.get() {
            return Ok(ca);
        }
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(ca) = self.local_ca.get() {
            return Ok(ca);
        }
        let ca = LocalCa::load_or_create(&self.dir.join("local-ca"))?;
        Ok(self.local_ca.get_or_init(|| ca))
    }

    /// Issues and installs a certificate of the local CA for `domain`.
    pub fn issue_local(&self, domain: &str) -> Result<CertInfo, CertError> {
        check_name(domain)?;
        let (chain, key) = self.local_ca()?.issue(domain)?;
        self.install(domain, &chain, &key)
    }

    /// The TLS configuration of the HTTPS listener: certificates by SNI
    /// from this store, HTTP/2 and HTTP/1.1 by ALPN (and `acme-tls/1` for
    /// the ACME validator only).
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider().clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        Arc::new(config)
    }
}

/// Picks the certificate of a handshake by its SNI name.
#[derive(Debug)]
struct Resolver(Arc<Certs>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        let Some(name) = hello.server_name() else {
            // No SNI (a client that connects by address): the control
            // host's certificate, never a challenge's, never an order.
            if acme {
                return None;
            }
            let name = self.0.without_sni.get()?;
            return self.0.live.load().get(name).map(|l| l.key.clone());
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if acme {
            return self.0.alpn.load().get(&name).cloned();
        }
        self.0.live.load().get(&name).map(|l| l.key.clone())
    }
}

/// paas's own certificate authority for names under `localhost`.
pub struct LocalCa {
    root_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

fn ca_err(e: rcgen::Error) -> CertError {
    CertError::LocalCa(e.to_string())
}

fn days_from_now(days: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(days)
}

impl LocalCa {
    fn load_or_create(dir: &Path) -> Result<LocalCa, CertError> {
        let (crt, key) = (dir.join("root.crt"), dir.join("root.key"));
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| CertError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        if crt.exists() && key.exists() {
            let root_pem = read(&crt)?;
            let key = rcgen::KeyPair::from_pem(&read(&key)?).map_err(ca_err)?;
            let issuer = rcgen::Issuer::from_ca_cert_pem(&root_pem, key).map_err(ca_err)?;
            return Ok(LocalCa { root_pem, issuer });
        }
        private_dir(dir)?;
        let key = rcgen::KeyPair::generate().map_err(ca_err)?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(ca_err)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{LOCAL_ISSUER} root"));
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "paas");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        // Only names under localhost: a leaked root signs nothing else a
        // client would accept.
        params.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("localhost".into())],
            excluded_subtrees: vec![],
        });
        params.not_before = days_from_now(-1);
        params.not_after = days_from_now(LOCAL_ROOT_DAYS);
        let cert = params.self_signed(&key).map_err(ca_err)?;
        let root_pem = cert.pem();
        write_private(&dir.join("root.key"), key.serialize_pem().as_bytes())?;
        write_private(&crt, root_pem.as_bytes())?;
        let issuer = rcgen::Issuer::new(params, key);
        Ok(LocalCa { root_pem, issuer })
    }

    /// The root certificate to trust (PEM).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// A leaf certificate for `domain`: (chain PEM, key PEM).
    pub fn issue(&self, domain: &str) -> Result<(String, String), CertError> {
        let key = rcgen::KeyPair::generate().map_err(ca_err)?;
        let mut params = rcgen::CertificateParams::new(vec![domain.to_string()]).map_err(ca_err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, domain);
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = days_from_now(-1);
        params.not_after = days_from_now(LOCAL_LEAF_DAYS);
        let cert = params.signed_by(&key, &self.issuer).map_err(ca_err)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn local_ca_issues_certificates_that_are_stored_private_and_reloaded() {
        let tmp = tempfile::tempdir().unwrap();
        let certs = Arc::new(Certs::new(tmp.path().join("certs")));
        assert_eq!(certs.load().unwrap(), 0);
        assert!(!certs.serves("blog.localhost"));
        let info = certs.issue_local("blog.localhost").unwrap();
        assert_eq!(info.issuer, "paas local CA root");
        let life = info.not_after - info.not_before;
        assert!(life > 29 * 86400, "{info:?}");
        assert!(info.renew_at() > now() && info.renew_at() < info.not_after);
        assert!(certs.serves("blog.localhost"));
        assert!(!certs.serves("other.localhost"));
        for f in [
            "live/blog.localhost.crt",
            "live/blog.localhost.key",
            "local-ca/root.key",
        ] {
            assert_eq!(mode(&tmp.path().join("certs").join(f)), 0o600, "{f}");
        }
        for d in ["", "live", "local-ca"] {
            assert_eq!(mode(&tmp.path().join("certs").join(d)), 0o700, "{d}");
        }
        // A second store over the same folder (a daemon restart) serves the
        // same certificate and signs with the same root.
        let root = certs.local_ca().unwrap().root_pem().to_string();
        let again = Arc::new(Certs::new(tmp.path().join("certs")));
        assert_eq!(again.load().unwrap(), 1);
        assert_eq!(again.info("blog.localhost"), Some(info));
        assert_eq!(again.local_ca().unwrap().root_pem(), root);
        again.issue_local("shop.localhost").unwrap();
        assert_eq!(again.all().len(), 2);
    }

    #[test]
    fn bad_pairs_and_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let certs = Certs::new(tmp.path().join("certs"));
        certs.load().unwrap();
        for bad in ["../x", "", "a..b", "A.localhost", "x/y"] {
            assert!(
                matches!(certs.issue_local(bad), Err(CertError::BadName(_))),
                "{bad}"
            );
        }
        let ca = certs.local_ca().unwrap();
        let (chain, _) = ca.issue("a.localhost").unwrap();
        let (_, other_key) = ca.issue("b.localhost").unwrap();
        let e = certs
            .install("a.localhost", &chain, &other_key)
            .unwrap_err();
        assert!(e.to_string().contains("does not fit"), "{e}");
        let e = certs
            .install("a.localhost", "junk", &other_key)
            .unwrap_err();
        assert!(e.to_string().contains("chain is empty"), "{e}");
        assert!(certs.all().is_empty());
        // A half-written pair on disk is skipped, not fatal.
        std::fs::write(tmp.path().join("certs/live/c.localhost.crt"), &chain).unwrap();
        assert_eq!(certs.load().unwrap(), 0);
    }

    #[test]
    fn order_states_outlive_a_restart_in_a_private_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let certs = Certs::new(dir.clone());
        certs.load().unwrap();
        // Nothing worth keeping yet: no file.
        certs.update_order("www.example.test", |s| s.in_flight = true);
        assert!(!dir.join(ORDERS_FILE).exists());
        certs.update_order("www.example.test", |s| {
            s.in_flight = false;
            s.orders += 1;
            s.requested_at = Some(100);
            s.failures = 2;
            s.next_try = 340;
            s.last_error = Some("no answer".into());
        });
        certs.update_order("ok.example.test", |s| {
            s.obtained_at = Some(90);
            s.challenge = Some("tls-alpn-01");
        });
        assert_eq!(mode(&dir.join(ORDERS_FILE)), 0o600);

        // A restarted daemon: the failure, its count and its wait are
        // back; what only a running daemon knows is not.
        let again = Certs::new(dir.clone());
        again.load().unwrap();
        let s = again.order_state("www.example.test");
        assert_eq!(
            s,
            OrderState {
                requested_at: Some(100),
                last_error: Some("no answer".into()),
                failures: 2,
                next_try: 340,
                ..OrderState::default()
            }
        );
        assert_eq!(
            again.order_state("ok.example.test").challenge,
            Some("tls-alpn-01")
        );

        // What paas cannot use is dropped: a bad name, an unknown challenge.
        let json =
            br#"{"../x": {"failures": 1}, "a.test": {"challenge": "dns-01", "failures": 1}}"#;
        let read = orders_from_json(json).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read["a.test"].challenge, None);
        assert_eq!(read["a.test"].failures, 1);
        // A file that cannot be read starts empty, not fatal.
        std::fs::write(dir.join(ORDERS_FILE), "{ not json").unwrap();
        let broken = Certs::new(dir);
        assert_eq!(broken.load().unwrap(), 0);
        assert_eq!(
            broken.order_state("www.example.test"),
            OrderState::default()
        );
    }

    #[test]
    fn names_no_longer_owned_are_forgotten_files_and_all() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let certs = Certs::new(dir.clone());
        certs.load().unwrap();
        for name in ["a.localhost", "b.localhost", "paas.localhost"] {
            certs.issue_local(name).unwrap();
        }
        let (chain, _) = certs.local_ca().unwrap().issue("c.localhost").unwrap();
        // A pair half written, and a file that is no pair.
        std::fs::write(dir.join("live/c.localhost.crt.tmp"), &chain).unwrap();
        std::fs::write(dir.join("live/notes.txt"), "mine").unwrap();
        certs.update_order("b.localhost", |s| s.last_error = Some("x".into()));
        certs.update_order("d.example.test", |s| {
            s.in_flight = true;
            s.failures = 1;
        });
        certs.update_order("e.example.test", |s| s.failures = 1);

        let owned: HashSet<String> = ["a.localhost", "paas.localhost"].map(String::from).into();
        let gone = certs.forget_unowned(&owned);
        assert_eq!(gone, ["b.localhost", "c.localhost", "e.example.test"]);
        assert!(certs.serves("a.localhost") && certs.serves("paas.localhost"));
        assert!(!certs.serves("b.localhost"));
        assert_eq!(certs.all().len(), 2);
        let mut files: Vec<String> = std::fs::read_dir(dir.join("live"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "a.localhost.crt",
                "a.localhost.key",
                "notes.txt",
                "paas.localhost.crt",
                "paas.localhost.key"
            ]
        );
        // An order in flight keeps its state until it ends.
        assert!(certs.order_state("d.example.test").in_flight);
        assert_eq!(certs.order_state("b.localhost"), OrderState::default());
        // A second pass has nothing left to forget; a restart finds the same.
        assert!(certs.forget_unowned(&owned).is_empty());
        let again = Certs::new(dir);
        assert_eq!(again.load().unwrap(), 2);
        assert_eq!(again.order_state("e.example.test"), OrderState::default());
        assert_eq!(again.order_state("d.example.test").failures, 1);
    }

    #[test]
    fn live_files_are_told_apart_by_name() {
        assert_eq!(pair_name("a.example.com.crt"), Some("a.example.com"));
        assert_eq!(pair_name("a.crt.example.key"), Some("a.crt.example"));
        assert_eq!(pair_name("a.example.com.key.tmp"), Some("a.example.com"));
        assert_eq!(pair_name("notes.txt"), None);
        assert_eq!(pair_name(".crt"), None);
        assert_eq!(pair_name("A.example.crt"), None);
    }
}
