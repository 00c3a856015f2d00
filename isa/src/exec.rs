//! Queue front-end semantics: what a queue's sequencer does before an engine
//! sees an instruction. It runs loops, keeps the address registers and the
//! queue's configuration (strides, shapes, the bound matrix operand), and
//! resolves every operand to a memory [`Region`].
//!
//! The dependency checker walks programs with it, and the simulators execute
//! with it, so all of them agree on control flow and addresses by construction.

use std::fmt;

use crate::dtype::DType;
use crate::field::{
    Axis, HbmAddr, IndexMode, LocalAddr, Reg, Tile, Transpose, VecSrc, WriteMode, MAX_LOOP_DEPTH,
};
use crate::inst::{Instruction, Op};
use crate::program::{MemSpace, Symbol};

/// An address register: a base and one stride per loop nesting level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrReg {
    pub base: u64,
    pub strides: [i64; MAX_LOOP_DEPTH],
}

/// One open loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LoopFrame {
    start: usize,
    end: usize,
    count: u64,
    index: u64,
}

/// DMA configuration of a load or store queue. A stride of 0 means packed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DmaConfig {
    pub hbm_row: u64,
    pub hbm_plane: u64,
    pub local_row: u64,
    pub local_plane: u64,
}

/// The right operand bound by the last `mm.preload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preload {
    /// Where B lives, resolved when it was bound.
    pub region: Region,
    pub dtype: DType,
    pub k: u64,
    pub n: u64,
    pub transpose: bool,
}

/// Matrix-queue configuration. A stride of 0 means packed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MatrixConfig {
    pub a_stride: u64,
    pub b_stride: u64,
    pub c_stride: u64,
    pub preload: Option<Preload>,
}

/// Vector-queue configuration. A stride of 0 means packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VectorConfig {
    pub rows: u64,
    pub cols: u64,
    pub d_stride: u64,
    pub a_stride: u64,
    pub b_stride: u64,
    pub m_stride: u64,
}

impl Default for VectorConfig {
    fn default() -> Self {
        VectorConfig {
            rows: 1,
            cols: 1,
            d_stride: 0,
            a_stride: 0,
            b_stride: 0,
            m_stride: 0,
        }
    }
}

/// A strided box of bytes: `planes` x `rows` rows of `row_bytes` bytes.
/// Invariant: every count is at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Region {
    pub space: MemSpace,
    pub base: u64,
    pub row_bytes: u64,
    pub rows: u64,
    pub row_stride: u64,
    pub planes: u64,
    pub plane_stride: u64,
}

impl Region {
    /// A 2-D region; `row_stride` 0 means packed.
    pub fn rows(space: MemSpace, base: u64, rows: u64, row_bytes: u64, row_stride: u64) -> Region {
        Region {
            space,
            base,
            row_bytes,
            rows,
            row_stride: if row_stride == 0 {
                row_bytes
            } else {
                row_stride
            },
            planes: 1,
            plane_stride: 0,
        }
    }

    /// A contiguous run of bytes.
    pub fn span(space: MemSpace, base: u64, len: u64) -> Region {
        Region::rows(space, base, 1, len, len)
    }

    /// Bytes the region covers (rows may overlap; each is counted).
    pub fn bytes(&self) -> u64 {
        self.planes * self.rows * self.row_bytes
    }

    /// One past the last byte, `None` on overflow.
    pub fn end(&self) -> Option<u64> {
        let last_plane = (self.planes - 1).checked_mul(self.plane_stride)?;
        let last_row = (self.rows - 1).checked_mul(self.row_stride)?;
        self.base
            .checked_add(last_plane)?
            .checked_add(last_row)?
            .checked_add(self.row_bytes)
    }

