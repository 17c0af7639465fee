//! The properties the fuzz targets in `fuzz/` check, one function per parser of untrusted
//! input. Each takes raw bytes and panics when a property fails; the corpus replay test
//! runs the committed corpora through the same functions on stable.

use crate::config::settings::OnPush;
use crate::config::{Pipeline, Place};
use crate::domain::edits;
use crate::domain::guardrails::{self, Guardrails};
use crate::domain::prd;
use crate::domain::proposal::{Edit, Proposal};
use crate::serve::hooks::{self, Verdict};
use std::path::{Component, Path};

/// The names of the targets, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/`.
pub const TARGETS: [&str; 6] = ["reply", "edits", "prd", "path_guard", "pipeline", "webhook"];

/// Runs the target called `name` on one input.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "reply" => reply(data),
        "edits" => search_replace(data),
        "prd" => prd_gaps(data),
        "path_guard" => path_guard(data),
        "pipeline" => pipeline(data),
        "webhook" => webhook(data),
        other => panic!("no fuzz target called {other}"),
    }
}

/// The model's reply: a proposal that parses is a valid one, and survives a round trip.
pub fn reply(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Proposal::parse(text) {
        Ok(p) => {
            assert!(!p.summary.trim().is_empty(), "accepted an empty summary");
            assert!(!p.files.is_empty(), "accepted no files");
            for f in &p.files {
                match (&f.content, &f.edits) {
                    (Some(_), None) => {}
                    (None, Some(e)) => {
                        assert!(!f.is_new, "accepted edits of a new file");
                        assert!(
                            !e.is_empty() && e.iter().all(|e| !e.search.is_empty()),
                            "accepted an empty edit"
                        );
                    }
                    _ => panic!("accepted a file with both or neither of content and edits"),
                }
            }
            let again = serde_json::to_string(&p).expect("a proposal serialises");
            assert_eq!(Proposal::parse(&again).expect("its own JSON parses"), p, "round trip changed it");
        }
        Err(e) => assert!(e.start.chars().count() <= 160, "the error quotes more than 160 characters"),
    }
}

/// Search/replace: `content\0search\0replace[\0search\0replace...]`. A successful edit
/// changes only the region it matched, and a sequence is its edits one by one.
pub fn search_replace(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut parts = text.split('\0');
    let original = parts.next().unwrap_or_default();
    let rest: Vec<&str> = parts.collect();
    let list: Vec<Edit> =
        rest.chunks_exact(2).map(|c| Edit { search: c[0].to_string(), replace: c[1].to_string() }).collect();
    if list.is_empty() || list.iter().any(|e| e.search.is_empty()) {
        return; // the reply parser refuses these before they get here
    }
    let whole = edits::apply(original, &list);
    let mut text = original.to_string();
    for (i, e) in list.iter().enumerate() {
        match edits::apply(&text, std::slice::from_ref(e)) {
            Ok(next) => {
                assert_only_region_changed(&text, e, &next);
                text = next;
            }
            Err(why) => {
                let why = why.replacen("edit 1 of 1", &format!("edit {} of {}", i + 1, list.len()), 1);
                assert_eq!(whole, Err(why), "the sequence and its steps disagree");
                return;
            }
        }
    }
    assert_eq!(whole, Ok(text), "the sequence and its steps disagree");
}

/// `new` is `old` with one region replaced: exactly `search` (the only place it occurs), or
/// whole lines equal to `search`'s when leading whitespace is ignored.
fn assert_only_region_changed(old: &str, e: &Edit, new: &str) {
    if old.matches(e.search.as_str()).count() == 1 {
        assert_eq!(new, old.replacen(&e.search, &e.replace, 1), "an exact edit changed more than its match");
        return;
    }
    let wanted: Vec<&str> = e.search.strip_suffix('\n').unwrap_or(&e.search).split('\n').collect();
    let same = |line: &str, s: &str| {
        line.trim_end_matches(['\n', '\r']).trim_start() == s.trim_end_matches('\r').trim_start()
    };
    let lines: Vec<&str> = old.split_inclusive('\n').collect();
    let fits = (0..=lines.len().saturating_sub(wanted.len())).any(|at| {
        let Some(region) = lines.get(at..at + wanted.len()) else { return false };
        if !region.iter().zip(&wanted).all(|(l, s)| same(l, s)) {
            return false;
        }
        let (before, after) = (lines[..at].concat(), lines[at + wanted.len()..].concat());
        let Some(middle) = new.strip_prefix(before.as_str()).and_then(|m| m.strip_suffix(after.as_str()))
        else {
            return false;
        };
        middle == e.replace || middle.strip_suffix('\n') == Some(e.replace.as_str())
    });
    assert!(fits, "a loose edit changed more than the lines it matched");
}

