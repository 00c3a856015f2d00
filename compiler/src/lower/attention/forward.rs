//! The fused attention forward: for each (batch, head, block of `br` query
//! rows) a *unit*; for each unit the key blocks of `bc` keys it sees (all of
//! them, or those at or below the diagonal when causal). Per key block the
//! array computes S = Q K^T into the accumulator, the vector unit masks it,
//! updates the running row max m, writes P = exp(scale*S - m) as bf16 (or
//! hi + lo) and rescales the output accumulator by exp(m_old - m_new), and
//! the array adds P [V | 1] to it: the extra column of ones makes the array
//! keep the row sum l alongside the output. At the end of a unit the vector
//! unit divides by l and forms lse = m + log(l); the store queue writes o and lse.
//!
//! Causal: a key block's product streams only the query rows at or below
//! its first key, so blocks above the diagonal cost nothing.

use super::emit::{split, Bump, Gen, MatOp, Mem, Q, V};
use super::{kernel_err, reg, AttentionSpec, Dims};
use crate::error::LowerError;
use tessera_isa::program::MemSpace;
use tessera_isa::Arch;

/// On-chip buffers. Slots `[2]` alternate between units or blocks.
#[derive(Debug, Clone)]
struct Layout {
    br: u64,
    kvs: u64,
    q_raw: [u64; 2],
    q_op: [Vec<u64>; 2],
    mask_raw: [u64; 2],
    bias: [u64; 2],
    k_raw: Vec<u64>,
    v_raw: Vec<u64>,
    k_op: Vec<Vec<u64>>,
    v_op: Vec<Vec<u64>>,
    p: [Vec<u64>; 2],
    m: [u64; 2],
    mb: [u64; 2],
    al: [u64; 2],
    lt: [u64; 2],
    lse: [u64; 2],
    s_acc: [u64; 2],
    o_acc: [u64; 2],
}

fn layout(d: &Dims, br: u64, kvs: u64, masked: bool) -> (Layout, u64, u64) {
    // bf16 inputs load straight into the operand buffers: no raw staging.
    let e = if d.terms == 1 { 0 } else { d.e };
    let mut sp = Bump { next: 0 };
    let mut ac = Bump { next: 0 };
    let t = d.terms;
    let dd = d.d;
    let terms = |sp: &mut Bump, bytes: u64| (0..t).map(|_| sp.take(bytes)).collect::<Vec<_>>();
    let q_raw = [sp.take(br * dd * e), sp.take(br * dd * e)];
    let q_op = [terms(&mut sp, br * dd * 2), terms(&mut sp, br * dd * 2)];
    let mbytes = if masked { d.s * 4 } else { 0 };
    let mask_raw = [sp.take(mbytes), sp.take(mbytes)];
    let bias = [sp.take(mbytes), sp.take(mbytes)];
    let k_raw = (0..kvs).map(|_| sp.take(d.bc * dd * e)).collect();
    let v_raw = (0..kvs).map(|_| sp.take(d.bc * dd * e)).collect();
    let k_op = (0..kvs).map(|_| terms(&mut sp, d.bc * dd * 2)).collect();
    let v_op = (0..kvs)
        .map(|_| terms(&mut sp, d.bc * (dd + 1) * 2))
        .collect();
    let p = [terms(&mut sp, br * d.bc * 2), terms(&mut sp, br * d.bc * 2)];
    let col = |sp: &mut Bump| [sp.take(br * 4), sp.take(br * 4)];
    let (m, mb, al, lt, lse) = (
        col(&mut sp),
        col(&mut sp),
        col(&mut sp),
        col(&mut sp),
        col(&mut sp),
    );
    let s_acc = [ac.take(br * d.bc * 4), ac.take(br * d.bc * 4)];
    let o_acc = [ac.take(br * (dd + 1) * 4), ac.take(br * (dd + 1) * 4)];
    let l = Layout {
        br,
        kvs,
        q_raw,
        q_op,
        mask_raw,
        bias,
        k_raw,
        v_raw,
        k_op,
        v_op,
        p,
        m,
        mb,
        al,
        lt,
        lse,
        s_acc,
        o_acc,
    };
    (l, sp.next, ac.next)
}

