//! The hardware description: one validated [`Arch`] value drives the compiler,
//! the simulator and the RTL generator.
//!
//! A description is written as TOML ([`ArchSpec`], plain serde fields), checked
//! once by [`Arch::new`], and then only read. Every rule a description can
//! break is named in [`ArchError`] with the field it concerns. Array, buffers,
//! vector unit and DMA engines are per core; HBM is per chip and shared by
//! its cores.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::dtype::DType;
use crate::program::MemSpace;
use crate::units::{Bytes, Cycles};

/// Largest array dimension; bounded by the 11-bit `n` field of `mm.preload`.
pub const MAX_ARRAY_DIM: u32 = 1024;
/// Largest on-chip buffer; on-chip addresses are 32 bits.
pub const MAX_ONCHIP_BYTES: u64 = 1 << 32;
/// Largest HBM; HBM addresses are 48 bits.
pub const MAX_HBM_BYTES: u64 = 1 << 48;

/// How the systolic array keeps one operand in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dataflow {
    /// Weights stay in the processing elements; activations stream through.
    WeightStationary,
    /// Partial sums stay in the processing elements; both operands stream.
    OutputStationary,
}

impl fmt::Display for Dataflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dataflow::WeightStationary => "weight-stationary",
            Dataflow::OutputStationary => "output-stationary",
        })
    }
}

/// The systolic array of one core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArraySpec {
    /// Processing-element rows (the reduction dimension in weight-stationary).
    pub rows: u32,
    /// Processing-element columns (the output-feature dimension).
    pub cols: u32,
    /// Which operand stays in place.
    pub dataflow: Dataflow,
    /// A shadow weight buffer lets the next weight tile load while the current one computes.
    pub double_buffered_weights: bool,
    /// Input element types the multipliers accept.
    pub input_types: Vec<DType>,
    /// Pipeline stages of one processing element, 1 to 8: a partial sum
    /// takes this many cycles to cross a processing element, while
    /// activations still move one column per cycle (weight-stationary), so
    /// the input skew and the drain grow with it; 1 is a single-cycle MAC.
    pub pe_pipeline_stages: u32,
}

/// The core clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockSpec {
    /// Core clock frequency in MHz.
    pub frequency_mhz: f64,
}

/// A banked on-chip SRAM (scratchpad or accumulator).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SramSpec {
    /// Capacity in KiB.
    pub size_kib: u64,
    /// Independently addressed banks; consecutive `bank_width_bytes` chunks interleave across them.
    pub banks: u32,
    /// Bytes one bank reads or writes per cycle.
    pub bank_width_bytes: u32,
}

/// The vector unit of one core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorSpec {
    /// fp32 elements processed per cycle by simple operations (add, mul, max, compare, select, cast).
    pub lanes: u32,
    /// Elements per cycle of the special-function unit (div, sqrt, exp, log, tanh, GELU, ...).
    pub special_lanes: u32,
    /// Cycles from an operation's first input to its first result.
    pub latency_cycles: u32,
}

/// The DMA engines of one core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DmaSpec {
    /// Engines that can move data concurrently (shared by the load and store queues).
    pub engines: u32,
    /// Bytes per HBM burst; transfers are split into bursts of this size.
    pub burst_bytes: u32,
}

/// The chip's high-bandwidth memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HbmSpec {
    /// Peak bandwidth in GB/s (10^9 bytes per second).
    pub bandwidth_gb_per_s: f64,
    /// Latency of one access in nanoseconds.
    pub latency_ns: f64,
    /// Capacity in GiB.
    pub capacity_gib: f64,
}

/// Chip-level facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChipSpec {
    /// Process node in nm; energy per operation scales from it.
    pub process_nm: u32,
    /// Identical cores per chip sharing the HBM.
    pub cores: u32,
}

/// A hardware description as written in TOML, before validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchSpec {
    /// Name of this design; programs record it.
    pub name: String,
    pub array: ArraySpec,
    pub clock: ClockSpec,
    pub scratchpad: SramSpec,
    pub accumulator: SramSpec,
    pub vector: VectorSpec,
    pub dma: DmaSpec,
    pub hbm: HbmSpec,
    pub chip: ChipSpec,
}

/// A rule of the hardware description that an input breaks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArchError {
    /// The TOML text did not parse or did not match the schema.
    #[error("{0}")]
    Syntax(String),
    /// A field breaks a rule.
    #[error("field `{field}` {rule}")]
    Field { field: &'static str, rule: String },
    /// No preset has this name.
    #[error("unknown hardware preset `{0}` (presets: {presets})", presets = PRESET_NAMES.join(", "))]
    UnknownPreset(String),
}

fn rule(field: &'static str, rule: impl Into<String>) -> ArchError {
    ArchError::Field {
        field,
        rule: rule.into(),
    }
}

