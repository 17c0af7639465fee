//! The report's charts as inline SVG, written by hand: three small chart shapes do not
//! justify a plotting crate and its fonts, and the page must work offline.

use std::fmt::Write;

const W: f64 = 760.0;
const H: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 34.0;
const BOTTOM: f64 = 40.0;

/// One coloured series of a chart.
pub struct Series<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub values: Vec<f64>,
}

/// Text safe in XML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A round figure for an axis: `1234` → `1.2k`.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A figure as it is, for a bar's tooltip.
fn exact(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').to_string()
    }
}

fn open(out: &mut String, id: &str, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="{id}" role="img" viewBox="0 0 {W} {H}" width="{W}" height="{H}"><title>{t}</title><text x="{LEFT}" y="20" class="ct">{t}</text>"#,
        t = esc(title)
    );
}

/// The y axis from 0 to `max`, with three gridlines.
fn y_axis(out: &mut String, max: f64) {
    for k in 0..=2 {
        let v = max * f64::from(k) / 2.0;
        let y = H - BOTTOM - (H - TOP - BOTTOM) * f64::from(k) / 2.0;
        let _ = write!(
            out,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="ax" text-anchor="end">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            short(v)
        );
    }
}

/// Day labels under the plot, thinned so that they do not overlap.
fn x_labels(out: &mut String, labels: &[String], x_of: impl Fn(usize) -> f64) {
    let every = labels.len().div_ceil(12).max(1);
    for (i, l) in labels.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.1}" class="ax" text-anchor="middle">{}</text>"#,
            x_of(i),
            H - BOTTOM + 16.0,
            esc(l)
        );
    }
}

fn legend(out: &mut String, entries: &[(&str, &str)]) {
    for (k, (name, color)) in entries.iter().enumerate() {
        let y = TOP + 14.0 * k as f64;
        let _ = write!(
            out,
            r#"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{:.1}" class="ax">{}</text>"#,
            W - RIGHT + 12.0,
            y,
            W - RIGHT + 26.0,
            y + 9.0,
            esc(name)
        );
    }
}

/// Bars per label, the series stacked, with an optional horizontal cap line.
pub fn bars(id: &str, title: &str, labels: &[String], series: &[Series], cap: Option<(f64, &str)>) -> String {
    let n = labels.len().max(1);
    let totals: Vec<f64> = (0..labels.len()).map(|i| series.iter().map(|s| s.values[i]).sum()).collect();
    let top = totals.iter().copied().fold(0.0, f64::max).max(cap.map_or(0.0, |c| c.0));
    let max = if top > 0.0 { top * 1.1 } else { 1.0 };
    let plot_w = W - LEFT - RIGHT;
    let slot = plot_w / n as f64;
    let scale = |v: f64| (H - TOP - BOTTOM) * v / max;
    let mut out = String::new();
    open(&mut out, id, title);
    y_axis(&mut out, max);
    for (i, label) in labels.iter().enumerate() {
        let mut y = H - BOTTOM;
        for s in series {
            let h = scale(s.values[i]);
            if h > 0.0 {
                y -= h;
                let _ = write!(
                    out,
                    r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{}: {} {}</title></rect>"#,
                    LEFT + slot * i as f64 + slot * 0.1,
                    slot * 0.8,
                    s.color,
                    esc(label),
                    exact(s.values[i]),
                    esc(s.name)
                );
            }
        }
    }
    if let Some((c, name)) = cap {
        let y = H - BOTTOM - scale(c);
        let _ = write!(
            out,
            r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" class="cap"/><text x="{:.1}" y="{:.1}" class="ax">{} {}</text>"#,
            W - RIGHT,
            W - RIGHT + 4.0,
            y + 4.0,
            esc(name),
            short(c)
        );
    }
    x_labels(&mut out, labels, |i| LEFT + slot * (i as f64 + 0.5));
    let entries: Vec<(&str, &str)> = series.iter().map(|s| (s.name, s.color)).collect();
    if series.len() > 1 {
        legend(&mut out, &entries);
    }
    out.push_str("</svg>");
    out
}

