//! `prbot report` and `GET /report`: one self-contained HTML page of what the bot did
//! (no scripts, no fonts, nothing fetched), from the same indexes as `stats`.

mod svg;

use crate::config::settings::BudgetConfig;
use crate::domain::outcome::Outcome;
use crate::domain::records::Summary;
use crate::state::budget::{Budget, Ledger};
use crate::state::store::{RecordError, Stats, Store};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use std::collections::BTreeMap;
use std::fmt::Write;
use svg::{esc, Series};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Records(#[from] RecordError),
    #[error(transparent)]
    Budget(Box<crate::state::budget::BudgetError>),
}

impl From<crate::state::budget::BudgetError> for ReportError {
    fn from(e: crate::state::budget::BudgetError) -> Self {
        ReportError::Budget(Box::new(e))
    }
}

/// What the page shows; gathered once, then rendered.
struct Data {
    generated: DateTime<Utc>,
    days: Vec<NaiveDate>,
    /// The window's cycles, newest first.
    window: Vec<Summary>,
    ledgers: Vec<Ledger>,
    limits: Option<BudgetConfig>,
    stats: Stats,
    /// A gap's failed attempts in a row that pass it over; 0 never does.
    skip_after: usize,
}

/// The page for the last `days` UTC days (today included). `limits` are the pipeline's
/// budget caps, drawn on the cost charts when known.
pub fn render(
    store: &Store,
    budget: &Budget,
    limits: Option<BudgetConfig>,
    skip_after: usize,
    days: u32,
) -> Result<String, ReportError> {
    let generated = Utc::now();
    let today = generated.date_naive();
    let days: Vec<NaiveDate> = (0..days.max(1)).rev().map(|k| today - Duration::days(i64::from(k))).collect();
    let since = days[0].and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    let data = Data {
        generated,
        window: store.since(since)?,
        ledgers: budget.ledgers(&days)?,
        limits,
        stats: store.stats()?,
        days,
        skip_after,
    };
    Ok(page(&data))
}

