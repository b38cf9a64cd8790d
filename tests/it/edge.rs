//! Attacks by the network on paas's two listeners, performed against a real
//! daemon and a deployed app (tests/fixtures/edge: views that show what
//! reached Django, and an upload that reads the whole body).

use crate::harness::{http, Daemon, Project};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The edge fixture, deployed.
fn deployed(d: &mut Daemon) -> String {
    let app = d.app("edge");
    let p = Project::from_fixture("edge");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    d.assert_serves(&app, "edge fixture");
    app
}

/// A client sends every forwarding header a proxy might trust, with values
/// of its own: none of them reaches the app, X-Forwarded-For names the real
/// peer, and what Django derives (host, port, scheme) is paas's.
#[test]
fn spoofed_forwarding_headers_do_not_reach_the_app() {
    let mut d = Daemon::start();
    let app = deployed(&mut d);
    let host = format!("{app}.localhost");
    let spoofed = [
        ("X-Forwarded-For", "6.6.6.1"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("X-Real-IP", "6.6.6.2"),
        ("Forwarded", "for=6.6.6.3;host=evil.example;proto=https"),
        ("X-Forwarded-Ssl", "on"),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Protocol", "ssl"),
        ("X_Forwarded_For", "6.6.6.4"),
        ("X_Real_IP", "6.6.6.5"),
    ];
    let r = http(d.http, "GET", &host, "/headers/", &spoofed, None);
    let text = r.text();
    assert_eq!(r.status, 200, "{text}");
    for bad in ["6.6.6.", "evil.example", "443", "https", "ssl"] {
        assert!(!text.contains(bad), "{bad:?} reached the app: {text}");
    }
    let seen: serde_json::Value = serde_json::from_str(&text).unwrap();
    let headers = &seen["headers"];
    assert_eq!(headers["HTTP_X_FORWARDED_FOR"], "127.0.0.1", "{text}");
    assert_eq!(headers["HTTP_X_FORWARDED_PROTO"], "http", "{text}");
    assert_eq!(headers["HTTP_X_FORWARDED_HOST"], host.as_str(), "{text}");
    for gone in [
        "HTTP_X_REAL_IP",
        "HTTP_FORWARDED",
        "HTTP_X_FORWARDED_SSL",
        "HTTP_X_FORWARDED_PORT",
        "HTTP_X_FORWARDED_PROTOCOL",
    ] {
        assert!(
            headers.get(gone).is_none(),
            "{gone} reached the app: {text}"
        );
    }
    assert_eq!(seen["host"], host.as_str(), "{text}");
    assert_eq!(seen["secure"], false, "{text}");
    assert_eq!(seen["url_scheme"], "http", "{text}");
}

/// Sends `head` (half a request) on `port` and waits, at most 40 s, for
/// the daemon to close the connection; returns how long that took.
fn stalled_header(port: u16, head: &'static str) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let start = Instant::now();
        let mut buf = Vec::new();
        let read = s.read_to_end(&mut buf);
        let took = start.elapsed();
        assert!(
            read.is_ok() || took < Duration::from_secs(39),
            "port {port}: a half-sent request was still open after {took:?}"
        );
        took
    })
}

/// An upload of `len` bytes whose first `sent` bytes arrive and then stall.
fn stalled_upload(port: u16, host: &str, len: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /upload/ HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    s.write_all(&vec![b'x'; sent]).unwrap();
    s
}

/// Slowloris on both ports: a half-sent request head is closed within 30 s.
/// Slow uploads to an app with two gunicorn workers: while three uploads
/// stall halfway, a GET is still answered at once (the proxy holds the
/// bodies; no worker waits for them), and each upload, once finished,
/// reaches the app whole.
#[test]
fn slow_clients_are_cut_and_hold_no_app_worker() {
    let mut d = Daemon::start();
    let app = deployed(&mut d);
    let host = format!("{app}.localhost");
    let proxy = stalled_header(d.http, "GET / HTTP/1.1\r\nHost: ");
    let admin = stalled_header(d.admin, "POST /api/apps HTTP/1.1\r\nAuthorization: Bea");

    let len = 200_000;
    let mut uploads: Vec<TcpStream> = (0..3)
        .map(|_| stalled_upload(d.http, &host, len, 1000))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    let r = d.get(&app, "/");
    let took = start.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        took < Duration::from_secs(10),
        "a GET waited {took:?} behind stalled uploads"
    );
    for s in &mut uploads {
        s.write_all(&vec![b'y'; len - 1000]).unwrap();
    }
    for mut s in uploads {
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with(&format!("received {len} bytes\n")), "{out}");
    }

    for (port, waited) in [("proxy", proxy), ("admin", admin)] {
        let took = waited.join().unwrap();
        assert!(
            took < Duration::from_secs(30),
            "{port}: a half-sent request stayed open {took:?}"
        );
    }
}
