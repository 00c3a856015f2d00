//! Tiling of one GEMM onto one core: checks the spec against the hardware
//! description, then picks accumulator blocks, reduction chunks and buffer
//! rings that fit the scratchpad, the accumulator and every instruction
//! field, minimising a cycle estimate that is a pure function of the `Arch`.

use tessera_isa::{Arch, Dataflow};

use super::{accumulator_type, CInit, GemmEpilogue, GemmError, GemmSpec, HbmMatrix, Layout};

/// Most rows one DMA instruction moves (its `rows` field is 12 bits); longer
/// boxes are split.
pub(crate) const DMA_ROWS: u64 = 2048;
/// Largest `row_bytes` of a DMA instruction (16 bits).
const DMA_ROW_BYTES: u64 = 65535;
/// Largest `m` of `mm.compute`, `k` of `mm.preload` and `rows` of `v.shape` (16 bits).
const COUNT16: u64 = 65535;
/// Alignment of every on-chip buffer: the widest bank of any preset and any element.
pub(crate) const ALIGN: u64 = 64;

/// How a GEMM is tiled. Invariants: `m_block <= m`, `n_tile <= n`,
/// `k_chunk <= k`; weight-stationary has `k_chunk <= rows` and
/// `n_tile <= cols`, output-stationary `m_block <= rows` and `n_tile <= cols`;
/// the buffers of [`GemmPlan::spad_bytes`] and [`GemmPlan::acc_bytes`] fit the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmPlan {
    pub dataflow: Dataflow,
    /// The kernel computes C^T = B^T A^T instead (same bits: each product
    /// commutes exactly and k still increases), streaming the n dimension;
    /// `m` and `n` below are then the transposed product's.
    pub swapped: bool,
    /// Rows of C per accumulator block (the rows one `mm.compute` streams).
    pub m_block: u64,
    /// Columns of C per block (one `mm.preload`'s n).
    pub n_tile: u64,
    /// Reduction length of one `mm.compute`: the machine adds each chunk's
    /// sum (a fused multiply-add chain from +0) to the accumulator in turn.
    pub k_chunk: u64,
    /// Input buffers (A and B tiles) in the load-to-matrix ring.
    pub slots: u64,
    /// Accumulator blocks in flight (2: the next block computes while the last drains).
    pub acc_buffers: u64,
    /// Scratchpad staging buffers for casting C (0 when C is stored from the accumulator).
    pub stages: u64,
    pub m: u64,
    pub n: u64,
    pub k: u64,
    /// Element sizes of A, B and C.
    pub(crate) ea: u64,
    pub(crate) eb: u64,
    pub(crate) ec: u64,
    pub(crate) a_transposed: bool,
    pub(crate) c_init: CInit,
    /// An epilogue runs on every block (C then always passes the vector unit).
    pub(crate) epilogue: bool,
    /// Element sizes of the epilogue's bias and residual (0: none).
    pub(crate) e_bias: u64,
    pub(crate) e_res: u64,
}

impl GemmPlan {
    /// Accumulator blocks, in the order the kernel computes them (n outer, m inner).
    pub fn blocks(&self) -> u64 {
        self.m.div_ceil(self.m_block) * self.n.div_ceil(self.n_tile)
    }

    /// `mm.compute` instructions: one per block and reduction chunk.
    pub fn folds(&self) -> u64 {
        self.blocks() * self.k.div_ceil(self.k_chunk)
    }

    /// Whether C passes through the vector unit (its type is not the accumulator's).
    pub fn casts_output(&self) -> bool {
        self.stages > 0
    }

    pub(crate) fn a_slot_bytes(&self) -> u64 {
        align(self.m_block * self.k_chunk * self.ea)
    }

    pub(crate) fn b_slot_bytes(&self) -> u64 {
        align(self.k_chunk * self.n_tile * self.eb)
    }

    pub(crate) fn stage_bytes(&self) -> u64 {
        align(self.m_block * self.n_tile * self.ec)
    }

    /// Staging buffers for C_old on its way to the accumulator.
    pub(crate) fn old_stages(&self) -> u64 {
        if self.casts_output() && self.c_init == CInit::AddToExisting {
            self.stages
        } else {
            0
        }
    }

    /// Bytes of a block's bias slice in the scratchpad (a row, or a column
    /// of the swapped product: room for the longer).
    pub(crate) fn bias_bytes(&self) -> u64 {
        align(self.m_block.max(self.n_tile) * self.e_bias)
    }

    /// Bytes of a block's residual in the scratchpad.
    pub(crate) fn res_bytes(&self) -> u64 {
        align(self.m_block * self.n_tile * self.e_res)
    }

    /// Whether blocks have epilogue inputs (bias, residual) to load.
    pub(crate) fn epilogue_inputs(&self) -> bool {
        self.e_bias + self.e_res > 0
    }

