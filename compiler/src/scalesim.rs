//! SCALE-Sim inputs, as they are: the GEMM topology CSV (`Layer, M, N, K`,
//! K the reduction dimension) and the `.cfg` file (INI-like), turned into
//! GEMM shapes and a hardware description derived from a base preset.
//! Pure: both parsers take text and the file name their errors carry.

use tessera_isa::{Arch, ArchSpec, DType, Dataflow};

/// A rule of a SCALE-Sim input that the text breaks, at a line (1-based) and field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: field `{field}`: {rule}", line_suffix(*.line))]
pub struct ScaleSimError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub rule: String,
}

/// One GEMM of a topology file: C (m x n) = A (m x k) * B (k x n).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyLayer {
    pub name: String,
    pub m: u64,
    pub n: u64,
    pub k: u64,
}

/// How SCALE-Sim sets the DRAM bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandwidthMode {
    /// SCALE-Sim picks a stall-free bandwidth.
    Calc,
    /// `Bandwidth` words per cycle, as given.
    User,
}

/// The fields of a SCALE-Sim `.cfg` that Tessera uses.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSimConfig {
    pub run_name: String,
    pub rows: u32,
    pub cols: u32,
    pub dataflow: Dataflow,
    /// SRAM sizes in KiB: ifmap and filter become the scratchpad, ofmap the accumulator.
    pub ifmap_kb: u64,
    pub filter_kb: u64,
    pub ofmap_kb: u64,
    /// DRAM words per cycle (used in [`BandwidthMode::User`]).
    pub bandwidth_words: u64,
    pub mode: BandwidthMode,
}

/// `:N` for a known line, nothing for a rule about the whole file (line 0).
fn line_suffix(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

fn err(file: &str, line: usize, field: &str, rule: impl Into<String>) -> ScaleSimError {
    ScaleSimError {
        file: file.to_string(),
        line,
        field: field.to_string(),
        rule: rule.into(),
    }
}

/// Parses a GEMM topology CSV: a header `Layer, M, N, K` (a trailing comma
/// is allowed, as SCALE-Sim writes it), then one row per GEMM.
///
/// # Errors
/// A header with other columns, a row without four fields, a dimension
/// that is not a positive integer, or no rows at all.
///
/// ```
/// let t = tessera_compiler::scalesim::parse_topology("Layer,M,N,K,\nqkv,512,768,768,\n", "t.csv")?;
/// assert_eq!((t[0].m, t[0].n, t[0].k), (512, 768, 768));
/// # Ok::<(), tessera_compiler::scalesim::ScaleSimError>(())
/// ```
pub fn parse_topology(text: &str, file: &str) -> Result<Vec<TopologyLayer>, ScaleSimError> {
    let mut layers = Vec::new();
    let mut header = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let mut cells: Vec<&str> = raw.split(',').map(str::trim).collect();
        if cells.last() == Some(&"") {
            cells.pop();
        }
        if !header {
            let names: Vec<String> = cells.iter().map(|c| c.to_ascii_lowercase()).collect();
            if names != ["layer", "m", "n", "k"] {
                return Err(err(
                    file,
                    line,
                    "header",
                    format!(
                        "must be `Layer, M, N, K` (a GEMM topology), got `{}`",
                        raw.trim()
                    ),
                ));
            }
            header = true;
            continue;
        }
        if cells.len() != 4 {
            return Err(err(
                file,
                line,
                "row",
                format!("must have 4 fields (Layer, M, N, K), got {}", cells.len()),
            ));
        }
        if cells[0].is_empty() {
            return Err(err(file, line, "Layer", "must not be empty"));
        }
        let dim = |idx: usize, field: &str| -> Result<u64, ScaleSimError> {
            cells[idx]
                .parse::<u64>()
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| {
                    err(
                        file,
                        line,
                        field,
                        format!("must be a positive integer, got `{}`", cells[idx]),
                    )
                })
        };
        layers.push(TopologyLayer {
            name: cells[0].to_string(),
            m: dim(1, "M")?,
            n: dim(2, "N")?,
            k: dim(3, "K")?,
        });
    }
    if layers.is_empty() {
        return Err(err(file, 1, "rows", "the topology lists no GEMM"));
    }
    Ok(layers)
}

