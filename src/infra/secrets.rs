//! Keeping the bot's secrets out of logs, records, prompts, PRs, commits and child
//! environments.
//!
//! A secret is recognised as itself, percent-encoded, and inside base64 (standard or
//! URL-safe, at any alignment, so `Basic <base64 of user:secret>` is caught too).

use base64::Engine;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::sync::{OnceLock, RwLock};

const REDACTED: &str = "[REDACTED]";

/// Every secret this process has read, for the log writer, the panic hook and the model
/// client.
fn registry() -> &'static RwLock<Redactor> {
    static SECRETS: OnceLock<RwLock<Redactor>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Redactor::default()))
}

/// The names of every variable that held one of them.
fn secret_names() -> &'static RwLock<Vec<String>> {
    static NAMES: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    NAMES.get_or_init(|| RwLock::new(Vec::new()))
}

/// Redacts `text` of every secret this process knows.
pub fn redact_known(text: &str) -> String {
    registry().read().unwrap_or_else(|e| e.into_inner()).redact(text)
}

/// Panic messages go through the redactor too.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".into());
        let _ = writeln!(RedactingStderr, "prbot panicked{at}: {message}");
    }));
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

/// stderr for the logs, with every known secret replaced. Each log event is one write.
pub struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let out = redact_known(&String::from_utf8_lossy(buf));
        std::io::stderr().write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The forms of a set of secrets, and the replacing of them.
#[derive(Clone, Default, Debug)]
struct Redactor {
    /// Plain and percent-encoded forms, longest first.
    literals: Vec<String>,
    /// What a secret always looks like inside base64, whatever comes before it.
    base64_cores: Vec<String>,
}

impl Redactor {
    fn add(&mut self, secret: &str) {
        let mut forms = vec![secret.to_string(), percent_encode(secret, false), percent_encode(secret, true)];
        forms.dedup();
        for f in forms {
            if !self.literals.contains(&f) {
                self.literals.push(f);
            }
        }
        self.literals.sort_by_key(|v| std::cmp::Reverse(v.len()));
        for core in base64_cores(secret.as_bytes()) {
            if !self.base64_cores.contains(&core) {
                self.base64_cores.push(core);
            }
        }
    }

    fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.literals {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), REDACTED);
            }
        }
        if self.base64_cores.iter().any(|c| out.contains(c.as_str())) {
            out = self.redact_base64_runs(&out);
        }
        out
    }

    /// Replaces each run of base64 characters that holds a secret, with its padding.
    fn redact_base64_runs(&self, text: &str) -> String {
        let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '-' | '_');
        let mut out = String::with_capacity(text.len());
        let mut run_start: Option<usize> = None;
        let mut eat_padding = false;
        let flush = |out: &mut String, run: &str| {
            let secret = self.base64_cores.iter().any(|c| run.contains(c.as_str()));
            out.push_str(if secret { REDACTED } else { run });
            secret
        };
        for (i, c) in text.char_indices() {
            if is_b64(c) {
                run_start.get_or_insert(i);
                continue;
            }
            if let Some(s) = run_start.take() {
                eat_padding = flush(&mut out, &text[s..i]);
            }
            if c == '=' && eat_padding {
                continue;
            }
            eat_padding = false;
            out.push(c);
        }
        if let Some(s) = run_start {
            flush(&mut out, &text[s..]);
        }
        out
    }
}

/// The part of base64 that depends on `secret` alone, for each of the three alignments
/// it can have after a prefix (such as `x-access-token:`), in both alphabets.
fn base64_cores(secret: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for k in 0..3usize {
        let mut bytes = vec![0u8; k];
        bytes.extend_from_slice(secret);
        let from = (8 * k).div_ceil(6);
        let to = 8 * (k + secret.len()) / 6;
        for engine in [
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let enc = engine.encode(&bytes);
            if to > from + 4 {
                let core = enc[from..to].to_string();
                if !out.contains(&core) {
                    out.push(core);
                }
            }
        }
    }
    out
}

