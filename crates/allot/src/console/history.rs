//! Utilisation over time for the console: the product page's chart (drawn by uPlot in the
//! browser from the points this puts in the page) and the dashboard's 30-day sparklines
//! (drawn here, as SVG, so they need no script) and refusals of the last 24 hours.

use std::collections::HashMap;

use serde::Serialize;

use super::views::ConsoleError;
use crate::state::AppState;
use allot_ledger::{Product, ProductId, TenantId, UsagePoint, UsageStep, unused_seat_cost_total};

/// The chart's ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Day,
    Week,
    Month,
    Year,
}

impl Range {
    pub const ALL: [Range; 4] = [Range::Day, Range::Week, Range::Month, Range::Year];

    /// `?range=` on the product page; anything else is the default, 7 days.
    pub fn parse(text: Option<&str>) -> Range {
        match text {
            Some("24h") => Range::Day,
            Some("30d") => Range::Month,
            Some("1y") => Range::Year,
            _ => Range::Week,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Range::Day => "24h",
            Range::Week => "7d",
            Range::Month => "30d",
            Range::Year => "1y",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Range::Day => "24 hours",
            Range::Week => "7 days",
            Range::Month => "30 days",
            Range::Year => "1 year",
        }
    }

    /// Points of an hour for a day or a week, of a day beyond.
    pub fn step(self) -> UsageStep {
        match self {
            Range::Day | Range::Week => UsageStep::Hour,
            Range::Month | Range::Year => UsageStep::Day,
        }
    }

    pub fn span(self) -> time::Duration {
        match self {
            Range::Day => time::Duration::hours(24),
            Range::Week => time::Duration::days(7),
            Range::Month => time::Duration::days(30),
            Range::Year => time::Duration::days(365),
        }
    }
}

/// One point of a product's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Seconds since the epoch (what uPlot's time axis takes).
    pub at: i64,
    /// The same, RFC 3339 (for the table beside the chart).
    pub at_text: String,
    pub total: i64,
    pub in_use_max: i64,
    pub in_use_avg: f64,
    pub denied: i64,
}

/// A product's chart: its points, and the same as JSON for the page's script.
#[derive(Debug, Serialize)]
pub struct Chart {
    pub points: Vec<Point>,
    /// `{"at": [...], "total": [...], "in_use_max": [...], "in_use_avg": [...], "denied": [...]}`
    pub json: String,
    pub peak: i64,
    pub denied: i64,
    /// What the unused seats cost over the chart's range, with the currency ("12.3400 EUR"),
    /// when the product has a seat price.
    pub unused_cost: Option<String>,
}

impl Chart {
    pub fn of(points: Vec<Point>) -> Chart {
        let column = |f: &dyn Fn(&Point) -> serde_json::Value| {
            serde_json::Value::Array(points.iter().map(f).collect())
        };
        let json = serde_json::json!({
            "at": column(&|p| p.at.into()),
            "total": column(&|p| p.total.into()),
            "in_use_max": column(&|p| p.in_use_max.into()),
            "in_use_avg": column(&|p| p.in_use_avg.into()),
            "denied": column(&|p| p.denied.into()),
        })
        .to_string();
        Chart {
            peak: points.iter().map(|p| p.in_use_max).max().unwrap_or(0),
            denied: points.iter().map(|p| p.denied).sum(),
            points,
            json,
            unused_cost: None,
        }
    }
}

/// A sparkline: an SVG polyline of peak use per day, scaled to the seats bought (or the peak,
/// when higher).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sparkline {
    pub width: u32,
    pub height: u32,
    /// `x,y x,y ...` for `<polyline points>`.
    pub points: String,
    /// For screen readers: what the line shows.
    pub label: String,
}

pub const SPARK_WIDTH: u32 = 120;
pub const SPARK_HEIGHT: u32 = 24;

impl Sparkline {
    pub fn of(points: &[Point]) -> Option<Sparkline> {
        if points.is_empty() {
            return None;
        }
        let top = points
            .iter()
            .map(|p| p.total.max(p.in_use_max))
            .max()
            .unwrap_or(0)
            .max(1) as f64;
        let (w, h) = (SPARK_WIDTH as f64, SPARK_HEIGHT as f64);
        let step = if points.len() > 1 {
            w / (points.len() - 1) as f64
        } else {
            0.0
        };
        let coords: Vec<String> = points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                // One pixel of margin so a full or empty pool's line is not cut by the edge.
                let y = 1.0 + (h - 2.0) * (1.0 - p.in_use_max as f64 / top);
                format!("{:.1},{:.1}", i as f64 * step, y)
            })
            .collect();
        let peak = points.iter().map(|p| p.in_use_max).max().unwrap_or(0);
        let last = points.last().map(|p| p.in_use_max).unwrap_or(0);
        Some(Sparkline {
            width: SPARK_WIDTH,
            height: SPARK_HEIGHT,
            points: coords.join(" "),
            label: format!(
                "peak in use per day over {} days: highest {peak}, latest {last}",
                points.len()
            ),
        })
    }
}

