//! Functional mode: executes every instruction on real values. It is the
//! reference the compiler, the timing model and the RTL are checked against,
//! so it stays plain: one element at a time, in the order the ISA defines.
//!
//! Queues are interleaved by the same token rules as the hardware (an
//! instruction starts when its waits are satisfied); for a program the
//! dependency checker accepts, every such interleaving gives the same bytes.

use tessera_isa::exec::{Frontend, Region, Tokens};
use tessera_isa::field::{Axis, IndexMode, Tile, VecSrc, WriteMode};
use tessera_isa::inst::{Instruction, Op, Queue};
use tessera_isa::program::{MemSpace, Program, Site};
use tessera_isa::DType;

use crate::memory::Memory;
use crate::numerics;

/// Why a simulation stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// An instruction broke a rule.
    #[error("{site} ({mnemonic}): {rule}")]
    At {
        site: Site,
        mnemonic: &'static str,
        rule: String,
    },
    /// No queue can start its next instruction.
    #[error("deadlock: no queue can proceed: {0}")]
    Deadlock(String),
    /// The program fails structural validation.
    #[error("invalid program: {0}")]
    Invalid(String),
    /// The program was built for another hardware description.
    #[error("the program was built for hardware `{program}` (fingerprint {program_fp:016x}), not `{given}` (fingerprint {given_fp:016x})")]
    ArchMismatch {
        program: String,
        program_fp: u64,
        given: String,
        given_fp: u64,
    },
    /// The run executed more instructions than allowed.
    #[error("the program executed more than {0} instructions; stopped")]
    Limit(u64),
}

/// What a functional run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunctionalStats {
    /// Instructions executed per queue, loops unrolled, by [`Queue::index`].
    pub executed: [u64; 4],
}

/// A 2-D view of elements in on-chip or HBM memory.
#[derive(Debug, Clone, Copy)]
struct View {
    space: MemSpace,
    base: u64,
    row_stride: u64,
    dtype: DType,
}

impl View {
    fn of(r: &Region, dtype: DType) -> View {
        View {
            space: r.space,
            base: r.base,
            row_stride: r.row_stride,
            dtype,
        }
    }

    fn addr(&self, i: u64, j: u64) -> u64 {
        self.base + i * self.row_stride + j * self.dtype.size_bytes()
    }

    fn get(&self, mem: &Memory, i: u64, j: u64) -> Result<f32, String> {
        let mut b = [0u8; 4];
        let n = self.dtype.size_bytes() as usize;
        mem.read(self.space, self.addr(i, j), &mut b[..n])
            .map_err(|e| e.to_string())?;
        Ok(numerics::load(self.dtype, &b))
    }

    fn get_i32(&self, mem: &Memory, i: u64, j: u64) -> Result<i32, String> {
        let mut b = [0u8; 4];
        mem.read(self.space, self.addr(i, j), &mut b)
            .map_err(|e| e.to_string())?;
        Ok(i32::from_le_bytes(b))
    }

    fn set(&self, mem: &mut Memory, i: u64, j: u64, x: f32) -> Result<(), String> {
        let mut b = [0u8; 4];
        let n = self.dtype.size_bytes() as usize;
        numerics::store(self.dtype, x, &mut b);
        mem.write(self.space, self.addr(i, j), &b[..n])
            .map_err(|e| e.to_string())
    }

    fn set_i32(&self, mem: &mut Memory, i: u64, j: u64, x: i32) -> Result<(), String> {
        mem.write(self.space, self.addr(i, j), &x.to_le_bytes())
            .map_err(|e| e.to_string())
    }
}

/// Upper bound on executed instructions for [`run`].
pub const DEFAULT_LIMIT: u64 = 1 << 34;

