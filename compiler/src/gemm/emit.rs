//! Emits the four instruction streams of a planned GEMM.
//!
//! Blocks of C (`m_block` x `n_tile`) are computed in order, n outer and m
//! inner; each block is `k` split into chunks, one *fold* (`mm.preload` of a
//! B tile, `mm.compute` of an A tile) per chunk. Buffers form rings whose
//! producer signals "free" only for a use that will be waited on and whose
//! consumer waits only once the ring has wrapped, so every token balances.
//!
//! Token channels (each one producer queue, one consumer queue):
//!
//! | token | channel | meaning |
//! |---|---|---|
//! | t0 | load -> matrix | a fold's A and B tiles are in their slot |
//! | t1 | matrix -> load | a fold's slot is free (its compute completed) |
//! | t2 | vector/load/store -> matrix | an accumulator block may be written |
//! | t3 | load -> vector | C_old staged in the scratchpad (cast path, accumulate) |
//! | t4 | vector -> load | C_old staging buffer free |
//! | t5 | matrix -> vector/store | a block of C is complete in the accumulator |
//! | t6 | vector -> store | C cast into a staging buffer |
//! | t7 | store -> vector/load | C staging buffer (or accumulator block) stored |
//! | t8 | vector -> store | epilogue: a block's pre-activation is ready |
//! | t9 | store -> vector | epilogue: a block's pre-activation is stored |
//!
//! With an epilogue the vector unit works on each finished block in place
//! in the accumulator (`+ bias` row or column, the pre-activation stored,
//! GELU, `+ residual`) before the cast into the staging buffer; a block's
//! bias slice and residual come through the C_old ring (t3/t4).
//!
//! Addresses are absolute: every operand is preceded by `addr.set` of its
//! register and uses offset 0. The program is unrolled (no loops), so its
//! length grows with the number of folds.

use tessera_isa::field::{
    Count, HbmAddr, LocalAddr, Reg, Region, SInt, Space, Tile, TokenSet, Transpose, UInt, VecBinOp,
    VecSrc, VecUnOp, WriteMode,
};
use tessera_isa::{Arch, DType, Instruction, Op, Program, Queue};

use super::plan::{row_stride, swapped, swapped_epilogue, GemmPlan, DMA_ROWS};
use super::{accumulator_type, Activation, CInit, GemmEpilogue, GemmSpec, HbmMatrix, Layout};

const T_IN: u8 = 0;
const T_SLOT: u8 = 1;
const T_ACC: u8 = 2;
const T_OLD_IN: u8 = 3;
const T_OLD_FREE: u8 = 4;
const T_DONE: u8 = 5;
const T_OUT: u8 = 6;
const T_FREE: u8 = 7;
const T_PRE: u8 = 8;
const T_PRE_STORED: u8 = 9;

fn count<const B: u32>(v: u64, what: &str) -> Result<Count<B>, String> {
    Count::new(v).ok_or_else(|| format!("{what} = {v} does not fit its {B}-bit field"))
}

fn uint<const B: u32>(v: u64, what: &str) -> Result<UInt<B>, String> {
    UInt::new(v).ok_or_else(|| format!("{what} = {v} does not fit its {B}-bit field"))
}

fn reg(i: u8) -> Reg {
    Reg::new(i).unwrap_or_else(|| unreachable!("registers 0..3 exist"))
}

fn local(space: Space, r: u8) -> LocalAddr {
    LocalAddr {
        space,
        reg: reg(r),
        offset: SInt::new(0).unwrap_or_else(|| unreachable!("0 fits")),
    }
}

fn tokens(list: &[(u8, bool)]) -> TokenSet {
    TokenSet(
        list.iter()
            .filter(|(_, on)| *on)
            .fold(0, |m, (t, _)| m | 1 << t),
    )
}

