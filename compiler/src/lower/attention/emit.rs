//! The assembly writer shared by the attention kernels: four queue texts,
//! event-numbered token channels, on-chip allocation, and helpers for DMA
//! boxes, vector operations and tiled matrix products that respect the
//! array's limits and every field width.
//!
//! Channels: a token carries every event from one producer queue to one
//! consumer queue, in order. The producer appends `nop signal=tK` after the
//! work an event stands for (a fence: it fires once everything before it in
//! that queue has completed) and gets the event's number; a consumer that
//! needs event `e` waits until it has taken `e` signals. Waiting on an event
//! that has not been emitted yet is refused, so the text is always written
//! in an order that is itself a valid execution (no deadlock); at the end
//! every consumer drains its channels, so tokens balance.

use std::fmt::Write;

use tessera_isa::{Arch, Dataflow};

/// Alignment of every on-chip buffer (the widest bank of any preset).
pub(super) const ALIGN: u64 = 64;
/// Most rows one DMA instruction moves here (its field holds 4,095).
const DMA_ROWS: u64 = 2048;
/// Largest count of a 16-bit field (`mm.compute m`, `mm.preload k`, `v.shape`).
pub(super) const COUNT16: u64 = 65_535;

/// The four queues, in token-allocation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Q {
    Load = 0,
    Matrix = 1,
    Vector = 2,
    Store = 3,
}

/// The channels the kernels use, each one token (`t0`..`t7`).
const CHANNELS: [(Q, Q); 8] = [
    (Q::Load, Q::Vector),
    (Q::Vector, Q::Load),
    (Q::Vector, Q::Matrix),
    (Q::Matrix, Q::Vector),
    (Q::Vector, Q::Store),
    (Q::Store, Q::Vector),
    (Q::Matrix, Q::Load),
    (Q::Load, Q::Matrix),
];

/// An on-chip memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mem {
    Spad,
    Acc,
}

impl Mem {
    fn name(self) -> &'static str {
        match self {
            Mem::Spad => "spad",
            Mem::Acc => "acc",
        }
    }
}

/// A bump allocator over one on-chip memory; every buffer is 64-byte aligned.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bump {
    pub next: u64,
}

impl Bump {
    pub fn take(&mut self, bytes: u64) -> u64 {
        let at = self.next;
        self.next = (at + bytes).div_ceil(ALIGN) * ALIGN;
        at
    }
}

/// A vector-operation operand.
#[derive(Debug, Clone, Copy)]
pub(super) enum V {
    /// A tile: memory, byte address, element type name.
    T(Mem, u64, &'static str),
    /// A column broadcast of an fp32 tile.
    Col(Mem, u64),
    /// A row broadcast of an fp32 tile.
    Row(Mem, u64),
    /// A scalar register `fN`.
    F(u8),
}

/// A matrix operand in the scratchpad: one bf16 buffer per precision term.
#[derive(Debug, Clone)]
pub(super) struct MatOp {
    pub terms: Vec<u64>,
    /// Bytes between stored rows.
    pub stride: u64,
    /// Stored transposed (A: k x m, B: n x k).
    pub transposed: bool,
}

#[derive(Debug, Default)]
struct Chan {
    signalled: u64,
    waited: u64,
}

/// The program being written.
#[derive(Debug)]
pub(super) struct Gen {
    text: [String; 4],
    chans: [Chan; 8],
    vshape: Option<(u64, u64)>,
    vstride: Option<[u64; 4]>,
    mstride: Option<[u64; 3]>,
    dstride: [Option<(u64, u64)>; 2],
    rows: u64,
    cols: u64,
    dataflow: Dataflow,
}

fn chan_index(from: Q, to: Q) -> Result<usize, String> {
    CHANNELS
        .iter()
        .position(|&c| c == (from, to))
        .ok_or_else(|| format!("no channel from {from:?} to {to:?}"))
}

impl Gen {
    pub fn new(arch: &Arch) -> Gen {
        Gen {
            text: Default::default(),
            chans: Default::default(),
            vshape: None,
            vstride: None,
            mstride: None,
            dstride: [None; 2],
            rows: u64::from(arch.rows()),
            cols: u64::from(arch.cols()),
            dataflow: arch.dataflow(),
        }
    }

    /// Appends one line to queue `q`.
    pub fn line(&mut self, q: Q, s: &str) {
        let t = &mut self.text[q as usize];
        t.push_str(s);
        t.push('\n');
    }

