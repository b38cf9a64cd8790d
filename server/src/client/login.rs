//! `paas login URL`: check a token against a daemon and keep both (0600,
//! `$XDG_CONFIG_HOME/paas/login.json` or `~/.config/paas/login.json`), and
//! make this binary git's credential helper for the URL, so git remotes
//! name the app without the token.

use super::{ClientError, Result, Target};
use std::path::PathBuf;

/// Where `paas login` keeps the URL and token.
pub fn file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("paas").join("login.json"))
}

/// The saved login: (url, token).
pub fn saved() -> Option<(String, String)> {
    let text = std::fs::read_to_string(file()?).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((
        v["url"].as_str()?.to_string(),
        v["token"].as_str()?.to_string(),
    ))
}

/// Reads a token from the terminal without echoing it.
fn ask_token() -> Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let tty = std::io::stdin().is_terminal();
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    if tty {
        eprint!("Token (the admin token, or one from `paas tokens:create`): ");
        let _ = std::io::stderr().flush();
        stty("-echo");
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if tty {
        stty("echo");
        eprintln!();
    }
    read.map_err(|e| ClientError::Usage(format!("cannot read the token: {e}")))?;
    let token = line.trim().to_string();
    if token.is_empty() {
        return Err(ClientError::Usage(
            "no token given: type it at the prompt or pass --token".into(),
        ));
    }
    Ok(token)
}

/// `paas login URL [--token T]`: proves the URL and the token, then saves them.
pub async fn login(url: &str, token: Option<String>) -> Result<()> {
    let url = url.trim().trim_end_matches('/').to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ClientError::Usage(format!(
            "{url:?} is not a URL: give the daemon's control URL, like http://203.0.113.7:8300"
        )));
    }
    let token = match token {
        Some(t) => t,
        None => ask_token()?,
    };
    let t = Target {
        url: url.clone(),
        token: token.clone(),
        json: false,
    };
    t.call(reqwest::Method::GET, "/api/apps", None).await?;
    let file = file().ok_or_else(|| {
        ClientError::Usage(
            "no home directory to save the login in: set HOME or XDG_CONFIG_HOME".into(),
        )
    })?;
    let json = serde_json::json!({ "url": url, "token": token }).to_string();
    crate::layout::write_private(&file, json.as_bytes()).map_err(|e| {
        ClientError::Server(format!("cannot save the login in {}: {e}", file.display()))
    })?;
    println!("Logged in to {url}; saved in {}.", file.display());
    match super::credential::register(&url) {
        Ok(()) => println!(
            "git pushes to {url} get the token from paas (credential helper in your global git config): git remote add paas {url}/APP.git"
        ),
        Err(e) => eprintln!(
            "paas: could not set paas as git's credential helper for {url} ({e}); git will ask for the token on push (user paas, password the token)"
        ),
    }
    Ok(())
}
