//! The bench's output: a table on stdout, `target/bench/report.md`, and one SVG chart per
//! section (`target/bench/<section>.svg`), drawn here (a chart of bars needs no plotting
//! library).

use std::{fmt::Write as _, path::PathBuf};

use super::{Row, Samples, Section};

/// Where the report goes: `target/bench/` of the workspace (or of `CARGO_TARGET_DIR`).
pub fn directory() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the tests crate lives in the workspace")
                .join("target")
        });
    target.join("bench")
}

/// A value in its unit, with the precision it deserves.
pub fn value(v: f64, unit: &str) -> String {
    if v.is_nan() {
        return "–".into();
    }
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

fn spread(samples: &Samples, unit: &str) -> String {
    if samples.0.len() < 2 {
        return value(samples.median(), unit);
    }
    format!(
        "{} ({}–{})",
        value(samples.median(), unit),
        value(samples.min(), "").trim_end(),
        value(samples.max(), "").trim_end()
    )
}

fn ratio(row: &Row) -> String {
    match row.ratios() {
        Some(ratios) => format!(
            "{:.2}× ({:.2}–{:.2})",
            ratios.median(),
            ratios.min(),
            ratios.max()
        ),
        None => String::new(),
    }
}

fn target(row: &Row) -> String {
    let Some(target) = row.compared.as_ref().and_then(|c| c.target) else {
        return String::new();
    };
    match row.target_met() {
        Some(true) => format!("{target} met"),
        _ => format!("{target} MISSED"),
    }
}

/// One section as text for a terminal.
pub fn print(section: &Section) {
    println!("\n== {} ==", section.title);
    println!("{}", wrap(&section.method, 100));
    println!(
        "{:<58} {:>26} {:>34} {:>22} {:>14}",
        "", "lbd: median (min–max)", "reference", "ratio (min–max)", "target"
    );
    for row in &section.rows {
        let reference = row
            .compared
            .as_ref()
            .map(|c| format!("{}: {}", c.reference, value(c.samples.median(), row.unit)))
            .unwrap_or_default();
        println!(
            "{:<58} {:>26} {:>34} {:>22} {:>14}",
            row.name,
            spread(&row.lbd, row.unit),
            reference,
            ratio(row),
            target(row)
        );
        if !row.note.is_empty() {
            println!("    {}", wrap(&row.note, 96).replace('\n', "\n    "));
        }
    }
}

fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split_whitespace() {
        if line > 0 && line + 1 + word.chars().count() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.chars().count();
    }
    out
}

/// The whole report as Markdown, charts linked by file name.
pub fn markdown(sections: &[Section], machine: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# lbd benchmark report\n\n{machine}\n");
    let _ = writeln!(
        out,
        "Every ratio is lbd ÷ its reference, from samples taken in pairs in the same run; \
         medians, with the range over the pairs in brackets.\n"
    );
    for section in sections {
        let _ = writeln!(out, "## {}\n\n{}\n", section.title, section.method);
        if section.rows.iter().any(|r| r.compared.is_some()) {
            let _ = writeln!(out, "![{}]({}.svg)\n", section.title, slug(&section.title));
        }
        let _ = writeln!(
            out,
            "| path | lbd | reference | ratio | target | note |\n| --- | --- | --- | --- | --- | --- |"
        );
        for row in &section.rows {
            let reference = row
                .compared
                .as_ref()
                .map(|c| format!("{}: {}", c.reference, spread(&c.samples, row.unit)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.name,
                spread(&row.lbd, row.unit),
                reference,
                ratio(row),
                target(row),
                row.note.replace('|', "\\|")
            );
        }
        out.push('\n');
    }
    out
}

/// A file name for a section title.
pub fn slug(title: &str) -> String {
    let mut slug = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_string()
}

/// Horizontal bars of each compared row's median ratio, whiskers from its minimum to its
/// maximum, a line at 1× (the reference) and a tick at each row's target.
pub fn svg(section: &Section) -> Option<String> {
    let rows: Vec<(&Row, Samples)> = section
        .rows
        .iter()
        .filter_map(|row| Some((row, row.ratios()?)))
        .collect();
    if rows.is_empty() {
        return None;
    }
    let label_width = 330.0;
    let plot_width = 420.0;
    let bar = 18.0;
    let gap = 8.0;
    let top = 40.0;
    let height = top + rows.len() as f64 * (bar + gap) + 40.0;
    let largest = rows
        .iter()
        .map(|(row, ratios)| {
            let target = match row.compared.as_ref().and_then(|c| c.target) {
                Some(super::Target::AtMost(t) | super::Target::AtLeast(t)) => t,
                None => 0.0,
            };
            ratios.max().max(target)
        })
        .fold(1.0_f64, f64::max);
    let scale_max = (largest * 1.1).ceil().max(1.5);
    let x = |v: f64| label_width + v / scale_max * plot_width;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" font-family="sans-serif" font-size="12">"#,
        label_width + plot_width + 90.0
    );
    let _ = writeln!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14" font-weight="bold">{} — lbd ÷ reference</text>"#,
        escape(&section.title)
    );
    for (i, (row, ratios)) in rows.iter().enumerate() {
        let y = top + i as f64 * (bar + gap);
        let met = row.target_met();
        let colour = match met {
            Some(true) => "#4a9a4a",
            Some(false) => "#c0504d",
            None => "#5b7db1",
        };
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            label_width - 8.0,
            y + bar * 0.75,
            escape(&row.name)
        );
        let _ = writeln!(
            out,
            r#"<rect x="{}" y="{y}" width="{:.1}" height="{bar}" fill="{colour}"/>"#,
            x(0.0),
            x(ratios.median()) - x(0.0)
        );
        let middle = y + bar / 2.0;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" x2="{:.1}" y1="{middle}" y2="{middle}" stroke="black"/>"#,
            x(ratios.min()),
            x(ratios.max())
        );
        if let Some(super::Target::AtMost(t) | super::Target::AtLeast(t)) =
            row.compared.as_ref().and_then(|c| c.target)
        {
            let _ = writeln!(
                out,
                r#"<line x1="{0:.1}" x2="{0:.1}" y1="{1}" y2="{2}" stroke="black" stroke-width="2" stroke-dasharray="3,2"/>"#,
                x(t),
                y - 2.0,
                y + bar + 2.0
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{}">{:.2}×</text>"#,
            x(ratios.max().max(ratios.median())) + 6.0,
            y + bar * 0.75,
            ratios.median()
        );
    }
    let bottom = top + rows.len() as f64 * (bar + gap);
    let _ = writeln!(
        out,
        r#"<line x1="{0:.1}" x2="{0:.1}" y1="{1}" y2="{bottom}" stroke="grey"/><text x="{0:.1}" y="{2}" text-anchor="middle">1× (reference)</text>"#,
        x(1.0),
        top - 6.0,
        bottom + 16.0
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" fill="grey">dashed: target; green met, red missed; whiskers: min–max of the pairs</text>"#,
        label_width,
        bottom + 32.0
    );
    out.push_str("</svg>\n");
    Some(out)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Prints every section, then writes the Markdown report and the charts; returns the
