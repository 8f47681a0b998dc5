//! `--report FILE.html`: one self-contained page (inline CSS and SVG, no
//! scripts, no external assets) with the key figures, a latency-over-time
//! chart and a latency histogram per measured phase.

use std::fmt::Write as _;

use crate::stats::{Bucket, SeriesPoint};
use crate::summary::{PhaseSummary, Summary, bytes, us};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 40.0;

/// Renders the whole page.
pub fn render(s: &Summary) -> String {
    let mut h = String::new();
    let title = format!("actorchat bench {} — {}", s.scenario, s.url);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{CSS}</style></head><body>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    );
    let _ = writeln!(
        h,
        "<p class=\"meta\">{} client(s) over {} process(es); started at {} ms since the Unix epoch. \
         Latency is <code>now − sent_at</code> measured by every receiver (the sender included) \
         on the same clock.</p>",
        s.clients, s.procs, s.started_unix_ms
    );

    h.push_str("<h2>Summary</h2>\n<table class=\"kv\">\n");
    row(
        &mut h,
        "Clients",
        &format!(
            "{} opened, {} failed, {} alive (answered a ping); ramp {:.2} s; {} room_update frames while joining",
            s.opened, s.failed, s.alive, s.ramp_secs, s.room_updates_during_ramp
        ),
    );
    if let Some(limit) = &s.client_limit {
        row(&mut h, "Client limit", limit);
    }
    for (kind, n) in &s.connect_errors {
        row(&mut h, "Connect error", &format!("{n} × {kind}"));
    }
    if !s.phases.is_empty() {
        row(
            &mut h,
            "Messages",
            &format!(
                "{} sent, {} send failures, {} rate-limited",
                s.sent, s.send_failed, s.rate_limited
            ),
        );
        row(
            &mut h,
            "Deliveries",
            &format!(
                "{} expected, {} received, loss {} ({:.4} %), {:.0}/s",
                s.expected_deliveries,
                s.received_deliveries,
                s.loss,
                s.loss_ratio * 100.0,
                s.deliveries_per_sec
            ),
        );
    }
    if let Some(l) = s.latency {
        row(
            &mut h,
            "Delivery latency",
            &format!(
                "p50 {} · p90 {} · p99 {} · p99.9 {} · max {} ({} samples)",
                us(Some(l.p50_us)),
                us(Some(l.p90_us)),
                us(Some(l.p99_us)),
                us(Some(l.p999_us)),
                us(Some(l.max_us)),
                l.count
            ),
        );
    }
    if let Some(l) = s.ping_latency {
        row(
            &mut h,
            "Ping round trip",
            &format!(
                "p50 {} · p99 {} · max {}",
                us(Some(l.p50_us)),
                us(Some(l.p99_us)),
                us(Some(l.max_us))
            ),
        );
    }
    if let Some(c) = &s.capacity {
        row(
            &mut h,
            "Capacity",
            &format!(
                "{} (p99 ≤ {} ms, loss ≤ {}); stopped: {}",
                c.max_sustainable_deliveries_per_sec
                    .map_or("no step passed".into(), |d| format!("{d:.0} deliveries/s")),
                c.p99_threshold_ms,
                c.max_loss,
                c.stopped_because
            ),
        );
    }
    // The history scenarios' figures, as their table lines.
    for text in [
        s.ingest.as_ref().map(|i| {
            let mut t = String::new();
            i.write_table(&mut t);
            t
        }),
        s.reconnect.as_ref().map(|r| {
            let mut t = String::new();
            r.write_table(&mut t);
            t
        }),
    ]
    .into_iter()
    .flatten()
    {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (key, value) = line.trim().split_once("  ").unwrap_or(("", line));
            row(&mut h, key.trim(), value.trim());
        }
    }
    for failure in &s.failures {
        row(&mut h, "FAILED", failure);
    }
    let server = &s.server;
    let rss = |snap: &Option<crate::metrics::ServerSnapshot>| {
        snap.as_ref()
            .and_then(|x| x.resident_memory_bytes)
            .map_or("n/a".to_owned(), bytes)
    };
    row(
        &mut h,
        "Server memory",
        &format!(
            "before {}, during {}, after {}{}",
            rss(&server.before),
            rss(&server.during),
            rss(&server.after),
            server
                .rss_per_connection_bytes
                .map_or(String::new(), |b| format!("; {} per connection", bytes(b)))
        ),
    );
    row(
        &mut h,
        "Server CPU per delivery",
        &server
            .cpu_per_delivery_us
            .map_or("n/a".into(), |c| format!("{c:.2} µs")),
    );
    if let Some(e) = &server.metrics_error {
        row(&mut h, "/metrics", e);
    }
    h.push_str("</table>\n");
    if !s.notes.is_empty() {
        h.push_str("<ul class=\"notes\">\n");
        for n in &s.notes {
            let _ = writeln!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>\n");
    }

    if !s.phases.is_empty() {
        phase_table(&mut h, &s.phases);
    }
    for p in &s.phases {
        if p.series.is_empty() && p.histogram.is_empty() {
            continue;
        }
        let _ = writeln!(h, "<h2>{}</h2>", esc(&p.name));
        h.push_str("<div class=\"charts\">\n");
        h.push_str(&latency_chart(&p.series));
        h.push_str(&histogram_chart(&p.histogram));
        h.push_str("</div>\n");
    }
    // The data behind the page, for anyone who wants to re-plot it.
    let json = serde_json::to_string(s)
        .unwrap_or_default()
        .replace("</", "<\\/");
    let _ = writeln!(
        h,
        "<script type=\"application/json\" id=\"summary\">{json}</script>\n</body></html>"
    );
    h
}

