//! Static and media files from disk, opened without following symlinks.
//!
//! An app writes its own media folder, and paas reads it as root: every
//! file is opened through [`crate::beneath::open_file`], so a link the app
//! planted (`/data/media/x -> /etc/shadow`), a FIFO or a device is a 404.
//! What browsers and the tests rely on is here: Content-Type, ETag and
//! Last-Modified with 304s, one byte range (206/416), and precompressed
//! `.br`/`.gz` variants for static files.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use axum::body::Body;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use std::os::unix::fs::MetadataExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// The file below a mount for the rest of a request path (`css/site.css`):
/// percent-decoded, one name per segment; `None` for anything that is not
/// a plain file name path (`..`, `.`, empty segments, a trailing `/`, an
/// encoded `/` or NUL).
pub fn relative_path(rest: &str) -> Option<PathBuf> {
    let mut path = PathBuf::new();
    for segment in rest.split('/') {
        let name = percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .ok()?;
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return None;
        }
        path.push(&*name);
    }
    (!path.as_os_str().is_empty()).then_some(path)
}

/// Answers a GET or HEAD for the file `rest` below `root`.
pub async fn serve(
    root: &Path,
    rest: &str,
    method: &Method,
    headers: &HeaderMap,
    precompressed: bool,
) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET, HEAD")
            .body(Body::empty())
            .expect("static headers are valid");
    }
    let Some(rel) = relative_path(rest) else {
        return not_found();
    };
    let mut candidates: Vec<(PathBuf, Option<&'static str>)> = Vec::new();
    if precompressed {
        for (ext, coding) in [("br", "br"), ("gz", "gzip")] {
            if super::static_cache::accepts(headers, coding) {
                let mut name = rel.clone().into_os_string();
                name.push(".");
                name.push(ext);
                candidates.push((PathBuf::from(name), Some(coding)));
            }
        }
    }
    candidates.push((rel.clone(), None));
    let root = root.to_path_buf();
    let opened = tokio::task::spawn_blocking(move || {
        candidates.into_iter().find_map(|(path, coding)| {
            let file = crate::beneath::open_file(&root, &path).ok()?;
            let meta = file.metadata().ok()?;
            Some((file, meta, coding))
        })
    })
    .await
    .ok()
    .flatten();
    let Some((file, meta, coding)) = opened else {
        return not_found();
    };
    let size = meta.len();
    let modified = meta.modified().ok();
    let etag = format!("\"{:x}-{:x}-{:x}\"", meta.ino(), meta.mtime(), size);
    let mime = mime_guess::from_path(&rel).first_or_octet_stream();

    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::ACCEPT_RANGES, "bytes");
    if precompressed {
        builder = builder.header(header::VARY, "accept-encoding");
    }
    if let Some(m) = modified {
        builder = builder.header(header::LAST_MODIFIED, httpdate::fmt_http_date(m));
    }
    if fresh(headers, &etag, modified) {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("static headers are valid");
    }
    if let Some(coding) = coding {
        builder = builder.header(header::CONTENT_ENCODING, coding);
    }
    builder = builder.header(header::CONTENT_TYPE, mime.as_ref());
    let (status, start, len) = match range(headers, size) {
        Range::Whole => (StatusCode::OK, 0, size),
        Range::Part(start, end) => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{size}"));
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        Range::Unsatisfiable => {
            return builder
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{size}"))
                .body(Body::empty())
                .expect("static headers are valid");
        }
    };
    let builder = builder.status(status).header(header::CONTENT_LENGTH, len);
    if method == Method::HEAD {
        return builder
            .body(Body::empty())
            .expect("static headers are valid");
    }
    let mut file = tokio::fs::File::from_std(file);
    if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return not_found();
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file.take(len)));
    builder.body(body).expect("static headers are valid")
}

fn not_found() -> Response<Body> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Body::from("Not found\n"))
        .expect("static headers are valid")
}

/// Whether the client's copy is current: If-None-Match when sent, else
/// If-Modified-Since (whole seconds, as HTTP dates have).
fn fresh(headers: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> bool {
    if headers.contains_key(header::IF_NONE_MATCH) {
        let etag = HeaderValue::from_str(etag).expect("an ETag is ASCII");
        return super::static_cache::not_modified(headers, &etag);
    }
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match (since, modified) {
        (Some(since), Some(modified)) => {
            let secs = |t: SystemTime| {
                t.duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            };
            secs(modified) <= secs(since)
        }
        _ => false,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Range {
    Whole,
    /// First and last byte, inclusive.
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range; several ranges, or a header that does not parse,
/// get the whole file (as RFC 9110 allows).
fn range(headers: &HeaderMap, size: u64) -> Range {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match last.parse::<u64>() {
            Ok(0) => return Range::Unsatisfiable,
            Ok(n) => Some((size.saturating_sub(n), size.saturating_sub(1))),
            Err(_) => None,
        },
        (false, true) => first
            .parse::<u64>()
            .ok()
            .map(|f| (f, size.saturating_sub(1))),
        (false, false) => match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(f), Ok(l)) if f <= l => Some((f, l.min(size.saturating_sub(1)))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => Range::Whole,
        Some((first, _)) if first >= size => Range::Unsatisfiable,
        Some((first, last)) => Range::Part(first, last),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_make_a_path() {
        assert_eq!(relative_path("css/a.css"), Some(PathBuf::from("css/a.css")));
        assert_eq!(relative_path("a%20b.txt"), Some(PathBuf::from("a b.txt")));
        for bad in [
            "", "/", "a/", "a//b", "..", "../x", "%2e%2e/x", "..%2fx", "a/%2F..", "a%00b", ".",
        ] {
            assert_eq!(relative_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
            h
        };
        assert_eq!(range(&HeaderMap::new(), 10), Range::Whole);
        assert_eq!(range(&h("bytes=0-0"), 10), Range::Part(0, 0));
        assert_eq!(range(&h("bytes=2-"), 10), Range::Part(2, 9));
        assert_eq!(range(&h("bytes=-3"), 10), Range::Part(7, 9));
        assert_eq!(range(&h("bytes=5-100"), 10), Range::Part(5, 9));
        assert_eq!(range(&h("bytes=10-"), 10), Range::Unsatisfiable);
        assert_eq!(range(&h("bytes=0-1,3-4"), 10), Range::Whole);
        assert_eq!(range(&h("items=0-1"), 10), Range::Whole);
        assert_eq!(range(&h("bytes=4-2"), 10), Range::Whole);
    }
}