fn outcome_color(o: &str, k: usize) -> &'static str {
    const FAILED: [&str; 8] =
        ["#c62828", "#ef6c00", "#ad1457", "#6a1b9a", "#d84315", "#f9a825", "#4e342e", "#283593"];
    const SKIPPED: [&str; 4] = ["#9e9e9e", "#616161", "#cfd8dc", "#78909c"];
    match o {
        "ok" => "#2e7d32",
        "dry_run" => "#00897b",
        "cycle_noop" => "#aed581",
        "cancelled" => "#795548",
        "pr_skipped_by_policy" => "#b0bec5",
        o if o.starts_with("skipped") => SKIPPED[k % SKIPPED.len()],
        _ => FAILED[k % FAILED.len()],
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

/// A reason with its particulars (numbers, ids) blurred, so that like failures group.
fn reason_kind(reason: &str) -> String {
    let one = crate::infra::text::one_line(reason, 140);
    let mut out = String::with_capacity(one.len());
    let mut last_digit = false;
    for c in one.chars() {
        if c.is_ascii_digit() {
            if !last_digit {
                out.push('#');
            }
            last_digit = true;
        } else {
            out.push(c);
            last_digit = false;
        }
    }
    out
}

fn page(d: &Data) -> String {
    let labels: Vec<String> = d.days.iter().map(|day| day.format("%m-%d").to_string()).collect();
    let index_of = |s: &Summary| {
        let k = (s.started_at.date_naive() - d.days[0]).num_days();
        usize::try_from(k).ok().filter(|k| *k < d.days.len())
    };

    // Cycles per day, by outcome.
    let mut per_outcome: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut opened = vec![0.0; d.days.len()];
    let mut cycles = vec![0.0; d.days.len()];
    for s in &d.window {
        let Some(i) = index_of(s) else { continue };
        per_outcome.entry(s.outcome.as_str()).or_insert_with(|| vec![0.0; d.days.len()])[i] += 1.0;
        cycles[i] += 1.0;
        if s.outcome == Outcome::Ok {
            opened[i] += 1.0;
        }
    }
    let series: Vec<Series> = per_outcome
        .iter()
        .enumerate()
        .map(|(k, (o, v))| Series { name: o, color: outcome_color(o, k), values: v.clone() })
        .collect();
    let share: Vec<Option<f64>> =
        cycles.iter().zip(&opened).map(|(c, o)| (*c > 0.0).then(|| o / c)).collect();
    let tokens = [Series {
        name: "tokens",
        color: "#5e35b1",
        values: d.ledgers.iter().map(|l| l.tokens as f64).collect(),
    }];
    let dollars =
        [Series { name: "dollars", color: "#00838f", values: d.ledgers.iter().map(|l| l.usd).collect() }];
    let token_cap = d.limits.as_ref().map(|l| (l.tokens_per_day as f64, "cap"));
    let usd_cap = d.limits.as_ref().and_then(|l| l.usd_per_day).map(|c| (c, "cap"));

    // Stage times, median and p90, in the order stages first appear.
    let mut times: Vec<(String, Vec<u64>)> = Vec::new();
    for s in d.window.iter().rev() {
        for t in &s.stage_ms {
            match times.iter_mut().find(|(id, _)| *id == t.id) {
                Some((_, v)) => v.push(t.ms),
                None => times.push((t.id.clone(), vec![t.ms])),
            }
        }
    }
    let stage_rows: Vec<(String, f64, f64)> = times
        .into_iter()
        .map(|(id, mut v)| {
            v.sort_unstable();
            (id, percentile(&v, 0.5), percentile(&v, 0.9))
        })
        .collect();

    let mut html = String::new();
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" lang="en"><head><meta charset="utf-8"/><meta name="viewport" content="width=device-width"/><title>prbot report</title><style>{STYLE}</style></head><body>
<h1>prbot report</h1>
<p class="meta">{} days to {} (UTC), made {}. Totals count every cycle recorded.</p>
"#,
        d.days.len(),
        d.days.last().map(|x| x.to_string()).unwrap_or_default(),
        d.generated.format("%Y-%m-%d %H:%M UTC")
    );
    let s = &d.stats;
    let _ = write!(
        html,
        r#"<table class="totals"><tr><th>Cycles</th><td id="total-cycles">{}</td></tr><tr><th>PRs opened</th><td id="total-prs">{}</td></tr><tr><th>Share that opened a PR</th><td id="pr-share" data-value="{}">{:.1}%</td></tr></table>"#,
        s.cycles,
        s.prs_opened,
        s.pr_share,
        s.pr_share * 100.0
    );
    html.push_str("\n<h2>Cycles</h2>\n");
    html.push_str(&svg::bars("cycles-per-day", "Cycles per day, by outcome", &labels, &series, None));
    html.push_str(&svg::share_line("pr-share-per-day", "Share of cycles that opened a PR", &labels, &share));
    html.push_str("\n<h2>Cost</h2>\n");
    html.push_str(&svg::bars("tokens-per-day", "Tokens per day", &labels, &tokens, token_cap));
    html.push_str(&svg::bars("dollars-per-day", "Dollars per day", &labels, &dollars, usd_cap));
    html.push_str("\n<h2>Stage times</h2>\n");
    html.push_str(&svg::median_p90("stage-times", "Stage time in ms: median and p90", &stage_rows, "ms"));

    html.push_str("\n<h2>Outcomes</h2>\n<table id=\"outcomes\"><tr><th>Outcome</th><th>Cycles</th></tr>");
    for (o, n) in &s.by_outcome {
        let _ =
            write!(html, r#"<tr data-outcome="{}"><td>{}</td><td class="n">{n}</td></tr>"#, esc(o), esc(o));
    }
    html.push_str("</table>\n");

    html.push_str(&gaps_table(d));
    html.push_str(&failures_table(d));
    html.push_str("</body></html>\n");
    html
}

fn gaps_table(d: &Data) -> String {
    // The window's cycles per gap, newest first: the PR link and whether it is stuck.
    let mut recent: BTreeMap<&str, Vec<&Summary>> = BTreeMap::new();
    for s in &d.window {
        if let Some(g) = &s.gap_id {
            recent.entry(g).or_default().push(s);
        }
    }
    let mut out = String::from(
        "\n<h2>Gaps</h2>\n<table id=\"gaps\"><tr><th>Gap</th><th>Attempts</th><th>PRs opened</th><th>Last outcome</th><th>PR</th><th>Stuck</th></tr>",
    );
    let mut gaps: Vec<(&String, &crate::state::store::GapStats)> = d.stats.by_gap.iter().collect();
    gaps.sort_by(|a, b| b.1.cycles.cmp(&a.1.cycles).then(a.0.cmp(b.0)));
    for (gap, g) in gaps {
        let mine = recent.get(gap.as_str()).map(Vec::as_slice).unwrap_or_default();
        let pr = mine.iter().find_map(|s| s.pr_url.as_deref()).map_or(String::new(), |url| {
            if url.starts_with("https://") || url.starts_with("http://") {
                format!(r#"<a href="{}">{}</a>"#, esc(url), esc(url))
            } else {
                esc(url)
            }
        });
        let n = d.skip_after;
        // As the gap picker counts: a cycle skipped, or an outage, neither counts nor
        // breaks the run.
        let latest: Vec<&&Summary> =
            mine.iter().filter(|s| s.outcome.is_attempt() && !s.outage).take(n).collect();
        let stuck = n > 0 && latest.len() >= n && latest.iter().all(|s| s.is_failed_attempt());
        let last = g.last_outcome.map(|o| o.as_str()).unwrap_or("-");
        let _ = write!(
            out,
            r#"<tr data-gap="{gap}"><td>{gap}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td><td>{pr}</td><td class="{}">{}</td></tr>"#,
            g.cycles,
            g.prs_opened,
            esc(last),
            if stuck { "stuck" } else { "" },
            if stuck { format!("yes: its last {n} attempts failed") } else { String::new() },
            gap = esc(gap),
        );
    }
    out.push_str("</table>\n");
    out
}

fn failures_table(d: &Data) -> String {
    let mut kinds: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in d.window.iter().filter(|s| s.outcome.is_failed_attempt()) {
        *kinds.entry((s.outcome.as_str().to_string(), reason_kind(&s.reason))).or_default() += 1;
    }
    let mut kinds: Vec<((String, String), usize)> = kinds.into_iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut out = String::from(
        "\n<h2>Most common failures</h2>\n<table id=\"failures\"><tr><th>Cycles</th><th>Outcome</th><th>Reason</th></tr>",
    );
    for ((o, why), n) in kinds.into_iter().take(12) {
        let _ = write!(out, r#"<tr><td class="n">{n}</td><td>{}</td><td>{}</td></tr>"#, esc(&o), esc(&why));
    }
    out.push_str("</table>\n");
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#212121}\
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em}.meta{color:#616161}\
table{border-collapse:collapse;margin:.6em 0}th,td{border-bottom:1px solid #e0e0e0;padding:.25em .7em;text-align:left}\
td.n{text-align:right}td.stuck{color:#c62828}svg{display:block;margin:.6em 0}\
.ct{font-size:14px;font-weight:600}.ax{font-size:11px;fill:#616161}.grid{stroke:#eeeeee}\
.cap{stroke:#c62828;stroke-dasharray:4 3}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_reason_kinds() {
        let v = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.9), 90.0);
        assert_eq!(percentile(&[7], 0.9), 7.0);
        assert_eq!(reason_kind("`cargo test` failed: exit status 101"), "`cargo test` failed: exit status #");
    }
}