/// Runs `p` on `mem` to completion.
///
/// # Errors
/// A program that fails validation, an instruction that breaks a rule (with
/// its index), a deadlock, or more than `limit` executed instructions.
pub fn run(p: &Program, mem: &mut Memory, limit: u64) -> Result<FunctionalStats, SimError> {
    if let Err(errors) = p.validate() {
        return Err(SimError::Invalid(errors[0].to_string()));
    }
    let mut fronts: Vec<Frontend<'_>> = Queue::ALL
        .iter()
        .map(|q| Frontend::new(p.queue(*q)))
        .collect();
    let mut tokens = Tokens::default();
    let mut fregs = [0f32; 8];
    let mut stats = FunctionalStats::default();
    let mut total = 0u64;
    loop {
        let mut progress = false;
        for q in Queue::ALL {
            let fe = &mut fronts[q.index()];
            while let Some((index, inst)) = fe.peek() {
                if !tokens.ready(inst) {
                    break;
                }
                let site = Site { queue: q, index };
                let at = |rule: String| SimError::At {
                    site,
                    mnemonic: inst.op.mnemonic(),
                    rule,
                };
                tokens.take(inst);
                execute(p, fe, inst, mem, &mut fregs).map_err(at)?;
                fe.advance().map_err(|e| at(e.to_string()))?;
                tokens.give(inst);
                stats.executed[q.index()] += 1;
                total += 1;
                progress = true;
                if total > limit {
                    return Err(SimError::Limit(limit));
                }
            }
        }
        if fronts.iter().all(Frontend::is_done) {
            return Ok(stats);
        }
        if !progress {
            let parts: Vec<String> = Queue::ALL
                .iter()
                .filter_map(|q| {
                    let (index, inst) = fronts[q.index()].peek()?;
                    Some(format!(
                        "{} ({}) {}",
                        Site { queue: *q, index },
                        inst.op.mnemonic(),
                        tokens.blocked_reason(inst)
                    ))
                })
                .collect();
            return Err(SimError::Deadlock(parts.join("; ")));
        }
    }
}

fn vec_src(fe: &Frontend<'_>, b: VecSrc, fregs: &[f32; 8]) -> Result<Src, String> {
    let v = &fe.vector;
    Ok(match b {
        VecSrc::Tile(t) => Src::View(
            View::of(
                &fe.tile(t, v.rows, v.cols, v.b_stride, "operand b")
                    .map_err(|e| e.to_string())?,
                t.dtype,
            ),
            false,
            false,
        ),
        VecSrc::Row(t) => Src::View(
            View::of(
                &fe.tile(t, 1, v.cols, v.b_stride, "row operand")
                    .map_err(|e| e.to_string())?,
                t.dtype,
            ),
            true,
            false,
        ),
        VecSrc::Col(t) => Src::View(
            View::of(
                &fe.tile(t, v.rows, 1, v.b_stride, "column operand")
                    .map_err(|e| e.to_string())?,
                t.dtype,
            ),
            false,
            true,
        ),
        VecSrc::Scalar(f) => Src::Scalar(fregs[f.index()]),
    })
}

/// The second source of a vector op, with its broadcast (row, column).
enum Src {
    View(View, bool, bool),
    Scalar(f32),
}

impl Src {
    fn get(&self, mem: &Memory, i: u64, j: u64) -> Result<f32, String> {
        match self {
            Src::View(v, row, col) => {
                v.get(mem, if *row { 0 } else { i }, if *col { 0 } else { j })
            }
            Src::Scalar(x) => Ok(*x),
        }
    }
}

fn tile_view(
    fe: &Frontend<'_>,
    t: Tile,
    rows: u64,
    cols: u64,
    stride: u64,
    what: &'static str,
) -> Result<View, String> {
    Ok(View::of(
        &fe.tile(t, rows, cols, stride, what)
            .map_err(|e| e.to_string())?,
        t.dtype,
    ))
}