/// A DMA box: `rows` source rows of `row_bytes` between HBM and on chip.
/// Source row r starts `r * hbm_step` after `hbm` and lands `r * local_step`
/// after `local` (the row strides, or the element size on the transposed side).
#[derive(Debug, Clone, Copy)]
struct Box2 {
    hbm: u64,
    hbm_row: u64,
    hbm_step: u64,
    space: Space,
    local: u64,
    local_row: u64,
    local_step: u64,
    rows: u64,
    row_bytes: u64,
    transpose: Transpose,
}

impl Box2 {
    /// An untransposed box: source rows step by the row strides.
    #[allow(clippy::too_many_arguments)]
    fn plain(
        hbm: u64,
        hbm_row: u64,
        space: Space,
        local: u64,
        local_row: u64,
        rows: u64,
        row_bytes: u64,
    ) -> Box2 {
        Box2 {
            hbm,
            hbm_row,
            hbm_step: hbm_row,
            space,
            local,
            local_row,
            local_step: local_row,
            rows,
            row_bytes,
            transpose: Transpose::None,
        }
    }
}

/// The transposing-DMA mode for `e`-byte elements.
fn transpose_of(e: u64) -> Transpose {
    match e {
        1 => Transpose::B1,
        2 => Transpose::B2,
        _ => Transpose::B4,
    }
}

#[derive(Debug, Default)]
struct Emitter {
    queues: [Vec<Instruction>; 4],
    /// Last `(dma.hstride row, dma.lstride row)` per DMA queue (load, store).
    dma_strides: [Option<(u64, u64)>; 2],
    /// Last `v.stride (d, a, b)`.
    vstride: Option<(u64, u64, u64)>,
    /// Last `v.shape`.
    vshape: Option<(u64, u64)>,
}

impl Emitter {
    fn push(&mut self, q: Queue, op: Op, wait: TokenSet, signal: TokenSet) {
        self.queues[q.index()].push(Instruction { op, wait, signal });
    }

    fn op(&mut self, q: Queue, op: Op) {
        self.push(q, op, TokenSet::EMPTY, TokenSet::EMPTY);
    }

    fn addr(&mut self, q: Queue, r: u8, base: u64) -> Result<(), String> {
        let base = uint(base, "address")?;
        self.op(q, Op::AddrSet { reg: reg(r), base });
        Ok(())
    }

    /// One box, split into instructions of at most [`DMA_ROWS`] rows; waits on
    /// the first, signals on the last (completion is in order).
    fn dma(&mut self, q: Queue, b: Box2, wait: TokenSet, signal: TokenSet) -> Result<(), String> {
        let slot = usize::from(q == Queue::Store);
        if self.dma_strides[slot] != Some((b.hbm_row, b.local_row)) {
            let (row, plane) = (uint(b.hbm_row, "HBM row stride")?, uint(0, "plane")?);
            self.op(q, Op::DmaHbmStride { row, plane });
            let (row, plane) = (uint(b.local_row, "local row stride")?, uint(0, "plane")?);
            self.op(q, Op::DmaLocalStride { row, plane });
            self.dma_strides[slot] = Some((b.hbm_row, b.local_row));
        }
        let mut r0 = 0;
        while r0 < b.rows {
            let rows = (b.rows - r0).min(DMA_ROWS);
            self.addr(q, 0, b.hbm + r0 * b.hbm_step)?;
            self.addr(q, 1, b.local + r0 * b.local_step)?;
            let (rows_f, row_bytes, planes) = (
                count(rows, "dma rows")?,
                count(b.row_bytes, "dma row_bytes")?,
                count(1, "planes")?,
            );
            let hbm = HbmAddr {
                reg: reg(0),
                offset: SInt::new(0).unwrap_or_else(|| unreachable!("0 fits")),
            };
            let on_chip = local(b.space, 1);
            let op = if q == Queue::Load {
                Op::DmaLoad {
                    dst: on_chip,
                    src: hbm,
                    rows: rows_f,
                    row_bytes,
                    planes,
                    transpose: b.transpose,
                }
            } else {
                Op::DmaStore {
                    dst: hbm,
                    src: on_chip,
                    rows: rows_f,
                    row_bytes,
                    planes,
                    transpose: b.transpose,
                }
            };
            let first = r0 == 0;
            let last = r0 + rows == b.rows;
            self.push(
                q,
                op,
                if first { wait } else { TokenSet::EMPTY },
                if last { signal } else { TokenSet::EMPTY },
            );
            r0 += rows;
        }
        Ok(())
    }

