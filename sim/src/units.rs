//! Unit newtypes of the device and multi-chip models: wall-clock seconds and
//! joules. Only meaningful arithmetic is offered (sums, scaling by a plain
//! factor, ratios of like quantities).

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul};

macro_rules! real_quantity {
    ($(#[$doc:meta])* $name:ident, $unit:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd, serde::Serialize)]
        pub struct $name(pub f64);

        impl $name {
            /// Zero of this quantity.
            pub const ZERO: $name = $name(0.0);

            /// `self / other` as a plain ratio.
            pub fn ratio(self, other: $name) -> f64 {
                self.0 / other.0
            }

            /// The larger of two values.
            pub fn max(self, other: $name) -> $name {
                if other.0 > self.0 { other } else { self }
            }
        }

        impl Add for $name {
            type Output = $name;
            fn add(self, rhs: $name) -> $name {
                $name(self.0 + rhs.0)
            }
        }

        impl AddAssign for $name {
            fn add_assign(&mut self, rhs: $name) {
                self.0 += rhs.0;
            }
        }

        impl Mul<f64> for $name {
            type Output = $name;
            fn mul(self, rhs: f64) -> $name {
                $name(self.0 * rhs)
            }
        }

        impl Sum for $name {
            fn sum<I: Iterator<Item = $name>>(iter: I) -> $name {
                $name(iter.map(|x| x.0).sum())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} {}", self.0, $unit)
            }
        }
    };
}

real_quantity!(
    /// Wall-clock time in seconds.
    Seconds,
    "s"
);
real_quantity!(
    /// Energy in joules.
    Joules,
    "J"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_add_scale_and_compare() {
        assert_eq!(Seconds(1.5) + Seconds(0.5), Seconds(2.0));
        assert_eq!(Seconds(2.0) * 3.0, Seconds(6.0));
        assert_eq!(
            [Joules(1.0), Joules(2.0)].into_iter().sum::<Joules>(),
            Joules(3.0)
        );
        assert_eq!(Seconds(1.0).max(Seconds(3.0)), Seconds(3.0));
        assert!((Seconds(3.0).ratio(Seconds(1.5)) - 2.0).abs() < 1e-12);
    }
}