fn execute(
    p: &Program,
    fe: &Frontend<'_>,
    inst: &Instruction,
    mem: &mut Memory,
    fregs: &mut [f32; 8],
) -> Result<(), String> {
    // The address rules (alignment, bounds) are the ISA's, shared with the timing mode.
    let acc = fe
        .checked_accesses(inst, &p.symbols, |s| mem.capacity(s))
        .map_err(|e| e.to_string())?;
    let v = fe.vector;
    match inst.op {
        Op::DmaLoad { transpose, .. } | Op::DmaStore { transpose, .. } => {
            let (src, dst) = (acc[0].region, acc[1].region);
            let mut row = vec![0u8; src.row_bytes as usize];
            for plane in 0..src.planes {
                for r in 0..src.rows {
                    let s = src.base + plane * src.plane_stride + r * src.row_stride;
                    mem.read(src.space, s, &mut row)
                        .map_err(|e| e.to_string())?;
                    let d0 = dst.base + plane * dst.plane_stride;
                    match transpose.element_bytes() {
                        None => mem
                            .write(dst.space, d0 + r * dst.row_stride, &row)
                            .map_err(|e| e.to_string())?,
                        Some(e) => {
                            for (c, elem) in row.chunks_exact(e as usize).enumerate() {
                                mem.write(dst.space, d0 + c as u64 * dst.row_stride + r * e, elem)
                                    .map_err(|e| e.to_string())?;
                            }
                        }
                    }
                }
            }
        }
        Op::DmaGather {
            dst,
            table,
            idx,
            rows,
            row_bytes,
        } => {
            let x = indexed_dma(fe, table, idx, row_bytes.get())?;
            let (dspace, dbase) = (MemSpace::from(dst.space), addr(fe, dst)?);
            let mut buf = vec![0u8; row_bytes.get() as usize];
            for i in 0..rows.get() {
                let k = x.idx.get_i32(mem, i, 0)?;
                if k < 0 {
                    buf.fill(0);
                } else {
                    mem.read(MemSpace::Hbm, x.table + k as u64 * x.hbm_row, &mut buf)
                        .map_err(|e| e.to_string())?;
                }
                mem.write(dspace, dbase + i * x.local_row, &buf)
                    .map_err(|e| e.to_string())?;
            }
        }
        Op::DmaScatterAdd {
            table,
            src,
            idx,
            rows,
            row_bytes,
        } => {
            let x = indexed_dma(fe, table, idx, row_bytes.get())?;
            let s = View {
                space: src.space.into(),
                base: addr(fe, src)?,
                row_stride: x.local_row,
                dtype: DType::Fp32,
            };
            for i in 0..rows.get() {
                let k = x.idx.get_i32(mem, i, 0)?;
                if k < 0 {
                    continue;
                }
                let t = View {
                    space: MemSpace::Hbm,
                    base: x.table + k as u64 * x.hbm_row,
                    row_stride: 0,
                    dtype: DType::Fp32,
                };
                for j in 0..row_bytes.get() / 4 {
                    let sum = t.get(mem, 0, j)? + s.get(mem, i, j)?;
                    t.set(mem, 0, j, sum)?;
                }
            }
        }
        Op::MmCompute {
            a,
            c,
            m,
            transpose,
            mode,
        } => {
            let pre = *fe
                .preload()
                .ok_or("mm.compute with no operand bound by an earlier mm.preload")?;
            let (m, k, n) = (m.get(), pre.k, pre.n);
            let (ar, ac) = if transpose { (k, m) } else { (m, k) };
            let av = tile_view(fe, a, ar, ac, fe.matrix.a_stride, "operand a")?;
            let bv = View::of(&pre.region, pre.dtype);
            let cv = tile_view(fe, c, m, n, fe.matrix.c_stride, "result c")?;
            let a_at = |i: u64, kk: u64| if transpose { (kk, i) } else { (i, kk) };
            let b_at = |kk: u64, j: u64| if pre.transpose { (j, kk) } else { (kk, j) };
            for i in 0..m {
                for j in 0..n {
                    if c.dtype == DType::Int32 {
                        let mut s: i32 = 0;
                        for kk in 0..k {
                            let (ai, aj) = a_at(i, kk);
                            let (bi, bj) = b_at(kk, j);
                            let prod = av.get(mem, ai, aj)? as i32 * bv.get(mem, bi, bj)? as i32;
                            s = s.wrapping_add(prod);
                        }
                        if mode == WriteMode::Accumulate {
                            s = s.wrapping_add(cv.get_i32(mem, i, j)?);
                        }
                        cv.set_i32(mem, i, j, s)?;
                    } else {
                        // Each step is a fused multiply-add: the exact product joins the
                        // partial sum with one rounding. The sum starts at +0 and adds in
                        // increasing k.
                        let mut s = 0.0f32;
                        for kk in 0..k {
                            let (ai, aj) = a_at(i, kk);
                            let (bi, bj) = b_at(kk, j);
                            s = av.get(mem, ai, aj)?.mul_add(bv.get(mem, bi, bj)?, s);
                        }
                        if mode == WriteMode::Accumulate {
                            s += cv.get(mem, i, j)?;
                        }
                        cv.set(mem, i, j, s)?;
                    }
                }
            }
        }
        Op::VBin { op, dst, a, b } => {
            let (d, av, bs) = (
                tile_view(fe, dst, v.rows, v.cols, v.d_stride, "destination")?,
                tile_view(fe, a, v.rows, v.cols, v.a_stride, "operand a")?,
                vec_src(fe, b, fregs)?,
            );
            for i in 0..v.rows {
                for j in 0..v.cols {
                    let x = numerics::binary(op, av.get(mem, i, j)?, bs.get(mem, i, j)?);
                    d.set(mem, i, j, x)?;
                }
            }
        }
        Op::VUn { op, dst, a } => {
            let (d, av) = (
                tile_view(fe, dst, v.rows, v.cols, v.d_stride, "destination")?,
                tile_view(fe, a, v.rows, v.cols, v.a_stride, "operand a")?,
            );
            for i in 0..v.rows {
                for j in 0..v.cols {
                    d.set(mem, i, j, numerics::unary(op, av.get(mem, i, j)?))?;
                }
            }
        }
        Op::VAxpby {
            dst,
            a,
            b,
            alpha,
            beta,
        } => {
            let (d, av, bs) = (
                tile_view(fe, dst, v.rows, v.cols, v.d_stride, "destination")?,
                tile_view(fe, a, v.rows, v.cols, v.a_stride, "operand a")?,
                vec_src(fe, b, fregs)?,
            );
            let (al, be) = (fregs[alpha.index()], fregs[beta.index()]);
            for i in 0..v.rows {
                for j in 0..v.cols {
                    let x = al * av.get(mem, i, j)? + be * bs.get(mem, i, j)?;
                    d.set(mem, i, j, x)?;
                }
            }
        }
        Op::VReduce {
            op,
            axis,
            dst,
            a,
            mode,
        } => {
            let av = tile_view(fe, a, v.rows, v.cols, v.a_stride, "operand a")?;
            let (outer, inner, shape) = match axis {
                Axis::Rows => (v.rows, v.cols, (v.rows, 1)),
                Axis::Cols => (v.cols, v.rows, (1, v.cols)),
            };
            let d = tile_view(fe, dst, shape.0, shape.1, v.d_stride, "destination")?;
            for o in 0..outer {
                let mut acc = numerics::reduce_init(op);
                for x in 0..inner {
                    let (i, j) = if axis == Axis::Rows { (o, x) } else { (x, o) };
                    acc = numerics::reduce_step(op, acc, av.get(mem, i, j)?);
                }
                let (di, dj) = if axis == Axis::Rows { (o, 0) } else { (0, o) };
                if mode == WriteMode::Accumulate {
                    acc = numerics::reduce_combine(op, d.get(mem, di, dj)?, acc);
                }
                d.set(mem, di, dj, acc)?;
            }
        }
        Op::VSel { dst, mask, a, b } => {
            let (d, mv, av, bs) = (
                tile_view(fe, dst, v.rows, v.cols, v.d_stride, "destination")?,
                tile_view(fe, mask, v.rows, v.cols, v.m_stride, "mask")?,
                tile_view(fe, a, v.rows, v.cols, v.a_stride, "operand a")?,
                vec_src(fe, b, fregs)?,
            );
            for i in 0..v.rows {
                for j in 0..v.cols {
                    let x = if mv.get(mem, i, j)? != 0.0 {
                        av.get(mem, i, j)?
                    } else {
                        bs.get(mem, i, j)?
                    };
                    d.set(mem, i, j, x)?;
                }
            }
        }
        Op::VCausal {
            dst,
            a,
            fill,
            row,
            col,
        } => {
            let (d, av) = (
                tile_view(fe, dst, v.rows, v.cols, v.d_stride, "destination")?,
                tile_view(fe, a, v.rows, v.cols, v.a_stride, "operand a")?,
            );
            let f = fregs[fill.index()];
            for i in 0..v.rows {
                for j in 0..v.cols {
                    let masked = col.get() + j as i64 > row.get() + i as i64;
                    d.set(mem, i, j, if masked { f } else { av.get(mem, i, j)? })?;
                }
            }
        }
        Op::VGather {
            mode,
            dst,
            table,
            idx,
        } => {
            let ix = index_view(fe, idx)?;
            match mode {
                IndexMode::Rows => {
                    let d = tile_view(fe, dst, v.rows, v.cols, v.d_stride, "destination")?;
                    let t = tile_view(fe, table, 1, v.cols, v.a_stride, "table")?;
                    for i in 0..v.rows {
                        let k = ix.get_i32(mem, i, 0)?;
                        for j in 0..v.cols {
                            let x = if k < 0 { 0.0 } else { t.get(mem, k as u64, j)? };
                            d.set(mem, i, j, x)?;
                        }
                    }
                }
                IndexMode::Elems => {
                    let d = tile_view(fe, dst, v.rows, 1, v.d_stride, "destination")?;
                    let t = tile_view(fe, table, v.rows, v.cols, v.a_stride, "table")?;
                    for i in 0..v.rows {
                        let k = ix.get_i32(mem, i, 0)?;
                        let x = match k {
                            k if k < 0 => 0.0,
                            k if k as u64 >= v.cols => {
                                return Err(format!(
                                    "index {k} in row {i} is outside the {} columns",
                                    v.cols
                                ))
                            }
                            k => t.get(mem, i, k as u64)?,
                        };
                        d.set(mem, i, 0, x)?;
                    }
                }
            }
        }
        Op::VScatterAdd {
            mode,
            table,
            src,
            idx,
        } => {
            let ix = index_view(fe, idx)?;
            match mode {
                IndexMode::Rows => {
                    let t = tile_view(fe, table, 1, v.cols, v.d_stride, "table")?;
                    let s = tile_view(fe, src, v.rows, v.cols, v.a_stride, "source")?;
                    for i in 0..v.rows {
                        let k = ix.get_i32(mem, i, 0)?;
                        if k < 0 {
                            continue;
                        }
                        for j in 0..v.cols {
                            let sum = t.get(mem, k as u64, j)? + s.get(mem, i, j)?;
                            t.set(mem, k as u64, j, sum)?;
                        }
                    }
                }
                IndexMode::Elems => {
                    let t = tile_view(fe, table, v.rows, v.cols, v.d_stride, "table")?;
                    let s = tile_view(fe, src, v.rows, 1, v.a_stride, "source")?;
                    for i in 0..v.rows {
                        let k = ix.get_i32(mem, i, 0)?;
                        if k < 0 {
                            continue;
                        }
                        if k as u64 >= v.cols {
                            return Err(format!(
                                "index {k} in row {i} is outside the {} columns",
                                v.cols
                            ));
                        }
                        let sum = t.get(mem, i, k as u64)? + s.get(mem, i, 0)?;
                        t.set(mem, i, k as u64, sum)?;
                    }
                }
            }
        }
        Op::VFset { reg, value } => fregs[reg.index()] = value.value(),
        Op::VFload { reg, src } => {
            let addr = fe
                .address(src.reg, src.offset.get())
                .map_err(|e| e.to_string())?;
            let view = View {
                space: src.space.into(),
                base: addr,
                row_stride: 0,
                dtype: DType::Fp32,
            };
            fregs[reg.index()] = view.get(mem, 0, 0)?;
        }
        Op::Nop {}
        | Op::Halt {}
        | Op::Loop { .. }
        | Op::AddrSet { .. }
        | Op::AddrStep { .. }
        | Op::ProfBegin { .. }
        | Op::ProfEnd { .. }
        | Op::DmaHbmStride { .. }
        | Op::DmaLocalStride { .. }
        | Op::MmStride { .. }
        | Op::MmPreload { .. }
        | Op::VShape { .. }
        | Op::VStride { .. } => {}
    }
    Ok(())
}