/// The PRD: gap ids are stable when lines move and under CRLF, and safe in a branch name.
pub fn prd_gaps(data: &[u8]) {
    const TAG: &str = "[bot-eligible]";
    let Ok(text) = std::str::from_utf8(data) else { return };
    let found = prd::gaps(text, TAG);
    let lines: Vec<&str> = text.lines().collect();
    for g in &found {
        assert!(!g.text.is_empty() && !g.text.contains(TAG), "bad gap text {:?}", g.text);
        assert!(g.id.len() <= 49, "id too long: {}", g.id);
        assert!(
            g.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "id unsafe in a branch name: {}",
            g.id
        );
        let line = lines.get(g.line - 1).expect("the gap's line exists");
        assert!(line.contains(TAG), "line {} does not carry the tag", g.line);
    }
    let ids = |gs: &[prd::Gap]| gs.iter().map(|g| (g.id.clone(), g.text.clone())).collect::<Vec<_>>();
    let crlf = prd::gaps(&text.replace('\n', "\r\n"), TAG);
    assert_eq!(ids(&crlf), ids(&found), "CRLF changed the gaps");
    let moved: Vec<&str> = found.iter().rev().map(|g| lines[g.line - 1]).collect();
    let mut reversed = ids(&prd::gaps(&moved.join("\n"), TAG));
    reversed.reverse();
    assert_eq!(reversed, ids(&found), "moving the gap lines changed their ids");
}

/// The path guard: an accepted path stays under the root once joined, is written as
/// normalised components, and folds to no protected name in any variant it covers.
pub fn path_guard(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    // A root that does not exist: no symlink can be met on the way.
    let root = Path::new("/nonexistent/prbot-fuzz-root");
    let guard = Guardrails::new(["docs/PRD.md".to_string(), "pipelines/default.yml".to_string()]);
    let Ok(path) = guard.check(root, raw) else { return };
    let joined = path.under(root);
    assert!(joined.starts_with(root), "{raw:?} leaves the root");
    for c in Path::new(path.as_str()).components() {
        assert!(matches!(c, Component::Normal(_)), "{raw:?} keeps a {c:?} component");
    }
    assert!(!path.as_str().chars().any(|c| c == '\\' || c.is_control()), "{raw:?} keeps an odd character");
    let folded = guardrails::fold(path.as_str());
    let parts: Vec<&str> = folded.split('/').collect();
    for part in &parts {
        assert!(!part.ends_with(['.', ' ']), "{raw:?} has a name Windows would change");
        assert!(!matches!(*part, ".git" | "git~1"), "{raw:?} reaches .git");
    }
    // The guard's list of CI entry points, matched here on its own: a folder at the root
    // with something in it, or a file at the root.
    for entry in guardrails::CI_ENTRY_POINTS {
        let hit = match entry.strip_suffix('/') {
            Some(folder) => folded.starts_with(&format!("{folder}/")),
            None => folded == entry,
        };
        assert!(!hit, "{raw:?} is the CI entry point {entry}");
    }
    assert!(!matches!(folded.as_str(), "docs/prd.md" | "pipelines/default.yml"), "{raw:?} is protected");
    let name = *parts.last().expect("a path has a name");
    assert!(!name.starts_with(".env") && name != "cargo.lock", "{raw:?} is a secret or the lock file");
    // Case is not a way around the guard: the flipped path is accepted or refused alike.
    let flipped: String = raw
        .chars()
        .map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
        .collect();
    assert!(guard.check(root, &flipped).is_ok(), "{raw:?} passes but {flipped:?} does not");
}

/// The pipeline file: no panic, and every problem says where it is.
pub fn pipeline(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Err(e) = Pipeline::parse(Path::new("fuzz.yml"), text) else { return };
    assert!(!e.problems.is_empty(), "an error with no problem");
    // YAML breaks lines at CR, LF and CRLF.
    let lines = text.replace("\r\n", "\n").matches(['\r', '\n']).count() + 1;
    for p in &e.problems {
        match &p.place {
            Place::LineCol(line, _) => assert!(*line >= 1 && *line <= lines + 1, "line {line} of {lines}"),
            Place::Stage { position, .. } => assert!(*position >= 1, "stage #0"),
            // A problem of the whole file names its key.
            Place::File => assert!(p.message.contains('`') || p.message.contains(": "), "{}", p.message),
        }
        assert!(!p.message.trim().is_empty(), "an empty message");
    }
    assert!(e.to_string().starts_with("fuzz.yml"), "the error does not name the file");
}

/// Webhook bodies: the first byte picks the event and `on_push`, the rest is the body.
/// Only a push to the default branch starts anything.
pub fn webhook(data: &[u8]) {
    let Some((&pick, body)) = data.split_first() else { return };
    let event = ["push", "pull_request", "issues", ""][usize::from(pick & 3)];
    let on_push = if pick & 4 == 0 { OnPush::Prd } else { OnPush::Any };
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(body) else { return };
    let verdict = hooks::decide(event, &payload, "docs/PRD.md", on_push);
    if let Ok(Verdict::Trigger | Verdict::Range { .. }) = &verdict {
        assert_eq!(event, "push", "a {event} event started a cycle");
        let default = payload["repository"]["default_branch"].as_str().expect("a default branch");
        assert_eq!(payload["ref"].as_str(), Some(format!("refs/heads/{default}").as_str()));
    }
    if let Ok(Verdict::Range { .. }) = &verdict {
        let listed = payload["commits"].as_array().map_or(0, Vec::len) as u64;
        assert!(
            payload["total_commits"].as_u64().is_some_and(|t| t > listed),
            "a range without missing commits"
        );
    }
}
