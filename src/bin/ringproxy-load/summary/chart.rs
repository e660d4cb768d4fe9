//! The report's chart: horizontal bars of every target's ratio to nginx (nginx = 1, drawn as a
//! line), one group per table row, written as a PNG with plotters' bitmap backend.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{or_unknown, Better, Meta, Row};

/// Fonts for the chart's text (plotters' ab_glyph backend needs one registered): the first that
/// exists of `$RINGPROXY_FONT` and common system fonts.
fn register_font() -> Result<()> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("RINGPROXY_FONT")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.extend(
        [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
            "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
            "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
        ]
        .map(PathBuf::from),
    );
    for p in candidates {
        if let Ok(bytes) = std::fs::read(&p) {
            // The font lives as long as the process: plotters keeps a &'static to it.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font(
                "sans-serif",
                plotters::style::FontStyle::Normal,
                bytes,
            )
            .is_ok()
            {
                return Ok(());
            }
        }
    }
    bail!("no TrueType font found for the chart's text (install fonts-dejavu-core or set RINGPROXY_FONT)")
}

/// Horizontal bars: for each row with a ratio, one bar per target against nginx = 1.
pub fn draw_png(rows: &[Row], meta: &Meta, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let shown: Vec<&Row> = rows
        .iter()
        // Counts (survived, dropped, lost) are in the table; the chart shows rates and costs.
        .filter(|r| !r.metric.unit.is_empty())
        .filter(|r| (0..4).any(|i| i != 1 && r.ratio(i).is_some()))
        .collect();
    if shown.is_empty() {
        bail!("no ratios to nginx to draw (no nginx runs?)");
    }
    register_font()?;
    let bars: Vec<(usize, &str, RGBColor)> = vec![
        (0, "direct", RGBColor(160, 160, 160)),
        (2, "haproxy", RGBColor(52, 101, 164)),
        (3, "ringproxy", RGBColor(204, 0, 0)),
    ];
    let max = shown
        .iter()
        .flat_map(|r| [0, 2, 3].map(|i| r.ratio(i).unwrap_or(0.0)))
        .fold(1.0_f64, f64::max);
    let x_max = (max * 1.1).min(20.0);
    let height = 120 + 26 * shown.len() as u32;
    let root = BitMapBackend::new(path, (1150, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!(
        "ratio to nginx (nginx = 1); {}, nproc {}",
        or_unknown(&meta.cpu_model),
        meta.nproc
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(440)
        .build_cartesian_2d(0.0..x_max, 0.0..shown.len() as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("target / nginx")
        .draw()?;
    let band = 0.8 / bars.len() as f64;
    for (row_i, r) in shown.iter().enumerate() {
        let y_top = shown.len() as f64 - row_i as f64 - 0.1;
        for (k, (i, _, color)) in bars.iter().enumerate() {
            if let Some(v) = r.ratio(*i) {
                let y0 = y_top - band * (k as f64 + 1.0);
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(0.0, y0), (v.min(x_max), y0 + band * 0.9)],
                    color.filled(),
                )))?;
            }
        }
        let (px, py) = chart.backend_coord(&(0.0, y_top - 0.4));
        let better = if r.metric.better == Better::Higher {
            "higher"
        } else {
            "lower"
        };
        let workers = match r.workers.as_str() {
            "1" => "1 worker".to_string(),
            "all" => "all cores".to_string(),
            w => w.to_string(),
        };
        let label = format!("{}, {workers}: {} ({better} wins)", r.title, r.metric.name);
        root.draw(&Text::new(label, (px - 435, py - 7), ("sans-serif", 13)))?;
    }
    chart.draw_series(std::iter::once(PathElement::new(
        vec![(1.0, 0.0), (1.0, shown.len() as f64)],
        BLACK.stroke_width(2),
    )))?;
    for (_, name, color) in &bars {
        let c = *color;
        chart
            .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{aggregate, parse, tests::sample};
    use super::*;

    #[test]
    fn draws_a_png_or_says_which_font_is_missing() {
        let (meta, runs) = parse(&sample()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("ratios.png");
        match draw_png(&aggregate(&runs), &meta, &png) {
            Ok(()) => {
                let bytes = std::fs::read(&png).unwrap();
                assert_eq!(&bytes[1..4], b"PNG");
            }
            Err(e) => assert!(e.to_string().contains("font"), "{e:#}"),
        }
    }
}
