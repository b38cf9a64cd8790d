//! `paas ps`, `paas logs [-f]`, `paas run -- CMD` (streamed, or an
//! interactive terminal over a WebSocket).

use super::{refusal, unreachable, ClientError, Result};
use crate::run::{format_uptime, EXIT_PREFIX};
use std::collections::BTreeMap;

/// `paas run -- CMD ARGS` without a terminal: prints the command's output
/// as it comes; returns its exit code. With `json`, prints nothing until the
/// command ends, then one object: `{"exit_code": N, "output": "..."}`.
pub async fn run_plain(
    url: &str,
    token: &str,
    app: &str,
    command: &[String],
    env: &BTreeMap<String, String>,
    json: bool,
) -> Result<i32> {
    use futures_util::StreamExt;
    use std::io::Write;
    let resp = super::http_client()
        .post(format!("{url}/api/apps/{app}/run"))
        .bearer_auth(token)
        .json(&serde_json::json!({ "command": command, "env": env }))
        .send()
        .await
        .map_err(|e| unreachable(url, e))?;
    if !resp.status().is_success() {
        return Err(refusal(resp).await);
    }
    let mut lines = std::pin::pin!(crate::lines::of_stream(resp.bytes_stream()));
    let mut stdout = std::io::stdout();
    let mut output = Vec::new();
    while let Some(line) = lines.next().await {
        let line = line.map_err(|e| {
            ClientError::Server(format!(
                "the connection to paas broke before the command finished ({e})"
            ))
        })?;
        if let Some(code) = std::str::from_utf8(&line)
            .ok()
            .and_then(|l| l.strip_prefix(EXIT_PREFIX))
        {
            let code = code.trim().parse().unwrap_or(1);
            if json {
                let v = serde_json::json!({
                    "exit_code": code,
                    "output": String::from_utf8_lossy(&output),
                });
                println!("{v:#}");
            }
            let _ = stdout.flush();
            return Ok(code);
        }
        if json {
            output.extend_from_slice(&line);
            output.push(b'\n');
            continue;
        }
        // The command's bytes as they came (a `\r` before the `\n` included).
        let _ = stdout
            .write_all(&line)
            .and_then(|_| stdout.write_all(b"\n"));
        let _ = stdout.flush();
    }
    Err(ClientError::Server(
        "the connection to paas ended before the command finished, so its exit code is unknown"
            .into(),
    ))
}

/// Puts the terminal in raw mode until dropped.
struct RawMode;

impl RawMode {
    fn enable() -> Result<RawMode> {
        crossterm::terminal::enable_raw_mode().map_err(|e| {
            ClientError::Server(format!(
                "cannot put the terminal in raw mode ({e}): use --no-tty"
            ))
        })?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

/// Opens the terminal session's WebSocket at `url` (http or https): the
/// handshake goes through the client's HTTP client, over HTTP/1.1 (an
/// HTTP/2 connection, which ALPN may pick over TLS, cannot be upgraded),
/// then the upgraded connection carries the frames.
async fn open_terminal(
    url: &str,
    token: &str,
    app: &str,
) -> Result<tokio_tungstenite::WebSocketStream<reqwest::Upgraded>> {
    use reqwest::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
    use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};
    use tokio_tungstenite::tungstenite::protocol::Role;
    let key = generate_key();
    let resp = super::client_builder()
        .http1_only()
        .build()
        .map_err(|e| unreachable(url, e))?
        .get(format!("{url}/api/apps/{app}/run/tty"))
        .bearer_auth(token)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, "websocket")
        .header("sec-websocket-version", "13")
        .header(SEC_WEBSOCKET_KEY, &key)
        .send()
        .await
        .map_err(|e| unreachable(url, e))?;
    if resp.status() != reqwest::StatusCode::SWITCHING_PROTOCOLS {
        if resp.status().is_success() {
            return Err(ClientError::Server(format!(
                "{url} answered the terminal session with HTTP {} instead of a WebSocket: use --no-tty, or check that PAAS_URL points at paas itself",
                resp.status()
            )));
        }
        return Err(refusal(resp).await);
    }
    let accepted = resp
        .headers()
        .get(SEC_WEBSOCKET_ACCEPT)
        .is_some_and(|v| v.as_bytes() == derive_accept_key(key.as_bytes()).as_bytes());
    if !accepted {
        return Err(ClientError::Server(format!(
            "{url} answered the terminal session with a WebSocket handshake paas does not make: check that PAAS_URL points at paas itself, or use --no-tty"
        )));
    }
    let upgraded = resp.upgrade().await.map_err(|e| unreachable(url, e))?;
    Ok(tokio_tungstenite::WebSocketStream::from_raw_socket(upgraded, Role::Client, None).await)
}