/// A key's value and line within one section of an INI text.
fn lookup<'t>(
    entries: &'t [(String, String, String, usize)],
    section: &str,
    key: &str,
) -> Option<(&'t str, usize)> {
    entries
        .iter()
        .find(|(s, k, _, _)| s.eq_ignore_ascii_case(section) && k.eq_ignore_ascii_case(key))
        .map(|(_, _, v, l)| (v.as_str(), *l))
}

/// Parses a SCALE-Sim `.cfg`. Keys are separated from values by `:` or `=`;
/// `[architecture_presets]` must give `ArrayHeight`, `ArrayWidth`,
/// `IfmapSramSzkB`, `FilterSramSzkB`, `OfmapSramSzkB`, `Dataflow` (`ws` or
/// `os`) and `Bandwidth`; `[run_presets]` `InterfaceBandwidth` (`CALC` or
/// `USER`). Other keys are ignored.
///
/// # Errors
/// A line that is neither a section, a comment nor `key: value`, a missing
/// or malformed field, or the input-stationary dataflow (not supported: the
/// array keeps weights or outputs in place, never inputs).
pub fn parse_config(text: &str, file: &str) -> Result<ScaleSimConfig, ScaleSimError> {
    let mut entries = Vec::new();
    let mut section = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            section = name.trim().to_string();
            continue;
        }
        let Some(pos) = t.find([':', '=']) else {
            return Err(err(
                file,
                line,
                t,
                "expected `key: value`, `key = value` or a `[section]`",
            ));
        };
        entries.push((
            section.clone(),
            t[..pos].trim().to_string(),
            t[pos + 1..].trim().to_string(),
            line,
        ));
    }
    const ARCH: &str = "architecture_presets";
    let get = |sec: &str, key: &str| {
        lookup(&entries, sec, key)
            .ok_or_else(|| err(file, 0, key, format!("is missing from section [{sec}]")))
    };
    let number = |key: &str, max: u64| -> Result<u64, ScaleSimError> {
        let (v, line) = get(ARCH, key)?;
        v.parse::<u64>()
            .ok()
            .filter(|x| (1..=max).contains(x))
            .ok_or_else(|| {
                err(
                    file,
                    line,
                    key,
                    format!("must be an integer from 1 to {max}, got `{v}`"),
                )
            })
    };
    let dims = u64::from(tessera_isa::arch::MAX_ARRAY_DIM);
    let (df, df_line) = get(ARCH, "Dataflow")?;
    let dataflow = match df.to_ascii_lowercase().as_str() {
        "ws" => Dataflow::WeightStationary,
        "os" => Dataflow::OutputStationary,
        "is" => {
            return Err(err(
                file,
                df_line,
                "Dataflow",
                "input-stationary (`is`) is not supported: Tessera arrays are weight- or output-stationary (`ws`, `os`)",
            ))
        }
        other => {
            return Err(err(
                file,
                df_line,
                "Dataflow",
                format!("must be `ws` or `os`, got `{other}`"),
            ))
        }
    };
    let (mode, mode_line) = get("run_presets", "InterfaceBandwidth")?;
    let mode = match mode.to_ascii_uppercase().as_str() {
        "CALC" => BandwidthMode::Calc,
        "USER" => BandwidthMode::User,
        other => {
            return Err(err(
                file,
                mode_line,
                "InterfaceBandwidth",
                format!("must be `CALC` or `USER`, got `{other}`"),
            ))
        }
    };
    let run_name = lookup(&entries, "general", "run_name")
        .map_or("scalesim", |(v, _)| v)
        .to_string();
    Ok(ScaleSimConfig {
        run_name,
        rows: number("ArrayHeight", dims)? as u32,
        cols: number("ArrayWidth", dims)? as u32,
        dataflow,
        ifmap_kb: number("IfmapSramSzkB", 1 << 21)?,
        filter_kb: number("FilterSramSzkB", 1 << 21)?,
        ofmap_kb: number("OfmapSramSzkB", 1 << 21)?,
        bandwidth_words: number("Bandwidth", 1 << 20)?,
        mode,
    })
}

impl ScaleSimConfig {
    /// DRAM words per cycle the derived hardware gets: `Bandwidth` in USER
    /// mode; in CALC mode `rows + 2 * cols`, enough for a stall-free
    /// weight-stationary kernel (A streams at most `rows` words a cycle,
    /// a weight tile of rows x cols words per at least `rows` cycles, and C
    /// leaves at most `cols` words a cycle).
    pub fn words_per_cycle(&self) -> u64 {
        match self.mode {
            BandwidthMode::User => self.bandwidth_words,
            BandwidthMode::Calc => u64::from(self.rows) + 2 * u64::from(self.cols),
        }
    }

