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
//!
//! Addresses are absolute: every operand is preceded by `addr.set` of its
//! register and uses offset 0. The program is unrolled (no loops), so its
//! length grows with the number of folds.

use tessera_isa::field::{
    Count, HbmAddr, LocalAddr, Reg, Region, SInt, Space, Tile, TokenSet, Transpose, UInt, VecUnOp,
    WriteMode,
};
use tessera_isa::{Arch, DType, Instruction, Op, Program, Queue};

use super::plan::{row_stride, swapped, GemmPlan, DMA_ROWS};
use super::{accumulator_type, CInit, GemmSpec, Layout};

const T_IN: u8 = 0;
const T_SLOT: u8 = 1;
const T_ACC: u8 = 2;
const T_OLD_IN: u8 = 3;
const T_OLD_FREE: u8 = 4;
const T_DONE: u8 = 5;
const T_OUT: u8 = 6;
const T_FREE: u8 = 7;

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
    /// Last `v.stride (d, a)`.
    vstride: Option<(u64, u64)>,
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
    #[allow(clippy::too_many_arguments)]
    fn vcopy(
        &mut self,
        shape: (u64, u64),
        dst: (Space, u64, DType, u64),
        src: (Space, u64, DType, u64),
        wait: TokenSet,
        signal: TokenSet,
    ) -> Result<(), String> {
        let q = Queue::Vector;
        if self.vshape != Some(shape) {
            let (rows, cols) = (
                count(shape.0, "v.shape rows")?,
                count(shape.1, "v.shape cols")?,
            );
            self.op(q, Op::VShape { rows, cols });
            self.vshape = Some(shape);
        }
        if self.vstride != Some((dst.3, src.3)) {
            self.op(
                q,
                Op::VStride {
                    d: uint(dst.3, "v.stride d")?,
                    a: uint(src.3, "v.stride a")?,
                    b: uint(0, "v.stride b")?,
                    m: uint(0, "v.stride m")?,
                },
            );
            self.vstride = Some((dst.3, src.3));
        }
        self.addr(q, 0, dst.1)?;
        self.addr(q, 1, src.1)?;
        let op = Op::VUn {
            op: VecUnOp::Copy,
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

    fn halt(&mut self) {
        for q in &mut self.queues {
            if !q.is_empty() {
                q.push(Instruction::new(Op::Halt {}));
            }
        }
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

/// Builds the program for `plan`; an error is a field the plan failed to bound.
pub(super) fn emit(arch: &Arch, given: &GemmSpec, plan: &GemmPlan) -> Result<Program, String> {
    let flipped;
    let spec = if plan.swapped {
        flipped = swapped(given);
        &flipped
    } else {
        given
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
    let (rs_a, rs_b, rs_c) = (
        row_stride(a, spec.m, spec.k),
        row_stride(b, spec.k, spec.n),
        row_stride(c, spec.m, spec.n),
    );

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
    let c_t = c.layout == Layout::Transposed;
    // A block of C between HBM and on chip (m rows of n there); `to_hbm`
    // says which side is the source. Transposed C goes through the
    // transposing DMA path.
    let c_box = |blk: &Block, space: Space, local: u64, local_row: u64, to_hbm: bool| {
        if !c_t {
            let hbm = c.addr + blk.i0 * rs_c + blk.j0 * ec;
            return Box2::plain(hbm, rs_c, space, local, local_row, blk.rows, blk.cols * ec);
        }
        let hbm = c.addr + blk.j0 * rs_c + blk.i0 * ec;
        let (rows, row_bytes, hbm_step, local_step) = if to_hbm {
            (blk.rows, blk.cols * ec, ec, local_row)
        } else {
            (blk.cols, blk.rows * ec, rs_c, ec)
        };
        Box2 {
            hbm,
            hbm_row: rs_c,
            hbm_step,
            space,
            local,
            local_row,
            local_step,
            rows,
            row_bytes,
            transpose: transpose_of(ec),
        }
    };

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
            e.vcopy(
                (blk.rows, blk.cols),
                (Space::Spad, stage(bi % plan.stages), c.dtype, stage_row),
                (Space::Acc, acc_buf(bi), acc_t, c_row),
                tokens(&[(T_DONE, true), (T_FREE, bi >= plan.stages)]),
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
