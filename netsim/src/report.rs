//! Rendering a [`BenchReport`]: markdown table, JSON file, SVG bar chart.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::bench::{BenchReport, BenchResult};
use crate::error::{Error, Result};

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |x| format!("{x:.digits$}"))
}

/// The baseline row for `r`: the first mode's row at the same stream count.
fn baseline<'a>(report: &'a BenchReport, r: &BenchResult) -> Option<&'a BenchResult> {
    let first = report.results.first()?;
    report
        .results
        .iter()
        .find(|b| b.mode == first.mode && b.streams == r.streams)
}

/// A markdown table, one row per (mode, streams).
pub fn markdown(report: &BenchReport) -> String {
    let mut s = String::new();
    let h = &report.host;
    let _ = writeln!(
        s,
        "netsim bench: kernel {}, {} CPUs, underlay offload {}, {} nodes, {} s × {} runs, {} → {}\n",
        h.kernel,
        h.cpus,
        if h.underlay_offload { "on" } else { "off" },
        report.bench.nodes,
        report.bench.duration_s,
        report.bench.repeat,
        report.bench.from,
        report.bench.to
    );
    let base_name = report.results.first().map_or("", |r| r.mode.as_str());
    let _ = writeln!(
        s,
        "| mode | P | Gbit/s (median) | × {base_name} | runs | retr | cores busy | router core·s/Gbit | ping p50/p99 µs | sockperf p50/p99 µs | csum err / udp buf err / tun tx drop |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    for r in &report.results {
        let ratio = baseline(report, r)
            .filter(|b| b.gbps > 0.0)
            .map(|b| r.gbps / b.gbps);
        let runs: Vec<String> = r.runs.iter().map(|g| format!("{g:.2}")).collect();
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} | {} | {} | {} | {:.2} | {} | {} / {} | {} / {} | {} / {} / {} |",
            r.mode,
            r.streams,
            r.gbps,
            opt(ratio, 2),
            runs.join(" "),
            r.retransmits.iter().sum::<u64>(),
            r.cpu_cores_busy,
            opt(r.router_core_s_per_gbit, 3),
            opt(r.rtt_us_p50, 0),
            opt(r.rtt_us_p99, 0),
            opt(r.sockperf_us_p50, 1),
            opt(r.sockperf_us_p99, 1),
            r.health.csum_errors,
            r.health.udp_buf_errors,
            r.health.tun_tx_dropped,
        );
    }
    s
}

/// Writes the report as pretty JSON.
pub fn write_json(report: &BenchReport, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| Error::io("serializing report", std::io::Error::other(e)))?;
    std::fs::write(path, text + "\n").map_err(|e| Error::io(format!("write {}", path.display()), e))
}

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::io("drawing SVG", std::io::Error::other(e.to_string()))
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws bars `(label, value, color index)` into `area`.
fn bars(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    y_label: &str,
    data: &[(String, f64, usize)],
) -> Result<()> {
    let max = data.iter().map(|d| d.1).fold(0.0_f64, f64::max).max(1e-3) * 1.15;
    let n = data.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..max)
        .map_err(plot_err)?;
    let label = |v: &SegmentValue<usize>| match v {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            data.get(*i).map(|d| d.0.clone()).unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .x_label_style(("sans-serif", 12))
        .y_desc(y_label)
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(data.iter().enumerate().map(|(i, (_, v, c))| {
            let mut bar = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), *v),
                ],
                COLORS[c % COLORS.len()].filled(),
            );
            bar.set_margin(0, 0, 12, 12);
            bar
        }))
        .map_err(plot_err)?;
    chart
        .draw_series(data.iter().enumerate().map(|(i, (_, v, _))| {
            Text::new(
                format!("{v:.2}"),
                (SegmentValue::CenterOf(i), *v + max * 0.03),
                ("sans-serif", 13),
            )
        }))
        .map_err(plot_err)?;
    Ok(())
}

