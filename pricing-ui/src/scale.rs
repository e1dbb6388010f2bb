//! The usage sliders' non-linear scale: usage spans 0 to billions, so a slider moves through "nice" numbers, a
//! dozen per power of ten (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9 × 10ⁿ), from 0 to a top set by the product's
//! tiers. Integer arithmetic only: positions are indexes into the list of stops.

use billing_core::{ChargeModel, Metered};
use rust_decimal::Decimal;

/// Mantissas of a decade, in tenths.
const MANTISSAS: [i64; 12] = [10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90];

/// The stops of a slider: ascending, starting at 0, ending at `10^top_exponent`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    stops: Vec<Decimal>,
    top_exponent: u32,
}

impl Scale {
    /// A scale from 0 to `10^top_exponent` (at most 10^12, the largest quantity).
    pub fn new(top_exponent: u32) -> Scale {
        let top_exponent = top_exponent.clamp(1, 12);
        let mut stops = vec![Decimal::ZERO];
        for e in 0..top_exponent {
            for m in MANTISSAS {
                // m tenths × 10^e, whole: decade 0 gives 1, 1 (dropped), 2, 2, 3, …
                let value = (Decimal::new(m, 1) * Decimal::from(10_i64.pow(e))).trunc();
                if stops.last().is_some_and(|last| *last < value) {
                    stops.push(value);
                }
            }
        }
        stops.push(Decimal::from(10_i64.pow(top_exponent)));
        Scale { stops, top_exponent }
    }

    /// The scale for a product: up to ten times its last tier boundary, rounded up to a power of ten, and at
    /// least 10,000 units.
    pub fn for_metered(metered: &Metered) -> Scale {
        let last = match &metered.charge {
            ChargeModel::Graduated(t) | ChargeModel::Volume(t) => t.tiers().filter_map(|t| t.up_to).max(),
            ChargeModel::Package(p) => Some(p.size),
            ChargeModel::PerUnit { .. } => None,
        }
        .unwrap_or(Decimal::ZERO);
        let mut e = 4;
        while e < 12 && Decimal::from(10_i64.pow(e)) < last * Decimal::TEN {
            e += 1;
        }
        Scale::new(e)
    }

    /// Every stop.
    pub fn stops(&self) -> &[Decimal] {
        &self.stops
    }

    /// The highest position.
    pub fn max_position(&self) -> usize {
        self.stops.len() - 1
    }

    /// The quantity at a position (clamped to the scale).
    pub fn quantity(&self, position: usize) -> Decimal {
        self.stops[position.min(self.max_position())]
    }

    /// The position of the largest stop not above `q` (the top for anything beyond it).
    pub fn position(&self, q: Decimal) -> usize {
        self.stops.partition_point(|s| *s <= q).saturating_sub(1)
    }

    /// Where `q` falls along the scale, in thousandths of its length (0–1000), interpolated between stops, so a
    /// tier boundary or the current usage can be marked where it is.
    pub fn permille(&self, q: Decimal) -> i64 {
        let max = self.max_position();
        let i = self.position(q);
        if i >= max {
            return 1000;
        }
        let (lo, hi) = (self.stops[i], self.stops[i + 1]);
        let within = if hi > lo { (q - lo) / (hi - lo) } else { Decimal::ZERO };
        let pos = (Decimal::from(i) + within) * Decimal::from(1000) / Decimal::from(max);
        i64::try_from(pos.round()).unwrap_or(1000).clamp(0, 1000)
    }

    /// The marks under a slider: each power of ten of the scale whose exponent is a multiple of 3, and 0 (`0`,
    /// `1K`, `1M`, `1B`), with their position in thousandths; the top is marked too.
    pub fn marks(&self) -> Vec<(i64, String)> {
        let mut marks = vec![(0, "0".to_owned())];
        for e in 1..=self.top_exponent {
            if e % 3 == 0 || e == self.top_exponent {
                let q = Decimal::from(10_i64.pow(e));
                marks.push((self.permille(q), crate::format::compact(q)));
            }
        }
        marks
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn stops_are_nice_numbers_from_zero_to_the_top() {
        let s = Scale::new(3);
        let shown: Vec<String> = s.stops().iter().take(12).map(ToString::to_string).collect();
        assert_eq!(shown, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "12"]);
        assert_eq!(s.quantity(s.max_position()), Decimal::from(1000));
        assert!(s.stops().windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            s.position(Decimal::from(15)),
            s.stops().iter().position(|q| *q == Decimal::from(15)).unwrap()
        );
        assert_eq!(s.position(Decimal::from(16)), s.position(Decimal::from(15)));
        assert_eq!(s.position(Decimal::from(5000)), s.max_position());
        assert_eq!(s.permille(Decimal::ZERO), 0);
        assert_eq!(s.permille(Decimal::from(1000)), 1000);
        let marks = Scale::new(9).marks();
        let labels: Vec<&str> = marks.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["0", "1K", "1M", "1B"]);
        assert!(marks.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn every_position_round_trips() {
        let s = Scale::new(12);
        for p in 0..=s.max_position() {
            assert_eq!(s.position(s.quantity(p)), p);
        }
    }
}
