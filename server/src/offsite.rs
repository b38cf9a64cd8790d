//! Offsite storage: an S3-compatible bucket, and what goes into it.
//!
//! Requests are signed by `rusty-s3` (a sans-IO S3 client: it builds
//! presigned URLs) and sent with reqwest (rustls). Everything stored there
//! is an age file encrypted under the owner's passphrase (scrypt): a tar
//! of the backup's files, made on the server before the upload
//! ([`seal`]), opened again by a drill or a restore ([`unseal`]) or by the
//! owner with the `age` CLI. Which copies stay is [`to_delete`]: 7 daily,
//! 4 weekly, 6 monthly.

use age::secrecy::SecretString;
use futures_util::StreamExt;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};
use serde::{Deserialize, Serialize};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a signed request stays valid (an upload of a big file starts
/// within it; S3 checks the signature when the request arrives).
const SIGN_FOR: Duration = Duration::from_secs(3600);

/// Offsite retention: the newest copy of each of the last 7 days, 4 ISO
/// weeks and 6 months that have one.
pub const KEEP_DAILY: usize = 7;
pub const KEEP_WEEKLY: usize = 4;
pub const KEEP_MONTHLY: usize = 6;

/// Where offsite copies go. Kept in the store (setting [`SETTING`]); the
/// secret never leaves the daemon: [`Target::public`] is what is shown.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub bucket: String,
    /// Folder inside the bucket, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// `https://…` (or `http://…` for a local server).
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The store key of the offsite target.
pub const SETTING: &str = "offsite.target";
/// The store key of the passphrase backups are encrypted under.
pub const PASSPHRASE_SETTING: &str = "offsite.passphrase";

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({} at {})", self.url(), self.endpoint)
    }
}

/// What can go wrong offsite, as one sentence that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum OffsiteError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot reach the offsite storage at {endpoint} ({why}): check --endpoint and that the storage is up; paas retries the upload every hour")]
    Unreachable { endpoint: String, why: String },
    #[error("the offsite storage refused the request ({code}: {message}): {hint}")]
    Refused {
        code: String,
        message: String,
        hint: String,
    },
    #[error("{0}")]
    Local(String),
}