    /// The byte intervals `[start, end)` the region covers, ascending and
    /// merged. Allocation grows with rows x planes.
    pub fn intervals(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> =
            Vec::with_capacity((self.rows * self.planes).min(1 << 16) as usize);
        for p in 0..self.planes {
            for r in 0..self.rows {
                let s = self.base + p * self.plane_stride + r * self.row_stride;
                v.push((s, s + self.row_bytes));
            }
        }
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (s, e) in v {
            match out.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        out
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[0x{:x}", self.space, self.base)?;
        match self.end() {
            Some(e) => write!(f, "..0x{e:x})"),
            None => write!(f, "..overflow)"),
        }
    }
}

/// Whether an access reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessKind {
    Read,
    Write,
}

/// One memory access of an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub kind: AccessKind,
    pub region: Region,
    /// The extent depends on index values; the region is the enclosing symbol
    /// (or the rest of the memory when no symbol encloses it).
    pub indirect: bool,
}

/// A rule an executing instruction breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("address register r{reg} plus offset gives a negative address ({value})")]
    NegativeAddress { reg: usize, value: i128 },
    #[error("address register r{reg} plus offset overflows 48 bits ({value})")]
    AddressOverflow { reg: usize, value: i128 },
    #[error("mm.compute with no operand bound by an earlier mm.preload")]
    NoPreload,
    #[error("mm.compute mixes {a} inputs with {b} weights; int8 pairs only with int8")]
    MixedInputs { a: DType, b: DType },
    #[error("{what} is not aligned to its {align}-byte elements (address 0x{addr:x})")]
    Misaligned {
        what: &'static str,
        addr: u64,
        align: u64,
    },
    #[error("{region} is outside the {capacity} bytes of {}", region.space)]
    OutOfBounds { region: Region, capacity: u64 },
}

/// The 16 dependency-token counters and their rules: an instruction may
/// start when every token it waits on is at least 1 and every token it
/// signals is below [`TOKEN_MAX`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    counts: [u32; 16],
}

/// Token counters saturate here; a signal beyond it stalls the signaller.
pub const TOKEN_MAX: u32 = 255;

impl Tokens {
    /// Whether `inst` may start now.
    pub fn ready(&self, inst: &Instruction) -> bool {
        inst.wait.iter().all(|t| self.counts[usize::from(t)] >= 1)
            && inst
                .signal
                .iter()
                .all(|t| self.counts[usize::from(t)] < TOKEN_MAX)
    }

    /// Consumes the tokens `inst` waits on; call only when [`Tokens::ready`].
    pub fn take(&mut self, inst: &Instruction) {
        for t in inst.wait.iter() {
            self.counts[usize::from(t)] -= 1;
        }
    }

    /// Produces the tokens `inst` signals.
    pub fn give(&mut self, inst: &Instruction) {
        for t in inst.signal.iter() {
            self.counts[usize::from(t)] += 1;
        }
    }

    /// The count of token `t`.
    pub fn count(&self, t: u8) -> u32 {
        self.counts[usize::from(t)]
    }

    /// Why `inst` cannot start, e.g. `waits for t1, t3`.
    pub fn blocked_reason(&self, inst: &Instruction) -> String {
        let waits: Vec<String> = inst
            .wait
            .iter()
            .filter(|t| self.count(*t) == 0)
            .map(|t| format!("t{t}"))
            .collect();
        let full: Vec<String> = inst
            .signal
            .iter()
            .filter(|t| self.count(*t) >= TOKEN_MAX)
            .map(|t| format!("t{t}"))
            .collect();
        let mut why = Vec::new();
        if !waits.is_empty() {
            why.push(format!("waits for {}", waits.join(", ")));
        }
        if !full.is_empty() {
            why.push(format!("cannot signal full {}", full.join(", ")));
        }
        why.join(" and ")
    }
}

/// The front-end of one queue: program counter, loops, address registers and
/// configuration. Call [`Frontend::peek`] for the next instruction, inspect it
/// (e.g. [`Frontend::accesses`]), then [`Frontend::advance`] to execute its
/// front-end effects and move on.
#[derive(Debug, Clone)]
pub struct Frontend<'a> {
    code: &'a [Instruction],
    pc: usize,
    loops: Vec<LoopFrame>,
    regs: [AddrReg; Reg::COUNT as usize],
    /// DMA configuration (load and store queues).
    pub dma: DmaConfig,
    /// Matrix configuration.
    pub matrix: MatrixConfig,
    /// Vector configuration.
    pub vector: VectorConfig,
    halted: bool,
}

