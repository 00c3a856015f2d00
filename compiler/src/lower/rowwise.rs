//! Row-wise vector kernels: one template for every operation that works on
//! the rows of a `[rows, cols]` matrix (elementwise math with bias and
//! scalar broadcasts, norms, softmax, cross-entropy, reductions).
//!
//! The rows stream through the scratchpad in blocks, double-buffered: the
//! load queue fills buffer set `b % 2` while the vector queue works on the
//! other one and the store queue drains its results. Tokens (each one
//! producer queue and one consumer queue):
//!
//! | token | from -> to | meaning |
//! |---|---|---|
//! | t0 | load -> vector | a block's inputs are in |
//! | t1 | vector -> load | an input buffer set is free (2 initial credits) |
//! | t2 | vector -> store | a block's outputs are ready |
//! | t3 | store -> vector | an output buffer set is free (2 initial credits) |
//! | t4 | load -> vector | the per-kernel constants are in |
//! | t5 | vector -> store | the accumulated outputs are final |
//!
//! The body is vector assembly with placeholders for the operands of the
//! current block: `$iN` (input N), `$oN` (output N), `$tN` (temporary N),
//! `$aN` (accumulator N, kept across blocks), `$MODE` (`overwrite` in the
//! first block, `accumulate` after: reductions into accumulators use it),
//! and `$ROWS` (the block's row count). Row inputs stay in the scratchpad
//! for the whole kernel; scalar inputs are read into registers, and `$iN`
//! then names the register. `$t0@256` adds a byte offset; `$i1!` drops
//! the element type (index operands). A line `shape full` or
//! `shape col` sets the vector shape to the block's rows x cols or rows x 1.

use std::fmt::Write;

use tessera_isa::asm::assemble;
use tessera_isa::program::MemSpace;
use tessera_isa::{Arch, DType, Program};

use crate::error::LowerError;

/// The extent of an operand relative to the kernel's `[rows, cols]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extent {
    /// `[rows, cols]`: one block of rows at a time.
    Full,
    /// `[rows, 1]`: one value per row.
    Col,
    /// `[1, cols]`: the same row for every block (a bias, a norm weight).
    Row,
    /// `[]`: one fp32 value, in a scalar register.
    Scalar,
    /// `[period, cols]` read cyclically: block row r is row `r % period`
    /// (per-position tables such as rotary cosines). Needs the kernel's
    /// `period` to be a multiple of it.
    Periodic(u64),
}

/// An operand in HBM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Operand {
    /// Byte address.
    pub addr: u64,
    /// Element type.
    pub dtype: DType,
    /// Extent.
    pub extent: Extent,
}

/// An accumulated output: reduced over every block, stored once at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accumulator {
    /// HBM address of the fp32 result.
    pub addr: u64,
    /// `Row` (`[cols]`, summed over rows) or `Scalar` (`[]`).
    pub extent: Extent,
}

/// A row-wise kernel.
#[derive(Clone, Debug)]
pub struct RowKernel {
    /// Profiling region.
    pub name: String,
    /// Rows of the matrix view.
    pub rows: u64,
    /// Columns of the matrix view.
    pub cols: u64,
    /// Inputs, read-only.
    pub inputs: Vec<Operand>,
    /// Outputs (`Full` or `Col`), written once per block.
    pub outputs: Vec<Operand>,
    /// Temporaries: their extent (`Full` or `Col`), always fp32.
    pub temps: Vec<Extent>,
    /// Accumulated outputs.
    pub accumulators: Vec<Accumulator>,
    /// fp32 constants `(register, value)` set before the first block.
    pub scalars: Vec<(u8, f32)>,
    /// The vector code of one block.
    pub body: Vec<String>,
    /// If set, blocks never straddle a multiple of this many rows (the
    /// block size divides it), and `$Q0` is the first row's index modulo it
    /// (a causal mask's query position).
    pub period: Option<u64>,
}

const ALIGN: u64 = 64;

