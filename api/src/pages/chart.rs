//! The daily usage chart: a stacked bar chart as inline SVG, drawn on the server. It carries a
//! `<title>` and `<desc>` (its accessible name and summary); each bar has a `<title>` tooltip;
//! the page shows the same numbers in a table.

use ledger::statement::{format_rfc3339_ms, parse_rfc3339_ms};
use maud::{html, Markup};
use projector::DailyUsage;

use super::layout::fmt_num;
use super::CHART_DAYS;

const DAY_MS: i64 = 86_400_000;
const WIDTH: u32 = 720;
const HEIGHT: u32 = 260;
const MARGIN_LEFT: u32 = 78;
const MARGIN_RIGHT: u32 = 12;
const MARGIN_TOP: u32 = 14;
const MARGIN_BOTTOM: u32 = 36;
const GRID_LINES: u64 = 4;
/// Okabe–Ito colours: distinguishable with colour-vision deficiencies; each is outlined.
pub(crate) const PALETTE: [&str; 7] = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442"];

/// The colour of the `i`-th pool.
pub(crate) fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// UTC day number of a `YYYY-MM-DD` date.
fn day_number(day: &str) -> Option<i64> {
    parse_rfc3339_ms(&format!("{day}T00:00:00Z")).map(|ms| ms.div_euclid(DAY_MS))
}

fn day_text(n: i64) -> String {
    let text = format_rfc3339_ms(n.saturating_mul(DAY_MS));
    text.get(..10).unwrap_or(&text).to_string()
}

/// The chart window: [`CHART_DAYS`] days ending on the latest day with usage (today if none).
pub(crate) struct Window {
    pub first_day: i64,
    /// Per day in the window (index 0 = first_day): per pool index, the amount.
    pub days: Vec<Vec<u64>>,
}

impl Window {
    pub(super) fn new(series: &[DailyUsage], pools: &[String], now_ms: i64) -> Window {
        let parsed: Vec<(i64, usize, u64)> = series
            .iter()
            .filter_map(|d| {
                let pool = pools.iter().position(|p| *p == d.pool)?;
                Some((day_number(&d.day)?, pool, d.amount))
            })
            .collect();
        let last_day = parsed.iter().map(|(day, ..)| *day).max().unwrap_or(now_ms.div_euclid(DAY_MS));
        let first_day = last_day - (CHART_DAYS as i64 - 1);
        let mut days = vec![vec![0u64; pools.len()]; CHART_DAYS];
        for (day, pool, amount) in parsed {
            if day >= first_day {
                let slot = &mut days[(day - first_day) as usize][pool];
                *slot = slot.saturating_add(amount);
            }
        }
        Window { first_day, days }
    }

    pub(super) fn day(&self, index: usize) -> String {
        day_text(self.first_day + index as i64)
    }

    pub(super) fn total(&self, index: usize) -> u64 {
        self.days[index].iter().sum()
    }
}

/// A round axis maximum at or above `max` (1, 2 or 5 times a power of ten, times GRID_LINES).
fn axis_max(max: u64) -> u64 {
    let step_min = max.div_ceil(GRID_LINES).max(1);
    let mut power = 1u64;
    loop {
        for m in [1, 2, 5] {
            let step = power.saturating_mul(m);
            if step >= step_min {
                return step.saturating_mul(GRID_LINES);
            }
        }
        power = power.saturating_mul(10);
    }
}

struct Bar {
    day: usize,
    pool: usize,
    amount: u64,
    x: f64,
    y: f64,
    h: f64,
}