fn check_range(field: &'static str, v: u64, lo: u64, hi: u64) -> Result<(), ArchError> {
    if v < lo || v > hi {
        return Err(rule(
            field,
            format!("must be between {lo} and {hi}, got {v}"),
        ));
    }
    Ok(())
}

fn check_pow2(field: &'static str, v: u64) -> Result<(), ArchError> {
    if !v.is_power_of_two() {
        return Err(rule(field, format!("must be a power of two, got {v}")));
    }
    Ok(())
}

fn check_positive_finite(field: &'static str, v: f64, hi: f64) -> Result<(), ArchError> {
    if !v.is_finite() || v <= 0.0 || v > hi {
        return Err(rule(
            field,
            format!("must be a number above 0 and at most {hi}, got {v}"),
        ));
    }
    Ok(())
}

fn check_sram(prefix: &'static [&'static str; 3], s: &SramSpec) -> Result<(), ArchError> {
    let [size, banks, width] = *prefix;
    check_range(size, s.size_kib, 1, MAX_ONCHIP_BYTES / 1024)?;
    check_range(banks, u64::from(s.banks), 1, 1024)?;
    check_pow2(banks, u64::from(s.banks))?;
    check_range(width, u64::from(s.bank_width_bytes), 4, 4096)?;
    check_pow2(width, u64::from(s.bank_width_bytes))?;
    let stripe = u64::from(s.banks) * u64::from(s.bank_width_bytes);
    if (s.size_kib * 1024) % stripe != 0 {
        return Err(rule(
            size,
            format!("must be a multiple of banks x bank_width_bytes ({stripe} bytes)"),
        ));
    }
    Ok(())
}

/// A validated hardware description. Construct with [`Arch::new`],
/// [`Arch::from_toml`] or [`Arch::preset`]; every getter may assume the rules hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Arch {
    spec: ArchSpec,
}

impl Arch {
    /// Validates a description.
    ///
    /// # Errors
    /// The first rule broken, naming its field.
    pub fn new(spec: ArchSpec) -> Result<Arch, ArchError> {
        let ok_name = !spec.name.is_empty()
            && spec.name.len() <= 64
            && spec
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if !ok_name {
            return Err(rule(
                "name",
                format!(
                    "must be 1 to 64 characters of letters, digits, '-', '_' or '.', got {:?}",
                    spec.name
                ),
            ));
        }
        let a = &spec.array;
        check_range("array.rows", u64::from(a.rows), 2, u64::from(MAX_ARRAY_DIM))?;
        check_range("array.cols", u64::from(a.cols), 2, u64::from(MAX_ARRAY_DIM))?;
        if a.input_types.is_empty() {
            return Err(rule(
                "array.input_types",
                "must name at least one element type",
            ));
        }
        for (i, t) in a.input_types.iter().enumerate() {
            if matches!(t, DType::Fp32 | DType::Int32) {
                return Err(rule(
                    "array.input_types",
                    format!("may not contain {t}: the multipliers take bf16, fp16, fp8-e4m3, fp8-e5m2 or int8"),
                ));
            }
            if a.input_types[..i].contains(t) {
                return Err(rule("array.input_types", format!("lists {t} twice")));
            }
        }
        if !(1..=8).contains(&a.pe_pipeline_stages) {
            return Err(rule(
                "array.pe_pipeline_stages",
                format!("must be 1 to 8, got {}", a.pe_pipeline_stages),
            ));
        }
        check_positive_finite("clock.frequency_mhz", spec.clock.frequency_mhz, 10_000.0)?;
        check_sram(
            &[
                "scratchpad.size_kib",
                "scratchpad.banks",
                "scratchpad.bank_width_bytes",
            ],
            &spec.scratchpad,
        )?;
        check_sram(
            &[
                "accumulator.size_kib",
                "accumulator.banks",
                "accumulator.bank_width_bytes",
            ],
            &spec.accumulator,
        )?;
        let widest_input = a
            .input_types
            .iter()
            .map(|t| t.size_bytes())
            .max()
            .unwrap_or(1);
        let weight_tile = u64::from(a.rows) * u64::from(a.cols) * widest_input;
        if spec.scratchpad.size_kib * 1024 < 2 * weight_tile {
            return Err(rule(
                "scratchpad.size_kib",
                format!(
                    "must hold two weight tiles of array.rows x array.cols ({} bytes)",
                    2 * weight_tile
                ),
            ));
        }
        let out_tile = u64::from(a.rows) * u64::from(a.cols) * 4;
        if spec.accumulator.size_kib * 1024 < out_tile {
            return Err(rule(
                "accumulator.size_kib",
                format!("must hold one 32-bit output tile of array.rows x array.cols ({out_tile} bytes)"),
            ));
        }
        check_range("vector.lanes", u64::from(spec.vector.lanes), 1, 4096)?;
        check_pow2("vector.lanes", u64::from(spec.vector.lanes))?;
        check_range(
            "vector.special_lanes",
            u64::from(spec.vector.special_lanes),
            1,
            u64::from(spec.vector.lanes),
        )?;
        check_range(
            "vector.latency_cycles",
            u64::from(spec.vector.latency_cycles),
            1,
            256,
        )?;
        check_range("dma.engines", u64::from(spec.dma.engines), 1, 64)?;
        check_range("dma.burst_bytes", u64::from(spec.dma.burst_bytes), 16, 4096)?;
        check_pow2("dma.burst_bytes", u64::from(spec.dma.burst_bytes))?;
        check_positive_finite("hbm.bandwidth_gb_per_s", spec.hbm.bandwidth_gb_per_s, 1.0e6)?;
        if !spec.hbm.latency_ns.is_finite()
            || spec.hbm.latency_ns < 0.0
            || spec.hbm.latency_ns > 1.0e6
        {
            return Err(rule(
                "hbm.latency_ns",
                format!(
                    "must be a number from 0 to 1000000, got {}",
                    spec.hbm.latency_ns
                ),
            ));
        }
        check_positive_finite(
            "hbm.capacity_gib",
            spec.hbm.capacity_gib,
            (MAX_HBM_BYTES >> 30) as f64,
        )?;
        check_range("chip.process_nm", u64::from(spec.chip.process_nm), 2, 180)?;
        check_range("chip.cores", u64::from(spec.chip.cores), 1, 1024)?;
        Ok(Arch { spec })
    }