/// The largest query block (then balanced over the sequence) whose buffers
/// fit, preferring three key/value slots to two.
fn plan(arch: &Arch, spec: &AttentionSpec, d: &Dims) -> Result<Layout, LowerError> {
    let (spad, acc) = (
        arch.capacity(MemSpace::Spad).0,
        arch.capacity(MemSpace::Acc).0,
    );
    let masked = spec.key_mask.is_some();
    let fits = |br: u64, kvs: u64| {
        let (_, s, a) = layout(d, br, kvs, masked);
        s <= spad && a <= acc
    };
    for kvs in [3, 2] {
        if !fits(1, kvs) {
            continue;
        }
        let (mut lo, mut hi) = (1, d.s.min(super::emit::COUNT16));
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(mid, kvs) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let blocks = d.s.div_ceil(lo);
        let br = d.s.div_ceil(blocks);
        return Ok(layout(d, br, kvs, masked).0);
    }
    let (_, s, a) = layout(d, 1, 2, masked);
    Err(kernel_err(
        spec,
        format!(
            "even one query row needs {s} bytes of scratchpad and {a} of accumulator; `{}` has {spad} and {acc}",
            arch.name()
        ),
    ))
}

/// A unit: `rows` query rows from `q0` of head `h` of batch `b`.
#[derive(Debug, Clone, Copy)]
struct Unit {
    b: u64,
    h: u64,
    q0: u64,
    rows: u64,
    last_block: usize,
}

/// One key block of a unit: keys `k0..k0+bc`, streaming unit rows `r0..`.
#[derive(Debug, Clone, Copy)]
struct Block {
    u: usize,
    k0: u64,
    bc: u64,
    r0: u64,
    first: bool,
    last: bool,
}

/// Event numbers per unit / block (0: none).
#[derive(Debug, Default)]
struct Events {
    unit_raw: Vec<u64>,
    unit_raw_free: Vec<u64>,
    q_free: Vec<u64>,
    fin: Vec<u64>,
    stored: Vec<u64>,
    kv_raw: Vec<u64>,
    kv_raw_free: Vec<u64>,
    ops: Vec<u64>,
    s: Vec<u64>,
    go: Vec<u64>,
    pv: Vec<u64>,
    /// Direct (bf16) path: matrix -> load frees, load -> matrix arrivals.
    q_free_l: Vec<u64>,
    kv_free_l: Vec<u64>,
    kv_ready: Vec<u64>,
}

fn back(v: &[u64], i: usize, by: usize) -> u64 {
    if i >= by {
        v[i - by]
    } else {
        0
    }
}

struct Fwd<'a> {
    spec: &'a AttentionSpec,
    d: Dims,
    l: Layout,
    units: Vec<Unit>,
    blocks: Vec<Block>,
    ev: Events,
    g: Gen,
}