/// report's path.
pub fn write(sections: &[Section], machine: &str) -> std::io::Result<PathBuf> {
    let directory = directory();
    std::fs::create_dir_all(&directory)?;
    for section in sections {
        if let Some(svg) = svg(section) {
            std::fs::write(directory.join(format!("{}.svg", slug(&section.title))), svg)?;
        }
    }
    let path = directory.join("report.md");
    std::fs::write(&path, markdown(sections, machine))?;
    Ok(path)
}

/// The machine the numbers came from: CPU model, cores, memory, kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let memory_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    format!(
        "Machine: {model}, {cores} CPUs, {:.0} GiB, Linux {kernel}; release build.",
        memory_kib as f64 / (1024.0 * 1024.0)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{Row, Samples, Section, Target};

    fn section() -> Section {
        Section {
            title: "Per packet, 1M flows".into(),
            method: "how".into(),
            rows: vec![
                Row::against(
                    "known flow: TCP",
                    "ns/packet",
                    Samples(vec![200.0, 210.0]),
                    "stateless DR",
                    Samples(vec![100.0, 100.0]),
                    Some(Target::AtMost(1.3)),
                ),
                Row::alone("sweep <1M>", "ms", Samples(vec![700.0])).note("a | b"),
            ],
        }
    }

    #[test]
    fn the_markdown_says_ratio_target_and_notes() {
        let text = markdown(&[section()], "Machine: test");
        assert!(
            text.contains("| known flow: TCP | 205 ns/packet (200–210) |"),
            "{text}"
        );
        assert!(
            text.contains("2.05× (2.00–2.10) | ≤ 1.3× MISSED |"),
            "{text}"
        );
        assert!(text.contains("a \\| b"), "{text}");
        assert!(text.contains("(per-packet-1m-flows.svg)"), "{text}");
    }

    #[test]
    fn the_chart_has_a_bar_per_compared_row_and_escapes_names() {
        let svg = svg(&section()).expect("a chart");
        assert_eq!(svg.matches("<rect x=").count(), 1, "{svg}");
        assert!(svg.contains("2.05×") && svg.contains("#c0504d"), "{svg}");
        let alone = Section {
            rows: vec![Row::alone("x", "ms", Samples(vec![1.0]))],
            ..section()
        };
        assert!(svg.contains("Per packet, 1M flows"));
        assert!(super::svg(&alone).is_none());
        assert!(!svg.contains("<1M>"));
    }

    #[test]
    fn values_keep_the_precision_they_deserve() {
        assert_eq!(value(1234.4, "ms"), "1234 ms");
        assert_eq!(value(12.34, "Mpps"), "12.3 Mpps");
        assert_eq!(value(1.234, "Mpps"), "1.23 Mpps");
        assert_eq!(
            slug("Per packet, 1k flows in the table"),
            "per-packet-1k-flows-in-the-table"
        );
    }
}