/// What the dashboard shows of the history.
pub struct Overview {
    pub sparklines: HashMap<ProductId, Sparkline>,
    /// Refusals for want of a free seat in the last 24 hours, every product together.
    pub refusals_24h: Option<i64>,
    /// Whether the ledger keeps usage history at all.
    pub available: bool,
}

impl From<&UsagePoint> for Point {
    fn from(p: &UsagePoint) -> Point {
        Point {
            at: p.at.unix_timestamp(),
            at_text: super::pages::rfc3339(p.at),
            total: p.total,
            in_use_max: p.in_use_max,
            in_use_avg: p.in_use_avg,
            denied: p.denied,
        }
    }
}

/// The dashboard's sparklines (peak use per day over 30 days) and refusals of the last 24 h
/// (minute by minute, so the window is 24 hours to the minute), from the ledger's usage history.
pub async fn dashboard(
    state: &AppState,
    tenant: TenantId,
    products: &[ProductId],
) -> Result<Overview, ConsoleError> {
    let now = state.ledger.now_time();
    let days = state
        .ledger
        .tenant_usage(tenant, now - Range::Month.span(), now, UsageStep::Day)
        .await?;
    let sparklines = days
        .iter()
        .filter(|(product, _)| products.contains(&product.id))
        .filter_map(|(product, points)| {
            let points: Vec<Point> = points.iter().map(Point::from).collect();
            Some((product.id, Sparkline::of(&points)?))
        })
        .collect();
    // The minute holding `from` starts up to a minute before it: start one minute later.
    let minutes = state
        .ledger
        .tenant_usage(
            tenant,
            now - Range::Day.span() + time::Duration::minutes(1),
            now,
            UsageStep::Minute,
        )
        .await?;
    let refusals = minutes
        .iter()
        .flat_map(|(_, points)| points.iter().map(|p| p.denied))
        .sum();
    Ok(Overview {
        sparklines,
        refusals_24h: Some(refusals),
        available: true,
    })
}

/// A product's chart over `range`, from the ledger's usage history.
pub async fn chart(
    state: &AppState,
    tenant: TenantId,
    product: &Product,
    range: Range,
) -> Result<Option<Chart>, ConsoleError> {
    let now = state.ledger.now_time();
    let points = state
        .ledger
        .usage(tenant, product.id, now - range.span(), now, range.step())
        .await?;
    if points.is_empty() {
        return Ok(None);
    }
    let mut chart = Chart::of(points.iter().map(Point::from).collect());
    chart.unused_cost = unused_seat_cost_total(product, &points).and_then(|cost| {
        let price = product.seat_price_per_30_days.as_ref()?;
        Some(format!("{cost} {}", price.currency))
    });
    Ok(Some(chart))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: i64, total: i64, in_use_max: i64) -> Point {
        Point {
            at,
            at_text: String::new(),
            total,
            in_use_max,
            in_use_avg: in_use_max as f64,
            denied: 0,
        }
    }

    #[test]
    fn sparklines_scale_to_the_seats_bought() {
        assert_eq!(Sparkline::of(&[]), None);
        let s = Sparkline::of(&[point(0, 10, 0), point(1, 10, 5), point(2, 10, 10)]).unwrap();
        // Empty at the bottom, half in the middle, full at the top (one pixel of margin).
        assert_eq!(s.points, "0.0,23.0 60.0,12.0 120.0,1.0");
        assert!(s.label.contains("highest 10, latest 10"), "{}", s.label);
        // Overflow above what was bought raises the top instead of leaving the box.
        let s = Sparkline::of(&[point(0, 2, 4)]).unwrap();
        assert_eq!(s.points, "0.0,1.0");
    }

    #[test]
    fn chart_json_is_columns_for_uplot() {
        let chart = Chart::of(vec![point(60, 3, 1), point(120, 3, 2)]);
        let v: serde_json::Value = serde_json::from_str(&chart.json).unwrap();
        assert_eq!(v["at"], serde_json::json!([60, 120]));
        assert_eq!(v["in_use_max"], serde_json::json!([1, 2]));
        assert_eq!(chart.peak, 2);
    }

    #[test]
    fn ranges_round_trip() {
        for r in Range::ALL {
            assert_eq!(Range::parse(Some(r.as_str())), r);
        }
        assert_eq!(Range::parse(Some("bogus")), Range::Week);
    }
}
