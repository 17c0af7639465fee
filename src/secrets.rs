//! Keeping the bot's secrets out of logs, records, PRs and child environments.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::sync::{OnceLock, RwLock};

/// Every secret value this process has read, for the log writer.
fn registry() -> &'static RwLock<Vec<String>> {
    static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Vec::new()))
}

/// The names of every variable that held one of them.
fn secret_names() -> &'static RwLock<Vec<String>> {
    static NAMES: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    NAMES.get_or_init(|| RwLock::new(Vec::new()))
}

/// prbot's environment without anything secret: the variables a pipeline named as
/// secrets, and every name that looks like one, unless `allow` keeps it.
pub fn scrubbed_env(allow: &[String]) -> HashMap<OsString, OsString> {
    let named = secret_names().read().unwrap_or_else(|e| e.into_inner());
    std::env::vars_os()
        .filter(|(k, _)| {
            let name = k.to_string_lossy();
            if named.iter().any(|n| n == name.as_ref()) {
                return false;
            }
            if allow.iter().any(|a| a == name.as_ref()) {
                return true;
            }
            let upper = name.to_ascii_uppercase();
            !MARKERS.iter().any(|m| upper.contains(m))
        })
        .collect()
}

/// stderr for the logs, with every known secret value replaced. Each log event is one write.
pub struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let secrets = registry().read().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(buf);
        let mut out = text.into_owned();
        for v in secrets.iter() {
            out = out.replace(v.as_str(), "[REDACTED]");
        }
        std::io::stderr().write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The secret values this cycle knows about, for redaction.
#[derive(Clone, Default, Debug)]
pub struct Secrets {
    values: Vec<String>,
    /// Names of the variables that held them; always stripped from children.
    names: Vec<String>,
}

const MARKERS: [&str; 4] = ["TOKEN", "KEY", "SECRET", "PASSWORD"];

impl Secrets {
    /// Reads the named variables and remembers their values.
    pub fn from_env_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut s = Secrets::default();
        for name in names {
            s.names.push(name.to_string());
            if let Ok(v) = std::env::var(name) {
                if v.len() >= 4 {
                    s.values.push(v);
                }
            }
        }
        // Longest first, so a secret that contains another is replaced whole.
        s.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        let mut known_names = secret_names().write().unwrap_or_else(|e| e.into_inner());
        for n in &s.names {
            if !known_names.contains(n) {
                known_names.push(n.clone());
            }
        }
        drop(known_names);
        let mut known = registry().write().unwrap_or_else(|e| e.into_inner());
        for v in &s.values {
            if !known.contains(v) {
                known.push(v.clone());
            }
        }
        known.sort_by_key(|v| std::cmp::Reverse(v.len()));
        s
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "[REDACTED]");
            }
        }
        out
    }

    /// prbot's environment without anything secret, for commands that run project code.
    pub fn child_env(&self, allow: &[String]) -> HashMap<OsString, OsString> {
        let mut env = scrubbed_env(allow);
        // This cycle's names win over `allow`: a pipeline cannot hand its own token to tests.
        env.retain(|k, _| !self.names.iter().any(|n| n.as_str() == k.to_string_lossy()));
        env
    }
}