/// Writes the forward's assembly source.
pub(super) fn emit(arch: &Arch, spec: &AttentionSpec, d: &Dims) -> Result<String, LowerError> {
    let l = plan(arch, spec, d)?;
    let steps = (d.b * d.h)
        .saturating_mul(d.s.div_ceil(l.br))
        .saturating_mul(d.s.div_ceil(d.bc));
    if steps > super::MAX_STEPS {
        return Err(kernel_err(
            spec,
            format!(
                "{steps} (query block, key block) steps exceed the {} an unrolled program may hold",
                super::MAX_STEPS
            ),
        ));
    }
    let mut units = Vec::new();
    let mut blocks = Vec::new();
    for b in 0..d.b {
        for h in 0..d.h {
            for q0 in (0..d.s).step_by(l.br as usize) {
                let rows = l.br.min(d.s - q0);
                let u = units.len();
                for k0 in (0..d.s).step_by(d.bc as usize) {
                    if spec.causal && k0 > q0 + rows - 1 {
                        break;
                    }
                    blocks.push(Block {
                        u,
                        k0,
                        bc: d.bc.min(d.s - k0),
                        r0: if spec.causal {
                            k0.saturating_sub(q0)
                        } else {
                            0
                        },
                        first: k0 == 0,
                        last: false,
                    });
                }
                if let Some(last) = blocks.last_mut() {
                    last.last = true;
                }
                units.push(Unit {
                    b,
                    h,
                    q0,
                    rows,
                    last_block: blocks.len() - 1,
                });
            }
        }
    }
    let (nu, nb) = (units.len(), blocks.len());
    let ev = Events {
        unit_raw: vec![0; nu],
        unit_raw_free: vec![0; nu],
        q_free: vec![0; nu],
        fin: vec![0; nu],
        stored: vec![0; nu],
        kv_raw: vec![0; nb],
        kv_raw_free: vec![0; nb],
        ops: vec![0; nb],
        s: vec![0; nb],
        go: vec![0; nb],
        pv: vec![0; nb],
        q_free_l: vec![0; nu],
        kv_free_l: vec![0; nb],
        kv_ready: vec![0; nb],
    };
    let f = Fwd {
        spec,
        d: *d,
        l,
        units,
        blocks,
        ev,
        g: Gen::new(arch),
    };
    f.run()
        .map_err(|e| kernel_err(spec, format!("internal error: {e}")))
}