/// An SVG with two panels: median throughput per (mode, P), and latency
/// (ping p50, sockperf p50) per mode.
pub fn write_svg(report: &BenchReport, path: &Path) -> Result<()> {
    let modes: Vec<&str> = {
        let mut m: Vec<&str> = Vec::new();
        for r in &report.results {
            if !m.contains(&r.mode.as_str()) {
                m.push(&r.mode);
            }
        }
        m
    };
    let color = |mode: &str| modes.iter().position(|m| *m == mode).unwrap_or(0);
    let tput: Vec<(String, f64, usize)> = report
        .results
        .iter()
        .map(|r| {
            (
                format!("{} P={}", r.mode, r.streams),
                r.gbps,
                color(&r.mode),
            )
        })
        .collect();
    let mut lat = Vec::new();
    for m in &modes {
        if let Some(r) = report.results.iter().find(|r| r.mode == *m) {
            if let Some(p) = r.rtt_us_p50 {
                lat.push((format!("{m} ping"), p, color(m)));
            }
            if let Some(p) = r.sockperf_us_p50 {
                lat.push((format!("{m} sockperf"), p, color(m)));
            }
        }
    }
    let width = (160 * (tput.len() + lat.len()).max(4)) as u32 + 200;
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let split = (f64::from(width) * tput.len().max(1) as f64
        / (tput.len() + lat.len()).max(1) as f64) as u32;
    let (left, right) =
        root.split_horizontally(split.clamp(300, width.saturating_sub(300).max(300)));
    let offload = if report.host.underlay_offload {
        "on"
    } else {
        "off"
    };
    bars(
        &left,
        &format!("TCP throughput (median, offload {offload})"),
        "Gbit/s",
        &tput,
    )?;
    bars(&right, "Latency p50", "µs", &lat)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{BenchMeta, HostInfo};

    fn sample() -> BenchReport {
        let row = |mode: &str, streams, gbps| BenchResult {
            mode: mode.into(),
            streams,
            gbps,
            runs: vec![gbps, gbps],
            retransmits: vec![1, 2],
            rtt_us_p50: Some(40.0),
            rtt_us_p99: Some(90.0),
            sockperf_us_p50: Some(12.5),
            sockperf_us_p99: None,
            cpu_cores_busy: 1.5,
            router_core_s_per_gbit: None,
            health: crate::health::NetHealth {
                tun_tx_dropped: streams.into(),
                ..Default::default()
            },
        };
        BenchReport {
            results: vec![
                row("kernel-hostgw", 1, 20.0),
                row("kernel-vxlan", 1, 10.0),
                row("kernel-hostgw", 4, 30.0),
                row("kernel-vxlan", 4, 15.0),
            ],
            host: HostInfo {
                kernel: "6.18".into(),
                cpus: 2,
                underlay_offload: true,
            },
            bench: BenchMeta {
                nodes: 2,
                duration_s: 1.0,
                repeat: 2,
                from: "10.244.1.2".into(),
                to: "10.244.2.2".into(),
                started_unix: 0,
            },
        }
    }

    #[test]
    fn markdown_has_a_row_per_result_with_ratios() {
        let md = markdown(&sample());
        let rows: Vec<_> = md.lines().filter(|l| l.starts_with("| kernel")).collect();
        assert_eq!(rows.len(), 4);
        assert!(
            rows[1].starts_with("| kernel-vxlan | 1 | 10.00 | 0.50 |"),
            "{}",
            rows[1]
        );
        assert!(
            rows[3].starts_with("| kernel-vxlan | 4 | 15.00 | 0.50 |"),
            "{}",
            rows[3]
        );
        assert!(rows[0].contains("12.5 / –"), "{}", rows[0]);
        assert!(rows[2].ends_with("| 0 / 0 / 4 |"), "{}", rows[2]);
    }

    #[test]
    fn json_and_svg_files() {
        let dir = std::env::temp_dir().join(format!("netsim-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = sample();
        write_json(&r, &dir.join("r.json")).unwrap();
        let back: BenchReport =
            serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap();
        assert_eq!(back, r);
        write_svg(&r, &dir.join("r.svg")).unwrap();
        let svg = std::fs::read_to_string(dir.join("r.svg")).unwrap();
        assert!(svg.starts_with("<svg") || svg.contains("<svg"));
        assert!(svg.contains("kernel-vxlan P=4"), "labels missing");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
