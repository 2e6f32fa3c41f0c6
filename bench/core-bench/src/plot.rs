//! The service against etcd: the CSV rows `paxos-node bench --csv` appends (one per system,
//! client count and mix) as Markdown tables and SVG plots (`plotters`, SVG backend only).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

/// One run of `paxos-node bench`.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub system: String,
    /// How reads were served (`[reads] policy` for ours); empty in rows from before the
    /// column existed, when all of ours went through the log.
    pub reads: String,
    pub clients: u32,
    pub read_ratio: f64,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
    pub leader_fsyncs_per_cmd: Option<f64>,
    pub cluster_fsyncs_per_cmd: Option<f64>,
    pub leader_records_per_fsync: Option<f64>,
    pub cmds_per_leader_fsync: Option<f64>,
    pub leader_msgs_per_frame: Option<f64>,
}

/// Parses the CSV written by `paxos-node bench --csv` (columns found by header name).
pub fn parse_csv(text: &str) -> anyhow::Result<Vec<Row>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().context("empty CSV")?.split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("no column {name}"))
    };
    let idx = |name| column(name);
    let (system, clients, read_ratio, throughput) = (
        idx("system")?,
        idx("clients")?,
        idx("read_ratio")?,
        idx("throughput_ops")?,
    );
    let (p50, p99, p999, errors) = (
        idx("p50_ms")?,
        idx("p99_ms")?,
        idx("p999_ms")?,
        idx("errors")?,
    );
    let (lf, cf, rpf, cpf, mpf) = (
        idx("leader_fsyncs_per_cmd")?,
        idx("cluster_fsyncs_per_cmd")?,
        idx("leader_records_per_fsync")?,
        idx("cmds_per_leader_fsync")?,
        idx("leader_msgs_per_frame")?,
    );
    let reads = column("reads").ok();
    let mut rows = Vec::new();
    for (n, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |i: usize| {
            fields
                .get(i)
                .copied()
                .with_context(|| format!("row {}: too few fields", n + 1))
        };
        let number = |i: usize| -> anyhow::Result<f64> {
            let text = field(i)?;
            text.parse()
                .with_context(|| format!("row {}: {text:?} is not a number", n + 1))
        };
        let optional = |i: usize| -> anyhow::Result<Option<f64>> {
            match field(i)? {
                "" => Ok(None),
                _ => number(i).map(Some),
            }
        };
        rows.push(Row {
            system: field(system)?.to_string(),
            reads: match reads {
                Some(i) => field(i)?.to_string(),
                None => String::new(),
            },
            clients: number(clients)? as u32,
            read_ratio: number(read_ratio)?,
            throughput: number(throughput)?,
            p50_ms: number(p50)?,
            p99_ms: number(p99)?,
            p999_ms: number(p999)?,
            errors: number(errors)? as u64,
            leader_fsyncs_per_cmd: optional(lf)?,
            cluster_fsyncs_per_cmd: optional(cf)?,
            leader_records_per_fsync: optional(rpf)?,
            cmds_per_leader_fsync: optional(cpf)?,
            leader_msgs_per_frame: optional(mpf)?,
        });
    }
    Ok(rows)
}

impl Row {
    /// The line this row belongs to: etcd, or ours with its read policy when it read.
    pub fn series(&self) -> String {
        match self.system.as_str() {
            "paxos" if self.read_ratio > 0.0 && !self.reads.is_empty() => {
                format!("paxos {}", self.reads)
            }
            system => system.to_string(),
        }
    }
}

/// The mixes present, each with its rows by series and client count.
pub type Table<'a> = BTreeMap<String, BTreeMap<(String, u32), &'a Row>>;

pub fn by_mix(rows: &[Row]) -> Table<'_> {
    let mut table: Table<'_> = BTreeMap::new();
    for row in rows {
        let mix = mix_name(row.read_ratio);
        let cell = table.entry(mix).or_default();
        cell.insert((row.series(), row.clients), row);
    }
    table
}

/// The series of one mix's cells, ours first.
fn series_of(cells: &BTreeMap<(String, u32), &Row>) -> Vec<String> {
    let mut series: Vec<String> = cells.keys().map(|(s, _)| s.clone()).collect();
    series.dedup();
    series.sort_by_key(|s| (s == "etcd", s.clone()));
    series
}