impl Fwd<'_> {
    fn run(mut self) -> Result<String, String> {
        let name = self.spec.name.clone();
        self.g.line(Q::Matrix, &format!("prof.begin {name}"));
        self.g.line(Q::Vector, &format!("prof.begin {name}"));
        self.prologue();
        let nb = self.blocks.len();
        let kvs = self.l.kvs as usize;
        for n in 0..(kvs - 1).min(nb) {
            self.load_block(n)?;
        }
        self.convert(0)?;
        self.qk(0)?;
        for n in 0..nb {
            if n + kvs - 1 < nb {
                self.load_block(n + kvs - 1)?;
            }
            if n + 1 < nb {
                self.convert(n + 1)?;
                self.qk(n + 1)?;
            }
            self.softmax(n)?;
            self.pv(n)?;
            if self.blocks[n].last {
                let u = self.blocks[n].u;
                self.finalize(u)?;
                self.store(u)?;
            }
        }
        self.g.line(Q::Matrix, &format!("prof.end {name}"));
        self.g.line(Q::Vector, &format!("prof.end {name}"));
        self.g.finish()
    }

    /// Scalar registers, and the ones (hi) / zeros (lo) column of every V slot.
    fn prologue(&mut self) {
        let scale = self.spec.scale as f32;
        let regs = [
            (reg::SCALE, format!("{scale:?}")),
            (reg::MINUS_ONE, "-1.0".into()),
            (reg::NEG_INF, "-inf".into()),
            (reg::FLOOR, "-1e30".into()),
            (reg::TINY, "1e-30".into()),
            (reg::ONE, "1.0".into()),
            (reg::ZERO, "0.0".into()),
            (reg::MINUS_SCALE, format!("{:?}", -scale)),
        ];
        for (r, v) in regs {
            self.g.line(Q::Vector, &format!("v.fset f{r}, {v}"));
        }
        let (dd, bc) = (self.d.d, self.d.bc);
        let vs = (dd + 1) * 2;
        self.g.vcfg(bc, 1, [vs, vs, 0, 0]);
        for slot in 0..self.l.kvs as usize {
            for (t, &buf) in self.l.v_op[slot].clone().iter().enumerate() {
                let c = V::T(Mem::Spad, buf + dd * 2, "bf16");
                self.g
                    .vop("v.un op=nonfinite,", &[("dst", c), ("a", c)], "");
                let (op, f) = if t == 0 {
                    ("cmp.le", reg::ONE)
                } else {
                    ("cmp.lt", reg::MINUS_ONE)
                };
                self.g.vop(
                    &format!("v.bin op={op},"),
                    &[("dst", c), ("a", c), ("b", V::F(f))],
                    "",
                );
            }
        }
    }

    /// Loads a block's K and V (and, on a unit's first block, its Q and key
    /// mask): bf16 straight into the operand slots, fp32 into raw staging.
    fn load_block(&mut self, n: usize) -> Result<(), String> {
        let blk = self.blocks[n];
        let un = self.units[blk.u];
        let d = self.d;
        let (e, dd, s) = (d.e, d.d, d.s);
        let direct = d.terms == 1;
        if blk.first {
            let slot = blk.u % 2;
            let row0 = (un.b * d.h + un.h) * s + un.q0;
            let q_dst = if direct {
                self.g
                    .wait(Q::Load, Q::Matrix, back(&self.ev.q_free_l, blk.u, 2))?;
                self.l.q_op[slot][0]
            } else {
                self.l.q_raw[slot]
            };
            if !direct || self.spec.key_mask.is_some() {
                let free = back(&self.ev.unit_raw_free, blk.u, 2);
                self.g.wait(Q::Load, Q::Vector, free)?;
            }
            self.g.dma(
                Q::Load,
                self.spec.q + row0 * dd * e,
                dd * e,
                Mem::Spad,
                q_dst,
                dd * e,
                un.rows,
                dd * e,
            );
            if let Some(mask) = self.spec.key_mask {
                self.g.dma_flat(
                    Q::Load,
                    mask + un.b * s * 4,
                    Mem::Spad,
                    self.l.mask_raw[slot],
                    s * 4,
                );
            }
            if !direct || self.spec.key_mask.is_some() {
                self.ev.unit_raw[blk.u] = self.g.signal(Q::Load, Q::Vector)?;
            }
        }
        let kvs = self.l.kvs as usize;
        let slot = n % kvs;
        let hk = un.h / (d.h / d.hk);
        let row0 = (un.b * d.hk + hk) * s + blk.k0;
        let bufs = if direct {
            self.g
                .wait(Q::Load, Q::Matrix, back(&self.ev.kv_free_l, n, kvs))?;
            [
                (self.spec.k, self.l.k_op[slot][0], dd * 2),
                (self.spec.v, self.l.v_op[slot][0], (dd + 1) * 2),
            ]
        } else {
            let free = back(&self.ev.kv_raw_free, n, kvs);
            self.g.wait(Q::Load, Q::Vector, free)?;
            [
                (self.spec.k, self.l.k_raw[slot], dd * e),
                (self.spec.v, self.l.v_raw[slot], dd * e),
            ]
        };
        for (base, buf, lrow) in bufs {
            self.g.dma(
                Q::Load,
                base + row0 * dd * e,
                dd * e,
                Mem::Spad,
                buf,
                lrow,
                blk.bc,
                dd * e,
            );
        }
        if direct {
            self.ev.kv_ready[n] = self.g.signal(Q::Load, Q::Matrix)?;
        } else {
            self.ev.kv_raw[n] = self.g.signal(Q::Load, Q::Vector)?;
        }
        Ok(())
    }

    fn convert(&mut self, n: usize) -> Result<(), String> {
        let blk = self.blocks[n];
        let un = self.units[blk.u];
        let d = self.d;
        let (e, dd, raw) = (d.e, d.d, d.raw_type());
        let direct = d.terms == 1;
        let masked = self.spec.key_mask.is_some();
        if blk.first && (masked || !direct) {
            let slot = blk.u % 2;
            self.g.wait(Q::Vector, Q::Load, self.ev.unit_raw[blk.u])?;
            if !direct {
                self.g
                    .wait(Q::Vector, Q::Matrix, back(&self.ev.q_free, blk.u, 2))?;
                let dst = self.l.q_op[slot].clone();
                split(
                    &mut self.g,
                    (Mem::Spad, self.l.q_raw[slot], raw),
                    dd * e,
                    &dst,
                    dd * 2,
                    un.rows,
                    dd,
                );
            }
            if masked {
                let (mr, bi) = (self.l.mask_raw[slot], self.l.bias[slot]);
                self.g.vcfg(1, d.s, [0, 0, 0, 0]);
                self.g.vop(
                    "v.bin op=mul,",
                    &[
                        ("dst", V::T(Mem::Spad, bi, "fp32")),
                        ("a", V::T(Mem::Spad, mr, "fp32")),
                        ("b", V::F(reg::ZERO)),
                    ],
                    "",
                );
                self.g.vop(
                    "v.sel",
                    &[
                        ("dst", V::T(Mem::Spad, bi, "fp32")),
                        ("mask", V::T(Mem::Spad, mr, "fp32")),
                        ("a", V::T(Mem::Spad, bi, "fp32")),
                        ("b", V::F(reg::NEG_INF)),
                    ],
                    "",
                );
            }
            self.ev.unit_raw_free[blk.u] = self.g.signal(Q::Vector, Q::Load)?;
        }
        if direct {
            return Ok(());
        }
        let kvs = self.l.kvs as usize;
        let slot = n % kvs;
        self.g.wait(Q::Vector, Q::Load, self.ev.kv_raw[n])?;
        self.g
            .wait(Q::Vector, Q::Matrix, back(&self.ev.pv, n, kvs))?;
        let k_op = self.l.k_op[slot].clone();
        split(
            &mut self.g,
            (Mem::Spad, self.l.k_raw[slot], raw),
            dd * e,
            &k_op,
            dd * 2,
            blk.bc,
            dd,
        );
        let v_op = self.l.v_op[slot].clone();
        split(
            &mut self.g,
            (Mem::Spad, self.l.v_raw[slot], raw),
            dd * e,
            &v_op,
            (dd + 1) * 2,
            blk.bc,
            dd,
        );
        self.ev.kv_raw_free[n] = self.g.signal(Q::Vector, Q::Load)?;
        self.ev.ops[n] = self.g.signal(Q::Vector, Q::Matrix)?;
        Ok(())
    }

    fn qk(&mut self, n: usize) -> Result<(), String> {
        let blk = self.blocks[n];
        let un = self.units[blk.u];
        let (dd, bc) = (self.d.d, self.d.bc);
        if self.d.terms == 1 {
            self.g.wait(Q::Matrix, Q::Load, self.ev.kv_ready[n])?;
        } else {
            self.g.wait(Q::Matrix, Q::Vector, self.ev.ops[n])?;
        }
        self.g.wait(Q::Matrix, Q::Vector, back(&self.ev.go, n, 2))?;
        let a = MatOp {
            terms: self.l.q_op[blk.u % 2]
                .iter()
                .map(|&t| t + blk.r0 * dd * 2)
                .collect(),
            stride: dd * 2,
            transposed: false,
        };
        let b = MatOp {
            terms: self.l.k_op[n % self.l.kvs as usize].clone(),
            stride: dd * 2,
            transposed: true,
        };
        let c = self.l.s_acc[n % 2] + blk.r0 * bc * 4;
        let pairs = self.d.pairs();
        self.g.matmul(
            &a,
            &b,
            c,
            bc * 4,
            (un.rows - blk.r0, dd, blk.bc),
            true,
            pairs,
        );
        self.ev.s[n] = self.g.signal(Q::Matrix, Q::Vector)?;
        if blk.last {
            self.ev.q_free[blk.u] = self.ev.s[n];
            if self.d.terms == 1 {
                self.ev.q_free_l[blk.u] = self.g.signal(Q::Matrix, Q::Load)?;
            }
        }
        Ok(())
    }

    fn softmax(&mut self, n: usize) -> Result<(), String> {
        let blk = self.blocks[n];
        let un = self.units[blk.u];
        let (dd, bc) = (self.d.d, self.d.bc);
        let slot = blk.u % 2;
        let g = &mut self.g;
        g.wait(Q::Vector, Q::Matrix, self.ev.s[n])?;
        g.wait(Q::Vector, Q::Matrix, back(&self.ev.pv, n, 2))?;
        let act = un.rows - blk.r0;
        let st = self.l.s_acc[n % 2] + blk.r0 * bc * 4;
        let s_t = V::T(Mem::Acc, st, "fp32");
        let i0 = un.q0 + blk.r0;
        if self.spec.causal {
            let diag = (blk.k0 + blk.bc - 1).saturating_sub(i0).min(act);
            if diag > 0 {
                g.vcfg(diag, blk.bc, [bc * 4, bc * 4, 0, 0]);
                g.vop(
                    "v.causal",
                    &[("dst", s_t), ("a", s_t)],
                    &format!(", fill=f{}, row={i0}, col={}", reg::NEG_INF, blk.k0),
                );
            }
        }
        g.vcfg(act, blk.bc, [bc * 4, bc * 4, 0, 0]);
        if self.spec.key_mask.is_some() {
            g.vop(
                "v.bin op=add,",
                &[
                    ("dst", s_t),
                    ("a", s_t),
                    ("b", V::Row(Mem::Spad, self.l.bias[slot] + blk.k0 * 4)),
                ],
                "",
            );
        }
        let at = |base: [u64; 2]| V::T(Mem::Spad, base[slot] + blk.r0 * 4, "fp32");
        let (m, mb, al) = (at(self.l.m), at(self.l.mb), at(self.l.al));
        g.vcfg(act, blk.bc, [0, bc * 4, 0, 0]);
        g.vop(
            "v.reduce op=max, axis=rows,",
            &[("dst", mb), ("a", s_t)],
            ", mode=overwrite",
        );
        g.vcfg(act, 1, [0, 0, 0, 0]);
        g.vop(
            "v.bin op=mul,",
            &[("dst", mb), ("a", mb), ("b", V::F(reg::SCALE))],
            "",
        );
        if blk.first {
            g.vop(
                "v.bin op=max,",
                &[("dst", m), ("a", mb), ("b", V::F(reg::FLOOR))],
                "",
            );
        } else {
            g.vop("v.bin op=max,", &[("dst", mb), ("a", m), ("b", mb)], "");
            g.vop("v.bin op=sub,", &[("dst", al), ("a", m), ("b", mb)], "");
            g.vop("v.un op=exp,", &[("dst", al), ("a", al)], "");
            g.vop("v.un op=copy,", &[("dst", m), ("a", mb)], "");
        }
        let m_col = V::Col(Mem::Spad, self.l.m[slot] + blk.r0 * 4);
        g.vcfg(act, blk.bc, [bc * 4, bc * 4, 0, 0]);
        g.vop(
            "v.axpby",
            &[("dst", s_t), ("a", s_t), ("b", m_col)],
            &format!(", alpha=f{}, beta=f{}", reg::SCALE, reg::MINUS_ONE),
        );
        let p: Vec<u64> = self.l.p[n % 2]
            .iter()
            .map(|&t| t + blk.r0 * bc * 2)
            .collect();
        if p.len() == 1 {
            g.vcfg(act, blk.bc, [bc * 2, bc * 4, 0, 0]);
            g.vop(
                "v.un op=exp,",
                &[("dst", V::T(Mem::Spad, p[0], "bf16")), ("a", s_t)],
                "",
            );
        } else {
            g.vop("v.un op=exp,", &[("dst", s_t), ("a", s_t)], "");
            split(g, (Mem::Acc, st, "fp32"), bc * 4, &p, bc * 2, act, blk.bc);
        }
        if blk.first {
            g.wait(Q::Vector, Q::Store, back(&self.ev.stored, blk.u, 2))?;
        } else {
            g.wait(Q::Vector, Q::Matrix, self.ev.pv[n - 1])?;
            let os = (dd + 1) * 4;
            let o = V::T(Mem::Acc, self.l.o_acc[slot] + blk.r0 * os, "fp32");
            g.vcfg(act, dd + 1, [os, os, 0, 0]);
            g.vop(
                "v.bin op=mul,",
                &[
                    ("dst", o),
                    ("a", o),
                    ("b", V::Col(Mem::Spad, self.l.al[slot] + blk.r0 * 4)),
                ],
                "",
            );
        }
        self.ev.go[n] = g.signal(Q::Vector, Q::Matrix)?;
        Ok(())
    }

    fn pv(&mut self, n: usize) -> Result<(), String> {
        let blk = self.blocks[n];
        let un = self.units[blk.u];
        let (dd, bc) = (self.d.d, self.d.bc);
        self.g.wait(Q::Matrix, Q::Vector, self.ev.go[n])?;
        let a = MatOp {
            terms: self.l.p[n % 2]
                .iter()
                .map(|&t| t + blk.r0 * bc * 2)
                .collect(),
            stride: bc * 2,
            transposed: false,
        };
        let b = MatOp {
            terms: self.l.v_op[n % self.l.kvs as usize].clone(),
            stride: (dd + 1) * 2,
            transposed: false,
        };
        let os = (dd + 1) * 4;
        let c = self.l.o_acc[blk.u % 2] + blk.r0 * os;
        let pairs = self.d.pairs();
        self.g.matmul(
            &a,
            &b,
            c,
            os,
            (un.rows - blk.r0, blk.bc, dd + 1),
            blk.first,
            pairs,
        );
        self.ev.pv[n] = self.g.signal(Q::Matrix, Q::Vector)?;
        if self.d.terms == 1 {
            self.ev.kv_free_l[n] = self.g.signal(Q::Matrix, Q::Load)?;
        }
        Ok(())
    }

    fn finalize(&mut self, u: usize) -> Result<(), String> {
        let un = self.units[u];
        let dd = self.d.d;
        let slot = u % 2;
        let g = &mut self.g;
        g.wait(Q::Vector, Q::Matrix, self.ev.pv[un.last_block])?;
        let os = (dd + 1) * 4;
        let o = self.l.o_acc[slot];
        let sp = |a: u64| V::T(Mem::Spad, a, "fp32");
        let (lt, al, m, lse) = (
            sp(self.l.lt[slot]),
            sp(self.l.al[slot]),
            sp(self.l.m[slot]),
            sp(self.l.lse[slot]),
        );
        g.vcfg(un.rows, 1, [0, os, 0, 0]);
        g.vop(
            "v.bin op=max,",
            &[
                ("dst", lt),
                ("a", V::T(Mem::Acc, o + dd * 4, "fp32")),
                ("b", V::F(reg::TINY)),
            ],
            "",
        );
        g.vcfg(un.rows, 1, [0, 0, 0, 0]);
        g.vop("v.un op=recip,", &[("dst", al), ("a", lt)], "");
        g.vcfg(un.rows, dd, [os, os, 0, 0]);
        let ot = V::T(Mem::Acc, o, "fp32");
        g.vop(
            "v.bin op=mul,",
            &[
                ("dst", ot),
                ("a", ot),
                ("b", V::Col(Mem::Spad, self.l.al[slot])),
            ],
            "",
        );
        g.vcfg(un.rows, 1, [0, 0, 0, 0]);
        g.vop("v.un op=log,", &[("dst", lt), ("a", lt)], "");
        g.vop("v.bin op=add,", &[("dst", lse), ("a", m), ("b", lt)], "");
        self.ev.fin[u] = g.signal(Q::Vector, Q::Store)?;
        Ok(())
    }

    fn store(&mut self, u: usize) -> Result<(), String> {
        let un = self.units[u];
        let d = self.d;
        let slot = u % 2;
        self.g.wait(Q::Store, Q::Vector, self.ev.fin[u])?;
        let row0 = (un.b * d.h + un.h) * d.s + un.q0;
        self.g.dma(
            Q::Store,
            self.spec.o + row0 * d.d * 4,
            d.d * 4,
            Mem::Acc,
            self.l.o_acc[slot],
            (d.d + 1) * 4,
            un.rows,
            d.d * 4,
        );
        self.g.dma_flat(
            Q::Store,
            self.spec.lse + row0 * 4,
            Mem::Spad,
            self.l.lse[slot],
            un.rows * 4,
        );
        self.ev.stored[u] = self.g.signal(Q::Store, Q::Vector)?;
        Ok(())
    }
}