    /// Signals the next event from `from` to `to`; returns its number (1-based).
    pub fn signal(&mut self, from: Q, to: Q) -> Result<u64, String> {
        let i = chan_index(from, to)?;
        self.chans[i].signalled += 1;
        self.line(from, &format!("nop signal=t{i}"));
        Ok(self.chans[i].signalled)
    }

    /// Makes `to` wait until event `event` from `from` has been signalled
    /// (0 means no event: nothing to wait for).
    pub fn wait(&mut self, to: Q, from: Q, event: u64) -> Result<(), String> {
        let i = chan_index(from, to)?;
        if event > self.chans[i].signalled {
            return Err(format!(
                "{to:?} waits for event {event} from {from:?}, which has only signalled {}",
                self.chans[i].signalled
            ));
        }
        while self.chans[i].waited < event {
            self.chans[i].waited += 1;
            self.line(to, &format!("nop wait=t{i}"));
        }
        Ok(())
    }

    /// Drains every channel and ends every non-empty queue with `halt`; returns the source.
    pub fn finish(mut self) -> Result<String, String> {
        for (i, &(from, to)) in CHANNELS.iter().enumerate() {
            let all = self.chans[i].signalled;
            self.wait(to, from, all)?;
        }
        let mut src = String::new();
        for (i, name) in ["load", "matrix", "vector", "store"].iter().enumerate() {
            if !self.text[i].is_empty() {
                let _ = write!(src, ".queue {name}\n{}halt\n", self.text[i]);
            }
        }
        Ok(src)
    }

    /// A DMA box between HBM and on chip: `rows` rows of `row_bytes`, rows
    /// `hrow` bytes apart in HBM and `lrow` bytes apart on chip.
    #[allow(clippy::too_many_arguments)]
    pub fn dma(
        &mut self,
        q: Q,
        hbm: u64,
        hrow: u64,
        mem: Mem,
        local: u64,
        lrow: u64,
        rows: u64,
        row_bytes: u64,
    ) {
        let slot = usize::from(q == Q::Store);
        if self.dstride[slot] != Some((hrow, lrow)) {
            self.line(q, &format!("dma.hstride row={hrow}, plane=0"));
            self.line(q, &format!("dma.lstride row={lrow}, plane=0"));
            self.dstride[slot] = Some((hrow, lrow));
        }
        let mut r0 = 0;
        while r0 < rows {
            let n = (rows - r0).min(DMA_ROWS);
            let (h, l) = (hbm + r0 * hrow, local + r0 * lrow);
            let m = mem.name();
            let text = if q == Q::Load {
                format!("addr.set r1, {h}\naddr.set r2, {l}\ndma.load dst={m}[r2], src=hbm[r1], rows={n}, row_bytes={row_bytes}, planes=1, transpose=none")
            } else {
                format!("addr.set r1, {h}\naddr.set r2, {l}\ndma.store dst=hbm[r1], src={m}[r2], rows={n}, row_bytes={row_bytes}, planes=1, transpose=none")
            };
            self.line(q, &text);
            r0 += n;
        }
    }

    /// A contiguous run of `bytes` (a multiple of 4) as rows of at most 16 KiB.
    pub fn dma_flat(&mut self, q: Q, hbm: u64, mem: Mem, local: u64, bytes: u64) {
        const PIECE: u64 = 16_384;
        let whole = bytes / PIECE;
        if whole > 0 {
            self.dma(q, hbm, PIECE, mem, local, PIECE, whole, PIECE);
        }
        let rest = bytes % PIECE;
        if rest > 0 {
            let off = whole * PIECE;
            self.dma(q, hbm + off, rest, mem, local + off, rest, 1, rest);
        }
    }

    /// Sets the vector shape and strides (only when they change).
    pub fn vcfg(&mut self, rows: u64, cols: u64, strides: [u64; 4]) {
        if self.vshape != Some((rows, cols)) {
            self.line(Q::Vector, &format!("v.shape rows={rows}, cols={cols}"));
            self.vshape = Some((rows, cols));
        }
        if self.vstride != Some(strides) {
            let [d, a, b, m] = strides;
            self.line(Q::Vector, &format!("v.stride d={d}, a={a}, b={b}, m={m}"));
            self.vstride = Some(strides);
        }
    }

