//! Keeping the bot's secrets out of logs, records, PRs and child environments.

use std::collections::HashMap;
use std::ffi::OsString;

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
        std::env::vars_os()
            .filter(|(k, _)| {
                let name = k.to_string_lossy();
                if self.names.iter().any(|n| n == name.as_ref()) {
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
}