    /// Scratchpad bytes used.
    pub fn spad_bytes(&self) -> u64 {
        self.slots * (self.a_slot_bytes() + self.b_slot_bytes())
            + (self.stages + self.old_stages()) * self.stage_bytes()
            + self.stages * (self.bias_bytes() + self.res_bytes())
    }

    /// Bytes of one accumulator block.
    pub(crate) fn acc_block_bytes(&self) -> u64 {
        align(self.m_block * self.n_tile * 4)
    }

    /// Accumulator bytes used.
    pub fn acc_bytes(&self) -> u64 {
        self.acc_buffers * self.acc_block_bytes()
    }

    /// Estimated cycles on `arch` (the cost model the search minimises):
    /// the matrix work per fold, bounded below by the time to load a fold's
    /// inputs through the ring, plus one block drain per block when the
    /// accumulator is not double-buffered, plus the first load and last drain.
    pub fn estimate(&self, arch: &Arch) -> f64 {
        let (r, c) = (f64::from(arch.rows()), f64::from(arch.cols()));
        let (mb, kc, nt) = (self.m_block as f64, self.k_chunk as f64, self.n_tile as f64);
        let bw = arch.hbm_bytes_per_cycle() / f64::from(arch.spec().chip.cores);
        let lat = arch.hbm_latency_cycles().get() as f64;
        let fold = match self.dataflow {
            Dataflow::WeightStationary if arch.spec().array.double_buffered_weights => {
                // docs/timing.md: a preload trails the previous compute by
                // (P - 2)^+ (R - 1) cycles (one issue slot at least), the next
                // compute trails it by 1 + (2 - P)^+ (R - 1), and preloads
                // are R apart.
                let p = f64::from(arch.pe_stages());
                let trail = ((p - 2.0).max(0.0) * (r - 1.0)).max(1.0);
                let lag = 1.0 + (2.0 - p).max(0.0) * (r - 1.0);
                mb.max(r).max(trail + lag)
            }
            Dataflow::WeightStationary => 2.0 * r + c + mb - 2.0,
            Dataflow::OutputStationary => kc + 2.0 * r + c - 2.0,
        };
        let load = lat + (mb * kc * self.ea as f64 + kc * nt * self.eb as f64) / bw;
        let fold = fold.max((load + r + c) / (self.slots - 1) as f64);
        let lanes = f64::from(arch.spec().vector.lanes);
        let drain = f64::from(arch.spec().vector.latency_cycles)
            + mb * nt / lanes
            + lat
            + mb * nt * self.ec as f64 / bw;
        let exposed = if self.acc_buffers == 1 { drain } else { 0.0 };
        self.folds() as f64 * fold + self.blocks() as f64 * exposed + load + drain
    }
}