fn percent_encode(s: &str, lower: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A secret prbot cannot redact without mangling everything else.
#[derive(Debug, thiserror::Error)]
#[error("${name} holds {why}; prbot could not redact it without mangling records and logs. Set it to the real secret (at least {MIN_LEN} characters)")]
pub struct WeakSecret {
    pub name: String,
    pub why: String,
}

/// Shorter secrets, and these words, would be replaced everywhere they occur by chance.
const MIN_LEN: usize = 8;
const COMMON: [&str; 16] = [
    "password",
    "changeme",
    "changeit",
    "secret12",
    "12345678",
    "123456789",
    "qwertyui",
    "abcdefgh",
    "undefined",
    "localhost",
    "00000000",
    "11111111",
    "testtest",
    "password1",
    "letmein1",
    "example1",
];

/// The secret values this cycle knows about, for redaction.
#[derive(Clone, Default, Debug)]
pub struct Secrets {
    redactor: Redactor,
    /// Names of the variables that held them; always stripped from children.
    names: Vec<String>,
}

const MARKERS: [&str; 4] = ["TOKEN", "KEY", "SECRET", "PASSWORD"];

impl Secrets {
    /// Reads the named variables and remembers their values. A value too short or too
    /// common to redact safely is refused.
    pub fn from_env_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, WeakSecret> {
        let mut s = Secrets::default();
        let mut values = Vec::new();
        for name in names {
            s.names.push(name.to_string());
            let Ok(v) = std::env::var(name) else { continue };
            if v.is_empty() {
                continue;
            }
            let why = if v.chars().count() < MIN_LEN {
                Some(format!("a value of {} characters", v.chars().count()))
            } else if COMMON.contains(&v.to_lowercase().as_str()) {
                Some("a common word".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                return Err(WeakSecret { name: name.to_string(), why });
            }
            values.push(v);
        }
        for v in &values {
            s.redactor.add(v);
        }
        let mut known_names = secret_names().write().unwrap_or_else(|e| e.into_inner());
        for n in &s.names {
            if !known_names.contains(n) {
                known_names.push(n.clone());
            }
        }
        drop(known_names);
        let mut known = registry().write().unwrap_or_else(|e| e.into_inner());
        for v in &values {
            known.add(v);
        }
        Ok(s)
    }

    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// Redacts every string inside a JSON value, keys included: the structure stays
    /// valid whatever a secret looks like.
    pub fn redact_value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => {
                let r = self.redact(s);
                if r != *s {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => {
                let entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
                for (k, mut v) in entries {
                    self.redact_value(&mut v);
                    map.insert(self.redact(&k), v);
                }
            }
            _ => {}
        }
    }

    /// prbot's environment without anything secret, for commands that run project code.
    pub fn child_env(&self, allow: &[String]) -> HashMap<OsString, OsString> {
        let mut env = scrubbed_env(allow);
        // This cycle's names win over `allow`: a pipeline cannot hand its own token to tests.
        env.retain(|k, _| !self.names.iter().any(|n| n.as_str() == k.to_string_lossy()));
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(secret: &str) -> Redactor {
        let mut r = Redactor::default();
        r.add(secret);
        r
    }

    #[test]
    fn finds_the_secret_in_every_encoding() {
        let secret = "gh-tok3n/with+odd=chars";
        let r = redactor(secret);
        let std = base64::engine::general_purpose::STANDARD;
        let url = base64::engine::general_purpose::URL_SAFE;
        for prefix in ["", "x", "xy", "x-access-token:", "bot:"] {
            let basic = std.encode(format!("{prefix}{secret}"));
            let out = r.redact(&format!("AUTHORIZATION: basic {basic}"));
            assert_eq!(out, "AUTHORIZATION: basic [REDACTED]", "prefix {prefix:?}");
            let out = r.redact(&format!("token={}&x=1", url.encode(format!("{prefix}{secret}"))));
            assert_eq!(out, "token=[REDACTED]&x=1", "url-safe, prefix {prefix:?}");
        }
        assert_eq!(r.redact(&format!("a {secret} b")), "a [REDACTED] b");
        assert_eq!(r.redact("u=gh-tok3n%2Fwith%2Bodd%3Dchars"), "u=[REDACTED]");
        assert_eq!(r.redact("u=gh-tok3n%2fwith%2bodd%3dchars"), "u=[REDACTED]");
        let unrelated = std.encode("some other header value entirely");
        assert_eq!(r.redact(&unrelated), unrelated);
    }

    #[test]
    fn a_json_value_stays_valid_whatever_the_secret_looks_like() {
        let mut s = Secrets::default();
        for secret in ["\"quoted\"", "back\\slash", "null-ish-value"] {
            s.redactor.add(secret);
        }
        let mut v = serde_json::json!({"reason": "saw \"quoted\" and back\\slash", "n": 3, "list": ["null-ish-value"]});
        s.redact_value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"reason": "saw [REDACTED] and [REDACTED]", "n": 3, "list": ["[REDACTED]"]})
        );
    }
}