impl Target {
    /// A target from the user's words: `s3://BUCKET/PREFIX`, the endpoint
    /// URL, an optional region, and the key pair.
    pub fn parse(
        url: &str,
        endpoint: &str,
        region: Option<&str>,
        access_key_id: &str,
        secret_access_key: &str,
    ) -> Result<Target, OffsiteError> {
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(OffsiteError::Invalid(format!(
                "{url:?} is not an S3 location: write it as s3://BUCKET or s3://BUCKET/FOLDER"
            )));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid_bucket {
            return Err(OffsiteError::Invalid(format!(
                "{bucket:?} is not a bucket name (3 to 63 lower-case letters, digits, '-' or '.'): write the location as s3://BUCKET/FOLDER"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == ".." || p == ".")
            || prefix.contains("//")
            || prefix.chars().any(|c| c.is_control())
        {
            return Err(OffsiteError::Invalid(format!(
                "{prefix:?} is not a folder name in a bucket: use plain names separated by '/'"
            )));
        }
        let parsed = url::Url::parse(endpoint).map_err(|e| {
            OffsiteError::Invalid(format!(
                "--endpoint {endpoint:?} is not a URL ({e}): write it as https://HOST[:PORT]"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(OffsiteError::Invalid(format!(
                "--endpoint {endpoint:?} is not an http(s) URL: write it as https://HOST[:PORT]"
            )));
        }
        if access_key_id.trim().is_empty() || secret_access_key.trim().is_empty() {
            return Err(OffsiteError::Invalid(
                "both --access-key-id and --secret-access-key are needed: your storage provider shows them where it lists access keys".into(),
            ));
        }
        Ok(Target {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: endpoint.trim_end_matches('/').into(),
            region: region.unwrap_or("us-east-1").into(),
            access_key_id: access_key_id.trim().into(),
            secret_access_key: secret_access_key.trim().into(),
        })
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// What may be shown: everything but the secret.
    pub fn public(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.url(),
            "bucket": self.bucket,
            "prefix": self.prefix,
            "endpoint": self.endpoint,
            "region": self.region,
            "access_key_id": self.access_key_id,
        })
    }

    /// The key of an object under the target's folder.
    pub fn key(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    /// Where an app's backups go: `PREFIX/apps/APP/`.
    pub fn app_folder(&self, app: &str) -> String {
        self.key(&format!("apps/{app}/"))
    }
}

/// An object in the bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Object {
    pub key: String,
    pub size: u64,
}

/// A client for one target.
pub struct S3 {
    target: Target,
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

impl S3 {
    pub fn new(target: &Target) -> Result<S3, OffsiteError> {
        let endpoint = url::Url::parse(&target.endpoint)
            .map_err(|e| OffsiteError::Invalid(format!("bad endpoint: {e}")))?;
        // AWS itself wants virtual-hosted names; every other S3-compatible
        // server (MinIO, R2, B2, Garage, moto…) takes paths.
        let style = if endpoint
            .host_str()
            .is_some_and(|h| h.ends_with("amazonaws.com"))
        {
            UrlStyle::VirtualHost
        } else {
            UrlStyle::Path
        };
        let bucket = Bucket::new(
            endpoint,
            style,
            target.bucket.clone(),
            target.region.clone(),
        )
        .map_err(|e| OffsiteError::Invalid(format!("bad bucket or endpoint: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| OffsiteError::Local(format!("cannot make an HTTP client: {e}")))?;
        Ok(S3 {
            target: target.clone(),
            bucket,
            credentials: Credentials::new(
                target.access_key_id.clone(),
                target.secret_access_key.clone(),
            ),
            http,
        })
    }

    fn unreachable(&self, e: reqwest::Error) -> OffsiteError {
        // reqwest's message names the URL, which holds a signature: not shown.
        let e = e.without_url();
        let mut why = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            why = format!("{why}: {s}");
            src = s.source();
        }
        OffsiteError::Unreachable {
            endpoint: self.target.endpoint.clone(),
            why,
        }
    }

    async fn refused(&self, r: reqwest::Response, what: &str) -> OffsiteError {
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        let tag = |t: &str| {
            body.split_once(&format!("<{t}>"))
                .and_then(|(_, rest)| rest.split_once(&format!("</{t}>")))
                .map(|(v, _)| v.to_string())
        };
        let code = tag("Code").unwrap_or_else(|| status.as_u16().to_string());
        let message = tag("Message").unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        });
        let hint = match code.as_str() {
            "NoSuchBucket" => format!(
                "create the bucket {:?} at {} first, or point paas at another with `paas backups:offsite:set`",
                self.target.bucket, self.target.endpoint
            ),
            "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied" | "403" => {
                "check the access key id and secret (and that the key may read and write this bucket), then run `paas backups:offsite:set` again".to_string()
            }
            "NoSuchKey" | "404" => format!("{what} is not in the bucket"),
            _ => format!("{what} failed; paas retries uploads every hour"),
        };
        OffsiteError::Refused {
            code,
            message,
            hint,
        }
    }

    /// Checks that the bucket exists and the keys may list it.
    pub async fn check(&self) -> Result<(), OffsiteError> {
        self.list(&self.target.key("")).await.map(|_| ())
    }

    /// Uploads a file (streamed from disk).
    pub async fn put_file(&self, key: &str, path: &Path) -> Result<u64, OffsiteError> {
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| OffsiteError::Local(format!("cannot open {}: {e}", path.display())))?;
        let len = file
            .metadata()
            .await
            .map_err(|e| OffsiteError::Local(format!("cannot read {}: {e}", path.display())))?
            .len();
        let url = self
            .bucket
            .put_object(Some(&self.credentials), key)
            .sign(SIGN_FOR);
        let body =
            reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 16));
        let r = self
            .http
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !r.status().is_success() {
            return Err(self.refused(r, &format!("the upload of {key}")).await);
        }
        Ok(len)
    }

    /// Downloads an object into a file.
    pub async fn get_to_file(&self, key: &str, path: &Path) -> Result<u64, OffsiteError> {
        let url = self
            .bucket
            .get_object(Some(&self.credentials), key)
            .sign(SIGN_FOR);
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !r.status().is_success() {
            return Err(self.refused(r, &format!("the object {key}")).await);
        }
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| OffsiteError::Local(format!("cannot create {}: {e}", path.display())))?;
        let mut stream = r.bytes_stream();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.unreachable(e))?;
            size += chunk.len() as u64;
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                .await
                .map_err(|e| {
                    OffsiteError::Local(format!("cannot write {}: {e}", path.display()))
                })?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(|e| OffsiteError::Local(format!("cannot write {}: {e}", path.display())))?;
        Ok(size)
    }

    /// Every object whose key starts with `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Object>, OffsiteError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            action.with_prefix(prefix);
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGN_FOR);
            let r = self
                .http
                .get(url)
                .send()
                .await
                .map_err(|e| self.unreachable(e))?;
            if !r.status().is_success() {
                return Err(self
                    .refused(r, &format!("listing {}", self.target.url()))
                    .await);
            }
            let text = r.text().await.map_err(|e| self.unreachable(e))?;
            let page = rusty_s3::actions::ListObjectsV2::parse_response(&text).map_err(|e| {
                OffsiteError::Local(format!("the storage's listing cannot be read: {e}"))
            })?;
            out.extend(page.contents.into_iter().map(|c| Object {
                key: c.key,
                size: c.size,
            }));
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Deletes an object.
    pub async fn delete(&self, key: &str) -> Result<(), OffsiteError> {
        let url = self
            .bucket
            .delete_object(Some(&self.credentials), key)
            .sign(SIGN_FOR);
        let r = self
            .http
            .delete(url)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if !r.status().is_success() {
            return Err(self.refused(r, &format!("deleting {key}")).await);
        }
        Ok(())
    }
}