    /// One vector instruction `mnemonic` with named operands, each tile
    /// operand through its own address register.
    pub fn vop(&mut self, head: &str, ops: &[(&str, V)], tail: &str) {
        let mut text = String::new();
        let mut args = Vec::new();
        for (i, (name, v)) in ops.iter().enumerate() {
            let r = i + 1;
            let arg = match *v {
                V::T(m, a, t) => {
                    let _ = writeln!(text, "addr.set r{r}, {a}");
                    format!("{}[r{r}]:{t}", m.name())
                }
                V::Col(m, a) => {
                    let _ = writeln!(text, "addr.set r{r}, {a}");
                    format!("col({}[r{r}]:fp32)", m.name())
                }
                V::Row(m, a) => {
                    let _ = writeln!(text, "addr.set r{r}, {a}");
                    format!("row({}[r{r}]:fp32)", m.name())
                }
                V::F(f) => format!("f{f}"),
            };
            args.push(format!("{name}={arg}"));
        }
        let _ = write!(text, "{head} {}{tail}", args.join(", "));
        self.line(Q::Vector, &text);
    }

    /// C (m x n, fp32 in the accumulator, rows `c_stride` apart) = or +=
    /// the sum over `pairs` of A[ta] (m x k) * B[tb] (k x n), split into
    /// products that fit the array and the instruction fields. With
    /// `overwrite`, the first product of each output tile overwrites C.
    #[allow(clippy::too_many_arguments)]
    pub fn matmul(
        &mut self,
        a: &MatOp,
        b: &MatOp,
        c: u64,
        c_stride: u64,
        (m, k, n): (u64, u64, u64),
        overwrite: bool,
        pairs: &[(usize, usize)],
    ) {
        let (mmax, kmax) = match self.dataflow {
            Dataflow::WeightStationary => (COUNT16, self.rows),
            Dataflow::OutputStationary => (self.rows, COUNT16),
        };
        let nmax = self.cols;
        let strides = [a.stride, b.stride, c_stride];
        if self.mstride != Some(strides) {
            self.line(
                Q::Matrix,
                &format!(
                    "mm.stride a={}, b={}, c={}",
                    strides[0], strides[1], strides[2]
                ),
            );
            self.mstride = Some(strides);
        }
        let e = 2;
        for n0 in (0..n).step_by(nmax as usize) {
            let nn = nmax.min(n - n0);
            for k0 in (0..k).step_by(kmax as usize) {
                let kk = kmax.min(k - k0);
                for (pi, &(ta, tb)) in pairs.iter().enumerate() {
                    let baddr = if b.transposed {
                        b.terms[tb] + n0 * b.stride + k0 * e
                    } else {
                        b.terms[tb] + k0 * b.stride + n0 * e
                    };
                    self.line(
                        Q::Matrix,
                        &format!(
                            "addr.set r2, {baddr}\nmm.preload b=spad[r2]:bf16, k={kk}, n={nn}, transpose={}",
                            b.transposed
                        ),
                    );
                    for m0 in (0..m).step_by(mmax as usize) {
                        let mm = mmax.min(m - m0);
                        let aaddr = if a.transposed {
                            a.terms[ta] + k0 * a.stride + m0 * e
                        } else {
                            a.terms[ta] + m0 * a.stride + k0 * e
                        };
                        let caddr = c + m0 * c_stride + n0 * 4;
                        let mode = if overwrite && k0 == 0 && pi == 0 {
                            "overwrite"
                        } else {
                            "accumulate"
                        };
                        self.line(
                            Q::Matrix,
                            &format!(
                                "addr.set r1, {aaddr}\naddr.set r3, {caddr}\nmm.compute a=spad[r1]:bf16, c=acc[r3]:fp32, m={mm}, transpose={}, mode={mode}",
                                a.transposed
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// Converts `rows x cols` raw elements (fp32 or bf16, rows `a_stride`
/// apart) into the matrix operand's terms (bf16, rows `d_stride` apart):
/// one term is a cast; two terms are hi = bf16(x) and lo = bf16(x - hi).
#[allow(clippy::too_many_arguments)]
pub(super) fn split(
    g: &mut Gen,
    src: (Mem, u64, &'static str),
    a_stride: u64,
    dst: &[u64],
    d_stride: u64,
    rows: u64,
    cols: u64,
) {
    g.vcfg(rows, cols, [d_stride, a_stride, d_stride, 0]);
    let x = V::T(src.0, src.1, src.2);
    g.vop(
        "v.un op=copy,",
        &[("dst", V::T(Mem::Spad, dst[0], "bf16")), ("a", x)],
        "",
    );
    if let Some(&lo) = dst.get(1) {
        g.vop(
            "v.bin op=sub,",
            &[
                ("dst", V::T(Mem::Spad, lo, "bf16")),
                ("a", x),
                ("b", V::T(Mem::Spad, dst[0], "bf16")),
            ],
            "",
        );
    }
}
