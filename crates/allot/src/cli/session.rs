//! What `allot login` keeps for the other commands: the token (and the server it came from) in
//! one JSON file in the user's configuration directory (`$XDG_CONFIG_HOME/allot/token.json` or
//! the platform's equivalent; `ALLOT_CONFIG_DIR` overrides), readable by its owner only (0600).
//! `ALLOT_TOKEN`/`--token` win over it; `allot logout` revokes it and removes the file.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub url: String,
    pub tenant: String,
    pub login: String,
    pub token: String,
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// The directory the token file lives in.
pub fn dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ALLOT_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    dirs::config_dir()
        .map(|d| d.join("allot"))
        .ok_or_else(|| anyhow::anyhow!("no configuration directory (set ALLOT_CONFIG_DIR)"))
}

pub fn file() -> anyhow::Result<PathBuf> {
    Ok(dir()?.join("token.json"))
}

/// Writes the file with mode 0600 from its creation on (never readable by others, not even
/// briefly), replacing an earlier one.
pub fn save(saved: &Saved) -> anyhow::Result<PathBuf> {
    let dir = dir()?;
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("token.json");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // A file left by something else keeps its mode on open: set it before writing.
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let mut f = options.open(&path)?;
    f.write_all(serde_json::to_string_pretty(saved)?.as_bytes())?;
    f.write_all(b"\n")?;
    Ok(path)
}

/// The saved login, if there is one (an unreadable or foreign file counts as none).
pub fn load() -> Option<Saved> {
    let text = std::fs::read_to_string(file().ok()?).ok()?;
    serde_json::from_str(&text).ok()
}

/// Removes the file; false when there was none.
pub fn remove() -> anyhow::Result<bool> {
    match std::fs::remove_file(file()?) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A password: asked on the terminal without echo, or with `from_stdin` read as the first
/// line of standard input (scripts, tests: `echo "$PW" | allot login --password-stdin`).
pub fn read_password(prompt: &str, from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        rpassword::prompt_password(prompt).map_err(|e| {
            anyhow::anyhow!("cannot ask for the password ({e}): use --password-stdin")
        })?
    };
    anyhow::ensure!(!password.is_empty(), "no password given");
    Ok(password)
}