impl<'a> Frontend<'a> {
    /// A front-end at the start of `code`, with every register and
    /// configuration zero (strides packed).
    pub fn new(code: &'a [Instruction]) -> Frontend<'a> {
        Frontend {
            code,
            pc: 0,
            loops: Vec::new(),
            regs: [AddrReg::default(); Reg::COUNT as usize],
            dma: DmaConfig::default(),
            matrix: MatrixConfig::default(),
            vector: VectorConfig::default(),
            halted: code.is_empty(),
        }
    }

    /// The next instruction to execute and its index, `None` once halted or
    /// past the end.
    pub fn peek(&self) -> Option<(usize, &'a Instruction)> {
        if self.halted {
            return None;
        }
        self.code.get(self.pc).map(|i| (self.pc, i))
    }

    /// Whether the queue has halted or run off its end.
    pub fn is_done(&self) -> bool {
        self.peek().is_none()
    }

    /// The current iteration index of each open loop, outermost first.
    pub fn loop_indices(&self) -> impl Iterator<Item = u64> + '_ {
        self.loops.iter().map(|l| l.index)
    }

    /// The effective byte address of `reg` plus `offset` now.
    ///
    /// # Errors
    /// A negative address or one past 48 bits.
    pub fn address(&self, reg: Reg, offset: i64) -> Result<u64, ExecError> {
        let r = &self.regs[reg.index()];
        let mut v = i128::from(r.base) + i128::from(offset);
        for (l, frame) in self.loops.iter().enumerate() {
            v += i128::from(r.strides[l]) * i128::from(frame.index);
        }
        if v < 0 {
            return Err(ExecError::NegativeAddress {
                reg: reg.index(),
                value: v,
            });
        }
        if v >= 1i128 << 48 {
            return Err(ExecError::AddressOverflow {
                reg: reg.index(),
                value: v,
            });
        }
        Ok(v as u64)
    }

    fn local(&self, a: LocalAddr) -> Result<(MemSpace, u64), ExecError> {
        Ok((a.space.into(), self.address(a.reg, a.offset.get())?))
    }

    fn hbm(&self, a: HbmAddr) -> Result<u64, ExecError> {
        self.address(a.reg, a.offset.get())
    }

    /// The region of a tile of `rows` x `cols` elements at `t` with row
    /// stride `stride` (0 = packed); `what` names it in errors.
    ///
    /// # Errors
    /// An address that cannot be formed, or one not aligned to the element size.
    pub fn tile(
        &self,
        t: Tile,
        rows: u64,
        cols: u64,
        stride: u64,
        what: &'static str,
    ) -> Result<Region, ExecError> {
        let (space, base) = self.local(t.addr)?;
        let es = t.dtype.size_bytes();
        let row_bytes = cols * es;
        let r = Region::rows(space, base, rows, row_bytes, stride);
        if base % es != 0 || r.row_stride % es != 0 {
            return Err(ExecError::Misaligned {
                what,
                addr: base,
                align: es,
            });
        }
        Ok(r)
    }

    fn index_vector(&self, idx: LocalAddr, rows: u64, stride: u64) -> Result<Region, ExecError> {
        let (space, base) = self.local(idx)?;
        let r = Region::rows(space, base, rows, 4, stride);
        if base % 4 != 0 || r.row_stride % 4 != 0 {
            return Err(ExecError::Misaligned {
                what: "index vector",
                addr: base,
                align: 4,
            });
        }
        Ok(r)
    }

    /// The bound right operand of the matrix queue, if any.
    pub fn preload(&self) -> Option<&Preload> {
        self.matrix.preload.as_ref()
    }