/// The SVG. `label` names the chart (e.g. "Daily usage of NumFOCUS credits").
pub(crate) fn daily_usage(window: &Window, pools: &[String], unit: &str, label: &str) -> Markup {
    let plot_w = WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let totals: Vec<u64> = (0..window.days.len()).map(|i| window.total(i)).collect();
    let sum: u64 = totals.iter().sum();
    let (peak_index, peak) =
        totals.iter().copied().enumerate().max_by_key(|(i, t)| (*t, usize::MAX - i)).unwrap_or((0, 0));
    let top = axis_max(peak);
    let slot = f64::from(plot_w) / window.days.len().max(1) as f64;
    let bar_w = (slot * 0.8).max(1.0);
    let y_of = |v: u64| f64::from(MARGIN_TOP) + f64::from(plot_h) * (1.0 - v as f64 / top as f64);
    let first = window.day(0);
    let last = window.day(window.days.len().saturating_sub(1));
    let summary = if sum == 0 {
        format!("No usage from {first} to {last}.")
    } else {
        format!(
            "{} {unit} used from {first} to {last}; the busiest day was {} with {} {unit}. The table below lists every day with usage.",
            fmt_num(sum),
            window.day(peak_index),
            fmt_num(peak)
        )
    };
    let label_every = (window.days.len() / 6).max(1);
    let x_of = |i: usize| f64::from(MARGIN_LEFT) + slot * i as f64 + (slot - bar_w) / 2.0;
    let mut bars = Vec::new();
    for (day, amounts) in window.days.iter().enumerate() {
        let mut base = 0u64;
        for (pool, &amount) in amounts.iter().enumerate().filter(|(_, a)| **a > 0) {
            let y = y_of(base.saturating_add(amount));
            bars.push(Bar { day, pool, amount, x: x_of(day), y, h: (y_of(base) - y).max(1.0) });
            base = base.saturating_add(amount);
        }
    }
    html! {
        svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
            aria-labelledby="chart-title chart-desc" focusable="false" {
            title #chart-title { (label) }
            desc #chart-desc { (summary) }
            @for g in 0..=GRID_LINES {
                @let v = top / GRID_LINES * g;
                @let y = y_of(v);
                line x1=(MARGIN_LEFT) x2=(WIDTH - MARGIN_RIGHT) y1=(format!("{y:.1}")) y2=(format!("{y:.1}"))
                    stroke=(if g == 0 { "#4a4a4a" } else { "#d5d9e0" }) stroke-width="1" {}
                text x=(MARGIN_LEFT - 6) y=(format!("{:.1}", y + 4.0)) text-anchor="end" font-size="13" fill="#333" { (fmt_num(v)) }
            }
            text x="12" y=(MARGIN_TOP + plot_h / 2) font-size="13" fill="#333"
                transform=(format!("rotate(-90 12 {})", MARGIN_TOP + plot_h / 2)) text-anchor="middle" { (unit) }
            @for bar in &bars {
                rect x=(format!("{:.1}", bar.x)) y=(format!("{:.1}", bar.y)) width=(format!("{bar_w:.1}"))
                    height=(format!("{:.1}", bar.h)) fill=(colour(bar.pool)) stroke="#1a1a1a" stroke-width="0.5" {
                    title { (window.day(bar.day)) ", " (pools[bar.pool]) ": " (fmt_num(bar.amount)) " " (unit) }
                }
            }
            @for i in (0..window.days.len()).filter(|i| i % label_every == 0 || i + 1 == window.days.len()) {
                text x=(format!("{:.1}", x_of(i) + bar_w / 2.0)) y=(HEIGHT - MARGIN_BOTTOM + 16) text-anchor="middle"
                    font-size="13" fill="#333" { (window.day(i).get(5..).unwrap_or("")) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_max_is_round_and_covers_the_peak() {
        assert_eq!(axis_max(0), 4);
        assert_eq!(axis_max(42), 80);
        assert_eq!(axis_max(100), 200);
        assert_eq!(axis_max(99_999), 200_000);
        for max in [1, 7, 13, 999, 1001, 123_456_789] {
            assert!(axis_max(max) >= max);
        }
    }

    #[test]
    fn window_ends_on_the_latest_usage_day_and_sums_per_pool() {
        let pools = vec!["a".to_string(), "b".to_string()];
        let series = vec![
            DailyUsage { day: "2026-03-01".into(), pool: "a".into(), amount: 42 },
            DailyUsage { day: "2026-03-01".into(), pool: "b".into(), amount: 8 },
            DailyUsage { day: "2025-01-01".into(), pool: "a".into(), amount: 1000 },
        ];
        let w = Window::new(&series, &pools, 0);
        assert_eq!(w.day(CHART_DAYS - 1), "2026-03-01");
        assert_eq!(w.days[CHART_DAYS - 1], vec![42, 8]);
        // The 2025 day is outside the window.
        assert_eq!((0..CHART_DAYS).map(|i| w.total(i)).sum::<u64>(), 50);
    }
}
