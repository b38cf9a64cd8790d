//! Small static files of a release, served from memory.
//!
//! A release's static dir never changes once it is live (each release has its
//! own), so its small files can be read once and answered from memory: no
//! blocking-pool hop, no `stat`, no `open` per request. The cache belongs to a
//! route, so a new release starts empty and the old one's goes with it.
//! Anything unusual — a Range request, percent-encoded or odd paths, big
//! files, a full cache — is left to [`super::files`], which stays the reference.
//! Like it, the cache opens files without following symlinks.

use arc_swap::ArcSwap;
use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Files larger than this are streamed from disk.
pub const MAX_FILE: u64 = 256 * 1024;
/// Bytes a release's cache may hold, variants included.
pub const MAX_TOTAL: usize = 32 * 1024 * 1024;

/// One file and its precompressed variants.
#[derive(Debug)]
struct Cached {
    identity: Bytes,
    br: Option<Bytes>,
    gzip: Option<Bytes>,
    content_type: HeaderValue,
    etag: HeaderValue,
}

/// What a lookup found.
pub enum Lookup {
    /// Answer with this.
    Hit(Response<Bytes>),
    /// Not cacheable (or not there): ask [`super::files`].
    Pass,
}

#[derive(Debug)]
pub struct StaticCache {
    dir: PathBuf,
    files: ArcSwap<HashMap<String, Arc<Cached>>>,
    bytes: AtomicUsize,
}

impl StaticCache {
    pub fn new(dir: PathBuf) -> StaticCache {
        StaticCache {
            dir,
            files: ArcSwap::from_pointee(HashMap::new()),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Answers `rest` (the path below the mount's prefix) from memory,
    /// reading it from disk on first use.
    pub async fn lookup(&self, method: &Method, rest: &str, headers: &HeaderMap) -> Lookup {
        if (method != Method::GET && method != Method::HEAD)
            || headers.contains_key(header::RANGE)
            || !plain_path(rest)
        {
            return Lookup::Pass;
        }
        let file = match self.files.load().get(rest) {
            Some(f) => f.clone(),
            None => match self.fill(rest).await {
                Some(f) => f,
                None => return Lookup::Pass,
            },
        };
        Lookup::Hit(respond(&file, method, headers))
    }

    async fn fill(&self, rest: &str) -> Option<Arc<Cached>> {
        if self.bytes.load(Ordering::Relaxed) >= MAX_TOTAL {
            return None;
        }
        let (dir, rel) = (self.dir.clone(), PathBuf::from(rest));
        let (identity, br, gzip) = tokio::task::spawn_blocking(move || {
            let identity = read_small(&dir, &rel)?;
            let br = read_small(&dir, &variant(&rel, "br"));
            let gzip = read_small(&dir, &variant(&rel, "gz"));
            Some((identity, br, gzip))
        })
        .await
        .ok()??;
        let size = identity.len()
            + br.as_ref().map_or(0, Bytes::len)
            + gzip.as_ref().map_or(0, Bytes::len);
        let digest = Sha256::digest(&identity);
        let etag = format!("\"{}\"", hex16(&digest));
        let mime = mime_guess::from_path(rest).first_or_octet_stream();
        let file = Arc::new(Cached {
            identity,
            br,
            gzip,
            content_type: HeaderValue::from_str(mime.as_ref()).ok()?,
            etag: HeaderValue::from_str(&etag).ok()?,
        });
        self.bytes.fetch_add(size, Ordering::Relaxed);
        self.files.rcu(|old| {
            let mut map = HashMap::clone(old);
            map.insert(rest.to_string(), file.clone());
            map
        });
        Some(file)
    }

    /// Files in memory.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.files.load().len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A regular file of at most [`MAX_FILE`] bytes below `dir`, opened
/// without following symlinks ([`crate::beneath::open_file`]).
fn read_small(dir: &Path, rel: &Path) -> Option<Bytes> {
    use std::io::Read;
    let file = crate::beneath::open_file(dir, rel).ok()?;
    if file.metadata().ok()?.len() > MAX_FILE {
        return None;
    }
    let mut data = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut data).ok()?;
    (data.len() as u64 <= MAX_FILE).then(|| Bytes::from(data))
}

fn variant(rel: &Path, ext: &str) -> PathBuf {
    let mut name = rel.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

fn hex16(digest: &[u8]) -> String {
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Only names that need no decoding and cannot leave the dir: the common case.
pub(super) fn plain_path(rest: &str) -> bool {
    !rest.is_empty()
        && !rest.ends_with('/')
        && rest.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~+@".contains(&b))
        })
}

/// Whether `accept` (an Accept-Encoding value) takes `coding` with q > 0.
pub(super) fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            name.eq_ignore_ascii_case(coding) && !q_zero
        })
}

/// Whether If-None-Match names this ETag (or `*`).
pub(super) fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let want = etag.as_bytes();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.trim_start_matches("W/").as_bytes() == want)
}

