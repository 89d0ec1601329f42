//! Charts as inline SVG, drawn here from Keel's own numbers (no script, no bundled
//! library): bars for counts and money, lines for percentiles. Every label and tooltip
//! is escaped; a missing value (an empty bucket) is a gap, not a zero.

use std::fmt::Write as _;

use super::html::esc;

const W: f64 = 600.0;
const H: f64 = 200.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 24.0;

/// One line of a line chart.
pub struct Series<'a> {
    pub name: &'a str,
    /// A CSS class that sets its colour (`s1`, `s2`).
    pub class: &'a str,
    pub points: Vec<Option<f64>>,
}

fn frame(title: &str, max: f64, labels: &[String], fmt: &dyn Fn(f64) -> String) -> String {
    let mut out = format!(
        "<figure class=\"chart\"><figcaption>{}</figcaption>\
         <svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\" preserveAspectRatio=\"none\">",
        esc(title),
        esc(title)
    );
    // Grid: zero, half and max, labelled.
    for frac in [0.0, 0.5, 1.0] {
        let y = TOP + (H - TOP - BOTTOM) * (1.0 - frac);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>\
             <text class=\"axis\" x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            esc(&fmt(max * frac))
        );
    }
    // First, middle and last x labels.
    let n = labels.len();
    if n > 0 {
        let step = (W - LEFT - RIGHT) / n as f64;
        let mut picks = vec![0, n / 2, n - 1];
        picks.dedup();
        for i in picks {
            if let Some(l) = labels.get(i) {
                let x = LEFT + step * (i as f64 + 0.5);
                let _ = write!(
                    out,
                    "<text class=\"axis\" x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                    H - 6.0,
                    esc(l)
                );
            }
        }
    }
    out
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// Vertical bars, one per label; `fmt` formats values for the axis and tooltips.
pub fn bars(title: &str, labels: &[String], values: &[f64], fmt: &dyn Fn(f64) -> String) -> String {
    let max = nice_max(values.iter().copied().fold(0.0, f64::max));
    let mut out = frame(title, max, labels, fmt);
    let n = values.len().max(1);
    let step = (W - LEFT - RIGHT) / n as f64;
    let plot_h = H - TOP - BOTTOM;
    for (i, v) in values.iter().enumerate() {
        let h = (v / max * plot_h).max(0.0);
        let x = LEFT + step * i as f64 + step * 0.1;
        let label = labels.get(i).map(String::as_str).unwrap_or("");
        let _ = write!(
            out,
            "<rect class=\"bar\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{}: {}</title></rect>",
            TOP + plot_h - h,
            step * 0.8,
            esc(label),
            esc(&fmt(*v))
        );
    }
    out.push_str("</svg></figure>");
    out
}

/// A vertical mark on a chart's time axis: at x index `at`, a CSS class (`cp`,
/// `change`, `action`) and its tooltip.
pub struct Mark<'a> {
    pub at: usize,
    pub class: &'a str,
    pub title: String,
}

/// Lines over the same x labels, with a legend; gaps where a point is `None`.
pub fn lines(
    title: &str,
    labels: &[String],
    series: &[Series<'_>],
    fmt: &dyn Fn(f64) -> String,
) -> String {
    lines_marked(title, labels, series, &[], fmt)
}

/// [`lines`] with vertical marks (an incident's change points and changes).
pub fn lines_marked(
    title: &str,
    labels: &[String],
    series: &[Series<'_>],
    marks: &[Mark<'_>],
    fmt: &dyn Fn(f64) -> String,
) -> String {
    let max = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().flatten().copied())
            .fold(0.0, f64::max),
    );
    let mut out = frame(title, max, labels, fmt);
    let n = labels.len().max(1);
    let step = (W - LEFT - RIGHT) / n as f64;
    let plot_h = H - TOP - BOTTOM;
    for m in marks {
        let x = LEFT + step * (m.at as f64 + 0.5);
        let _ = write!(
            out,
            "<line class=\"mark {}\" x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\"><title>{}</title></line>",
            esc(m.class),
            H - BOTTOM,
            esc(&m.title)
        );
    }
    for s in series {
        let mut path = String::new();
        let mut pen_down = false;
        for (i, p) in s.points.iter().enumerate() {
            let Some(v) = p else {
                pen_down = false;
                continue;
            };
            let x = LEFT + step * (i as f64 + 0.5);
            let y = TOP + plot_h - (v / max * plot_h);
            let _ = write!(path, "{}{x:.1},{y:.1} ", if pen_down { "L" } else { "M" });
            pen_down = true;
            let label = labels.get(i).map(String::as_str).unwrap_or("");
            let _ = write!(
                out,
                "<circle class=\"{c}\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\"><title>{} {}: {}</title></circle>",
                esc(s.name),
                esc(label),
                esc(&fmt(*v)),
                c = esc(s.class)
            );
        }
        if !path.is_empty() {
            let _ = write!(
                out,
                "<path class=\"line {}\" d=\"{}\"/>",
                esc(s.class),
                path.trim_end()
            );
        }
    }
    out.push_str("</svg><div class=\"legend\">");
    for s in series {
        let _ = write!(
            out,
            "<span class=\"{}\">■</span> {} ",
            esc(s.class),
            esc(s.name)
        );
    }
    out.push_str("</div></figure>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_lines_are_svg_with_escaped_labels() {
        let labels = vec!["<a>".to_string(), "b".to_string()];
        let svg = bars("Req", &labels, &[1.0, 3.0], &|v| format!("{v}"));
        assert!(svg.contains("<svg") && svg.contains("&lt;a&gt;"));
        assert_eq!(svg.matches("<rect").count(), 2);
        let svg = lines(
            "Lat",
            &labels,
            &[Series {
                name: "p50",
                class: "s1",
                points: vec![None, Some(2.0)],
            }],
            &|v| format!("{v}"),
        );
        assert_eq!(svg.matches("<circle").count(), 1);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(0.0), 1.0);
    }
}
