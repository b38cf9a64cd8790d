//! `paas git-credential get|store|erase`: git's credential helper, so git
//! remotes carry no token. `paas login URL` registers it for that URL in
//! the user's global git config; asked by git for that URL's protocol,
//! host and port, it answers with the saved login's token. `store` and
//! `erase` do nothing: the token lives in `paas login`'s file only.

use std::io::Write;

/// The configuration key of git for `url`'s credential `name` (`helper`, `username`).
fn key(url: &str, name: &str) -> String {
    format!("credential.{url}.{name}")
}

/// `scheme://host[:port]` → (scheme, host[:port] without a default port),
/// lower case; `None` for anything else.
fn origin(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(normalize(scheme, authority))
}

fn normalize(scheme: &str, host: &str) -> (String, String) {
    let scheme = scheme.to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => "",
    };
    let host = match host.strip_suffix(default) {
        Some(h) if !default.is_empty() => h.to_string(),
        _ => host,
    };
    (scheme, host)
}

/// What the helper prints for `op` given git's request (`key=value` lines)
/// and the saved login (url, token): the credentials for the saved URL's
/// protocol, host and port, nothing for any other request or operation.
pub fn answer(op: &str, request: &str, saved: Option<(String, String)>) -> String {
    if op != "get" {
        return String::new();
    }
    let Some((url, token)) = saved else {
        return String::new();
    };
    let Some(want) = origin(&url) else {
        return String::new();
    };
    let field = |name: &str| {
        request
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_string)
    };
    let (Some(protocol), Some(host)) = (field("protocol"), field("host")) else {
        return String::new();
    };
    if normalize(&protocol, &host) != want || token.contains('\n') {
        return String::new();
    }
    format!("username=paas\npassword={token}\n")
}

/// `paas git-credential OP`: reads git's request from stdin, answers on stdout.
pub fn run(op: &str) -> super::Result<()> {
    use std::io::Read;
    let mut request = String::new();
    // Git closes stdin after the request; a helper that cannot read it
    // answers nothing and git goes on without it.
    let _ = std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut request);
    let out = answer(op, &request, super::login::saved());
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    Ok(())
}

/// The helper command git runs for this binary: its absolute path, quoted
/// for the shell git runs it with when it needs to be.
pub fn helper_command() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    let exe = exe.to_str()?;
    let plain = exe
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c));
    Some(if plain {
        format!("{exe} git-credential")
    } else {
        // Git runs a helper that starts with `!` as a shell snippet.
        format!("!'{}' git-credential", exe.replace('\'', "'\\''"))
    })
}

/// Registers this binary as git's credential helper for `url` in the
/// user's global git config, in place of any other helper for it (the
/// empty value first resets the list, so a `store` helper configured for
/// every host never writes the token to a file).
pub fn register(url: &str) -> Result<(), String> {
    let helper =
        helper_command().ok_or_else(|| "cannot tell where this paas binary is".to_string())?;
    let git = |args: &[&str]| -> Result<(), String> {
        let out = std::process::Command::new("git")
            .args(["config", "--global"])
            .args(args)
            .output()
            .map_err(|e| format!("cannot run git ({e})"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    };
    git(&["--replace-all", &key(url, "helper"), ""])?;
    git(&["--add", &key(url, "helper"), &helper])?;
    git(&["--replace-all", &key(url, "username"), "paas"])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> Option<(String, String)> {
        Some(("http://203.0.113.7:8300".into(), "s3cret".into()))
    }

    #[test]
    fn answers_only_for_the_saved_origin() {
        let ok = "username=paas\npassword=s3cret\n";
        let req = "protocol=http\nhost=203.0.113.7:8300\npath=blog.git\n\n";
        assert_eq!(answer("get", req, saved()), ok);
        // Other port, host, protocol: nothing, git asks elsewhere.
        for other in [
            "protocol=http\nhost=203.0.113.7:8301\n",
            "protocol=http\nhost=203.0.113.8:8300\n",
            "protocol=https\nhost=203.0.113.7:8300\n",
            "protocol=http\n",
            "",
        ] {
            assert_eq!(answer("get", other, saved()), "", "{other:?}");
        }
        // Nothing saved, or another operation: nothing.
        assert_eq!(answer("get", req, None), "");
        assert_eq!(answer("store", req, saved()), "");
        assert_eq!(answer("erase", req, saved()), "");
        // Lines after the blank line that ends the request are not read.
        assert_eq!(
            answer("get", "protocol=http\n\nhost=203.0.113.7:8300\n", saved()),
            ""
        );
    }

    #[test]
    fn default_ports_and_case_do_not_matter() {
        let saved = Some(("https://PAAS.example.com/".into(), "t".into()));
        let ok = "username=paas\npassword=t\n";
        assert_eq!(
            answer(
                "get",
                "protocol=https\nhost=paas.example.com\n",
                saved.clone()
            ),
            ok
        );
        assert_eq!(
            answer("get", "protocol=https\nhost=paas.example.com:443\n", saved),
            ok
        );
        let saved = Some(("http://paas:old@host".into(), "t".into()));
        assert_eq!(answer("get", "protocol=http\nhost=host:80\n", saved), ok);
    }
}