/// A share from 0 to 1 per label, as a line with points; `None` where there is nothing to share.
pub fn share_line(id: &str, title: &str, labels: &[String], values: &[Option<f64>]) -> String {
    let n = labels.len().max(1);
    let plot_w = W - LEFT - RIGHT;
    let slot = plot_w / n as f64;
    let x = |i: usize| LEFT + slot * (i as f64 + 0.5);
    let y = |v: f64| H - BOTTOM - (H - TOP - BOTTOM) * v;
    let mut out = String::new();
    open(&mut out, id, title);
    for k in 0..=2 {
        let v = f64::from(k) / 2.0;
        let _ = write!(
            out,
            r#"<line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" class="grid"/><text x="{:.1}" y="{:.1}" class="ax" text-anchor="end">{:.0}%</text>"#,
            y(v),
            W - RIGHT,
            y(v),
            LEFT - 6.0,
            y(v) + 4.0,
            v * 100.0
        );
    }
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
        .collect();
    if points.len() > 1 {
        let _ = write!(
            out,
            r##"<polyline points="{}" fill="none" stroke="#1565c0" stroke-width="2"/>"##,
            points.join(" ")
        );
    }
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            let _ = write!(
                out,
                r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="#1565c0"><title>{}: {:.0}%</title></circle>"##,
                x(i),
                y(*v),
                esc(&labels[i]),
                v * 100.0
            );
        }
    }
    x_labels(&mut out, labels, x);
    out.push_str("</svg>");
    out
}

/// Horizontal bars: per row, the median and the 90th percentile.
pub fn median_p90(id: &str, title: &str, rows: &[(String, f64, f64)], unit: &str) -> String {
    let row_h = 22.0;
    let height = TOP + row_h * rows.len().max(1) as f64 + 30.0;
    let max = rows.iter().map(|r| r.2).fold(0.0, f64::max).max(1.0) * 1.1;
    let left = 130.0;
    let plot_w = W - left - RIGHT;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="{id}" role="img" viewBox="0 0 {W} {height}" width="{W}" height="{height}"><title>{t}</title><text x="{LEFT}" y="20" class="ct">{t}</text>"#,
        t = esc(title)
    );
    for (k, (name, median, p90)) in rows.iter().enumerate() {
        let y = TOP + row_h * k as f64;
        let w = |v: f64| plot_w * v / max;
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" class="ax" text-anchor="end">{}</text><rect x="{left}" y="{:.1}" width="{:.1}" height="14" fill="#90caf9"><title>p90 {} {unit}</title></rect><rect x="{left}" y="{:.1}" width="{:.1}" height="14" fill="#1565c0"><title>median {} {unit}</title></rect><text x="{:.1}" y="{:.1}" class="ax">{} / {} {unit}</text>"##,
            left - 6.0,
            y + 11.0,
            esc(name),
            y,
            w(*p90),
            short(*p90),
            y,
            w(*median),
            short(*median),
            left + w(*p90) + 6.0,
            y + 11.0,
            short(*median),
            short(*p90)
        );
    }
    legend_at(&mut out, &[("median", "#1565c0"), ("p90", "#90caf9")], height - 20.0, left);
    out.push_str("</svg>");
    out
}

fn legend_at(out: &mut String, entries: &[(&str, &str)], y: f64, x: f64) {
    for (k, (name, color)) in entries.iter().enumerate() {
        let x = x + 90.0 * k as f64;
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="10" height="10" fill="{color}"/><text x="{:.1}" y="{:.1}" class="ax">{name}</text>"#,
            x + 14.0,
            y + 9.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_bars_stack() {
        assert_eq!(esc("<a href=\"x\">&'</a>"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;");
        let labels = vec!["d1".to_string(), "d2".to_string()];
        let s = [
            Series { name: "ok", color: "#0a0", values: vec![2.0, 0.0] },
            Series { name: "<bad>", color: "#a00", values: vec![1.0, 3.0] },
        ];
        let svg = bars("c", "Cycles", &labels, &s, Some((4.0, "cap")));
        // Three non-empty segments, a cap line, and no raw `<bad>`.
        assert_eq!(svg.matches("<rect x=").count() - 2, 3);
        assert!(svg.contains("class=\"cap\"") && !svg.contains("<bad>") && svg.contains("&lt;bad&gt;"));
        assert_eq!(short(1234.0), "1.2k");
        assert_eq!(short(0.25), "0.25");
    }
}
