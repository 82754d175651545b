//! target/bench/start.svg: the start-latency distributions, hand-written SVG
//! (no plotting or font dependencies). One panel per `run` figure, one strip
//! per runtime: every sample as a dot, the interquartile box, the median as
//! a bar, a whisker from min to p95, and the floors as dashed lines.

use std::fmt::Write;

use crate::report::{Figure, Status};

/// (panel figure, floor figures drawn on it)
const PANELS: &[(&str, &[&str])] = &[
    ("run", &["floor-exec", "floor-unshare"]),
    ("run-netns", &["floor-exec", "floor-unshare-net"]),
    ("run-seccomp", &["floor-exec", "floor-unshare"]),
];

const W: f64 = 1040.0;
const LEFT: f64 = 130.0;
const RIGHT: f64 = 250.0;
const ROW: f64 = 30.0;
const HEAD: f64 = 46.0;
const AXIS: f64 = 34.0;
const GAP: f64 = 14.0;

fn color(runtime: &str) -> &'static str {
    match runtime {
        "phantom" => "#7b2cbf",
        "phantom (ro)" => "#c77dff",
        "crun" => "#2a9d8f",
        "runc" => "#457b9d",
        "youki" => "#e76f51",
        _ => "#555555",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round axis end and tick step: 1, 2 or 5 × 10^k, about 8 ticks.
fn nice_axis(max: f64) -> (f64, f64) {
    let max = if max > 0.0 { max } else { 1.0 };
    let raw = max / 8.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    ((max / step).ceil() * step, step)
}

/// Deterministic jitter in [-1, 1] for sample `i`.
fn jitter(i: usize) -> f64 {
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    (x % 2001) as f64 / 1000.0 - 1.0
}

pub fn start_svg(figures: &[Figure], subtitle: &str) -> String {
    let find = |id: &str| figures.iter().find(|f| f.id == id);
    let panels: Vec<(&Figure, Vec<(String, f64)>)> = PANELS
        .iter()
        .filter_map(|(id, floors)| {
            let f = find(id)?;
            let fl = floors
                .iter()
                .filter_map(|fid| {
                    let floor = find(fid)?;
                    Some((floor.title.clone(), floor.median("host")?))
                })
                .collect();
            Some((f, fl))
        })
        .collect();

    // One x scale for all panels: up to the largest p95, so a few outliers
    // do not squash the distributions (they are drawn at the edge).
    let mut top: f64 = 0.0;
    for (f, floors) in &panels {
        for c in f.cells.iter().filter(|c| c.is_ok()) {
            if let Some(s) = c.summary {
                top = top.max(s.p95 * 1.1);
            }
        }
        for (_, v) in floors {
            top = top.max(*v);
        }
    }
    let (xmax, step) = nice_axis(top);
    let plot_w = W - LEFT - RIGHT;
    let x = |v: f64| LEFT + (v.clamp(0.0, xmax) / xmax) * plot_w;

    let height: f64 = 76.0
        + panels
            .iter()
            .map(|(f, _)| HEAD + ROW * f.cells.len() as f64 + AXIS + GAP)
            .sum::<f64>();
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="22" font-size="15" font-weight="bold">Start latency: wall time of `RUNTIME run` of /bin/true (ms)</text>
<text x="{LEFT}" y="40" fill="#555">{}</text>
<text x="{LEFT}" y="56" fill="#555">dot = one run · box = p25–p75 · black bar = median · whisker = min–p95 · dashed = the floor (no runtime)</text>
"##,
        esc(subtitle)
    );
    let mut y0 = 76.0;
    for (f, floors) in &panels {
        let rows = f.cells.len() as f64;
        let panel_h = ROW * rows;
        let _ = writeln!(
            s,
            r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
            y0 + 16.0,
            esc(&f.title)
        );
        let top_y = y0 + HEAD;
        let bottom_y = top_y + panel_h;
        // Grid and axis.
        let mut t = 0.0;
        while t <= xmax + step / 2.0 {
            let _ = writeln!(
                s,
                r##"<line x1="{0:.1}" y1="{top_y}" x2="{0:.1}" y2="{bottom_y}" stroke="#eeeeee"/><text x="{0:.1}" y="{1}" text-anchor="middle" fill="#444">{2}</text>"##,
                x(t),
                bottom_y + 16.0,
                trim_num(t)
            );
            t += step;
        }
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{bottom_y}" x2="{}" y2="{bottom_y}" stroke="#888"/><text x="{}" y="{}" fill="#444">ms</text>"##,
            LEFT + plot_w,
            LEFT + plot_w + 16.0,
            bottom_y + 16.0
        );
        // Floors.
        for (i, (name, v)) in floors.iter().enumerate() {
            let _ = writeln!(
                s,
                r##"<line x1="{0:.1}" y1="{top_y}" x2="{0:.1}" y2="{bottom_y}" stroke="#999" stroke-dasharray="4 3"/><text x="{1:.1}" y="{2}" font-size="10" fill="#777">floor: {3} {4:.2} ms</text>"##,
                x(*v),
                x(*v) + 3.0,
                top_y - 4.0 - 12.0 * i as f64,
                esc(short_floor(name)),
                v
            );
        }
        for (ri, c) in f.cells.iter().enumerate() {
            let cy = top_y + ROW * (ri as f64 + 0.5);
            let col = color(&c.runtime);
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end" fill="{col}" font-weight="bold">{}</text>"#,
                LEFT - 10.0,
                cy + 4.0,
                esc(&c.runtime)
            );
            let sum = match (c.status, c.summary) {
                (Status::Ok, Some(sum)) => sum,
                _ => {
                    let why = match c.status {
                        Status::Unavailable => "unavailable",
                        Status::Pending => "pending",
                        Status::NotApplicable => "n/a",
                        _ => "failed",
                    };
                    let note: String = c.note.as_deref().unwrap_or("").chars().take(110).collect();
                    let _ = writeln!(
                        s,
                        r##"<text x="{}" y="{}" fill="#888">{why}: {}</text>"##,
                        LEFT + 4.0,
                        cy + 4.0,
                        esc(&note)
                    );
                    continue;
                }
            };
            let mut clipped = 0;
            for (i, v) in c.samples.iter().enumerate() {
                if *v > xmax {
                    clipped += 1;
                }
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{col}" fill-opacity="0.35"/>"#,
                    x(*v),
                    cy + 8.0 * jitter(i)
                );
            }
            let _ = writeln!(
                s,
                r#"
<line x1="{min:.1}" y1="{cy}" x2="{p95:.1}" y2="{cy}" stroke="{col}" stroke-width="1.2"/><rect x="{p25:.1}" y="{top}" width="{w:.1}" height="16" fill="none" stroke="{col}" stroke-width="1.5"/><line x1="{med:.1}" y1="{top}" x2="{med:.1}" y2="{bot}" stroke="black" stroke-width="2.5"/>"#,
                min = x(sum.min),
                p95 = x(sum.p95),
                p25 = x(sum.p25),
                med = x(sum.median),
                w = (x(sum.p75) - x(sum.p25)).max(1.0),
                top = cy - 8.0,
                bot = cy + 8.0,
            );
            let more = if clipped > 0 {
                format!(" · {clipped} off-axis")
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" fill="#333">median {:.2} · p95 {:.2}{}</text>"##,
                LEFT + plot_w + 10.0,
                cy + 4.0,
                sum.median,
                sum.p95,
                esc(&more)
            );
        }
        y0 = bottom_y + AXIS + GAP;
    }
    s.push_str("</svg>\n");
    s
}

fn short_floor(title: &str) -> &str {
    if title.contains("--net") {
        "unshare +net"
    } else if title.contains("unshare") {
        "unshare"
    } else {
        "fork+exec"
    }
}

fn trim_num(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Cell, Unit};
    use crate::rows::Section;

    #[test]
    fn axis_is_round() {
        assert_eq!(nice_axis(73.0), (80.0, 10.0));
        assert_eq!(nice_axis(9.0), (10.0, 2.0));
        assert!(jitter(3).abs() <= 1.0);
    }

    #[test]
    fn svg_has_a_strip_per_runtime() {
        let mut ok = Cell::new("crun", Status::Ok, None);
        ok.samples = vec![20.0, 21.0, 35.0, 19.0];
        let mut f = Figure::new(
            "run",
            Section::Start,
            "run <a>",
            Unit::Ms,
            vec![
                ok,
                Cell::new("youki", Status::Unavailable, Some("x & y".into())),
            ],
        );
        f.finish();
        let svg = start_svg(&[f], "test");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("run &lt;a&gt;") && svg.contains("x &amp; y"));
    }
}