fn respond(file: &Cached, method: &Method, headers: &HeaderMap) -> Response<Bytes> {
    let mut builder = Response::builder()
        .header(header::ETAG, file.etag.clone())
        .header(header::ACCEPT_RANGES, "bytes");
    if file.br.is_some() || file.gzip.is_some() {
        builder = builder.header(header::VARY, "accept-encoding");
    }
    if not_modified(headers, &file.etag) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Bytes::new())
            .expect("static headers are valid");
    }
    let (body, encoding) = match (&file.br, &file.gzip) {
        (Some(b), _) if accepts(headers, "br") => (b.clone(), Some("br")),
        (_, Some(g)) if accepts(headers, "gzip") => (g.clone(), Some("gzip")),
        _ => (file.identity.clone(), None),
    };
    if let Some(e) = encoding {
        builder = builder.header(header::CONTENT_ENCODING, e);
    }
    builder
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, file.content_type.clone())
        .header(header::CONTENT_LENGTH, body.len())
        .body(if method == Method::HEAD {
            Bytes::new()
        } else {
            body
        })
        .expect("static headers are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    async fn hit(c: &StaticCache, m: Method, rest: &str, h: &HeaderMap) -> Response<Bytes> {
        match c.lookup(&m, rest, h).await {
            Lookup::Hit(r) => r,
            Lookup::Pass => panic!("{rest} was not served from memory"),
        }
    }

    #[tokio::test]
    async fn serves_variants_etags_and_304_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("css")).unwrap();
        std::fs::write(dir.path().join("css/site.css"), "body{}").unwrap();
        std::fs::write(dir.path().join("css/site.css.gz"), "GZ").unwrap();
        std::fs::write(dir.path().join("css/site.css.br"), "BR").unwrap();
        std::fs::write(dir.path().join("app.js"), "x()").unwrap();
        let c = StaticCache::new(dir.path().to_path_buf());

        let plain = hit(&c, Method::GET, "css/site.css", &req(&[])).await;
        assert_eq!(plain.status(), 200);
        assert_eq!(plain.body().as_ref(), b"body{}");
        assert_eq!(plain.headers()[header::CONTENT_TYPE], "text/css");
        assert_eq!(plain.headers()[header::VARY], "accept-encoding");
        let etag = plain.headers()[header::ETAG].clone();

        let br = hit(
            &c,
            Method::GET,
            "css/site.css",
            &req(&[("accept-encoding", "gzip, br")]),
        )
        .await;
        assert_eq!(br.body().as_ref(), b"BR");
        assert_eq!(br.headers()[header::CONTENT_ENCODING], "br");
        let gz = hit(
            &c,
            Method::GET,
            "css/site.css",
            &req(&[("accept-encoding", "br;q=0, gzip")]),
        )
        .await;
        assert_eq!(gz.body().as_ref(), b"GZ");

        let again = hit(
            &c,
            Method::GET,
            "css/site.css",
            &req(&[("if-none-match", etag.to_str().unwrap())]),
        )
        .await;
        assert_eq!(again.status(), 304);
        assert!(again.body().is_empty());

        let head = hit(&c, Method::HEAD, "app.js", &req(&[])).await;
        assert_eq!(head.headers()[header::CONTENT_LENGTH], "3");
        assert!(head.body().is_empty());
        assert_eq!(c.len(), 2);

        // Read once: a file changed on disk afterwards is still the cached one
        // (a release's static files never change).
        std::fs::write(dir.path().join("app.js"), "changed()").unwrap();
        let js = hit(&c, Method::GET, "app.js", &req(&[])).await;
        assert_eq!(js.body().as_ref(), b"x()");
    }

    #[tokio::test]
    async fn leaves_the_unusual_and_links_to_the_file_server() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("big.bin"), vec![0u8; MAX_FILE as usize + 1]).unwrap();
        std::fs::write(dir.path().join("a b.txt"), "x").unwrap();
        std::fs::write(dir.path().join("ok.txt"), "x").unwrap();
        std::os::unix::fs::symlink("ok.txt", dir.path().join("link.txt")).unwrap();
        let c = StaticCache::new(dir.path().join("."));
        let pass = |r: Lookup| matches!(r, Lookup::Pass);
        let none = req(&[]);
        assert!(pass(c.lookup(&Method::GET, "big.bin", &none).await));
        assert!(pass(c.lookup(&Method::GET, "a%20b.txt", &none).await));
        assert!(pass(c.lookup(&Method::GET, "../etc/passwd", &none).await));
        assert!(pass(c.lookup(&Method::GET, "missing.txt", &none).await));
        assert!(pass(c.lookup(&Method::GET, "link.txt", &none).await));
        assert!(pass(c.lookup(&Method::POST, "ok.txt", &none).await));
        assert!(pass(
            c.lookup(&Method::GET, "ok.txt", &req(&[("range", "bytes=0-0")]))
                .await
        ));
        assert!(c.is_empty());
    }
}