    /// `v.un copy` of a rows x cols block (a cast between element types).
    fn vcopy(
        &mut self,
        shape: (u64, u64),
        dst: (Space, u64, DType, u64),
        src: (Space, u64, DType, u64),
        wait: TokenSet,
        signal: TokenSet,
    ) -> Result<(), String> {
        self.vun(VecUnOp::Copy, shape, dst, src, wait, signal)
    }

    /// Sets `v.shape` and `v.stride` when they differ from the last.
    fn vconfig(&mut self, shape: (u64, u64), strides: (u64, u64, u64)) -> Result<(), String> {
        let q = Queue::Vector;
        if self.vshape != Some(shape) {
            let (rows, cols) = (
                count(shape.0, "v.shape rows")?,
                count(shape.1, "v.shape cols")?,
            );
            self.op(q, Op::VShape { rows, cols });
            self.vshape = Some(shape);
        }
        if self.vstride != Some(strides) {
            self.op(
                q,
                Op::VStride {
                    d: uint(strides.0, "v.stride d")?,
                    a: uint(strides.1, "v.stride a")?,
                    b: uint(strides.2, "v.stride b")?,
                    m: uint(0, "v.stride m")?,
                },
            );
            self.vstride = Some(strides);
        }
        Ok(())
    }

    /// `v.un op` of a rows x cols block.
    fn vun(
        &mut self,
        op: VecUnOp,
        shape: (u64, u64),
        dst: (Space, u64, DType, u64),
        src: (Space, u64, DType, u64),
        wait: TokenSet,
        signal: TokenSet,
    ) -> Result<(), String> {
        let q = Queue::Vector;
        self.vconfig(shape, (dst.3, src.3, 0))?;
        self.addr(q, 0, dst.1)?;
        self.addr(q, 1, src.1)?;
        let op = Op::VUn {
            op,
            dst: Tile {
                addr: local(dst.0, 0),
                dtype: dst.2,
            },
            a: Tile {
                addr: local(src.0, 1),
                dtype: src.2,
            },
        };
        self.push(q, op, wait, signal);
        Ok(())
    }

    /// `v.bin add` in place on an accumulator block: `acc += b`, where `b`
    /// is a tile, or a row or column broadcast (`bcast`), in the scratchpad.
    fn vadd_acc(
        &mut self,
        shape: (u64, u64),
        acc: (u64, u64),
        b: (u64, DType, u64),
        bcast: Bcast,
        wait: TokenSet,
        signal: TokenSet,
    ) -> Result<(), String> {
        let q = Queue::Vector;
        self.vconfig(shape, (acc.1, acc.1, b.2))?;
        self.addr(q, 0, acc.0)?;
        self.addr(q, 2, b.0)?;
        let tile = |space, r| Tile {
            addr: local(space, r),
            dtype: DType::Fp32,
        };
        let bt = Tile {
            addr: local(Space::Spad, 2),
            dtype: b.1,
        };
        let op = Op::VBin {
            op: VecBinOp::Add,
            dst: tile(Space::Acc, 0),
            a: tile(Space::Acc, 0),
            b: match bcast {
                Bcast::Tile => VecSrc::Tile(bt),
                Bcast::Row => VecSrc::Row(bt),
                Bcast::Col => VecSrc::Col(bt),
            },
        };
        self.push(q, op, wait, signal);
        Ok(())
    }

    fn halt(&mut self) {
        for q in &mut self.queues {
            if !q.is_empty() {
                q.push(Instruction::new(Op::Halt {}));
            }
        }
    }
}

/// How the second source of [`Emitter::vadd_acc`] is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bcast {
    Tile,
    Row,
    Col,
}