/// The effective address of an on-chip operand.
fn addr(fe: &Frontend<'_>, a: tessera_isa::field::LocalAddr) -> Result<u64, String> {
    fe.address(a.reg, a.offset.get()).map_err(|e| e.to_string())
}

/// What a gather or scatter-add needs: the HBM table base, the packed int32
/// index vector, and the row strides (0 in the configuration means packed).
struct IndexedDma {
    table: u64,
    idx: View,
    hbm_row: u64,
    local_row: u64,
}

fn indexed_dma(
    fe: &Frontend<'_>,
    table: tessera_isa::field::HbmAddr,
    idx: tessera_isa::field::LocalAddr,
    row_bytes: u64,
) -> Result<IndexedDma, String> {
    let packed = |stride: u64| if stride == 0 { row_bytes } else { stride };
    Ok(IndexedDma {
        table: fe
            .address(table.reg, table.offset.get())
            .map_err(|e| e.to_string())?,
        idx: View {
            space: idx.space.into(),
            base: addr(fe, idx)?,
            row_stride: 4,
            dtype: DType::Int32,
        },
        hbm_row: packed(fe.dma.hbm_row),
        local_row: packed(fe.dma.local_row),
    })
}

fn index_view(fe: &Frontend<'_>, idx: tessera_isa::field::LocalAddr) -> Result<View, String> {
    let base = fe
        .address(idx.reg, idx.offset.get())
        .map_err(|e| e.to_string())?;
    if base % 4 != 0 {
        return Err(format!("index vector at 0x{base:x} is not 4-byte aligned"));
    }
    let stride = if fe.vector.m_stride == 0 {
        4
    } else {
        fe.vector.m_stride
    };
    Ok(View {
        space: idx.space.into(),
        base,
        row_stride: stride,
        dtype: DType::Int32,
    })
}