pub fn mix_name(read_ratio: f64) -> String {
    if read_ratio == 0.0 {
        "writes only".to_string()
    } else {
        format!("{:.0}% reads", read_ratio * 100.0)
    }
}

/// The Markdown table of `specs/results.md`: one row per mix and client count.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str("| mix | our reads | clients | ours ops/s | etcd ops/s | ours / etcd | ours p50 / p99 / p99.9 (ms) | etcd p50 / p99 / p99.9 (ms) | ours fsyncs per command, leader / cluster | ours commands per leader fsync | ours records per group commit | etcd fsyncs per write, cluster |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---|---|---|---:|---:|---:|\n");
    let opt =
        |v: Option<f64>, digits: usize| v.map_or("–".to_string(), |v| format!("{v:.digits$}"));
    for (mix, cells) in by_mix(rows) {
        let mut clients: Vec<u32> = cells.keys().map(|(_, c)| *c).collect();
        clients.sort_unstable();
        clients.dedup();
        let ours_series = series_of(&cells).into_iter().filter(|s| s != "etcd");
        for (series, c) in ours_series.flat_map(|s| clients.iter().map(move |c| (s.clone(), *c))) {
            let ours = cells.get(&(series.clone(), c)).copied();
            let etcd = cells.get(&("etcd".to_string(), c)).copied();
            let policy = ours.map_or("–", |r| match r.reads.as_str() {
                _ if r.read_ratio == 0.0 => "–",
                "" => "log",
                reads => reads,
            });
            let ops =
                |r: Option<&Row>| r.map_or("–".to_string(), |r| format!("{:.0}", r.throughput));
            let lat = |r: Option<&Row>| {
                r.map_or("–".to_string(), |r| {
                    format!("{:.2} / {:.2} / {:.2}", r.p50_ms, r.p99_ms, r.p999_ms)
                })
            };
            let ratio = match (ours, etcd) {
                (Some(o), Some(e)) if e.throughput > 0.0 => {
                    format!("{:.2}×", o.throughput / e.throughput)
                }
                _ => "–".to_string(),
            };
            out.push_str(&format!(
                "| {mix} | {policy} | {c} | {} | {} | {ratio} | {} | {} | {} / {} | {} | {} | {} |\n",
                ops(ours),
                ops(etcd),
                lat(ours),
                lat(etcd),
                opt(ours.and_then(|r| r.leader_fsyncs_per_cmd), 3),
                opt(ours.and_then(|r| r.cluster_fsyncs_per_cmd), 3),
                opt(ours.and_then(|r| r.cmds_per_leader_fsync), 1),
                opt(ours.and_then(|r| r.leader_records_per_fsync), 1),
                opt(etcd.and_then(|r| r.cluster_fsyncs_per_cmd), 3),
            ));
        }
    }
    out
}

const OURS: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const OURS_LOG: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const ETCD: RGBColor = RGBColor(0xd6, 0x27, 0x28);

fn color(series: &str) -> RGBColor {
    match series {
        "etcd" => ETCD,
        "paxos log" => OURS_LOG,
        _ => OURS,
    }
}

fn label(series: &str) -> String {
    match series.strip_prefix("paxos") {
        Some("") => "paxos-node".to_string(),
        Some(reads) => format!("paxos-node ({} reads)", reads.trim()),
        None => series.to_string(),
    }
}