fn align(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

/// Bytes of one DMA row piece: `row_bytes` split into `pieces` equal parts
/// of at most 65,535 bytes (the field's width).
fn split_row(row_bytes: u64) -> Option<(u64, u64)> {
    (1..=4095u64).find_map(|pieces| {
        (row_bytes % pieces == 0 && row_bytes / pieces <= 65_535)
            .then_some((pieces, row_bytes / pieces))
    })
}

impl RowKernel {
    /// Assembles the kernel for `arch`.
    ///
    /// # Errors
    /// [`LowerError`] if the operands cannot fit the scratchpad or a row is
    /// too long for the DMA and vector fields.
    pub fn lower(&self, arch: &Arch) -> Result<Program, LowerError> {
        let err = |rule: String| LowerError::Kernel {
            kernel: self.name.clone(),
            rule,
        };
        if self.rows == 0 || self.cols == 0 {
            return Err(err("empty matrix".into()));
        }
        if self.cols > 65_535 {
            return Err(err(format!(
                "{} columns exceed the vector unit's 65,535",
                self.cols
            )));
        }
        let n_regs =
            self.inputs.len() + self.outputs.len() + self.temps.len() + self.accumulators.len();
        if n_regs > 14 {
            return Err(err(format!(
                "{n_regs} operands exceed the 14 address registers"
            )));
        }
        let scalar_inputs: Vec<usize> = self
            .inputs
            .iter()
            .enumerate()
            .filter(|(_, o)| o.extent == Extent::Scalar)
            .map(|(i, _)| i)
            .collect();
        if scalar_inputs.len() + self.scalars.len() > 8 {
            return Err(err("more than 8 scalar registers needed".into()));
        }
        let cols = self.cols;
        let size = |dtype: DType, e: Extent, rows: u64| match e {
            Extent::Full | Extent::Periodic(_) => rows * cols * dtype.size_bytes(),
            Extent::Col => rows * dtype.size_bytes(),
            Extent::Row => cols * dtype.size_bytes(),
            Extent::Scalar => 4,
        };
        // Bytes per block row across the double-buffered sets.
        let per_row: u64 = self
            .inputs
            .iter()
            .chain(&self.outputs)
            .filter(|o| matches!(o.extent, Extent::Full | Extent::Col | Extent::Periodic(_)))
            .map(|o| size(o.dtype, o.extent, 1) + ALIGN)
            .sum::<u64>()
            + self
                .temps
                .iter()
                .map(|e| size(DType::Fp32, *e, 1) + ALIGN)
                .sum::<u64>();
        let fixed: u64 = self
            .inputs
            .iter()
            .filter(|o| matches!(o.extent, Extent::Row | Extent::Scalar))
            .map(|o| align(size(o.dtype, o.extent, 1)))
            .sum::<u64>()
            + self
                .accumulators
                .iter()
                .map(|a| align(size(DType::Fp32, a.extent, 1)))
                .sum::<u64>();
        let spad = arch.capacity(MemSpace::Spad).0;
        if fixed + 2 * (per_row + ALIGN) > spad {
            return Err(err(format!(
                "one row of {cols} columns needs {} bytes of scratchpad, the core has {spad}",
                fixed + 2 * (per_row + ALIGN)
            )));
        }
        let mut block = ((spad - fixed) / (2 * per_row + 2 * ALIGN))
            .min(self.rows)
            .min(4095);
        for o in &self.inputs {
            if let Extent::Periodic(p) = o.extent {
                if self.period.is_none_or(|k| p == 0 || k % p != 0) {
                    return Err(err(format!("a periodic input of period {p} needs a kernel period that is a multiple of it")));
                }
            }
        }
        if let Some(p) = self.period {
            if p == 0 || self.rows % p != 0 {
                return Err(err(format!(
                    "{} rows are not whole periods of {p}",
                    self.rows
                )));
            }
            block = (1..=block.min(p)).rev().find(|b| p % b == 0).unwrap_or(1);
        }
        // Local layout: fixed operands, then set A, then set B.
        let mut at = 0u64;
        let mut take = |bytes: u64| {
            let a = at;
            at = align(at + bytes);
            a
        };
        let const_addr: Vec<Option<u64>> = self
            .inputs
            .iter()
            .map(|o| {
                matches!(o.extent, Extent::Row | Extent::Scalar)
                    .then(|| take(size(o.dtype, o.extent, 1)))
            })
            .collect();
        let acc_addr: Vec<(u64, u64)> = self
            .accumulators
            .iter()
            .map(|a| (take(size(DType::Fp32, a.extent, 1)), 0))
            .collect();
        let mut sets = Vec::new();
        for _ in 0..2 {
            let ins: Vec<Option<u64>> = self
                .inputs
                .iter()
                .map(|o| {
                    matches!(o.extent, Extent::Full | Extent::Col | Extent::Periodic(_))
                        .then(|| take(size(o.dtype, o.extent, block)))
                })
                .collect();
            let outs: Vec<u64> = self
                .outputs
                .iter()
                .map(|o| take(size(o.dtype, o.extent, block)))
                .collect();
            let temps: Vec<u64> = self
                .temps
                .iter()
                .map(|e| take(size(DType::Fp32, *e, block)))
                .collect();
            sets.push((ins, outs, temps));
        }
        debug_assert!(at <= spad);

        // Registers: r1.. inputs, outputs, temps, accumulators (local side);
        // the DMA queues use r1.. for their own HBM and local addresses.
        let reg_in = |i: usize| 1 + i;
        let reg_out = |i: usize| 1 + self.inputs.len() + i;
        let reg_tmp = |i: usize| 1 + self.inputs.len() + self.outputs.len() + i;
        let reg_acc = |i: usize| 1 + self.inputs.len() + self.outputs.len() + self.temps.len() + i;
        let scalar_reg = |i: usize| {
            scalar_inputs
                .iter()
                .position(|&s| s == i)
                .map(|p| p + self.scalars.len())
        };

        let blocks: Vec<(u64, u64)> = (0..self.rows.div_ceil(block))
            .map(|b| (b * block, block.min(self.rows - b * block)))
            .collect();

        let mut load = String::new();
        let mut vector = String::new();
        let mut store = String::new();
        let region = format!("prof.begin {}\n", self.name);
        let region_end = format!("prof.end {}\n", self.name);
        let has_consts = const_addr.iter().any(Option::is_some);
        let has_block_inputs = self
            .inputs
            .iter()
            .any(|o| matches!(o.extent, Extent::Full | Extent::Col | Extent::Periodic(_)));

        // ---- load queue
        load.push_str("dma.lstride row=0, plane=0\n");
        for (i, o) in self.inputs.iter().enumerate() {
            if let Some(local) = const_addr[i] {
                let bytes = size(o.dtype, o.extent, 1);
                dma(&mut load, "load", o.addr, local, 1, bytes)?;
            }
        }
        if has_consts {
            load.push_str("nop signal=t4\n");
        }
        for (b, &(first, rows)) in blocks.iter().enumerate() {
            if !has_block_inputs {
                break;
            }
            let (ins, _, _) = &sets[b % 2];
            load.push_str("nop wait=t1\n");
            for (i, o) in self.inputs.iter().enumerate() {
                if let Some(local) = ins[i] {
                    let row_bytes = size(o.dtype, o.extent, 1);
                    let row = match o.extent {
                        Extent::Periodic(p) => first % p,
                        _ => first,
                    };
                    dma(
                        &mut load,
                        "load",
                        o.addr + row * row_bytes,
                        local,
                        rows,
                        row_bytes,
                    )?;
                }
            }
            load.push_str("nop signal=t0\n");
        }
        if has_block_inputs {
            load.push_str("nop wait=t1\nnop wait=t1\n");
        }

        // ---- vector queue
        vector.push_str(&region);
        vector.push_str("v.stride d=0, a=0, b=0, m=0\n");
        for (reg, value) in &self.scalars {
            let _ = writeln!(vector, "v.fset f{reg}, {}", fp32_literal(*value));
        }
        if has_block_inputs {
            vector.push_str("nop signal=t1\nnop signal=t1\n");
        }
        if has_consts {
            vector.push_str("nop wait=t4\n");
        }
        for (i, _) in self.inputs.iter().enumerate() {
            if let (Some(local), Some(f)) = (const_addr[i], scalar_reg(i)) {
                let _ = writeln!(vector, "addr.set r15, {local}\nv.fload f{f}, spad[r15]");
            }
        }
        for (i, local) in const_addr.iter().enumerate() {
            if let (Some(local), Extent::Row) = (local, self.inputs[i].extent) {
                let _ = writeln!(vector, "addr.set r{}, {local}", reg_in(i));
            }
        }
        for (i, (total, _)) in acc_addr.iter().enumerate() {
            let _ = writeln!(vector, "addr.set r{}, {total}", reg_acc(i));
        }
        for (b, &(_, rows)) in blocks.iter().enumerate() {
            let (ins, outs, temps) = &sets[b % 2];
            if has_block_inputs {
                vector.push_str("nop wait=t0\n");
            }
            if !self.outputs.is_empty() {
                vector.push_str("nop wait=t3\n");
            }
            for (i, a) in ins.iter().enumerate() {
                if let Some(a) = a {
                    let _ = writeln!(vector, "addr.set r{}, {a}", reg_in(i));
                }
            }
            for (i, a) in outs.iter().enumerate() {
                let _ = writeln!(vector, "addr.set r{}, {a}", reg_out(i));
            }
            for (i, a) in temps.iter().enumerate() {
                let _ = writeln!(vector, "addr.set r{}, {a}", reg_tmp(i));
            }
            for line in &self.body {
                let line = line.trim();
                match line {
                    "shape full" => {
                        let _ = writeln!(vector, "v.shape rows={rows}, cols={cols}");
                    }
                    "shape col" => {
                        let _ = writeln!(vector, "v.shape rows={rows}, cols=1");
                    }
                    _ => {
                        let mode = if b == 0 { "overwrite" } else { "accumulate" };
                        let q0 = self.period.map_or(0, |p| blocks[b].0 % p);
                        let line = line.replace("$Q0", &q0.to_string());
                        let text = self.substitute(
                            &line,
                            rows,
                            mode,
                            &scalar_reg,
                            reg_in,
                            reg_out,
                            reg_tmp,
                            reg_acc,
                        )?;
                        vector.push_str(&text);
                        vector.push('\n');
                    }
                }
            }
            if has_block_inputs {
                vector.push_str("nop signal=t1\n");
            }
            if !self.outputs.is_empty() {
                vector.push_str("nop signal=t2\n");
            }
        }
        if !self.outputs.is_empty() {
            vector.push_str("nop wait=t3\nnop wait=t3\n");
        }
        if !self.accumulators.is_empty() {
            vector.push_str("nop signal=t5\n");
        }
        vector.push_str(&region_end);

        // ---- store queue
        store.push_str("dma.lstride row=0, plane=0\n");
        if !self.outputs.is_empty() {
            store.push_str("nop signal=t3\nnop signal=t3\n");
        }
        for (b, &(first, rows)) in blocks.iter().enumerate() {
            if self.outputs.is_empty() {
                break;
            }
            let (_, outs, _) = &sets[b % 2];
            store.push_str("nop wait=t2\n");
            for (i, o) in self.outputs.iter().enumerate() {
                let row_bytes = size(o.dtype, o.extent, 1);
                dma(
                    &mut store,
                    "store",
                    o.addr + first * row_bytes,
                    outs[i],
                    rows,
                    row_bytes,
                )?;
            }
            store.push_str("nop signal=t3\n");
        }
        if !self.accumulators.is_empty() {
            store.push_str("nop wait=t5\n");
            for (i, a) in self.accumulators.iter().enumerate() {
                let bytes = if a.extent == Extent::Row { cols * 4 } else { 4 };
                dma(&mut store, "store", a.addr, acc_addr[i].0, 1, bytes)?;
            }
        }

        let mut src = String::new();
        for (name, body) in [("load", load), ("vector", vector), ("store", store)] {
            if body
                .lines()
                .any(|l| !l.starts_with("prof.") && !l.starts_with("dma.lstride"))
                || name == "vector"
            {
                let _ = writeln!(src, ".queue {name}\n{body}halt");
            }
        }
        assemble(&src, &self.name, Some(arch))
            .map_err(|e| err(format!("internal assembly error: {e}")))
    }

    #[allow(clippy::too_many_arguments)]
    fn substitute(
        &self,
        line: &str,
        rows: u64,
        mode: &str,
        scalar_reg: &dyn Fn(usize) -> Option<usize>,
        reg_in: impl Fn(usize) -> usize,
        reg_out: impl Fn(usize) -> usize,
        reg_tmp: impl Fn(usize) -> usize,
        reg_acc: impl Fn(usize) -> usize,
    ) -> Result<String, LowerError> {
        let err = |rule: String| LowerError::Kernel {
            kernel: self.name.clone(),
            rule,
        };
        let mut out = String::new();
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let tail = &rest[pos + 1..];
            if let Some(t) = tail.strip_prefix("MODE") {
                out.push_str(mode);
                rest = t;
                continue;
            }
            if let Some(t) = tail.strip_prefix("ROWS") {
                let _ = write!(out, "{rows}");
                rest = t;
                continue;
            }
            let kind = tail
                .chars()
                .next()
                .ok_or_else(|| err(format!("dangling `$` in `{line}`")))?;
            let digits: String = tail[1..].chars().take_while(char::is_ascii_digit).collect();
            let n: usize = digits
                .parse()
                .map_err(|_| err(format!("bad placeholder in `{line}`")))?;
            rest = &tail[1 + digits.len()..];
            // `@OFF`: a byte offset into the operand.
            let mut off = String::new();
            if let Some(t) = rest.strip_prefix('@') {
                let num: String = t
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '-')
                    .collect();
                off = format!("+{num}");
                rest = &t[num.len()..];
            }
            // `!`: the bare address, for operands that take no element type (indices).
            let untyped = rest.starts_with('!');
            if untyped {
                rest = &rest[1..];
            }
            let bad = || {
                err(format!(
                    "placeholder `${kind}{n}` names no operand in `{line}`"
                ))
            };
            match kind {
                'i' => {
                    let o = self.inputs.get(n).ok_or_else(bad)?;
                    match o.extent {
                        Extent::Full | Extent::Col | Extent::Row | Extent::Periodic(_) => {
                            let _ = write!(out, "spad[r{}{off}]:{}", reg_in(n), o.dtype.name());
                        }
                        Extent::Scalar => {
                            let _ = write!(out, "f{}", scalar_reg(n).ok_or_else(bad)?);
                        }
                    }
                }
                'o' => {
                    let o = self.outputs.get(n).ok_or_else(bad)?;
                    let _ = write!(out, "spad[r{}{off}]:{}", reg_out(n), o.dtype.name());
                }
                't' => {
                    self.temps.get(n).ok_or_else(bad)?;
                    let _ = write!(out, "spad[r{}{off}]:fp32", reg_tmp(n));
                }
                'a' => {
                    self.accumulators.get(n).ok_or_else(bad)?;
                    let _ = write!(out, "spad[r{}{off}]:fp32", reg_acc(n));
                }
                _ => return Err(bad()),
            }
            if untyped {
                strip_type(&mut out);
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Drops the `:type` suffix of the operand just written, for `$iN!`.
fn strip_type(out: &mut String) {
    if let Some(colon) = out.rfind(':') {
        if out[colon..]
            .chars()
            .skip(1)
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            out.truncate(colon);
        }
    }
}

/// One DMA box, with the row split into pieces the `row_bytes` field can hold.
fn dma(
    out: &mut String,
    dir: &str,
    hbm: u64,
    local: u64,
    rows: u64,
    row_bytes: u64,
) -> Result<(), LowerError> {
    let (pieces, piece) = split_row(row_bytes).ok_or_else(|| LowerError::Kernel {
        kernel: "dma".into(),
        rule: format!("a row of {row_bytes} bytes cannot be split into DMA pieces"),
    })?;
    // A row of `pieces` pieces is a plane of `pieces` rows of `piece` bytes.
    let _ = writeln!(out, "dma.hstride row={piece}, plane={row_bytes}");
    let _ = writeln!(out, "dma.lstride row={piece}, plane={row_bytes}");
    let mut done = 0;
    while done < rows {
        let planes = (rows - done).min(255);
        let _ = writeln!(
            out,
            "addr.set r1, {}\naddr.set r2, {}",
            hbm + done * row_bytes,
            local + done * row_bytes
        );
        let (dst, src) = if dir == "load" {
            ("spad[r2]", "hbm[r1]")
        } else {
            ("hbm[r1]", "spad[r2]")
        };
        let _ = writeln!(
            out,
            "dma.{dir} dst={dst}, src={src}, rows={pieces}, row_bytes={piece}, planes={planes}, transpose=none"
        );
        done += planes;
    }
    Ok(())
}

fn fp32_literal(v: f32) -> String {
    if v.is_nan() {
        format!("nan(0x{:08x})", v.to_bits())
    } else if v.is_infinite() {
        if v > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{v:?}")
    }
}