    /// Parses and validates a TOML description.
    ///
    /// # Errors
    /// A one-line message: the TOML position and problem, or the field and rule broken.
    ///
    /// ```
    /// # use tessera_isa::Arch;
    /// let base = Arch::preset("fpga-8x8")?;
    /// let same = Arch::from_toml(&base.to_toml())?;
    /// assert_eq!(base, same);
    /// # Ok::<(), tessera_isa::ArchError>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<Arch, ArchError> {
        let spec: ArchSpec = toml::from_str(text).map_err(|e| {
            let msg = e.message().replace('\n', " ");
            match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    ArchError::Syntax(format!("line {line}, column {col}: {msg}"))
                }
                None => ArchError::Syntax(msg),
            }
        })?;
        Arch::new(spec)
    }

    /// One of the built-in designs; see [`PRESET_NAMES`].
    ///
    /// # Errors
    /// [`ArchError::UnknownPreset`] for any other name.
    pub fn preset(name: &str) -> Result<Arch, ArchError> {
        let spec =
            crate::presets::spec(name).ok_or_else(|| ArchError::UnknownPreset(name.to_string()))?;
        Arch::new(spec)
    }

    /// The canonical TOML text: identical descriptions give identical bytes.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.spec).expect("an ArchSpec always serialises")
    }

    /// A 64-bit fingerprint of the canonical TOML (FNV-1a); programs record it.
    pub fn fingerprint(&self) -> u64 {
        fnv1a64(self.to_toml().as_bytes())
    }

    /// The description as written.
    pub fn spec(&self) -> &ArchSpec {
        &self.spec
    }

    /// Name of the design.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Array rows.
    pub fn rows(&self) -> u32 {
        self.spec.array.rows
    }

    /// Array columns.
    pub fn cols(&self) -> u32 {
        self.spec.array.cols
    }

    /// The array's dataflow.
    pub fn dataflow(&self) -> Dataflow {
        self.spec.array.dataflow
    }

    /// Pipeline stages of one processing element (1 to 8): the cycles a
    /// partial sum takes to cross it.
    pub fn pe_stages(&self) -> u32 {
        self.spec.array.pe_pipeline_stages
    }

    /// Whether the array accepts this input element type.
    pub fn supports_input(&self, t: DType) -> bool {
        self.spec.array.input_types.contains(&t)
    }

    /// Scratchpad capacity of one core.
    pub fn scratchpad_bytes(&self) -> Bytes {
        Bytes(self.spec.scratchpad.size_kib * 1024)
    }

    /// Accumulator capacity of one core.
    pub fn accumulator_bytes(&self) -> Bytes {
        Bytes(self.spec.accumulator.size_kib * 1024)
    }

    /// HBM capacity of the chip, whole bytes.
    pub fn hbm_bytes(&self) -> Bytes {
        Bytes((self.spec.hbm.capacity_gib * (1u64 << 30) as f64) as u64)
    }

    /// Capacity of a memory space: HBM for the chip, scratchpad and
    /// accumulator for one core.
    pub fn capacity(&self, space: MemSpace) -> Bytes {
        match space {
            MemSpace::Hbm => self.hbm_bytes(),
            MemSpace::Spad => self.scratchpad_bytes(),
            MemSpace::Acc => self.accumulator_bytes(),
        }
    }

    /// Seconds per core clock cycle.
    pub fn cycle_seconds(&self) -> f64 {
        1.0e-6 / self.spec.clock.frequency_mhz
    }

    /// Converts a cycle count to seconds.
    pub fn seconds(&self, c: Cycles) -> f64 {
        c.get() as f64 * self.cycle_seconds()
    }

    /// HBM bytes per core clock cycle for the whole chip.
    pub fn hbm_bytes_per_cycle(&self) -> f64 {
        self.spec.hbm.bandwidth_gb_per_s * 1.0e3 / self.spec.clock.frequency_mhz
    }

    /// HBM latency rounded up to whole core cycles.
    pub fn hbm_latency_cycles(&self) -> Cycles {
        Cycles((self.spec.hbm.latency_ns * self.spec.clock.frequency_mhz / 1.0e3).ceil() as u64)
    }

    /// Peak dense matrix throughput of the chip in FLOP/s (2 per MAC).
    pub fn peak_flops(&self) -> f64 {
        2.0 * f64::from(self.rows())
            * f64::from(self.cols())
            * f64::from(self.spec.chip.cores)
            * self.spec.clock.frequency_mhz
            * 1.0e6
    }
}

