//! ASGI: a Django Channels project is served by gunicorn with uvicorn
//! workers; its websocket echo works through paas's proxy, and after a
//! redeploy the old release's socket is closed cleanly (a close frame,
//! after the drain timeout) and a reconnecting client reaches the new
//! release.

use crate::harness::{Daemon, Project};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A websocket to `path` of `app` through the proxy on `port`.
async fn connect(port: u16, app: &str, path: &str) -> Socket {
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

/// Sends `text` and returns the answer.
async fn echo(ws: &mut Socket, text: &str) -> String {
    ws.send(Message::Text(text.into())).await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no echo of {text:?}: {other:?}"),
        }
    }
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
        let start = Instant::now();
        // Still the old release's socket, until the drain timeout.
        let answer = echo(&mut old, "still there").await;
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
        // Closed cleanly (1001, going away), not dropped: browsers'
        // reconnect logic sees a server going away.
        assert_eq!(ended, "close Some(Away)");
        assert!(start.elapsed() < Duration::from_secs(30), "{ended}");
        let mut new = connect(d.http, &app, "/ws/echo/").await;
        assert_eq!(echo(&mut new, "hello").await, "v2: hello");
        let _ = new.close(None).await;
    });
}