// ------------------------------------------------------------- encryption

/// Writes `files` (name in the archive → path) as a tar encrypted with age
/// under `passphrase` into `out`. Returns the bytes written.
pub fn seal(files: &[(String, PathBuf)], passphrase: &str, out: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(out)?;
    let encryptor = age::Encryptor::with_user_passphrase(SecretString::from(passphrase.to_owned()));
    let writer = encryptor.wrap_output(BufWriter::with_capacity(1 << 16, file))?;
    let mut tar = tar::Builder::new(writer);
    for (name, path) in files {
        let mut f = std::fs::File::open(path)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(f.metadata()?.len());
        header.set_mode(0o600);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, &mut f)?;
    }
    let writer = tar.into_inner()?;
    let mut buf = writer.finish()?;
    buf.flush()?;
    let file = buf.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

/// Decrypts an age file made by [`seal`] and unpacks its files into `dir`
/// (a fresh folder of ours). Only plain files with plain names are taken.
/// Returns their names.
pub fn unseal(src: &Path, passphrase: &str, dir: &Path) -> Result<Vec<String>, String> {
    let file = std::fs::File::open(src).map_err(|e| format!("cannot open the download: {e}"))?;
    let decryptor =
        age::Decryptor::new_buffered(BufReader::with_capacity(1 << 16, file)).map_err(|e| {
            format!("it is not an age file paas made ({e}): the object was changed or damaged")
        })?;
    let identity = age::scrypt::Identity::new(SecretString::from(passphrase.to_owned()));
    let reader = decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys | age::DecryptError::DecryptionFailed => format!(
                "the passphrase does not open it ({e}); use the passphrase `paas backups:offsite:key` showed when this backup was made"
            ),
            e => format!("it cannot be decrypted ({e}): the object was changed or damaged"),
        })?;
    let mut archive = tar::Archive::new(reader);
    let mut names = Vec::new();
    let entries = archive
        .entries()
        .map_err(|e| format!("cannot read it: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged(&e))?;
        let name = entry
            .path()
            .map_err(|e| damaged(&e))?
            .to_string_lossy()
            .into_owned();
        let plain = !name.is_empty()
            && !name.contains('/')
            && name != "."
            && name != ".."
            && entry.header().entry_type() == tar::EntryType::Regular;
        if !plain {
            return Err(format!(
                "it holds {name:?}, which is not a file paas puts in a backup"
            ));
        }
        let mut out = std::fs::File::create(dir.join(&name))
            .map_err(|e| format!("cannot write {name}: {e}"))?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = entry.read(&mut buf).map_err(|e| damaged(&e))?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])
                .map_err(|e| format!("cannot write {name}: {e}"))?;
        }
        names.push(name);
    }
    Ok(names)
}