/// `paas run -- CMD ARGS` at a terminal: an interactive session over a
/// WebSocket (keystrokes in, the container's terminal out, resizes
/// followed); returns the command's exit code.
pub async fn run_tty(
    url: &str,
    token: &str,
    app: &str,
    command: &[String],
    env: &BTreeMap<String, String>,
) -> Result<i32> {
    use futures_util::{SinkExt, StreamExt};
    use std::io::Write;
    use tokio_tungstenite::tungstenite::Message;
    let ws = open_terminal(url, token, app).await?;
    let (mut tx, mut rx) = ws.split();
    let (cols, rows) = crossterm::terminal::size().unwrap_or((80, 24));
    let start = serde_json::json!({ "command": command, "env": env, "cols": cols, "rows": rows });
    tx.send(Message::Text(start.to_string().into()))
        .await
        .map_err(|e| unreachable(url, e))?;
    // Keystrokes from a plain thread: a blocked read never holds up the exit.
    let (keys_tx, mut keys) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if keys_tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut winch =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    let raw = RawMode::enable()?;
    let mut stdout = std::io::stdout();
    let mut keys_open = true;
    let outcome = loop {
        tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    let _ = stdout.write_all(&b);
                    let _ = stdout.flush();
                }
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                    if let Some(code) = v["exit"].as_i64() {
                        break Ok(code as i32);
                    }
                    if let Some(e) = v["error"].as_str() {
                        break Err(ClientError::Server(e.to_string()));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(ClientError::Server(format!("the terminal session broke ({e}), so the command's exit code is unknown"))),
                None => break Err(ClientError::Server("the terminal session ended before the command finished, so its exit code is unknown".into())),
            },
            key = keys.recv(), if keys_open => match key {
                Some(bytes) => {
                    if tx.send(Message::Binary(bytes.into())).await.is_err() {
                        break Err(ClientError::Server("the terminal session broke while sending input".into()));
                    }
                }
                None => keys_open = false,
            },
            _ = async { match winch.as_mut() { Some(w) => { w.recv().await; } None => std::future::pending().await } } => {
                if let Ok((c, r)) = crossterm::terminal::size() {
                    let _ = tx.send(Message::Text(serde_json::json!({ "resize": [c, r] }).to_string().into())).await;
                }
            }
        }
    };
    drop(raw);
    outcome
}

/// `paas logs [-f]`: prints the live release's output as it comes; with
/// `json`, one JSON object a line (`{"process": "web", "line": "..."}`).
pub async fn logs(
    url: &str,
    token: &str,
    app: &str,
    follow: bool,
    tail: usize,
    process: Option<&str>,
    json: bool,
) -> Result<()> {
    use futures_util::StreamExt;
    use std::io::Write;
    let mut query = vec![("follow", follow.to_string()), ("tail", tail.to_string())];
    if let Some(p) = process {
        query.push(("process", p.to_string()));
    }
    let resp = super::http_client()
        .get(format!("{url}/api/apps/{app}/logs"))
        .query(&query)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| unreachable(url, e))?;
    if !resp.status().is_success() {
        return Err(refusal(resp).await);
    }
    let mut stdout = std::io::stdout();
    if json {
        let mut lines = std::pin::pin!(crate::lines::of_stream(resp.bytes_stream()));
        while let Some(line) = lines.next().await {
            let line = line.map_err(|e| {
                ClientError::Server(format!(
                    "the connection to paas broke while following the logs ({e})"
                ))
            })?;
            let out = format!("{}\n", log_line_json(&String::from_utf8_lossy(&line)));
            if stdout
                .write_all(out.as_bytes())
                .and_then(|_| stdout.flush())
                .is_err()
            {
                break;
            }
        }
        return Ok(());
    }
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            ClientError::Server(format!(
                "the connection to paas broke while following the logs ({e})"
            ))
        })?;
        if stdout
            .write_all(&chunk)
            .and_then(|_| stdout.flush())
            .is_err()
        {
            break; // stdout closed (e.g. piped into head)
        }
    }
    Ok(())
}

/// One line of `paas logs` (`[web] text`) as a JSON object.
fn log_line_json(line: &str) -> serde_json::Value {
    let line = line.strip_suffix('\r').unwrap_or(line);
    match line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((process, text)) => serde_json::json!({ "process": process, "line": text }),
        None => serde_json::json!({ "process": null, "line": line }),
    }
}

/// `paas ps`: the app's containers as a table (or the API's JSON).
pub async fn ps(url: &str, token: &str, app: &str, json: bool) -> Result<String> {
    let resp = super::http_client()
        .get(format!("{url}/api/apps/{app}/ps"))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| unreachable(url, e))?;
    if !resp.status().is_success() {
        return Err(refusal(resp).await);
    }
    let v: serde_json::Value = resp.json().await.map_err(|e| {
        ClientError::Server(format!("paas answered with something unreadable ({e})"))
    })?;
    if json {
        return Ok(format!("{v:#}"));
    }
    let list = v.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Ok(format!(
            "{app} runs no containers: `git push paas main` deploys it, `paas restart -a {app}` starts a live release again"
        ));
    }
    let mut out = format!(
        "{:<10} {:<8} {:<11} {:<9} {}",
        "PROCESS", "RELEASE", "STATE", "UPTIME", "NAME"
    );
    for p in list {
        out.push_str(&format!(
            "\n{:<10} {:<8} {:<11} {:<9} {}",
            p["process"].as_str().unwrap_or(""),
            p["release"]
                .as_i64()
                .map(|v| format!("v{v}"))
                .unwrap_or_else(|| "-".into()),
            p["state"].as_str().unwrap_or(""),
            p["uptime_secs"]
                .as_i64()
                .map(format_uptime)
                .unwrap_or_else(|| "-".into()),
            p["name"].as_str().unwrap_or("")
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::log_line_json;

    #[test]
    fn log_lines_become_objects() {
        assert_eq!(
            log_line_json("[web] GET / 200\r"),
            serde_json::json!({"process": "web", "line": "GET / 200"})
        );
        assert_eq!(
            log_line_json("no prefix"),
            serde_json::json!({"process": null, "line": "no prefix"})
        );
    }
}
