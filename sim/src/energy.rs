//! Action-count energy model in the spirit of Accelergy: every action the
//! timing run counts (MACs per input type, scratchpad/accumulator/HBM bytes,
//! vector elements) is priced from `data/energy.toml`, where each row names
//! its source; static power is leakage density times an area estimate,
//! times time.
//!
//! Process scaling: a dynamic energy quoted at node N0 costs
//! `E * (node / N0)^exponent` at `node`, with the exponent fitted to two
//! sourced points (see the file). HBM energy does not scale. Areas scale
//! with the square of the node ratio.

use serde::Deserialize;
use tessera_isa::{Arch, DType};

use crate::timing::Counters;

/// The built-in table, compiled in so the library does no file IO.
pub const BUILTIN_TABLE: &str = include_str!("../../data/energy.toml");

#[derive(Debug, Deserialize)]
struct Scaling {
    exponent: f64,
}

#[derive(Debug, Deserialize)]
struct EnergyRow {
    action: String,
    pj: f64,
    node_nm: f64,
}

#[derive(Debug, Deserialize)]
struct AreaRow {
    item: String,
    value: f64,
    node_nm: f64,
}

#[derive(Debug, Deserialize)]
struct StaticRow {
    watts_per_mm2: f64,
}

#[derive(Debug, Deserialize)]
struct Table {
    scaling: Scaling,
    energy: Vec<EnergyRow>,
    area: Vec<AreaRow>,
    static_power: StaticRow,
}

/// A problem with an energy table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnergyError {
    #[error("energy table: {0}")]
    Syntax(String),
    #[error("energy table has no row `{0}`")]
    Missing(&'static str),
    #[error("energy table row `{0}` must be a finite number of at least 0")]
    Invalid(String),
}

/// Prices per action at one hardware description's process node.
#[derive(Debug, Clone, PartialEq)]
pub struct EnergyModel {
    /// pJ per MAC by input type code.
    mac_pj: [f64; 7],
    spad_pj_per_byte: f64,
    acc_pj_per_byte: f64,
    hbm_pj_per_byte: f64,
    vector_simple_pj: f64,
    vector_special_pj: f64,
    /// Leakage of one core in watts.
    static_watts: f64,
    /// Area estimate of one core in mm^2.
    area_mm2: f64,
}

/// Energy of a run, by component, in joules.
#[derive(Debug, Clone, PartialEq)]
pub struct EnergyReport {
    /// (component, joules), in a fixed order.
    pub components: Vec<(&'static str, f64)>,
    pub total_joules: f64,
    pub static_watts: f64,
    pub area_mm2: f64,
}

impl EnergyModel {
    /// The built-in table priced for `arch`.
    ///
    /// # Errors
    /// Only if the built-in table is broken, which a test rules out.
    pub fn builtin(arch: &Arch) -> Result<EnergyModel, EnergyError> {
        EnergyModel::from_toml(BUILTIN_TABLE, arch)
    }