fn align(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Stored rows and bytes per stored row of a logical `rows x cols` operand.
fn stored(mat: &HbmMatrix, rows: u64, cols: u64) -> (u64, u64) {
    let e = mat.dtype.size_bytes();
    // Saturating: an absurd size must fail the HBM bound, not overflow.
    match mat.layout {
        Layout::RowMajor => (rows, cols.saturating_mul(e)),
        Layout::Transposed => (cols, rows.saturating_mul(e)),
    }
}

/// The row stride actually used for `mat` (0 means packed).
pub(crate) fn row_stride(mat: &HbmMatrix, rows: u64, cols: u64) -> u64 {
    if mat.row_stride == 0 {
        stored(mat, rows, cols).1
    } else {
        mat.row_stride
    }
}

/// Checks one operand's strides and HBM extent; returns its byte range.
fn extent(
    arch: &Arch,
    spec: &GemmSpec,
    operand: char,
    mat: &HbmMatrix,
    rows: u64,
    cols: u64,
) -> Result<(u128, u128), GemmError> {
    let (srows, row) = stored(mat, rows, cols);
    let stride = row_stride(mat, rows, cols);
    if stride < row {
        return Err(GemmError::RowStride {
            name: spec.name.clone(),
            operand,
            stride,
            row,
        });
    }
    let start = u128::from(mat.addr);
    let end = start + u128::from(srows - 1) * u128::from(stride) + u128::from(row);
    let capacity = arch.hbm_bytes().get();
    if end > u128::from(capacity) {
        return Err(GemmError::OutOfHbm {
            name: spec.name.clone(),
            operand,
            start: mat.addr,
            end,
            capacity,
        });
    }
    Ok((start, end))
}

fn check_spec(arch: &Arch, spec: &GemmSpec) -> Result<(), GemmError> {
    let name = || spec.name.clone();
    if !is_identifier(&spec.name) {
        return Err(GemmError::BadName { name: name() });
    }
    for (dim, v) in [('m', spec.m), ('n', spec.n), ('k', spec.k)] {
        if v == 0 {
            return Err(GemmError::ZeroDimension { name: name(), dim });
        }
    }
    for (operand, t) in [('A', spec.a.dtype), ('B', spec.b.dtype)] {
        if !arch.supports_input(t) {
            let allowed: Vec<&str> = arch
                .spec()
                .array
                .input_types
                .iter()
                .map(|t| t.name())
                .collect();
            return Err(GemmError::UnsupportedInput {
                name: name(),
                operand,
                dtype: t,
                arch: arch.name().to_string(),
                allowed: allowed.join(", "),
            });
        }
    }
    if accumulator_type(spec.a.dtype) != accumulator_type(spec.b.dtype) {
        return Err(GemmError::MixedKinds {
            name: name(),
            a: spec.a.dtype,
            b: spec.b.dtype,
        });
    }
    let a = extent(arch, spec, 'A', &spec.a, spec.m, spec.k)?;
    let b = extent(arch, spec, 'B', &spec.b, spec.k, spec.n)?;
    let c = extent(arch, spec, 'C', &spec.c, spec.m, spec.n)?;
    for (operand, r) in [('A', a), ('B', b)] {
        if r.0 < c.1 && c.0 < r.1 {
            return Err(GemmError::Overlap {
                name: name(),
                operand,
            });
        }
    }
    Ok(())
}

/// The same GEMM as C^T (n x m) = B^T (n x k) * A^T (k x m): every operand
/// keeps its bytes and flips its layout.
pub(crate) fn swapped(spec: &GemmSpec) -> GemmSpec {
    let flip = |mat: &HbmMatrix| HbmMatrix {
        layout: match mat.layout {
            Layout::RowMajor => Layout::Transposed,
            Layout::Transposed => Layout::RowMajor,
        },
        ..*mat
    };
    GemmSpec {
        m: spec.n,
        n: spec.m,
        a: flip(&spec.b),
        b: flip(&spec.a),
        c: flip(&spec.c),
        ..spec.clone()
    }
}

/// The epilogue of the transposed product: its matrices flip their layout.
pub(crate) fn swapped_epilogue(epi: &GemmEpilogue) -> GemmEpilogue {
    let flip = |mat: &HbmMatrix| HbmMatrix {
        layout: match mat.layout {
            Layout::RowMajor => Layout::Transposed,
            Layout::Transposed => Layout::RowMajor,
        },
        ..*mat
    };
    GemmEpilogue {
        residual: epi.residual.as_ref().map(flip),
        pre: epi.pre.as_ref().map(flip),
        ..*epi
    }
}

fn check_epilogue(arch: &Arch, spec: &GemmSpec, epi: &GemmEpilogue) -> Result<(), GemmError> {
    if *epi == GemmEpilogue::default() {
        return Ok(());
    }
    let bad = |rule: &str| GemmError::BadEpilogue {
        name: spec.name.clone(),
        rule: rule.to_string(),
    };
    if spec.c_init != CInit::Zero {
        return Err(bad("an epilogue needs C = A * B (no C_old)"));
    }
    if epi
        .pre
        .is_some_and(|p| p.dtype != accumulator_type(spec.a.dtype))
    {
        return Err(bad(
            "the pre-activation is stored in the accumulator's type",
        ));
    }
    if let Some(b) = epi.bias {
        let end = u128::from(b.addr) + u128::from(spec.n) * u128::from(b.dtype.size_bytes());
        if end > u128::from(arch.hbm_bytes().get()) {
            return Err(bad("the bias lies beyond HBM"));
        }
    }
    for (operand, mat) in [('R', epi.residual), ('P', epi.pre)] {
        if let Some(mat) = mat {
            extent(arch, spec, operand, &mat, spec.m, spec.n)?;
        }
    }
    Ok(())
}

/// [`plan`] for a kernel with an epilogue.
///
/// # Errors
/// As [`plan`], and [`GemmError::BadEpilogue`].
pub(crate) fn plan_with(
    arch: &Arch,
    spec: &GemmSpec,
    epi: &GemmEpilogue,
) -> Result<GemmPlan, GemmError> {
    check_spec(arch, spec)?;
    check_epilogue(arch, spec, epi)?;
    let direct = plan_one(arch, spec, epi);
    let Ok(mut flipped) = plan_one(arch, &swapped(spec), &swapped_epilogue(epi)) else {
        return direct;
    };
    flipped.swapped = true;
    match direct {
        Ok(d) if d.estimate(arch) <= flipped.estimate(arch) => Ok(d),
        _ => Ok(flipped),
    }
}

/// Checks `spec` against `arch` and picks the tiling with the lowest
/// [`GemmPlan::estimate`] among those that fit, for the product as given
/// or transposed (C^T = B^T A^T; ties keep it as given).
///
/// # Errors
/// Whatever [`super::gemm_kernel`] reports for a malformed spec, or
/// [`GemmError::DoesNotFit`] when no tiling fits the memories.
pub fn plan(arch: &Arch, spec: &GemmSpec) -> Result<GemmPlan, GemmError> {
    plan_with(arch, spec, &GemmEpilogue::default())
}

/// The best tiling of `spec` as given.
fn plan_one(arch: &Arch, spec: &GemmSpec, epi: &GemmEpilogue) -> Result<GemmPlan, GemmError> {
    let (rows, cols) = (u64::from(arch.rows()), u64::from(arch.cols()));
    let dataflow = arch.dataflow();
    let acc_t = accumulator_type(spec.a.dtype);
    let epilogue = *epi != GemmEpilogue::default();
    let casts = spec.c.dtype != acc_t || epilogue;
    let spad = arch.scratchpad_bytes().get();
    let acc = arch.accumulator_bytes().get();
    let base = GemmPlan {
        dataflow,
        swapped: false,
        m_block: 1,
        n_tile: spec.n.min(cols),
        k_chunk: 1,
        slots: 2,
        acc_buffers: 1,
        stages: 0,
        m: spec.m,
        n: spec.n,
        k: spec.k,
        ea: spec.a.dtype.size_bytes(),
        eb: spec.b.dtype.size_bytes(),
        ec: spec.c.dtype.size_bytes(),
        a_transposed: spec.a.layout == Layout::Transposed,
        c_init: spec.c_init,
        epilogue,
        e_bias: epi.bias.map_or(0, |b| b.dtype.size_bytes()),
        e_res: epi.residual.map_or(0, |r| r.dtype.size_bytes()),
    };
    let fits = |p: &GemmPlan| p.spad_bytes() <= spad && p.acc_bytes() <= acc;
    let mut best: Option<(f64, GemmPlan)> = None;
    for acc_buffers in [2, 1] {
        for slots in [4, 3, 2] {
            let stage_options: &[u64] = if casts { &[2, 1] } else { &[0] };
            for &stages in stage_options {
                let mut p = GemmPlan {
                    acc_buffers,
                    slots,
                    stages,
                    ..base
                };
                // The free dimension: rows of A per block (weight-stationary)
                // or the reduction chunk (output-stationary). Largest that fits.
                let cap = match dataflow {
                    Dataflow::WeightStationary => {
                        p.k_chunk = spec.k.min(rows);
                        let mut lim = spec.m.min(COUNT16);
                        if p.a_transposed {
                            lim = lim.min(DMA_ROW_BYTES / p.ea);
                        }
                        if spec.c.layout == Layout::Transposed {
                            lim = lim.min(DMA_ROW_BYTES / p.ec);
                        }
                        for mat in [epi.residual, epi.pre].into_iter().flatten() {
                            if mat.layout == Layout::Transposed {
                                lim = lim.min(DMA_ROW_BYTES / mat.dtype.size_bytes());
                            }
                        }
                        lim
                    }
                    Dataflow::OutputStationary => {
                        p.m_block = spec.m.min(rows);
                        let mut lim = spec.k.min(COUNT16);
                        if !p.a_transposed {
                            lim = lim.min(DMA_ROW_BYTES / p.ea);
                        }
                        if spec.b.layout == Layout::Transposed {
                            lim = lim.min(DMA_ROW_BYTES / p.eb);
                        }
                        lim
                    }
                };
                let set = |p: &mut GemmPlan, v: u64| match dataflow {
                    Dataflow::WeightStationary => p.m_block = v,
                    Dataflow::OutputStationary => p.k_chunk = v,
                };
                // Binary search for the largest value that fits.
                let (mut lo, mut hi) = (0u64, cap);
                while lo < hi {
                    let mid = lo + (hi - lo).div_ceil(2);
                    set(&mut p, mid);
                    if fits(&p) {
                        lo = mid;
                    } else {
                        hi = mid - 1;
                    }
                }
                if lo == 0 {
                    continue;
                }
                // Balance the pieces: the same number of pieces, as even as possible.
                let total = match dataflow {
                    Dataflow::WeightStationary => spec.m,
                    Dataflow::OutputStationary => spec.k,
                };
                set(&mut p, total.div_ceil(total.div_ceil(lo)));
                let cost = p.estimate(arch);
                if best.as_ref().is_none_or(|(c, _)| cost < *c) {
                    best = Some((cost, p));
                }
            }
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| GemmError::DoesNotFit {
        name: spec.name.clone(),
        arch: arch.name().to_string(),
        why: format!(
            "even the smallest tiles need more than the {spad}-byte scratchpad or the {acc}-byte accumulator"
        ),
    })
}
