//! Line and point charts as SVG (plotters' SVG backend, no fonts or files needed): the report
//! embeds them inline, so it opens anywhere without a network.

use chrono::{Datelike, NaiveDate};
use plotters::prelude::*;

use crate::error::{EvalError, EvalResult};

/// How x values are labelled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XAxis {
    /// x is a day number ([`day_number`]).
    Date,
    Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Index into the palette: the same model has the same colour in every chart.
    pub color: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Unique within the report (the figure's `data-chart`).
    pub id: String,
    pub title: String,
    pub y_label: String,
    pub x: XAxis,
    pub series: Vec<Series>,
    /// A horizontal reference line (e.g. the 80% coverage target).
    pub reference: Option<f64>,
    /// Points instead of lines, with the y = x diagonal (the reliability diagram).
    pub diagonal_points: bool,
}

pub fn day_number(d: NaiveDate) -> f64 {
    f64::from(d.num_days_from_ce())
}

fn date_label(x: f64) -> String {
    NaiveDate::from_num_days_from_ce_opt(x.round() as i32)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

impl Chart {
    /// Whether the chart has anything to draw.
    pub fn has_data(&self) -> bool {
        self.series.iter().any(|s| !s.points.is_empty())
    }

    fn bounds(&self) -> Option<(f64, f64, f64, f64)> {
        let pts = self
            .series
            .iter()
            .flat_map(|s| &s.points)
            .filter(|p| p.0.is_finite() && p.1.is_finite());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in pts {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if x0 > x1 {
            return None;
        }
        if let Some(r) = self.reference {
            (y0, y1) = (y0.min(r), y1.max(r));
        }
        if self.diagonal_points {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        let pad = |a: f64, b: f64| {
            if b > a {
                (b - a) * 0.05
            } else {
                a.abs().max(1.0) * 0.05
            }
        };
        let (px, py) = (pad(x0, x1), pad(y0, y1));
        Some((x0 - px, x1 + px, y0 - py, y1 + py))
    }

    /// The chart as an `<svg>` element.
    pub fn render(&self) -> EvalResult<String> {
        let err = |e: &dyn std::fmt::Display| EvalError::Chart {
            chart: self.id.clone(),
            reason: e.to_string(),
        };
        let (x0, x1, y0, y1) = self.bounds().ok_or_else(|| err(&"no finite point"))?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (760, 340)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| err(&e))?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(34)
                .y_label_area_size(62)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| err(&e))?;
            let x_fmt = |x: &f64| match self.x {
                XAxis::Date => date_label(*x),
                XAxis::Value => format!("{x:.1}"),
            };
            chart
                .configure_mesh()
                .x_labels(7)
                .y_labels(7)
                .x_label_formatter(&x_fmt)
                .y_desc(self.y_label.as_str())
                .draw()
                .map_err(|e| err(&e))?;
            if let Some(r) = self.reference {
                let grey = BLACK.mix(0.45).stroke_width(1);
                chart
                    .draw_series(LineSeries::new([(x0, r), (x1, r)], grey))
                    .map_err(|e| err(&e))?
                    .label(format!("target {r}"))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], grey));
            }
            if self.diagonal_points {
                let grey = BLACK.mix(0.45).stroke_width(1);
                chart
                    .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], grey))
                    .map_err(|e| err(&e))?
                    .label("perfectly calibrated")
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], grey));
            }
            for s in self.series.iter().filter(|s| !s.points.is_empty()) {
                // A model keeps its colour in every chart (`figures::colour_of`).
                let color = Palette99::pick(s.color).to_rgba();
                let line = color.stroke_width(2);
                // A lone point (one month of a monthly series) is drawn as a dot.
                let anno = if self.diagonal_points || s.points.len() == 1 {
                    chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))
                } else {
                    chart.draw_series(LineSeries::new(s.points.iter().copied(), line))
                }
                .map_err(|e| err(&e))?;
                anno.label(s.name.as_str())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], line));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(|e| err(&e))?;
            root.present().map_err(|e| err(&e))?;
        }
        Ok(svg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(points: Vec<(f64, f64)>) -> Chart {
        Chart {
            id: "c".into(),
            title: "Cumulative hit rate".into(),
            y_label: "hit rate".into(),
            x: XAxis::Date,
            series: vec![Series {
                name: "ensemble".into(),
                points,
                color: 0,
            }],
            reference: Some(0.8),
            diagonal_points: false,
        }
    }

    #[test]
    fn a_chart_is_an_svg_with_one_line_per_series_and_date_labels() {
        let d = |m| day_number(NaiveDate::from_ymd_opt(2024, m, 1).unwrap());
        let svg = chart(vec![(d(1), 0.5), (d(3), 0.52), (d(6), 0.55)])
            .render()
            .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("2024-0"), "date labels");
        assert!(svg.contains("ensemble") && svg.contains("target 0.8"));
    }

    #[test]
    fn a_series_is_drawn_in_its_own_colour_wherever_it_stands_in_the_chart() {
        let line = |name: &str, color: usize| Series {
            name: name.into(),
            points: vec![(1.0, 0.5), (2.0, 0.6)],
            color,
        };
        let stroke = |color: usize| {
            let c = Palette99::pick(color).to_rgba();
            format!("stroke=\"#{:02X}{:02X}{:02X}\"", c.0, c.1, c.2)
        };
        let mut c = chart(vec![]);
        c.series = vec![line("ensemble", 0), line("naive: always down", 7)];
        let first = c.render().unwrap();
        c.series = vec![line("naive: always down", 7)];
        let alone = c.render().unwrap();
        assert!(first.contains(&stroke(7)) && alone.contains(&stroke(7)));
        assert!(
            !alone.contains(&stroke(0)),
            "the lone series keeps colour 7, not the first's"
        );
    }

    #[test]
    fn a_chart_without_points_is_an_error_not_an_empty_picture() {
        let c = chart(vec![]);
        assert!(!c.has_data());
        assert_eq!(
            c.render().unwrap_err().to_string(),
            "chart `c`: no finite point"
        );
        // One point still draws (a range around it).
        assert!(chart(vec![(1.0, 1.0)]).render().is_ok());
    }
}