    /// The memory the next instruction `inst` reads and writes, resolved
    /// against the current state. Indirect extents use `symbols`: the symbol
    /// enclosing the table base, else the rest of the memory up to `capacity`.
    ///
    /// # Errors
    /// An address that cannot be formed or is misaligned, or a matrix operand
    /// that is not bound.
    pub fn accesses(
        &self,
        inst: &Instruction,
        symbols: &[Symbol],
        capacity: impl Fn(MemSpace) -> u64,
    ) -> Result<Vec<Access>, ExecError> {
        use AccessKind::{Read, Write};
        let direct = |kind, region| Access {
            kind,
            region,
            indirect: false,
        };
        let indirect = |kind, space: MemSpace, base: u64| {
            let end = symbols
                .iter()
                .find(|s| s.space == space && s.addr <= base && base < s.addr + s.size)
                .map_or_else(|| capacity(space), |s| s.addr + s.size);
            Access {
                kind,
                region: Region::span(space, base, end.saturating_sub(base).max(1)),
                indirect: true,
            }
        };
        let v = &self.vector;
        let out = match inst.op {
            Op::DmaLoad {
                dst,
                src,
                rows,
                row_bytes,
                planes,
                transpose,
            } => {
                let (space, lbase) = self.local(dst)?;
                let (s, d) = self.dma_boxes(
                    (
                        MemSpace::Hbm,
                        self.hbm(src)?,
                        self.dma.hbm_row,
                        self.dma.hbm_plane,
                    ),
                    (space, lbase, self.dma.local_row, self.dma.local_plane),
                    rows.get(),
                    row_bytes.get(),
                    planes.get(),
                    transpose,
                );
                vec![direct(Read, s), direct(Write, d)]
            }
            Op::DmaStore {
                dst,
                src,
                rows,
                row_bytes,
                planes,
                transpose,
            } => {
                let (space, lbase) = self.local(src)?;
                let (s, d) = self.dma_boxes(
                    (space, lbase, self.dma.local_row, self.dma.local_plane),
                    (
                        MemSpace::Hbm,
                        self.hbm(dst)?,
                        self.dma.hbm_row,
                        self.dma.hbm_plane,
                    ),
                    rows.get(),
                    row_bytes.get(),
                    planes.get(),
                    transpose,
                );
                vec![direct(Read, s), direct(Write, d)]
            }
            Op::DmaGather {
                dst,
                table,
                idx,
                rows,
                row_bytes,
            } => {
                let (space, base) = self.local(dst)?;
                let (ispace, ibase) = self.local(idx)?;
                if ibase % 4 != 0 {
                    return Err(ExecError::Misaligned {
                        what: "index vector",
                        addr: ibase,
                        align: 4,
                    });
                }
                vec![
                    direct(Read, Region::span(ispace, ibase, 4 * rows.get())),
                    indirect(Read, MemSpace::Hbm, self.hbm(table)?),
                    direct(
                        Write,
                        Region::rows(space, base, rows.get(), row_bytes.get(), self.dma.local_row),
                    ),
                ]
            }
            Op::DmaScatterAdd {
                table,
                src,
                idx,
                rows,
                row_bytes,
            } => {
                let (space, base) = self.local(src)?;
                let (ispace, ibase) = self.local(idx)?;
                let tbase = self.hbm(table)?;
                for (what, addr) in [
                    ("index vector", ibase),
                    ("scatter source", base),
                    ("scatter table", tbase),
                ] {
                    if addr % 4 != 0 {
                        return Err(ExecError::Misaligned {
                            what,
                            addr,
                            align: 4,
                        });
                    }
                }
                vec![
                    direct(Read, Region::span(ispace, ibase, 4 * rows.get())),
                    direct(
                        Read,
                        Region::rows(space, base, rows.get(), row_bytes.get(), self.dma.local_row),
                    ),
                    indirect(Read, MemSpace::Hbm, tbase),
                    indirect(Write, MemSpace::Hbm, tbase),
                ]
            }
            Op::MmPreload { b, k, n, transpose } => {
                let (r, c) = if transpose {
                    (n.get(), k.get())
                } else {
                    (k.get(), n.get())
                };
                vec![direct(
                    Read,
                    self.tile(b, r, c, self.matrix.b_stride, "operand b")?,
                )]
            }
            Op::MmCompute {
                a,
                c,
                m,
                transpose,
                mode,
            } => {
                let p = self.matrix.preload.ok_or(ExecError::NoPreload)?;
                if a.dtype.is_integer() != p.dtype.is_integer() {
                    return Err(ExecError::MixedInputs {
                        a: a.dtype,
                        b: p.dtype,
                    });
                }
                let (ar, ac) = if transpose {
                    (p.k, m.get())
                } else {
                    (m.get(), p.k)
                };
                let a_region = self.tile(a, ar, ac, self.matrix.a_stride, "operand a")?;
                let c_region = self.tile(c, m.get(), p.n, self.matrix.c_stride, "result c")?;
                let mut v = vec![direct(Read, a_region), direct(Read, p.region)];
                if mode == WriteMode::Accumulate {
                    v.push(direct(Read, c_region));
                }
                v.push(direct(Write, c_region));
                v
            }
            Op::VBin { dst, a, b, .. } | Op::VAxpby { dst, a, b, .. } => {
                let mut out = vec![direct(
                    Read,
                    self.tile(a, v.rows, v.cols, v.a_stride, "operand a")?,
                )];
                out.extend(self.vec_src(b)?.map(|r| direct(Read, r)));
                out.push(direct(
                    Write,
                    self.tile(dst, v.rows, v.cols, v.d_stride, "destination")?,
                ));
                out
            }
            Op::VUn { dst, a, .. } | Op::VCausal { dst, a, .. } => vec![
                direct(Read, self.tile(a, v.rows, v.cols, v.a_stride, "operand a")?),
                direct(
                    Write,
                    self.tile(dst, v.rows, v.cols, v.d_stride, "destination")?,
                ),
            ],
            Op::VReduce {
                axis, dst, a, mode, ..
            } => {
                let (r, c) = match axis {
                    Axis::Rows => (v.rows, 1),
                    Axis::Cols => (1, v.cols),
                };
                let d = self.tile(dst, r, c, v.d_stride, "destination")?;
                let mut out = vec![direct(
                    Read,
                    self.tile(a, v.rows, v.cols, v.a_stride, "operand a")?,
                )];
                if mode == WriteMode::Accumulate {
                    out.push(direct(Read, d));
                }
                out.push(direct(Write, d));
                out
            }
            Op::VSel { dst, mask, a, b } => {
                let mut out = vec![
                    direct(Read, self.tile(mask, v.rows, v.cols, v.m_stride, "mask")?),
                    direct(Read, self.tile(a, v.rows, v.cols, v.a_stride, "operand a")?),
                ];
                out.extend(self.vec_src(b)?.map(|r| direct(Read, r)));
                out.push(direct(
                    Write,
                    self.tile(dst, v.rows, v.cols, v.d_stride, "destination")?,
                ));
                out
            }
            Op::VGather {
                mode,
                dst,
                table,
                idx,
            } => {
                let ix = direct(Read, self.index_vector(idx, v.rows, v.m_stride)?);
                match mode {
                    IndexMode::Rows => {
                        let (space, base) = self.local(table.addr)?;
                        vec![
                            ix,
                            indirect(Read, space, base),
                            direct(
                                Write,
                                self.tile(dst, v.rows, v.cols, v.d_stride, "destination")?,
                            ),
                        ]
                    }
                    IndexMode::Elems => vec![
                        ix,
                        direct(Read, self.tile(table, v.rows, v.cols, v.a_stride, "table")?),
                        direct(Write, self.tile(dst, v.rows, 1, v.d_stride, "destination")?),
                    ],
                }
            }
            Op::VScatterAdd {
                mode,
                table,
                src,
                idx,
            } => {
                let ix = direct(Read, self.index_vector(idx, v.rows, v.m_stride)?);
                match mode {
                    IndexMode::Rows => {
                        let (space, base) = self.local(table.addr)?;
                        vec![
                            ix,
                            direct(Read, self.tile(src, v.rows, v.cols, v.a_stride, "source")?),
                            indirect(Read, space, base),
                            indirect(Write, space, base),
                        ]
                    }
                    IndexMode::Elems => {
                        let t = self.tile(table, v.rows, v.cols, v.d_stride, "table")?;
                        vec![
                            ix,
                            direct(Read, self.tile(src, v.rows, 1, v.a_stride, "source")?),
                            direct(Read, t),
                            direct(Write, t),
                        ]
                    }
                }
            }
            Op::VFload { src, .. } => {
                let (space, base) = self.local(src)?;
                if base % 4 != 0 {
                    return Err(ExecError::Misaligned {
                        what: "scalar source",
                        addr: base,
                        align: 4,
                    });
                }
                vec![direct(Read, Region::span(space, base, 4))]
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
            | Op::VShape { .. }
            | Op::VStride { .. }
            | Op::VFset { .. } => Vec::new(),
        };
        Ok(out)
    }

    /// [`Frontend::accesses`], and every access inside its memory: the
    /// address rules both simulators enforce.
    ///
    /// # Errors
    /// As [`Frontend::accesses`], or the first access past its memory's `capacity`.
    pub fn checked_accesses(
        &self,
        inst: &Instruction,
        symbols: &[Symbol],
        capacity: impl Fn(MemSpace) -> u64,
    ) -> Result<Vec<Access>, ExecError> {
        let accesses = self.accesses(inst, symbols, &capacity)?;
        for a in &accesses {
            let cap = capacity(a.region.space);
            if a.region.end().is_none_or(|e| e > cap) {
                return Err(ExecError::OutOfBounds {
                    region: a.region,
                    capacity: cap,
                });
            }
        }
        Ok(accesses)
    }

    /// Source and destination boxes of a DMA: `rows`, `row_bytes`, `planes`
    /// describe the source; with a transpose the destination holds each
    /// plane's element matrix transposed.
    fn dma_boxes(
        &self,
        src: (MemSpace, u64, u64, u64),
        dst: (MemSpace, u64, u64, u64),
        rows: u64,
        row_bytes: u64,
        planes: u64,
        transpose: Transpose,
    ) -> (Region, Region) {
        let packed = |stride: u64, dflt: u64| if stride == 0 { dflt } else { stride };
        let (ss, sb, srow, splane) = src;
        let srow = packed(srow, row_bytes);
        let s = Region {
            space: ss,
            base: sb,
            row_bytes,
            rows,
            row_stride: srow,
            planes,
            plane_stride: packed(splane, rows * srow),
        };
        let (drows, drow_bytes) = match transpose.element_bytes() {
            None => (rows, row_bytes),
            Some(e) => (row_bytes / e, rows * e),
        };
        let (ds, db, drow, dplane) = dst;
        let drow = packed(drow, drow_bytes);
        let d = Region {
            space: ds,
            base: db,
            row_bytes: drow_bytes,
            rows: drows,
            row_stride: drow,
            planes,
            plane_stride: packed(dplane, drows * drow),
        };
        (s, d)
    }

    fn vec_src(&self, b: VecSrc) -> Result<Option<Region>, ExecError> {
        let v = &self.vector;
        Ok(match b {
            VecSrc::Tile(t) => Some(self.tile(t, v.rows, v.cols, v.b_stride, "operand b")?),
            VecSrc::Row(t) => Some(self.tile(t, 1, v.cols, v.b_stride, "row operand")?),
            VecSrc::Col(t) => Some(self.tile(t, v.rows, 1, v.b_stride, "column operand")?),
            VecSrc::Scalar(_) => None,
        })
    }

    /// Executes the front-end effects of the instruction at the program
    /// counter (registers, loops, configuration) and moves to the next one.
    ///
    /// # Errors
    /// An `mm.preload` operand that cannot be resolved.
    pub fn advance(&mut self) -> Result<(), ExecError> {
        let Some((pc, inst)) = self.peek() else {
            return Ok(());
        };
        match inst.op {
            Op::Halt {} => {
                self.halted = true;
                return Ok(());
            }
            Op::Loop { count, end } => self.loops.push(LoopFrame {
                start: pc + 1,
                end: pc + 1 + end.body_len(),
                count: count.get(),
                index: 0,
            }),
            Op::AddrSet { reg, base } => {
                self.regs[reg.index()] = AddrReg {
                    base: base.get(),
                    strides: [0; MAX_LOOP_DEPTH],
                }
            }
            Op::AddrStep { reg, level, stride } => {
                self.regs[reg.index()].strides[level.get() as usize] = stride.get()
            }
            Op::DmaHbmStride { row, plane } => {
                self.dma.hbm_row = row.get();
                self.dma.hbm_plane = plane.get();
            }
            Op::DmaLocalStride { row, plane } => {
                self.dma.local_row = row.get();
                self.dma.local_plane = plane.get();
            }
            Op::MmStride { a, b, c } => {
                self.matrix.a_stride = a.get();
                self.matrix.b_stride = b.get();
                self.matrix.c_stride = c.get();
            }
            Op::MmPreload { b, k, n, transpose } => {
                let (r, c) = if transpose {
                    (n.get(), k.get())
                } else {
                    (k.get(), n.get())
                };
                let region = self.tile(b, r, c, self.matrix.b_stride, "operand b")?;
                self.matrix.preload = Some(Preload {
                    region,
                    dtype: b.dtype,
                    k: k.get(),
                    n: n.get(),
                    transpose,
                });
            }
            Op::VShape { rows, cols } => {
                self.vector.rows = rows.get();
                self.vector.cols = cols.get();
            }
            Op::VStride { d, a, b, m } => {
                self.vector.d_stride = d.get();
                self.vector.a_stride = a.get();
                self.vector.b_stride = b.get();
                self.vector.m_stride = m.get();
            }
            _ => {}
        }
        self.pc += 1;
        while let Some(frame) = self.loops.last_mut() {
            if self.pc != frame.end {
                break;
            }
            frame.index += 1;
            if frame.index < frame.count {
                self.pc = frame.start;
                break;
            }
            self.loops.pop();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::assemble;
    use crate::inst::Queue;

    #[test]
    fn loops_and_strides_generate_addresses() {
        let src = "\
.arch fpga-8x8
.queue load
    addr.set r1, 100
    addr.step r1, 0, 1000
    addr.step r1, 1, 10
    loop 2, outer_end
    loop 3, inner_end
    nop
inner_end:
    nop
outer_end:
    halt
";
        let p = assemble(src, "t.s", None).unwrap();
        let mut fe = Frontend::new(p.queue(Queue::Load));
        let mut seen = Vec::new();
        while let Some((i, _)) = fe.peek() {
            if i == 5 {
                seen.push(fe.address(Reg::new(1).unwrap(), 1).unwrap());
            }
            fe.advance().unwrap();
        }
        assert_eq!(seen, vec![101, 111, 121, 1101, 1111, 1121]);
    }

    #[test]
    fn transposing_dma_swaps_the_destination_box() {
        let src = "\
.arch fpga-8x8
.queue load
    dma.load dst=spad[r0], src=hbm[r0], rows=4, row_bytes=16, planes=1, transpose=2
    halt
";
        let p = assemble(src, "t.s", None).unwrap();
        let fe = Frontend::new(p.queue(Queue::Load));
        let inst = fe.peek().unwrap().1;
        let acc = fe.accesses(inst, &[], |_| 1 << 20).unwrap();
        assert_eq!(acc[0].region.rows, 4);
        assert_eq!(acc[0].region.row_bytes, 16);
        assert_eq!((acc[1].region.rows, acc[1].region.row_bytes), (8, 8));
        assert_eq!(acc[0].region.bytes(), acc[1].region.bytes());
    }

    #[test]
    fn region_intervals_merge() {
        let r = Region {
            space: MemSpace::Spad,
            base: 0,
            row_bytes: 4,
            rows: 3,
            row_stride: 4,
            planes: 2,
            plane_stride: 100,
        };
        assert_eq!(r.intervals(), vec![(0, 12), (100, 112)]);
        assert_eq!(r.end(), Some(112));
    }
}