/// Names of the built-in presets, smallest first.
pub const PRESET_NAMES: [&str; 3] = ["fpga-8x8", "default", "datacenter"];

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// FNV-1a, 64-bit: small, stable and dependency-free; not a cryptographic hash.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broken(edit: impl FnOnce(&mut ArchSpec)) -> String {
        let mut spec = Arch::preset("default").unwrap().spec().clone();
        edit(&mut spec);
        Arch::new(spec).unwrap_err().to_string()
    }

    #[test]
    fn presets_validate_and_round_trip_through_toml() {
        for name in PRESET_NAMES {
            let a = Arch::preset(name).unwrap();
            assert_eq!(a.name(), name);
            let again = Arch::from_toml(&a.to_toml()).unwrap();
            assert_eq!(a, again);
            assert_eq!(a.fingerprint(), again.fingerprint());
        }
    }

    #[test]
    fn each_rule_names_its_field() {
        assert_eq!(
            broken(|s| s.array.rows = 0),
            "field `array.rows` must be between 2 and 1024, got 0"
        );
        assert_eq!(
            broken(|s| s.scratchpad.banks = 3),
            "field `scratchpad.banks` must be a power of two, got 3"
        );
        assert!(broken(|s| s.array.input_types.push(DType::Fp32))
            .starts_with("field `array.input_types` may not contain fp32"));
        assert_eq!(
            broken(|s| s.array.input_types.clear()),
            "field `array.input_types` must name at least one element type"
        );
        assert!(
            broken(|s| s.clock.frequency_mhz = f64::NAN).starts_with("field `clock.frequency_mhz`")
        );
        assert!(broken(|s| s.hbm.latency_ns = -1.0).starts_with("field `hbm.latency_ns`"));
        assert!(broken(|s| s.accumulator.size_kib = 1)
            .starts_with("field `accumulator.size_kib` must hold"));
        assert!(broken(|s| s.name = "has space".into()).starts_with("field `name`"));
        assert!(broken(|s| s.array.pe_pipeline_stages = 0)
            .starts_with("field `array.pe_pipeline_stages` must be 1 to 8, got 0"));
        assert!(broken(|s| s.array.pe_pipeline_stages = 9)
            .starts_with("field `array.pe_pipeline_stages` must be 1 to 8, got 9"));
        assert!(broken(|s| s.scratchpad.size_kib = 1001)
            .starts_with("field `scratchpad.size_kib` must be a multiple"));
    }

    #[test]
    fn toml_errors_are_one_line_with_position() {
        let text = Arch::preset("fpga-8x8")
            .unwrap()
            .to_toml()
            .replace("rows = 8", "rowz = 8");
        let e = Arch::from_toml(&text).unwrap_err().to_string();
        assert!(e.starts_with("line "), "{e}");
        assert!(e.contains("unknown field `rowz`"), "{e}");
        assert!(!e.contains('\n'));
        let e = Arch::from_toml("name = 3").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn derived_figures() {
        let a = Arch::preset("default").unwrap();
        assert_eq!(a.peak_flops(), 2.0 * 128.0 * 128.0 * 1.0e9);
        assert_eq!(a.seconds(Cycles(1000)), 1.0e-6);
        assert!(Arch::preset("nope")
            .unwrap_err()
            .to_string()
            .contains("fpga-8x8"));
    }
}