fn damaged(e: &std::io::Error) -> String {
    format!("it does not decrypt ({e}): the object was changed or damaged after it was uploaded")
}

/// A passphrase for an owner who did not pick one: 24 random bytes, hex.
pub fn new_passphrase() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    crate::layout::hex(&bytes)
}

// -------------------------------------------------------------- retention

/// Unix seconds of a backup id (`YYYYMMDD-HHMMSS-…`, UTC).
pub fn stamp_time(id: &str) -> Option<i64> {
    let b = id.as_bytes();
    if b.len() < 15 || b[8] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = id.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let month = time::Month::try_from(num(4..6)? as u8).ok()?;
    let date = time::Date::from_calendar_date(num(0..4)? as i32, month, num(6..8)? as u8).ok()?;
    let at =
        time::Time::from_hms(num(9..11)? as u8, num(11..13)? as u8, num(13..15)? as u8).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, at)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// Which of `items` (name, unix time) to delete so that only the newest of
/// each of the last `daily` days, `weekly` ISO weeks and `monthly` months
/// that have one remain (as restic's and borg's `--keep-*` count).
pub fn to_delete(
    items: &[(String, i64)],
    daily: usize,
    weekly: usize,
    monthly: usize,
) -> Vec<String> {
    let mut sorted: Vec<&(String, i64)> = items.iter().collect();
    sorted.sort_by(|a, b| (b.1, &b.0).cmp(&(a.1, &a.0)));
    let date = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            .date()
    };
    /// A period's name (year and day, week or month) of a unix time.
    type Period<'a> = &'a dyn Fn(i64) -> (i32, u32);
    let rules: [(usize, Period); 3] = [
        (daily, &|t| (date(t).year(), date(t).ordinal() as u32)),
        (weekly, &|t| {
            let (y, w, _) = date(t).to_iso_week_date();
            (y, w as u32)
        }),
        (monthly, &|t| (date(t).year(), date(t).month() as u32)),
    ];
    let mut keep = vec![false; sorted.len()];
    for (n, period) in rules {
        let mut last = None;
        let mut kept = 0;
        for (i, item) in sorted.iter().enumerate() {
            let p = period(item.1);
            if last != Some(p) {
                last = Some(p);
                if kept < n {
                    keep[i] = true;
                    kept += 1;
                }
            }
        }
    }
    sorted
        .iter()
        .zip(keep)
        .filter(|(_, k)| !k)
        .map(|(item, _)| item.0.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_parsed_or_refused_with_what_to_write() {
        let t = Target::parse(
            "s3://my-backups/vps1/",
            "https://s3.example.com/",
            None,
            "AK",
            "SK",
        )
        .unwrap();
        assert_eq!(t.bucket, "my-backups");
        assert_eq!(t.prefix, "vps1");
        assert_eq!(t.endpoint, "https://s3.example.com");
        assert_eq!(t.region, "us-east-1");
        assert_eq!(t.url(), "s3://my-backups/vps1");
        assert_eq!(t.app_folder("blog"), "vps1/apps/blog/");
        let bare =
            Target::parse("s3://bucket", "http://127.0.0.1:9000", Some("eu"), "a", "b").unwrap();
        assert_eq!(bare.key("apps/x/1"), "apps/x/1");
        assert_eq!(bare.region, "eu");
        // Never the secret, in the shown form nor in Debug.
        assert!(!t.public().to_string().contains("SK"));
        assert!(!format!("{t:?}").contains("SK"));
        for (url, endpoint, want) in [
            ("my-backups", "https://s3.example.com", "s3://BUCKET"),
            ("s3://A", "https://s3.example.com", "not a bucket name"),
            ("s3://bucket/../x", "https://s3.example.com", "folder"),
            ("s3://bucket", "s3.example.com", "not a URL"),
            ("s3://bucket", "ftp://s3.example.com", "http(s)"),
        ] {
            let e = Target::parse(url, endpoint, None, "a", "b").unwrap_err();
            assert!(e.to_string().contains(want), "{url} {endpoint}: {e}");
        }
        let e = Target::parse("s3://bucket", "https://x", None, "a", " ").unwrap_err();
        assert!(e.to_string().contains("--secret-access-key"), "{e}");
    }

    #[test]
    fn sealed_files_open_with_the_passphrase_only_and_a_flipped_byte_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("db.sqlite3"), dir.path().join("media.tar"));
        std::fs::write(&a, b"database bytes").unwrap();
        std::fs::write(&b, vec![7u8; 200_000]).unwrap();
        let sealed = dir.path().join("x.tar.age");
        let files = vec![("db.sqlite3".to_string(), a), ("media.tar".to_string(), b)];
        seal(&files, "correct horse", &sealed).unwrap();
        let bytes = std::fs::read(&sealed).unwrap();
        assert!(bytes.starts_with(b"age-encryption.org/v1"));
        assert!(!bytes.windows(14).any(|w| w == b"database bytes"));

        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let names = unseal(&sealed, "correct horse", &out).unwrap();
        assert_eq!(names, ["db.sqlite3", "media.tar"]);
        assert_eq!(
            std::fs::read(out.join("db.sqlite3")).unwrap(),
            b"database bytes"
        );
        assert_eq!(std::fs::read(out.join("media.tar")).unwrap().len(), 200_000);

        let e = unseal(&sealed, "wrong", &out).unwrap_err();
        assert!(e.contains("passphrase does not open it"), "{e}");
        let mut flipped = bytes.clone();
        let at = flipped.len() - 1000;
        flipped[at] ^= 0x01;
        std::fs::write(&sealed, &flipped).unwrap();
        let e = unseal(&sealed, "correct horse", &out).unwrap_err();
        assert!(e.contains("changed or damaged"), "{e}");
    }

    #[test]
    fn stamps_read_back_as_times() {
        assert_eq!(stamp_time("19700101-000000-ab12"), Some(0));
        assert_eq!(stamp_time("20000229-000000"), Some(951_782_400));
        assert_eq!(stamp_time("garbage"), None);
    }

    #[test]
    fn retention_keeps_7_daily_4_weekly_6_monthly() {
        const DAY: i64 = 86_400;
        // 2026-01-01 is a Thursday. One backup a day for a year, two on the
        // last day.
        let start = stamp_time("20260101-030000").unwrap();
        let mut items: Vec<(String, i64)> = (0..365)
            .map(|d| (format!("d{d}"), start + d * DAY))
            .collect();
        items.push(("d364-late".into(), start + 364 * DAY + 3600));
        let deleted = to_delete(&items, KEEP_DAILY, KEEP_WEEKLY, KEEP_MONTHLY);
        let mut kept: Vec<&str> = items
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !deleted.iter().any(|d| d == n))
            .collect();
        kept.sort_by_key(|n| items.iter().find(|(m, _)| m == n).map(|(_, t)| -t).unwrap());
        // Newest first: the 7 last days (the late one of the last day, not
        // the early one), then the Sundays closing 2 more weeks, then
        // the last days of the 5 months before (2026-12-31 is a Thursday).
        assert_eq!(
            kept,
            [
                "d364-late",
                "d363",
                "d362",
                "d361",
                "d360",
                "d359",
                "d358", // days
                "d353",
                "d346", // Sundays 2026-12-20 and 13 (weeks 53 and 52 are kept already)
                "d333",
                "d303",
                "d272",
                "d242",
                "d211", // Nov 30, Oct 31, Sep 30, Aug 31, Jul 31
            ]
        );
        assert_eq!(deleted.len(), items.len() - kept.len());
        assert!(to_delete(&[], 7, 4, 6).is_empty());
        // Fewer than the rules allow: all stay.
        let few = [("a".to_string(), start), ("b".to_string(), start + DAY)];
        assert!(to_delete(&few, 7, 4, 6).is_empty());
        // Two the same day with nothing else: the older one goes.
        let same = [("a".to_string(), start), ("b".to_string(), start + 60)];
        assert_eq!(to_delete(&same, 7, 4, 6), ["a"]);
    }
}