    /// The hardware description: `base` with the array size and dataflow,
    /// single-buffered weights (SCALE-Sim's model), `word` elements (the
    /// input type, which must be one the base accepts), a scratchpad of
    /// ifmap + filter KiB, an accumulator of ofmap KiB (banks reduced until
    /// they divide it), and HBM bandwidth [`Self::words_per_cycle`] words a
    /// cycle at the base clock.
    ///
    /// # Errors
    /// A description the base's rules reject (e.g. SRAMs too small for the
    /// array), reported against the `.cfg` file.
    pub fn arch(&self, base: &Arch, word: DType, file: &str) -> Result<Arch, ScaleSimError> {
        let mut s: ArchSpec = base.spec().clone();
        let name: String = format!("scalesim-{}", self.run_name)
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(64)
            .collect();
        s.name = name;
        s.array.rows = self.rows;
        s.array.cols = self.cols;
        s.array.dataflow = self.dataflow;
        s.array.double_buffered_weights = false;
        s.scratchpad.size_kib = self.ifmap_kb + self.filter_kb;
        s.accumulator.size_kib = self.ofmap_kb;
        for sram in [&mut s.scratchpad, &mut s.accumulator] {
            while sram.banks > 1
                && (sram.size_kib * 1024)
                    % (u64::from(sram.banks) * u64::from(sram.bank_width_bytes))
                    != 0
            {
                sram.banks /= 2;
            }
        }
        let bytes_per_cycle = (self.words_per_cycle() * word.size_bytes()) as f64;
        s.hbm.bandwidth_gb_per_s =
            bytes_per_cycle * s.clock.frequency_mhz / 1000.0 * f64::from(s.chip.cores);
        Arch::new(s).map_err(|e| err(file, 0, "architecture_presets", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str =
        "[general]\nrun_name = t\n[architecture_presets]\nArrayHeight: 32\nArrayWidth: 16\n\
IfmapSramSzkB: 64\nFilterSramSzkB: 64\nOfmapSramSzkB: 64\nBandwidth : 10\nDataflow : ws\n\
[run_presets]\nInterfaceBandwidth: USER\n";

    #[test]
    fn config_fields_and_derived_arch() {
        let c = parse_config(CFG, "a.cfg").unwrap();
        assert_eq!((c.rows, c.cols, c.words_per_cycle()), (32, 16, 10));
        let base = Arch::preset("default").unwrap();
        let a = c.arch(&base, DType::Bf16, "a.cfg").unwrap();
        assert_eq!((a.rows(), a.cols()), (32, 16));
        assert_eq!(a.scratchpad_bytes().get(), 128 * 1024);
        assert_eq!(a.hbm_bytes_per_cycle(), 20.0);
        let calc = parse_config(&CFG.replace("USER", "CALC"), "a.cfg").unwrap();
        assert_eq!(calc.words_per_cycle(), 32 + 2 * 16);
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let cases = [
            (
                CFG.replace("ws", "is"),
                "a.cfg:10: field `Dataflow`: input-stationary",
            ),
            (
                CFG.replace("32", "x"),
                "a.cfg:4: field `ArrayHeight`: must be an integer",
            ),
            (
                CFG.replace("Bandwidth : 10\n", ""),
                "a.cfg: field `Bandwidth`: is missing",
            ),
            (
                CFG.replace("USER", "FAST"),
                "a.cfg:12: field `InterfaceBandwidth`",
            ),
            (
                CFG.replace("[general]", "general"),
                "a.cfg:1: field `general`: expected",
            ),
        ];
        for (text, want) in cases {
            let e = parse_config(&text, "a.cfg").unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
        let topo = [
            ("Layer,M,N\n", "t.csv:1: field `header`"),
            ("Layer,M,N,K,\nx,1,2\n", "t.csv:2: field `row`"),
            (
                "Layer,M,N,K,\nx,1,0,3,\n",
                "t.csv:2: field `N`: must be a positive integer",
            ),
            ("Layer,M,N,K,\n", "t.csv:1: field `rows`"),
        ];
        for (text, want) in topo {
            let e = parse_topology(text, "t.csv").unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
    }
}