const CSS: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;\
padding:0 1em;color:#222}h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}\
table{border-collapse:collapse}td,th{padding:3px 10px;white-space:nowrap;border-bottom:1px solid #ddd;text-align:right}\
.kv td:first-child,th:first-child,td:first-child{text-align:left}.kv td{text-align:left;white-space:normal}\
.meta{color:#555}.notes li{color:#8a4b00}.charts{display:flex;flex-wrap:wrap;gap:1em}\
svg{background:#fcfcfc;border:1px solid #e4e4e4}svg text{font:11px system-ui,sans-serif;fill:#444}\
.p50{stroke:#1f77b4}.p99{stroke:#d62728}.bar{fill:#4c78a8}.grid{stroke:#e8e8e8}";

fn row(h: &mut String, key: &str, value: &str) {
    let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", esc(key), esc(value));
}

fn phase_table(h: &mut String, phases: &[PhaseSummary]) {
    h.push_str(
        "<h2>Phases</h2>\n<table><tr><th>phase</th><th>msg/s</th><th>senders</th><th>sent</th>\
         <th>expected</th><th>received</th><th>loss</th><th>deliveries/s</th><th>p50</th>\
         <th>p99</th><th>max</th><th>ping p50</th><th>ping p99</th><th>CPU/delivery</th></tr>\n",
    );
    for p in phases {
        let l = p.latency;
        let pl = p.ping_latency;
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&p.name),
            p.rate,
            p.senders,
            p.sent,
            p.expected_deliveries,
            p.received_deliveries,
            p.loss,
            p.deliveries_per_sec,
            esc(&us(l.map(|l| l.p50_us))),
            esc(&us(l.map(|l| l.p99_us))),
            esc(&us(l.map(|l| l.max_us))),
            esc(&us(pl.map(|l| l.p50_us))),
            esc(&us(pl.map(|l| l.p99_us))),
            p.server_cpu_per_delivery_us
                .map_or("n/a".into(), |c| format!("{c:.2} µs"))
        );
    }
    h.push_str("</table>\n");
}

/// p50 and p99 per second as two polylines, milliseconds on the y axis.
pub fn latency_chart(points: &[SeriesPoint]) -> String {
    let mut s = svg_open("Delivery latency per second (p50 blue, p99 red)");
    if points.is_empty() {
        s.push_str(&no_data());
        s.push_str("</svg>\n");
        return s;
    }
    let max_t = points.iter().map(|p| p.t).max().unwrap_or(0).max(1) as f64;
    let max_ms = points.iter().map(|p| p.p99_us).max().unwrap_or(1) as f64 / 1000.0;
    let top = nice_ceiling(max_ms.max(0.001));
    let x = |t: f64| LEFT + (WIDTH - LEFT - RIGHT) * t / max_t;
    let y = |ms: f64| HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * (ms / top).min(1.0);
    for i in 0..=4 {
        let v = top * f64::from(i) / 4.0;
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} ms</text>",
            WIDTH - RIGHT,
            y(v),
            y(v),
            LEFT - 6.0,
            y(v) + 4.0,
            trim_float(v)
        );
    }
    let step = (max_t / 8.0).ceil().max(1.0);
    let mut t = 0.0;
    while t <= max_t {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{t:.0} s</text>",
            x(t),
            HEIGHT - BOTTOM + 16.0
        );
        t += step;
    }
    for (class, pick) in [("p50", 0), ("p99", 1)] {
        let coords: Vec<String> = points
            .iter()
            .map(|p| {
                let v = if pick == 0 { p.p50_us } else { p.p99_us };
                format!("{:.1},{:.1}", x(f64::from(p.t)), y(v as f64 / 1000.0))
            })
            .collect();
        let _ = write!(
            s,
            "<polyline class=\"{class}\" fill=\"none\" stroke-width=\"2\" points=\"{}\"/>",
            coords.join(" ")
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Bars of the latency histogram on a log axis (ten buckets per decade).
pub fn histogram_chart(buckets: &[Bucket]) -> String {
    let mut s = svg_open("Delivery latency histogram (log scale)");
    let (Some(first), Some(last)) = (
        buckets.iter().map(|b| b.decile).min(),
        buckets.iter().map(|b| b.decile).max(),
    ) else {
        s.push_str(&no_data());
        s.push_str("</svg>\n");
        return s;
    };
    // Whole decades on the axis.
    let lo = first.div_euclid(10) * 10;
    let hi = (last.div_euclid(10) + 1) * 10;
    let span = f64::from((hi - lo).max(1));
    let max_count = buckets.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |decile: i32| LEFT + plot_w * f64::from(decile - lo) / span;
    let bar_w = (plot_w / span - 1.0).max(1.0);
    for b in buckets {
        let hgt = plot_h * b.count as f64 / max_count;
        let _ = write!(
            s,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{hgt:.1}\">\
             <title>{}–{}: {}</title></rect>",
            x(b.decile),
            HEIGHT - BOTTOM - hgt,
            esc(&us(Some(b.lo_us as u64))),
            esc(&us(Some(b.hi_us as u64))),
            b.count
        );
    }
    let mut d = lo;
    while d <= hi {
        let value = 10f64.powi(d / 10) as u64;
        // The last label would be cut off by the right edge if centred.
        let anchor = if d + 10 > hi { "end" } else { "middle" };
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            x(d),
            HEIGHT - BOTTOM + 16.0,
            esc(&us(Some(value)))
        );
        d += 10;
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
        LEFT - 6.0,
        TOP + 8.0,
        max_count as u64
    );
    s.push_str("</svg>\n");
    s
}

fn svg_open(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>\
         <text x=\"{LEFT}\" y=\"16\">{t}</text>\
         <line x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{b}\" stroke=\"#888\"/>\
         <line x1=\"{LEFT}\" x2=\"{r}\" y1=\"{b}\" y2=\"{b}\" stroke=\"#888\"/>",
        t = esc(title),
        b = HEIGHT - BOTTOM,
        r = WIDTH - RIGHT,
    )
}