    /// A table in the `data/energy.toml` format priced for `arch`.
    ///
    /// # Errors
    /// A syntax error, a missing row or a negative or non-finite value.
    pub fn from_toml(text: &str, arch: &Arch) -> Result<EnergyModel, EnergyError> {
        let t: Table = toml::from_str(text)
            .map_err(|e| EnergyError::Syntax(e.message().replace('\n', " ")))?;
        let node = f64::from(arch.spec().chip.process_nm);
        let energy = |name: &'static str| -> Result<f64, EnergyError> {
            let r = t
                .energy
                .iter()
                .find(|r| r.action == name)
                .ok_or(EnergyError::Missing(name))?;
            if !r.pj.is_finite() || r.pj < 0.0 {
                return Err(EnergyError::Invalid(name.into()));
            }
            Ok(if r.node_nm > 0.0 {
                r.pj * (node / r.node_nm).powf(t.scaling.exponent)
            } else {
                r.pj
            })
        };
        let area = |name: &'static str| -> Result<f64, EnergyError> {
            let r = t
                .area
                .iter()
                .find(|r| r.item == name)
                .ok_or(EnergyError::Missing(name))?;
            if !r.value.is_finite() || r.value < 0.0 || r.node_nm <= 0.0 {
                return Err(EnergyError::Invalid(name.into()));
            }
            Ok(r.value * (node / r.node_nm).powi(2))
        };
        let mut mac_pj = [0.0; 7];
        for t in DType::ALL {
            mac_pj[t.code() as usize] = match t {
                DType::Int8 => energy("mac.int8")?,
                DType::Fp16 => energy("mac.fp16")?,
                DType::Bf16 => energy("mac.bf16")?,
                DType::Fp8E4M3 | DType::Fp8E5M2 => energy("mac.fp8")?,
                DType::Fp32 | DType::Int32 => 0.0,
            };
        }
        let s = arch.spec();
        let sram_bits =
            (arch.scratchpad_bytes().get() + arch.accumulator_bytes().get()) as f64 * 8.0;
        let area_um2 = f64::from(s.array.rows) * f64::from(s.array.cols) * area("mac.um2")?
            + sram_bits * area("sram_bit.um2")?
            + f64::from(s.vector.lanes) * area("vector_lane.um2")?;
        let area_mm2 = area_um2 / 1.0e6;
        let density = t.static_power.watts_per_mm2;
        if !density.is_finite() || density < 0.0 {
            return Err(EnergyError::Invalid("static_power.watts_per_mm2".into()));
        }
        Ok(EnergyModel {
            mac_pj,
            spad_pj_per_byte: energy("scratchpad.byte")?,
            acc_pj_per_byte: energy("accumulator.byte")?,
            hbm_pj_per_byte: energy("hbm.byte")?,
            vector_simple_pj: energy("vector.simple")?,
            vector_special_pj: energy("vector.special")?,
            static_watts: density * area_mm2,
            area_mm2,
        })
    }

    /// Prices a run's counters over `seconds` of wall time.
    pub fn price(&self, c: &Counters, seconds: f64) -> EnergyReport {
        let pj = 1.0e-12;
        let array: f64 = c
            .macs
            .iter()
            .zip(&self.mac_pj)
            .map(|(n, e)| *n as f64 * e)
            .sum::<f64>()
            * pj;
        let spad = (c.spad_read_bytes + c.spad_write_bytes) as f64 * self.spad_pj_per_byte * pj;
        let acc = (c.acc_read_bytes + c.acc_write_bytes) as f64 * self.acc_pj_per_byte * pj;
        let hbm = (c.hbm_read_bytes + c.hbm_write_bytes) as f64 * self.hbm_pj_per_byte * pj;
        let vector = (c.vector_simple_elems as f64 * self.vector_simple_pj
            + c.vector_special_elems as f64 * self.vector_special_pj)
            * pj;
        let leakage = self.static_watts * seconds;
        let components = vec![
            ("array", array),
            ("scratchpad", spad),
            ("accumulator", acc),
            ("hbm", hbm),
            ("vector", vector),
            ("static", leakage),
        ];
        EnergyReport {
            total_joules: components.iter().map(|c| c.1).sum(),
            components,
            static_watts: self.static_watts,
            area_mm2: self.area_mm2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_prices_every_preset() {
        for name in tessera_isa::PRESET_NAMES {
            let arch = Arch::preset(name).unwrap();
            let m = EnergyModel::builtin(&arch).unwrap();
            assert!(m.area_mm2 > 0.0 && m.static_watts > 0.0, "{name}: {m:?}");
        }
    }

    #[test]
    fn scaling_reproduces_the_7nm_anchor() {
        // fp32 mult: 3.7 pJ at 45 nm scales to about 1.31 pJ at 7 nm by construction of the exponent.
        let e = 3.7 * (7.0f64 / 45.0).powf(0.558);
        assert!((e - 1.31).abs() < 0.01, "{e}");
        let arch = Arch::preset("default").unwrap(); // 7 nm
        let m = EnergyModel::builtin(&arch).unwrap();
        let bf16_mac = m.mac_pj[DType::Bf16.code() as usize];
        assert!((bf16_mac - 2.0 * (7.0f64 / 45.0).powf(0.558)).abs() < 1e-12);
        assert_eq!(m.hbm_pj_per_byte, 31.76);
    }

    #[test]
    fn pricing_is_linear_in_counts() {
        let arch = Arch::preset("default").unwrap();
        let m = EnergyModel::builtin(&arch).unwrap();
        let mut c = Counters::default();
        c.macs[DType::Int8.code() as usize] = 1_000_000;
        c.hbm_read_bytes = 1000;
        let one = m.price(&c, 0.0);
        c.macs[DType::Int8.code() as usize] *= 2;
        c.hbm_read_bytes *= 2;
        let two = m.price(&c, 0.0);
        assert!((two.total_joules - 2.0 * one.total_joules).abs() < 1e-18);
        assert!(EnergyModel::from_toml("scaling = 1", &arch).is_err());
    }
}