/// Throughput against clients, both systems, one line per system and mix (log-log).
pub fn throughput_svg(rows: &[Row], path: &Path) -> anyhow::Result<()> {
    let max = rows.iter().map(|r| r.throughput).fold(1.0, f64::max);
    let max_clients = rows.iter().map(|r| r.clients).max().unwrap_or(1) as f64;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Throughput against closed-loop clients (3 replicas, loopback, fsync on)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0.8f64..max_clients * 1.25).log_scale(),
            (10f64..max * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc("operations per second")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (mix, cells) in by_mix(rows) {
        for system in series_of(&cells) {
            let system = system.as_str();
            let points: Vec<(f64, f64)> = cells
                .iter()
                .filter(|((s, _), _)| s == system)
                .map(|((_, c), r)| (f64::from(*c), r.throughput.max(10.0)))
                .collect();
            if points.is_empty() {
                continue;
            }
            let c = color(system);
            let dashed = mix != "writes only";
            let style = if dashed {
                c.mix(0.55).stroke_width(2)
            } else {
                c.stroke_width(2)
            };
            chart
                .draw_series(LineSeries::new(points.clone(), style))?
                .label(format!("{}, {mix}", label(system)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, style.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// p50, p99 and p99.9 latency against clients for one mix, both systems (log-log).
pub fn latency_svg(rows: &[Row], mix: &str, path: &Path) -> anyhow::Result<()> {
    let table = by_mix(rows);
    let cells = table
        .get(mix)
        .with_context(|| format!("no rows for {mix}"))?;
    let max = cells.values().map(|r| r.p999_ms).fold(1.0, f64::max);
    let min = cells
        .values()
        .map(|r| r.p50_ms)
        .fold(f64::MAX, f64::min)
        .max(0.01);
    let max_clients = cells.keys().map(|(_, c)| *c).max().unwrap_or(1) as f64;
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Latency percentiles against clients, {mix}"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (0.8f64..max_clients * 1.25).log_scale(),
            (min / 1.5..max * 1.5).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .draw()?;
    type Pick = fn(&Row) -> f64;
    let percentiles: [(&str, Pick, u32); 3] = [
        ("p50", |r| r.p50_ms, 1),
        ("p99", |r| r.p99_ms, 2),
        ("p99.9", |r| r.p999_ms, 3),
    ];
    for system in series_of(cells) {
        let system = system.as_str();
        for (name, pick, width) in percentiles {
            let points: Vec<(f64, f64)> = cells
                .iter()
                .filter(|((s, _), _)| s == system)
                .map(|((_, c), r)| (f64::from(*c), pick(r).max(0.01)))
                .collect();
            if points.is_empty() {
                continue;
            }
            let style = color(system).stroke_width(width);
            chart
                .draw_series(LineSeries::new(points.clone(), style))?
                .label(format!("{} {name}", label(system)))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, style.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "system,clients,read_ratio,value_bytes,seconds,ok,errors,throughput_ops,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,leader_fsyncs_per_cmd,cluster_fsyncs_per_cmd,leader_records_per_fsync,cmds_per_leader_fsync,leader_msgs_per_frame
paxos,16,0,100,10.0,30000,0,3000.0,4.0,8.0,19.0,29.0,100.0,0.3320,0.9200,2.3000,3.0100,13.7000
etcd,16,0,100,10.0,10000,0,1000.0,12.0,20.0,40.0,60.0,90.0,,2.1000,,,
";

    #[test]
    fn the_csv_of_paxos_node_bench_parses_and_tabulates() {
        let rows = parse_csv(CSV).expect("valid CSV");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].leader_fsyncs_per_cmd, Some(0.332));
        assert_eq!(rows[1].leader_fsyncs_per_cmd, None);
        let table = markdown(&rows);
        assert!(
            table.contains("| writes only | – | 16 | 3000 | 1000 | 3.00× |"),
            "{table}"
        );
    }

    #[test]
    fn rows_with_reads_are_one_line_per_read_policy_against_etcd() {
        let csv = "system,clients,read_ratio,value_bytes,seconds,ok,errors,throughput_ops,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,leader_fsyncs_per_cmd,cluster_fsyncs_per_cmd,leader_records_per_fsync,cmds_per_leader_fsync,leader_msgs_per_frame,reads
paxos,1,0.9,100,10.0,20000,0,2000.0,0.4,0.6,1.0,2.0,5.0,,,,,,read-index
paxos,1,0.9,100,10.0,7000,0,700.0,1.4,1.6,3.0,4.0,9.0,,,,,,log
etcd,1,0.9,100,10.0,10000,0,1000.0,1.0,1.2,2.0,3.0,8.0,,,,,,read-index
";
        let rows = parse_csv(csv).expect("valid CSV");
        let table = markdown(&rows);
        assert!(
            table.contains("| 90% reads | read-index | 1 | 2000 | 1000 | 2.00× |"),
            "{table}"
        );
        assert!(
            table.contains("| 90% reads | log | 1 | 700 | 1000 | 0.70× |"),
            "{table}"
        );
        assert_eq!(label(&rows[1].series()), "paxos-node (log reads)");
    }
}
