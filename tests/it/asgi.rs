//! ASGI: a Django Channels project is served by gunicorn with uvicorn
//! workers; its websocket echo works through paas's proxy, and after a
//! redeploy the old release's socket is closed cleanly (a close frame,
//! after the drain timeout) and a reconnecting client reaches the new
//! release. The same over TLS, and `paas run`'s terminal over https.

use crate::harness::{Daemon, Project};
use futures_util::{SinkExt, StreamExt};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A websocket to `path` of `app` through the proxy on `port`.
async fn connect(
    port: u16,
    app: &str,
    path: &str,
) -> WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://127.0.0.1:{port}{path}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("host", format!("{app}.localhost").parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req)
        .await
        .unwrap_or_else(|e| panic!("websocket to {app}{path}: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

/// A websocket over TLS (rustls, trusting `root` only, SNI
/// `<app>.localhost`) to `path` of `app` through the HTTPS listener on `port`.
async fn connect_tls(
    port: u16,
    app: &str,
    path: &str,
    root: &Path,
) -> WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(root).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    // What a browser offers for a websocket: HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let host = format!("{app}.localhost");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(host.clone()).unwrap(), tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS to {host}: {e}"));
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let req = format!("wss://{host}:{port}{path}")
        .into_client_request()
        .unwrap();
    let (ws, resp) = tokio_tungstenite::client_async(req, tls)
        .await
        .unwrap_or_else(|e| panic!("websocket over TLS to {host}{path}: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

/// Sends `text` and returns the answer.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    text: &str,
) -> String {
    ws.send(Message::Text(text.into())).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no echo of {text:?}: {other:?}"),
        }
    }
}

/// How the old release's socket ends after a redeploy: it still echoes,
/// then is closed cleanly (1001, going away) once the drain timeout is
/// over, not dropped: browsers' reconnect logic sees a server going away.
async fn drained<S: AsyncRead + AsyncWrite + Unpin>(old: &mut WebSocketStream<S>) {
    let start = Instant::now();
    let answer = echo(old, "still there").await;
    assert_eq!(answer, "v1: still there");
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(30), old.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                break format!("close {:?}", frame.map(|f| f.code))
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => break format!("error {e}"),
            Ok(None) => break "end".to_string(),
            Err(_) => panic!("the old release's socket stayed open past the drain timeout"),
        }
    };
    assert_eq!(ended, "close Some(Away)");
    assert!(start.elapsed() < Duration::from_secs(30), "{ended}");
}

#[test]
fn channels_websocket_echoes_through_the_proxy_and_reconnects_after_a_redeploy() {
    let mut d = Daemon::start();
    let app = d.app("asgi");
    let p = Project::from_fixture("channels-echo");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    assert!(
        out.contains("ASGI application mysite.asgi:application (from ASGI_APPLICATION in mysite/settings.py): served by gunicorn with uvicorn workers"),
        "{out}"
    );
    d.assert_serves(&app, "Notes v1");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut old = rt.block_on(async {
        let mut ws = connect(d.http, &app, "/ws/echo/").await;
        assert_eq!(echo(&mut ws, "hello").await, "v1: hello");
        ws
    });

    // A redeploy while the socket is open: the old release keeps it for
    // the drain timeout, then it is closed and the client reconnects.
    p.replace("Notes v1", "Notes v2");
    p.commit("v2");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "second push rejected:\n{out}");
    d.assert_serves(&app, "Notes v2");
    rt.block_on(async {
        drained(&mut old).await;
        let mut new = connect(d.http, &app, "/ws/echo/").await;
        assert_eq!(echo(&mut new, "hello").await, "v2: hello");
        let _ = new.close(None).await;
    });
}

/// The same echo over TLS (the local CA's certificate, trusted by the
/// client): the socket keeps its connection through a redeploy until the
/// drain timeout, is closed cleanly, and a reconnect over TLS reaches the
/// new release. Then `paas run` at a terminal through `https://paas.<domain>`:
/// its WebSocket handshake goes over HTTP/1.1 on the HTTPS listener, the
/// command gets a terminal, keystrokes reach it, and its exit code comes back.
#[test]
fn websocket_over_tls_keeps_its_connection_through_a_redeploy_and_paas_run_has_a_terminal_over_https(
) {
    let mut d = Daemon::start_https(&[]);
    let port = d.https.unwrap();
    let app = d.app("wss");
    let host = format!("{app}.localhost");
    let p = Project::from_fixture("channels-echo");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "push rejected:\n{out}");
    assert!(
        out.contains(&format!("is live at https://{host}:{port}/")),
        "{out}"
    );
    let root = crate::tls::fetch_root(&d, p.dir.path());
    let page = crate::tls::curl(&root, port, &host, "/", &[]);
    assert!(page.body.contains("Notes v1"), "{}", page.body);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut old = rt.block_on(async {
        let mut ws = connect_tls(port, &app, "/ws/echo/", &root).await;
        assert_eq!(echo(&mut ws, "hello").await, "v1: hello");
        ws
    });
    p.replace("Notes v1", "Notes v2");
    p.commit("v2");
    let (ok, out) = p.push(&d.remote(&app));
    assert!(ok, "second push rejected:\n{out}");
    let page = crate::tls::curl(&root, port, &host, "/", &[]);
    assert!(page.body.contains("Notes v2"), "{}", page.body);
    rt.block_on(async {
        drained(&mut old).await;
        let mut new = connect_tls(port, &app, "/ws/echo/", &root).await;
        assert_eq!(echo(&mut new, "hello").await, "v2: hello");
        let _ = new.close(None).await;
    });

    // `paas run` on a terminal, talking to https://paas.localhost only.
    let cli = crate::harness::CliEnv::new(&format!("https://paas.localhost:{port}"));
    let root_s = root.to_str().unwrap();
    let env = [("SSL_CERT_FILE", root_s), ("PAAS_TOKEN", d.token.as_str())];
    let (code, screen) = crate::run::paas_on_a_terminal_with_env(
        &cli,
        p.dir.path(),
        &format!("run -a {app} -- sh -c 'tty; printf \"name? \"; read x; echo \"hello $x over tls\"; exit 3'"),
        &[("name? ", "typist")],
        &env,
    );
    assert_eq!(code, 3, "the terminal showed: {screen}");
    assert!(screen.contains("/dev/pts/"), "no terminal: {screen}");
    assert!(screen.contains("hello typist over tls"), "{screen}");
}