fn no_data() -> String {
    format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no data</text>",
        WIDTH / 2.0,
        HEIGHT / 2.0
    )
}

/// 1, 2 or 5 times a power of ten, at least `v`.
fn nice_ceiling(v: f64) -> f64 {
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::RampResult;
    use crate::phase::{PhaseResult, PhaseSpec};
    use crate::summary::PhaseSummary;

    fn sample_summary() -> Summary {
        let spec = PhaseSpec {
            chat_rate: 100.0,
            senders: 10,
            ..PhaseSpec::idle(1, "fanout <main>", 0, 3_000)
        };
        let mut r = PhaseResult::empty();
        r.members_at_start = 10;
        r.sent = 300;
        r.received = 3_000;
        for i in 0..3_000u64 {
            let us = 500 + (i % 100) * 50;
            r.chat.record(us);
            r.series.record((i / 1000) as usize, us);
        }
        let mut s = Summary::new(
            "fanout",
            "ws://127.0.0.1:3000",
            1,
            10,
            &RampResult::default(),
        );
        s.add_phase(PhaseSummary::new(&spec, &r, None, None), &r);
        s.notes.push("a <note> & more".into());
        s
    }

    #[test]
    fn report_is_self_contained_html_with_the_data() {
        let s = sample_summary();
        let html = render(&s);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        // No external assets or scripts.
        assert!(!html.contains("src="));
        assert!(!html.contains("href="));
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<script src"));
        // Escaped text, figures present.
        assert!(html.contains("fanout &lt;main&gt;"));
        assert!(html.contains("a &lt;note&gt; &amp; more"));
        assert!(html.contains("3000 expected, 3000 received"));
        assert_eq!(html.matches("<svg").count(), 2);
        assert_eq!(html.matches("</svg>").count(), 2);
        assert_eq!(html.matches("<polyline").count(), 2);
        // The embedded JSON parses back to the same numbers.
        let start = html.find("id=\"summary\">").unwrap() + "id=\"summary\">".len();
        let end = html[start..].find("</script>").unwrap() + start;
        let back: Summary = serde_json::from_str(&html[start..end].replace("<\\/", "</")).unwrap();
        assert_eq!(back.received_deliveries, 3_000);
    }

    #[test]
    fn charts_are_well_formed_svg() {
        let s = sample_summary();
        let p = &s.phases[0];
        let chart = latency_chart(&p.series);
        assert_eq!(chart.matches("<polyline").count(), 2);
        // Three seconds of data: three points per line.
        let first_line = chart.split("points=\"").nth(1).unwrap();
        let points = first_line.split('"').next().unwrap();
        assert_eq!(points.split(' ').count(), 3);
        for pair in points.split(' ') {
            let (x, y) = pair.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!((LEFT..=WIDTH).contains(&x) && (0.0..=HEIGHT).contains(&y));
        }
        let hist = histogram_chart(&p.histogram);
        let bars = hist.matches("<rect").count();
        assert_eq!(bars, p.histogram.len());
        assert!(bars > 1);
        assert_eq!(hist.matches("<svg").count(), 1);
        // Tags balance.
        assert_eq!(
            hist.matches("<rect").count(),
            hist.matches("</rect>").count()
        );
        // Empty data still renders a valid chart.
        assert!(latency_chart(&[]).contains("no data"));
        assert!(histogram_chart(&[]).contains("</svg>"));
    }

    #[test]
    fn history_scenarios_get_their_rows() {
        let mut s = sample_summary();
        s.ingest = Some(crate::summary::IngestSummary {
            rooms: 500,
            members_per_room: 4,
            persisted: Some(1234.0),
            ..Default::default()
        });
        s.reconnect = Some(crate::summary::ReconnectSummary {
            gaps: 3,
            ..Default::default()
        });
        s.failures = vec!["3 ids <missing>".into()];
        let html = render(&s);
        assert!(
            html.contains("<td>ingest</td><td>500 rooms × 4 members"),
            "{html}"
        );
        assert!(html.contains("<td>persisted</td><td>1234 messages"));
        assert!(html.contains("<td>sequences</td>"));
        assert!(html.contains("gaps 3"));
        assert!(html.contains("<td>FAILED</td><td>3 ids &lt;missing&gt;</td>"));
    }

    #[test]
    fn helpers() {
        assert_eq!(nice_ceiling(3.2), 5.0);
        assert_eq!(nice_ceiling(0.7), 1.0);
        assert_eq!(nice_ceiling(10.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(trim_float(2.5), "2.5");
        assert_eq!(trim_float(10.0), "10");
        assert_eq!(esc("<a href='x'>&"), "&lt;a href=&#39;x&#39;&gt;&amp;");
    }
}
