//! prbot report: one self-contained page whose numbers are the ones `stats` gives.

use crate::support::*;
use quick_xml::events::Event;
use serde_json::{json, Value};
use std::collections::BTreeMap;

const OUTCOMES: [&str; 6] = ["ok", "ok", "tests_failed", "model_failed", "skipped_no_gap", "apply_failed"];

/// A state folder with `n` cycles over the last `days` days (records made from a real
/// one), the day ledgers, and the indexes rebuilt by `history --reindex`.
async fn history_of(env: &Env, model: &Model, n: usize, days: i64) -> BTreeMap<String, u64> {
    let p = Pipeline::default();
    let real = env.run(model, &p.clone().without_pr()).expect("dry_run", 0);
    let state = env.state();
    let now = chrono::Utc::now();
    let mut tokens_by_day = BTreeMap::new();
    for i in 0..n {
        let started = now - chrono::Duration::minutes((i as i64 * days * 24 * 60) / n as i64 + 1);
        let id = format!("{}-{:04x}", started.format("%Y%m%dT%H%M%S%3fZ"), i);
        let outcome = OUTCOMES[i % OUTCOMES.len()];
        let mut r = real.clone();
        r["cycle_id"] = json!(id);
        r["started_at"] = json!(started.to_rfc3339());
        r["outcome"] = json!(outcome);
        r["reason"] = json!(format!("reason for {outcome} number {}", i % 3));
        r["gap"]["id"] = json!(format!("gap-{}-0000000{}", i % 7, i % 7));
        for (k, stage) in r["stages"].as_array_mut().unwrap().iter_mut().enumerate() {
            stage["duration_ms"] = json!((i * 7 + k * 13) % 400);
        }
        r["pr"] = if outcome == "ok" {
            json!({"number": i, "url": format!("https://forge.example/o/r/pulls/{i}"), "title": "t", "created": true})
        } else {
            Value::Null
        };
        std::fs::write(state.join("cycles").join(format!("{id}.json")), serde_json::to_vec(&r).unwrap())
            .unwrap();
        *tokens_by_day.entry(started.format("%Y-%m-%d").to_string()).or_insert(0) += 100 + i as u64;
    }
    for (day, tokens) in &tokens_by_day {
        let ledger = json!({"day": day, "calls": 1, "tokens": tokens, "usd": 0.5, "prs_opened": 0});
        std::fs::write(state.join(format!("cost-{day}.json")), ledger.to_string()).unwrap();
    }
    let out =
        prbot(&["history", "--reindex", "--limit", "1"], &env.repo, &env.pipeline_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tokens_by_day
}

/// Every element of the page, as (name, attributes, text inside), checking it is well formed.
fn elements(html: &str) -> Vec<(String, BTreeMap<String, String>, String)> {
    let body = html.strip_prefix("<!DOCTYPE html>\n").expect("a doctype");
    let mut reader = quick_xml::Reader::from_str(body);
    let mut open: Vec<usize> = Vec::new();
    let mut out: Vec<(String, BTreeMap<String, String>, String)> = Vec::new();
    loop {
        match reader.read_event().unwrap_or_else(|e| panic!("the page is not well formed: {e}")) {
            Event::Start(e) => {
                out.push(element(&e));
                open.push(out.len() - 1);
            }
            Event::Empty(e) => out.push(element(&e)),
            Event::Text(t) => {
                let t = t.unescape().unwrap().into_owned();
                for &i in &open {
                    out[i].2.push_str(&t);
                }
            }
            Event::End(_) => {
                open.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(open.is_empty(), "unclosed elements");
    out
}

fn element(e: &quick_xml::events::BytesStart) -> (String, BTreeMap<String, String>, String) {
    let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
    let attrs = e
        .attributes()
        .map(|a| {
            let a = a.unwrap();
            (String::from_utf8(a.key.as_ref().to_vec()).unwrap(), a.unescape_value().unwrap().into_owned())
        })
        .collect();
    (name, attrs, String::new())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_holds_one_chart_each_and_the_numbers_of_stats() {
    let env = Env::new();
    let model = Model::good().await;
    let tokens_by_day = history_of(&env, &model, 300, 6).await;
    let page = env.tmp.path().join("report.html");
    let out =
        prbot(&["report", "--days", "10", "--out", page.to_str().unwrap()], &env.repo, &env.pipeline_path)
            .output()
            .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    let stats: Value = serde_json::from_slice(
        &prbot(&["stats", "--json"], &env.repo, &env.pipeline_path).output().unwrap().stdout,
    )
    .unwrap();
    let els = elements(&html);
    let by_id = |id: &str| {
        els.iter()
            .find(|e| e.1.get("id").map(String::as_str) == Some(id))
            .unwrap_or_else(|| panic!("no #{id}"))
    };

    // One SVG per chart, nothing fetched, nothing run.
    let svgs: Vec<&str> = els.iter().filter(|e| e.0 == "svg").map(|e| e.1["id"].as_str()).collect();
    assert_eq!(
        svgs,
        ["cycles-per-day", "pr-share-per-day", "tokens-per-day", "dollars-per-day", "stage-times"]
    );
    for e in &els {
        assert!(
            !matches!(e.0.as_str(), "script" | "link" | "img" | "iframe" | "object"),
            "a <{}> in the page",
            e.0
        );
        assert!(!e.1.contains_key("src") && !e.1.keys().any(|k| k.starts_with("on")), "{e:?}");
    }
    assert!(!html.contains("url("), "the style fetches something");

    // The totals and tables are stats --json's.
    assert_eq!(by_id("total-cycles").2, stats["cycles"].to_string());
    assert_eq!(by_id("total-prs").2, stats["prs_opened"].to_string());
    let share: f64 = by_id("pr-share").1["data-value"].parse().unwrap();
    assert!((share - stats["pr_share"].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(stats["cycles"], 301);
    for (outcome, n) in stats["by_outcome"].as_object().unwrap() {
        let row = els.iter().find(|e| e.1.get("data-outcome") == Some(outcome)).expect("a row per outcome");
        assert!(row.2.ends_with(&n.to_string()), "{outcome}: {}", row.2);
    }
    for (gap, g) in stats["by_gap"].as_object().unwrap() {
        let row = els.iter().find(|e| e.1.get("data-gap") == Some(gap)).expect("a row per gap");
        assert!(row.2.starts_with(&format!("{gap}{}{}", g["cycles"], g["prs_opened"])), "{gap}: {}", row.2);
    }
    // Newest first, gap g's outcomes run through OUTCOMES from g: only gap 2's three
    // newest attempts failed (tests_failed, model_failed, then apply_failed past a
    // skipped cycle, which is no attempt), so only it is stuck.
    let stuck: Vec<&String> = els
        .iter()
        .filter(|e| e.2.ends_with("yes: its last 3 attempts failed"))
        .filter_map(|e| e.1.get("data-gap"))
        .collect();
    assert_eq!(stuck, ["gap-2-00000002"], "{html}");

    // The bars add up: cycles per day to the cycles in the window, tokens to the ledgers.
    let chart_sum = |id: &str| -> f64 {
        let svg = by_id(id);
        let start = els.iter().position(|e| std::ptr::eq(e, svg)).unwrap();
        els[start + 1..]
            .iter()
            .take_while(|e| e.0 != "svg")
            .filter(|e| e.0 == "rect" && !e.2.is_empty())
            .map(|e| {
                let n = e.2.split(": ").nth(1).unwrap().split(' ').next().unwrap();
                n.parse::<f64>().unwrap()
            })
            .sum()
    };
    assert_eq!(chart_sum("cycles-per-day"), 301.0);
    assert_eq!(chart_sum("tokens-per-day"), tokens_by_day.values().sum::<u64>() as f64);
    assert_eq!(chart_sum("dollars-per-day"), 0.5 * tokens_by_day.len() as f64);
    // PR links are links, to the PR of the gap's newest ok cycle.
    assert!(els.iter().any(|e| e.0 == "a" && e.1["href"].starts_with("https://forge.example/o/r/pulls/")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gap_whose_last_attempts_failed_is_marked_stuck_and_text_is_escaped() {
    let env = Env::new();
    let model = Model::replying("not json <script>alert(1)</script>").await;
    for _ in 0..3 {
        env.run(&model, &Pipeline::default()).expect("model_failed", 1);
    }
    let page = env.tmp.path().join("r.html");
    let out =
        prbot(&["report", "--out", page.to_str().unwrap()], &env.repo, &env.pipeline_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    elements(&html);
    assert!(html.contains("class=\"stuck\""), "{html}");
    assert!(!html.contains("<script>"), "a reason was not escaped");
}

/// A cycle skipped after its gap was picked (the budget ran out mid-propose) is no
/// attempt: the report calls the gap stuck exactly when the gap picker passes it over.
#[tokio::test(flavor = "multi_thread")]
async fn the_report_and_the_gap_picker_agree_on_a_stuck_gap() {
    let env = Env::new();
    let model = Model::replying("not json").await;
    for _ in 0..3 {
        env.run(&model, &Pipeline::default()).expect("model_failed", 1);
    }
    let cycles = env.state().join("cycles");
    let mut names: Vec<String> = std::fs::read_dir(&cycles)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let newest: Value =
        serde_json::from_slice(&std::fs::read(cycles.join(names.last().unwrap())).unwrap()).unwrap();
    let started = chrono::Utc::now() + chrono::Duration::seconds(1);
    let id = format!("{}-beef", started.format("%Y%m%dT%H%M%S%3fZ"));
    let mut skipped = newest.clone();
    skipped["cycle_id"] = json!(id);
    skipped["started_at"] = json!(started.to_rfc3339());
    skipped["outcome"] = json!("skipped_cost");
    skipped["reason"] = json!("the daily budget ran out before the model was asked");
    assert!(skipped["gap"]["id"].is_string());
    std::fs::write(cycles.join(format!("{id}.json")), serde_json::to_vec(&skipped).unwrap()).unwrap();
    let out =
        prbot(&["history", "--reindex", "--limit", "1"], &env.repo, &env.pipeline_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("skipped_cost"),
        "the skipped cycle is not the newest"
    );

    let page = env.tmp.path().join("r.html");
    let out =
        prbot(&["report", "--out", page.to_str().unwrap()], &env.repo, &env.pipeline_path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("class=\"stuck\""), "the report does not call the gap stuck: {html}");
    let r = env.run(&model, &Pipeline::default()).expect("skipped_no_gap", 0);
    assert_reason(&r, "its last 3 attempts all failed");
}