/// A block of the `rows x cols` matrix `mat` between HBM and on chip (rows
/// of the block's columns there); `to_hbm` says which side is the source.
/// A transposed matrix goes through the transposing DMA path.
#[allow(clippy::too_many_arguments)]
fn mat_box(
    mat: &HbmMatrix,
    (rows, cols): (u64, u64),
    blk: &Block,
    space: Space,
    local: u64,
    local_row: u64,
    to_hbm: bool,
) -> Box2 {
    let e = mat.dtype.size_bytes();
    let rs = row_stride(mat, rows, cols);
    if mat.layout == Layout::RowMajor {
        let hbm = mat.addr + blk.i0 * rs + blk.j0 * e;
        return Box2::plain(hbm, rs, space, local, local_row, blk.rows, blk.cols * e);
    }
    let hbm = mat.addr + blk.j0 * rs + blk.i0 * e;
    let (n, row_bytes, hbm_step, local_step) = if to_hbm {
        (blk.rows, blk.cols * e, e, local_row)
    } else {
        (blk.cols, blk.rows * e, rs, e)
    };
    Box2 {
        hbm,
        hbm_row: rs,
        hbm_step,
        space,
        local,
        local_row,
        local_step,
        rows: n,
        row_bytes,
        transpose: transpose_of(e),
    }
}

/// One accumulator block: rows `i0..i0+rows`, columns `j0..j0+cols` of C.
#[derive(Debug, Clone, Copy)]
struct Block {
    i0: u64,
    rows: u64,
    j0: u64,
    cols: u64,
}

/// The vector work of one block's epilogue, in place in the accumulator:
/// `+ bias` (a row, or a column of the swapped product), the
/// pre-activation handed to the store queue, the activation, `+ residual`.
/// `wait` holds the tokens the block's first instruction waits on; the
/// tokens still to wait on (by the cast that follows) are returned.
#[allow(clippy::too_many_arguments)]
fn epilogue_block(
    e: &mut Emitter,
    epi: &GemmEpilogue,
    plan: &GemmPlan,
    blk: &Block,
    bi: u64,
    nblk: u64,
    mut wait: Vec<(u8, bool)>,
    inputs_at: impl Fn(u64) -> (u64, u64),
) -> Result<Vec<(u8, bool)>, String> {
    let shape = (blk.rows, blk.cols);
    let c_row = plan.n_tile * 4;
    let acc = ((bi % plan.acc_buffers) * plan.acc_block_bytes(), c_row);
    let (bias_at, res_at) = inputs_at(bi % plan.stages);
    let free_inputs = (T_OLD_FREE, bi + plan.stages < nblk);
    let has_pre = epi.pre.is_some();
    if let Some(bv) = &epi.bias {
        let last_use = epi.residual.is_none();
        let signal = tokens(&[(T_PRE, has_pre), (free_inputs.0, free_inputs.1 && last_use)]);
        let bcast = if plan.swapped { Bcast::Col } else { Bcast::Row };
        e.vadd_acc(
            shape,
            acc,
            (bias_at, bv.dtype, 0),
            bcast,
            tokens(&wait),
            signal,
        )?;
        wait.clear();
    } else if has_pre {
        let signal = tokens(&[(T_PRE, true)]);
        e.push(Queue::Vector, Op::Nop {}, tokens(&wait), signal);
        wait.clear();
    }
    // Nothing may change the block before its pre-activation is stored.
    wait.push((T_PRE_STORED, has_pre));
    if let Some(act) = epi.act {
        let op = match act {
            Activation::GeluTanh => VecUnOp::GeluTanh,
            Activation::GeluErf => VecUnOp::GeluErf,
        };
        let a = (Space::Acc, acc.0, DType::Fp32, c_row);
        e.vun(op, shape, a, a, tokens(&wait), TokenSet::EMPTY)?;
        wait.clear();
    }
    if let Some(r) = &epi.residual {
        let b = (res_at, r.dtype, plan.n_tile * plan.e_res);
        e.vadd_acc(
            shape,
            acc,
            b,
            Bcast::Tile,
            tokens(&wait),
            tokens(&[free_inputs]),
        )?;
        wait.clear();
    }
    Ok(wait)
}

