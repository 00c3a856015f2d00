//! Unit newtypes shared by every crate: cycles, bytes, picojoules.
//!
//! Each supports only the arithmetic that means something: adding two
//! durations, scaling a size by a count. Mixing units (`Cycles * Bytes`) does
//! not compile.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul, Sub};

macro_rules! quantity {
    ($(#[$meta:meta])* $name:ident($inner:ty), $unit:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $inner);

        impl $name {
            /// Zero of this quantity.
            pub const ZERO: $name = $name(0);

            /// The raw count.
            pub const fn get(self) -> $inner {
                self.0
            }

            /// Difference that never goes below zero.
            pub fn saturating_sub(self, other: $name) -> $name {
                $name(self.0.saturating_sub(other.0))
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

        /// Subtraction panics on underflow in debug builds: counters never go negative.
        impl Sub for $name {
            type Output = $name;
            fn sub(self, rhs: $name) -> $name {
                $name(self.0 - rhs.0)
            }
        }

        impl Mul<$inner> for $name {
            type Output = $name;
            fn mul(self, rhs: $inner) -> $name {
                $name(self.0 * rhs)
            }
        }

        impl Sum for $name {
            fn sum<I: Iterator<Item = $name>>(iter: I) -> $name {
                iter.fold($name::ZERO, |a, b| a + b)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} {}", self.0, $unit)
            }
        }
    };
}

quantity!(
    /// A count of clock cycles of the core clock.
    Cycles(u64),
    "cycles"
);
quantity!(
    /// A count of bytes (a size, or bytes moved).
    Bytes(u64),
    "B"
);

/// Energy in picojoules.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Picojoules(pub f64);

impl Picojoules {
    /// The value in joules.
    pub fn joules(self) -> f64 {
        self.0 * 1e-12
    }
}

impl Add for Picojoules {
    type Output = Picojoules;
    fn add(self, rhs: Picojoules) -> Picojoules {
        Picojoules(self.0 + rhs.0)
    }
}

impl Mul<f64> for Picojoules {
    type Output = Picojoules;
    fn mul(self, rhs: f64) -> Picojoules {
        Picojoules(self.0 * rhs)
    }
}

impl fmt::Display for Picojoules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} pJ", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_add_and_scale() {
        assert_eq!(Cycles(3) + Cycles(4), Cycles(7));
        assert_eq!(Bytes(64) * 3, Bytes(192));
        assert_eq!(Cycles(2).saturating_sub(Cycles(5)), Cycles::ZERO);
        assert_eq!([Bytes(1), Bytes(2)].into_iter().sum::<Bytes>(), Bytes(3));
        assert!((Picojoules(2.0e12).joules() - 2.0).abs() < 1e-12);
    }
}