/// Builds the program for `plan`; an error is a field the plan failed to bound.
pub(super) fn emit(
    arch: &Arch,
    given: &GemmSpec,
    plan: &GemmPlan,
    given_epi: &GemmEpilogue,
) -> Result<Program, String> {
    let (flipped, flipped_epi);
    let (spec, epi) = if plan.swapped {
        flipped = swapped(given);
        flipped_epi = swapped_epilogue(given_epi);
        (&flipped, &flipped_epi)
    } else {
        (given, given_epi)
    };
    let (a, b, c) = (&spec.a, &spec.b, &spec.c);
    let (ea, eb, ec) = (
        a.dtype.size_bytes(),
        b.dtype.size_bytes(),
        c.dtype.size_bytes(),
    );
    let acc_t = accumulator_type(a.dtype);
    let add = spec.c_init == CInit::AddToExisting;
    let cast = plan.casts_output();
    let a_t = a.layout == Layout::Transposed;
    let b_t = b.layout == Layout::Transposed;
    let (mb, nt, kc) = (plan.m_block, plan.n_tile, plan.k_chunk);
    let (rs_a, rs_b) = (row_stride(a, spec.m, spec.k), row_stride(b, spec.k, spec.n));

    // Scratchpad: A slots, B slots, C staging, C_old staging; accumulator: blocks.
    let a_slot = |s: u64| s * plan.a_slot_bytes();
    let b_base = plan.slots * plan.a_slot_bytes();
    let b_slot = |s: u64| b_base + s * plan.b_slot_bytes();
    let stage_base = b_base + plan.slots * plan.b_slot_bytes();
    let stage = |s: u64| stage_base + s * plan.stage_bytes();
    let old_base = stage_base + plan.stages * plan.stage_bytes();
    let old_stage = |s: u64| old_base + s * plan.stage_bytes();
    let acc_buf = |blk: u64| (blk % plan.acc_buffers) * plan.acc_block_bytes();
    let (a_row, b_row, c_row) = (
        if a_t { mb * ea } else { kc * ea },
        if b_t { kc * eb } else { nt * eb },
        nt * 4,
    );
    let stage_row = nt * ec;

    let mut blocks = Vec::new();
    for j0 in (0..spec.n).step_by(nt as usize) {
        for i0 in (0..spec.m).step_by(mb as usize) {
            blocks.push(Block {
                i0,
                rows: mb.min(spec.m - i0),
                j0,
                cols: nt.min(spec.n - j0),
            });
        }
    }
    let chunks: Vec<(u64, u64)> = (0..spec.k)
        .step_by(kc as usize)
        .map(|l0| (l0, kc.min(spec.k - l0)))
        .collect();
    let nblk = blocks.len() as u64;
    let nch = chunks.len() as u64;
    let folds = nblk * nch;
    // A block of C between HBM and on chip (m rows of n there); `to_hbm`
    // says which side is the source. Transposed C goes through the
    // transposing DMA path.
    let c_box = |blk: &Block, space: Space, local: u64, local_row: u64, to_hbm: bool| {
        mat_box(c, (spec.m, spec.n), blk, space, local, local_row, to_hbm)
    };
    // Epilogue inputs of a block: its bias slice, then its residual.
    let epi_base = old_base + plan.old_stages() * plan.stage_bytes();
    let epi_bias = |s: u64| epi_base + s * (plan.bias_bytes() + plan.res_bytes());
    let epi_res = |s: u64| epi_bias(s) + plan.bias_bytes();
    let res_row = nt * plan.e_res;

    let mut e = Emitter::default();

    // Load queue: C_old of a block (when accumulating), then its folds' B and A tiles.
    let ld = Queue::Load;
    for (bi, blk) in blocks.iter().enumerate() {
        let bi = bi as u64;
        if add && cast {
            let wait = tokens(&[(T_OLD_FREE, bi >= plan.stages)]);
            let bx = c_box(
                blk,
                Space::Spad,
                old_stage(bi % plan.stages),
                stage_row,
                false,
            );
            e.dma(ld, bx, wait, tokens(&[(T_OLD_IN, true)]))?;
        } else if add {
            let wait = tokens(&[(T_FREE, bi >= plan.acc_buffers)]);
            let bx = c_box(blk, Space::Acc, acc_buf(bi), c_row, false);
            e.dma(ld, bx, wait, tokens(&[(T_ACC, true)]))?;
        }
        if plan.epilogue_inputs() {
            let s = bi % plan.stages;
            let mut wait = tokens(&[(T_OLD_FREE, bi >= plan.stages)]);
            if let Some(bv) = &epi.bias {
                let eb = bv.dtype.size_bytes();
                let (start, len) = if plan.swapped {
                    (blk.i0, blk.rows)
                } else {
                    (blk.j0, blk.cols)
                };
                let bx = Box2::plain(
                    bv.addr + start * eb,
                    len * eb,
                    Space::Spad,
                    epi_bias(s),
                    len * eb,
                    1,
                    len * eb,
                );
                let signal = tokens(&[(T_OLD_IN, epi.residual.is_none())]);
                e.dma(ld, bx, wait, signal)?;
                wait = TokenSet::EMPTY;
            }
            if let Some(r) = &epi.residual {
                let bx = mat_box(
                    r,
                    (spec.m, spec.n),
                    blk,
                    Space::Spad,
                    epi_res(s),
                    res_row,
                    false,
                );
                e.dma(ld, bx, wait, tokens(&[(T_OLD_IN, true)]))?;
            }
        }
        for (li, &(l0, kl)) in chunks.iter().enumerate() {
            let f = bi * nch + li as u64;
            let s = f % plan.slots;
            let b_box = if b_t {
                Box2::plain(
                    b.addr + blk.j0 * rs_b + l0 * eb,
                    rs_b,
                    Space::Spad,
                    b_slot(s),
                    b_row,
                    blk.cols,
                    kl * eb,
                )
            } else {
                Box2::plain(
                    b.addr + l0 * rs_b + blk.j0 * eb,
                    rs_b,
                    Space::Spad,
                    b_slot(s),
                    b_row,
                    kl,
                    blk.cols * eb,
                )
            };
            let a_box = if a_t {
                Box2::plain(
                    a.addr + l0 * rs_a + blk.i0 * ea,
                    rs_a,
                    Space::Spad,
                    a_slot(s),
                    a_row,
                    kl,
                    blk.rows * ea,
                )
            } else {
                Box2::plain(
                    a.addr + blk.i0 * rs_a + l0 * ea,
                    rs_a,
                    Space::Spad,
                    a_slot(s),
                    a_row,
                    blk.rows,
                    kl * ea,
                )
            };
            e.dma(
                ld,
                b_box,
                tokens(&[(T_SLOT, f >= plan.slots)]),
                TokenSet::EMPTY,
            )?;
            e.dma(ld, a_box, TokenSet::EMPTY, tokens(&[(T_IN, true)]))?;
        }
    }

    // Matrix queue: one preload and one compute per fold.
    let mx = Queue::Matrix;
    e.op(
        mx,
        Op::MmStride {
            a: uint(a_row, "mm.stride a")?,
            b: uint(b_row, "mm.stride b")?,
            c: uint(c_row, "mm.stride c")?,
        },
    );
    e.op(mx, Op::ProfBegin { region: Region(0) });
    for (bi, blk) in blocks.iter().enumerate() {
        let bi = bi as u64;
        for (li, &(_, kl)) in chunks.iter().enumerate() {
            let f = bi * nch + li as u64;
            let s = f % plan.slots;
            let first = li == 0;
            e.addr(mx, 1, b_slot(s))?;
            let preload = Op::MmPreload {
                b: Tile {
                    addr: local(Space::Spad, 1),
                    dtype: b.dtype,
                },
                k: count(kl, "mm.preload k")?,
                n: count(blk.cols, "mm.preload n")?,
                transpose: b_t,
            };
            e.push(mx, preload, tokens(&[(T_IN, true)]), TokenSet::EMPTY);
            e.addr(mx, 0, a_slot(s))?;
            e.addr(mx, 2, acc_buf(bi))?;
            let compute = Op::MmCompute {
                a: Tile {
                    addr: local(Space::Spad, 0),
                    dtype: a.dtype,
                },
                c: Tile {
                    addr: local(Space::Acc, 2),
                    dtype: acc_t,
                },
                m: count(blk.rows, "mm.compute m")?,
                transpose: a_t,
                mode: if first && !add {
                    WriteMode::Overwrite
                } else {
                    WriteMode::Accumulate
                },
            };
            let wait = tokens(&[(T_ACC, first && (add || bi >= plan.acc_buffers))]);
            let signal = tokens(&[
                (T_SLOT, f + plan.slots < folds),
                (T_DONE, li as u64 == nch - 1),
            ]);
            e.push(mx, compute, wait, signal);
        }
    }
    e.op(mx, Op::ProfEnd { region: Region(0) });

    // Vector queue (casting C): C_old into the accumulator, finished blocks out.
    if cast {
        let prepare = |e: &mut Emitter, bi: u64| -> Result<(), String> {
            let blk = &blocks[bi as usize];
            e.vcopy(
                (blk.rows, blk.cols),
                (Space::Acc, acc_buf(bi), acc_t, c_row),
                (Space::Spad, old_stage(bi % plan.stages), c.dtype, stage_row),
                tokens(&[(T_OLD_IN, true)]),
                tokens(&[(T_ACC, true), (T_OLD_FREE, bi + plan.stages < nblk)]),
            )
        };
        if add {
            for bi in 0..plan.acc_buffers.min(nblk) {
                prepare(&mut e, bi)?;
            }
        }
        for (bi, blk) in blocks.iter().enumerate() {
            let bi = bi as u64;
            let mut wait = vec![(T_DONE, true), (T_OLD_IN, plan.epilogue_inputs())];
            if plan.epilogue {
                wait = epilogue_block(&mut e, epi, plan, blk, bi, nblk, wait, |s| {
                    (epi_bias(s), epi_res(s))
                })?;
            }
            wait.push((T_FREE, bi >= plan.stages));
            e.vcopy(
                (blk.rows, blk.cols),
                (Space::Spad, stage(bi % plan.stages), c.dtype, stage_row),
                (Space::Acc, acc_buf(bi), acc_t, c_row),
                tokens(&wait),
                tokens(&[(T_OUT, true), (T_ACC, !add && bi + plan.acc_buffers < nblk)]),
            )?;
            if add && bi + plan.acc_buffers < nblk {
                prepare(&mut e, bi + plan.acc_buffers)?;
            }
        }
    }

    // Store queue: each finished block to HBM.
    let st = Queue::Store;
    for (bi, blk) in blocks.iter().enumerate() {
        let bi = bi as u64;
        if let Some(p) = &epi.pre {
            let bx = mat_box(
                p,
                (spec.m, spec.n),
                blk,
                Space::Acc,
                acc_buf(bi),
                c_row,
                true,
            );
            let (wait, signal) = (tokens(&[(T_PRE, true)]), tokens(&[(T_PRE_STORED, true)]));
            e.dma(st, bx, wait, signal)?;
        }
        if cast {
            let bx = c_box(blk, Space::Spad, stage(bi % plan.stages), stage_row, true);
            let signal = tokens(&[(T_FREE, bi + plan.stages < nblk)]);
            e.dma(st, bx, tokens(&[(T_OUT, true)]), signal)?;
        } else {
            let bx = c_box(blk, Space::Acc, acc_buf(bi), c_row, true);
            let freed = if add { T_FREE } else { T_ACC };
            let signal = tokens(&[(freed, bi + plan.acc_buffers < nblk)]);
            e.dma(st, bx, tokens(&[(T_DONE, true)]), signal)?;
        }
    }
    e.halt();

    let mut program = Program::new(arch.clone());
    program.queues = e.queues;
    program.regions = vec![spec.name.clone()];
    Ok(program)
}
