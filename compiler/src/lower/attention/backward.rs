//! The fused attention backward in FlashAttention-2 order. A *unit* is one
//! query head (batch, head), its heads ordered so that the heads sharing a
//! kv head (a *group*) are consecutive. A unit's Q, dO (as matrix operands),
//! lse and D = rowsum(dO * O) stay in the scratchpad and its dQ in the
//! accumulator; the group's dK and dV stay in the accumulator until its last
//! head is done. For each key block (an *item*) and each block of `br` query
//! rows at or below it (causal) the array recomputes S = Q K^T and
//! dP = dO V^T, the vector unit forms P = exp(scale*S - lse) and
//! dS = P * (scale*dP - scale*D), and the array accumulates dV += P^T dO,
//! dK += dS^T Q and dQ += dS K (the scale is already in dS).

use super::emit::{split, Bump, Gen, MatOp, Mem, Q, V};
use super::{kernel_err, reg, AttentionBackwardSpec, Dims};
use crate::error::LowerError;
use tessera_isa::program::MemSpace;
use tessera_isa::Arch;

#[derive(Debug, Clone)]
struct Layout {
    br: u64,
    kvs: u64,
    q_raw: u64,
    o_raw: u64,
    do_raw: u64,
    lse_raw: u64,
    mask_raw: u64,
    q_op: [Vec<u64>; 2],
    do_op: [Vec<u64>; 2],
    lse: [u64; 2],
    dvec: [u64; 2],
    bias: [u64; 2],
    k_raw: Vec<u64>,
    v_raw: Vec<u64>,
    k_op: Vec<Vec<u64>>,
    v_op: Vec<Vec<u64>>,
    p: [Vec<u64>; 2],
    ds: [Vec<u64>; 2],
    s_acc: [u64; 2],
    dp_acc: [u64; 2],
    /// One or two dQ slots (units alternate).
    dq: Vec<u64>,
    dk: u64,
    dv: u64,
}

fn layout(d: &Dims, br: u64, kvs: u64, dqs: u64, masked: bool) -> (Layout, u64, u64) {
    let mut sp = Bump { next: 0 };
    let mut ac = Bump { next: 0 };
    let (t, s, dd) = (d.terms, d.s, d.d);
    let terms = |sp: &mut Bump, bytes: u64| (0..t).map(|_| sp.take(bytes)).collect::<Vec<_>>();
    let mbytes = if masked { s * 4 } else { 0 };
    let q_raw = sp.take(s * dd * d.e);
    let o_raw = sp.take(s * dd * 4);
    let do_raw = sp.take(s * dd * 4);
    let lse_raw = sp.take(s * 4);
    let mask_raw = sp.take(mbytes);
    let q_op = [terms(&mut sp, s * dd * 2), terms(&mut sp, s * dd * 2)];
    let do_op = [terms(&mut sp, s * dd * 2), terms(&mut sp, s * dd * 2)];
    let lse = [sp.take(s * 4), sp.take(s * 4)];
    let dvec = [sp.take(s * 4), sp.take(s * 4)];
    let bias = [sp.take(mbytes), sp.take(mbytes)];
    let k_raw = (0..kvs).map(|_| sp.take(d.bc * dd * d.e)).collect();
    let v_raw = (0..kvs).map(|_| sp.take(d.bc * dd * d.e)).collect();
    let k_op = (0..kvs).map(|_| terms(&mut sp, d.bc * dd * 2)).collect();
    let v_op = (0..kvs).map(|_| terms(&mut sp, d.bc * dd * 2)).collect();
    let p = [terms(&mut sp, br * d.bc * 2), terms(&mut sp, br * d.bc * 2)];
    let ds = [terms(&mut sp, br * d.bc * 2), terms(&mut sp, br * d.bc * 2)];
    let s_acc = [ac.take(br * d.bc * 4), ac.take(br * d.bc * 4)];
    let dp_acc = [ac.take(br * d.bc * 4), ac.take(br * d.bc * 4)];
    let dq = (0..dqs).map(|_| ac.take(s * dd * 4)).collect();
    let dk = ac.take(s * dd * 4);
    let dv = ac.take(s * dd * 4);
    let l = Layout {
        br,
        kvs,
        q_raw,
        o_raw,
        do_raw,
        lse_raw,
        mask_raw,
        q_op,
        do_op,
        lse,
        dvec,
        bias,
        k_raw,
        v_raw,
        k_op,
        v_op,
        p,
        ds,
        s_acc,
        dp_acc,
        dq,
        dk,
        dv,
    };
    (l, sp.next, ac.next)
}

fn plan(arch: &Arch, spec: &AttentionBackwardSpec, d: &Dims) -> Result<Layout, LowerError> {
    let f = &spec.forward;
    let (spad, acc) = (
        arch.capacity(MemSpace::Spad).0,
        arch.capacity(MemSpace::Acc).0,
    );
    let masked = f.key_mask.is_some();
    let fits = |br: u64, kvs: u64, dqs: u64| {
        let (_, s, a) = layout(d, br, kvs, dqs, masked);
        s <= spad && a <= acc
    };
    // The largest query block of each ring choice; the largest wins, ties
    // going to more slots (earlier in the list).
    let mut best: Option<(u64, u64, u64)> = None;
    for (kvs, dqs) in [(3, 2), (2, 2), (3, 1), (2, 1)] {
        if !fits(1, kvs, dqs) {
            continue;
        }
        let (mut lo, mut hi) = (1, d.s.min(super::emit::COUNT16));
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(mid, kvs, dqs) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        if best.is_none_or(|(br, _, _)| lo > br) {
            best = Some((lo, kvs, dqs));
        }
    }
    if let Some((br, kvs, dqs)) = best {
        let br = d.s.div_ceil(d.s.div_ceil(br));
        return Ok(layout(d, br, kvs, dqs, masked).0);
    }
    let (_, s, a) = layout(d, 1, 2, 1, masked);
    Err(kernel_err(
        f,
        format!(
            "a head's resident buffers (Q, dO, O, lse and D in the scratchpad, dQ, dK and dV in the accumulator) need {s} bytes of scratchpad and {a} of accumulator; `{}` has {spad} and {acc}",
            arch.name()
        ),
    ))
}

#[derive(Debug, Clone, Copy)]
struct Unit {
    b: u64,
    h: u64,
    /// Index of the (batch, kv head) group.
    grp: usize,
    first_in_group: bool,
    last_in_group: bool,
    first_item: usize,
    last_block: usize,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    u: usize,
    j: u64,
    k0: u64,
    bc: u64,
}

#[derive(Debug, Clone, Copy)]
struct Block {
    p: usize,
    a: u64,
    rows: u64,
    first_of_item: bool,
    last_of_item: bool,
    first_of_unit: bool,
}

#[derive(Debug, Default)]
struct Events {
    unit_raw: Vec<u64>,
    unit_raw_free: Vec<u64>,
    head_free: Vec<u64>,
    dq_fin: Vec<u64>,
    dq_stored: Vec<u64>,
    dkv_stored: Vec<u64>,
    kv_raw: Vec<u64>,
    kv_raw_free: Vec<u64>,
    ops: Vec<u64>,
    kv_free: Vec<u64>,
    s: Vec<u64>,
    go: Vec<u64>,
    gr: Vec<u64>,
}

fn back(v: &[u64], i: usize, by: usize) -> u64 {
    if i >= by {
        v[i - by]
    } else {
        0
    }
}

struct Bwd<'a> {
    spec: &'a AttentionBackwardSpec,
    d: Dims,
    l: Layout,
    units: Vec<Unit>,
    items: Vec<Item>,
    blocks: Vec<Block>,
    ev: Events,
    loaded: usize,
    g: Gen,
}

/// Writes the backward's assembly source.
pub(super) fn emit(
    arch: &Arch,
    spec: &AttentionBackwardSpec,
    d: &Dims,
) -> Result<String, LowerError> {
    let f = &spec.forward;
    let l = plan(arch, spec, d)?;
    let steps = (d.b * d.h)
        .saturating_mul(d.s.div_ceil(l.br))
        .saturating_mul(d.s.div_ceil(d.bc));
    if steps > super::MAX_STEPS {
        return Err(kernel_err(
            f,
            format!(
                "{steps} (query block, key block) steps exceed the {} an unrolled program may hold",
                super::MAX_STEPS
            ),
        ));
    }
    let group = d.h / d.hk;
    let (mut units, mut items, mut blocks) = (Vec::new(), Vec::new(), Vec::new());
    for b in 0..d.b {
        for hk in 0..d.hk {
            for gi in 0..group {
                let u = units.len();
                let first_item = items.len();
                let first_block = blocks.len();
                for (j, k0) in (0..d.s).step_by(d.bc as usize).enumerate() {
                    let p = items.len();
                    items.push(Item {
                        u,
                        j: j as u64,
                        k0,
                        bc: d.bc.min(d.s - k0),
                    });
                    let start = if f.causal { k0 } else { 0 };
                    let mut a = start;
                    while a < d.s {
                        let rows = l.br.min(d.s - a);
                        blocks.push(Block {
                            p,
                            a,
                            rows,
                            first_of_item: a == start,
                            last_of_item: a + rows == d.s,
                            first_of_unit: blocks.len() == first_block,
                        });
                        a += rows;
                    }
                }
                units.push(Unit {
                    b,
                    h: hk * group + gi,
                    grp: (b * d.hk + hk) as usize,
                    first_in_group: gi == 0,
                    last_in_group: gi + 1 == group,
                    first_item,
                    last_block: blocks.len() - 1,
                });
            }
        }
    }
    let (nu, np, nb) = (units.len(), items.len(), blocks.len());
    let ev = Events {
        unit_raw: vec![0; nu],
        unit_raw_free: vec![0; nu],
        head_free: vec![0; nu],
        dq_fin: vec![0; nu],
        dq_stored: vec![0; nu],
        dkv_stored: vec![0; (d.b * d.hk) as usize],
        kv_raw: vec![0; np],
        kv_raw_free: vec![0; np],
        ops: vec![0; np],
        kv_free: vec![0; np],
        s: vec![0; nb],
        go: vec![0; nb],
        gr: vec![0; nb],
    };
    let w = Bwd {
        spec,
        d: *d,
        l,
        units,
        items,
        blocks,
        ev,
        loaded: 0,
        g: Gen::new(arch),
    };
    w.run()
        .map_err(|e| kernel_err(f, format!("internal error: {e}")))
}

impl Bwd<'_> {
    fn run(mut self) -> Result<String, String> {
        let name = self.spec.forward.name.clone();
        self.g.line(Q::Matrix, &format!("prof.begin {name}"));
        self.g.line(Q::Vector, &format!("prof.begin {name}"));
        self.prologue();
        let nb = self.blocks.len();
        self.convert(0)?;
        self.sdp(0)?;
        for n in 0..nb {
            if n + 1 < nb {
                let next = self.blocks[n + 1];
                if next.first_of_item {
                    self.convert(next.p)?;
                }
                self.sdp(n + 1)?;
            }
            self.soft(n)?;
            self.grads(n)?;
            let u = self.items[self.blocks[n].p].u;
            if self.units[u].last_block == n {
                self.finalize(u)?;
                self.store(u)?;
            }
        }
        self.g.line(Q::Matrix, &format!("prof.end {name}"));
        self.g.line(Q::Vector, &format!("prof.end {name}"));
        self.g.finish()
    }

    fn prologue(&mut self) {
        let scale = self.spec.forward.scale as f32;
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
    }

    /// Loads items ahead, up to `upto` (inclusive), as far as their staging
    /// buffers have been freed in the text written so far.
    fn load_ahead(&mut self, upto: usize) -> Result<(), String> {
        let kvs = self.l.kvs as usize;
        while self.loaded <= upto && self.loaded < self.items.len() {
            let p = self.loaded;
            let it = self.items[p];
            let un = self.units[it.u];
            let unit_free = if un.first_item == p && it.u > 0 {
                self.ev.unit_raw_free[it.u - 1]
            } else {
                1
            };
            let kv_free = if p >= kvs {
                self.ev.kv_raw_free[p - kvs]
            } else {
                1
            };
            if unit_free == 0 || kv_free == 0 {
                return Ok(());
            }
            self.load_item(p)?;
            self.loaded += 1;
        }
        Ok(())
    }

    fn load_item(&mut self, p: usize) -> Result<(), String> {
        let it = self.items[p];
        let un = self.units[it.u];
        let d = self.d;
        let f = &self.spec.forward;
        let (e, dd, s) = (d.e, d.d, d.s);
        if un.first_item == p {
            self.g
                .wait(Q::Load, Q::Vector, back(&self.ev.unit_raw_free, it.u, 1))?;
            let head = un.b * d.h + un.h;
            let rows = [
                (f.q + head * s * dd * e, self.l.q_raw, dd * e),
                (f.o + head * s * dd * 4, self.l.o_raw, dd * 4),
                (self.spec.d_o + head * s * dd * 4, self.l.do_raw, dd * 4),
            ];
            for (hbm, local, rb) in rows {
                self.g.dma(Q::Load, hbm, rb, Mem::Spad, local, rb, s, rb);
            }
            self.g.dma_flat(
                Q::Load,
                f.lse + head * s * 4,
                Mem::Spad,
                self.l.lse_raw,
                s * 4,
            );
            if let Some(mask) = f.key_mask {
                self.g.dma_flat(
                    Q::Load,
                    mask + un.b * s * 4,
                    Mem::Spad,
                    self.l.mask_raw,
                    s * 4,
                );
            }
            self.ev.unit_raw[it.u] = self.g.signal(Q::Load, Q::Vector)?;
        }
        let kvs = self.l.kvs as usize;
        let slot = p % kvs;
        self.g
            .wait(Q::Load, Q::Vector, back(&self.ev.kv_raw_free, p, kvs))?;
        let hk = un.h / (d.h / d.hk);
        let row0 = (un.b * d.hk + hk) * s + it.k0;
        for (base, buf) in [(f.k, self.l.k_raw[slot]), (f.v, self.l.v_raw[slot])] {
            self.g.dma(
                Q::Load,
                base + row0 * dd * e,
                dd * e,
                Mem::Spad,
                buf,
                dd * e,
                it.bc,
                dd * e,
            );
        }
        self.ev.kv_raw[p] = self.g.signal(Q::Load, Q::Vector)?;
        Ok(())
    }

    fn convert(&mut self, p: usize) -> Result<(), String> {
        let kvs = self.l.kvs as usize;
        self.load_ahead(p + kvs - 1)?;
        if self.loaded <= p {
            return Err(format!("item {p} could not be loaded in order"));
        }
        let it = self.items[p];
        let un = self.units[it.u];
        let d = self.d;
        let (e, dd, s, raw) = (d.e, d.d, d.s, d.raw_type());
        if un.first_item == p {
            let slot = it.u % 2;
            self.g.wait(Q::Vector, Q::Load, self.ev.unit_raw[it.u])?;
            self.g
                .wait(Q::Vector, Q::Matrix, back(&self.ev.head_free, it.u, 2))?;
            let (o, dor) = (
                V::T(Mem::Spad, self.l.o_raw, "fp32"),
                V::T(Mem::Spad, self.l.do_raw, "fp32"),
            );
            self.g.vcfg(s, dd, [0, 0, 0, 0]);
            self.g
                .vop("v.bin op=mul,", &[("dst", o), ("a", o), ("b", dor)], "");
            self.g.vop(
                "v.reduce op=sum, axis=rows,",
                &[
                    ("dst", V::T(Mem::Spad, self.l.dvec[slot], "fp32")),
                    ("a", o),
                ],
                ", mode=overwrite",
            );
            let do_op = self.l.do_op[slot].clone();
            split(
                &mut self.g,
                (Mem::Spad, self.l.do_raw, "fp32"),
                dd * 4,
                &do_op,
                dd * 2,
                s,
                dd,
            );
            let q_op = self.l.q_op[slot].clone();
            split(
                &mut self.g,
                (Mem::Spad, self.l.q_raw, raw),
                dd * e,
                &q_op,
                dd * 2,
                s,
                dd,
            );
            self.g.vcfg(s, 1, [0, 0, 0, 0]);
            self.g.vop(
                "v.un op=copy,",
                &[
                    ("dst", V::T(Mem::Spad, self.l.lse[slot], "fp32")),
                    ("a", V::T(Mem::Spad, self.l.lse_raw, "fp32")),
                ],
                "",
            );
            if self.spec.forward.key_mask.is_some() {
                let (mr, bi) = (
                    V::T(Mem::Spad, self.l.mask_raw, "fp32"),
                    V::T(Mem::Spad, self.l.bias[slot], "fp32"),
                );
                self.g.vop(
                    "v.bin op=mul,",
                    &[("dst", bi), ("a", mr), ("b", V::F(reg::ZERO))],
                    "",
                );
                self.g.vop(
                    "v.sel",
                    &[
                        ("dst", bi),
                        ("mask", mr),
                        ("a", bi),
                        ("b", V::F(reg::NEG_INF)),
                    ],
                    "",
                );
            }
            self.ev.unit_raw_free[it.u] = self.g.signal(Q::Vector, Q::Load)?;
        }
        let slot = p % kvs;
        self.g.wait(Q::Vector, Q::Load, self.ev.kv_raw[p])?;
        self.g
            .wait(Q::Vector, Q::Matrix, back(&self.ev.kv_free, p, kvs))?;
        for (raw_buf, op) in [
            (self.l.k_raw[slot], self.l.k_op[slot].clone()),
            (self.l.v_raw[slot], self.l.v_op[slot].clone()),
        ] {
            split(
                &mut self.g,
                (Mem::Spad, raw_buf, raw),
                dd * e,
                &op,
                dd * 2,
                it.bc,
                dd,
            );
        }
        self.ev.kv_raw_free[p] = self.g.signal(Q::Vector, Q::Load)?;
        self.ev.ops[p] = self.g.signal(Q::Vector, Q::Matrix)?;
        Ok(())
    }

    fn sdp(&mut self, n: usize) -> Result<(), String> {
        let blk = self.blocks[n];
        let it = self.items[blk.p];
        let (dd, bc) = (self.d.d, self.d.bc);
        let hs = it.u % 2;
        let ks = blk.p % self.l.kvs as usize;
        self.g.wait(Q::Matrix, Q::Vector, self.ev.ops[blk.p])?;
        self.g.wait(Q::Matrix, Q::Vector, back(&self.ev.go, n, 2))?;
        let pairs = self.d.pairs();
        for (rows_of, keys_of, c) in [
            (&self.l.q_op[hs], &self.l.k_op[ks], self.l.s_acc[n % 2]),
            (&self.l.do_op[hs], &self.l.v_op[ks], self.l.dp_acc[n % 2]),
        ] {
            let a = MatOp {
                terms: rows_of.iter().map(|&t| t + blk.a * dd * 2).collect(),
                stride: dd * 2,
                transposed: false,
            };
            let b = MatOp {
                terms: keys_of.clone(),
                stride: dd * 2,
                transposed: true,
            };
            self.g
                .matmul(&a, &b, c, bc * 4, (blk.rows, dd, it.bc), true, pairs);
        }
        self.ev.s[n] = self.g.signal(Q::Matrix, Q::Vector)?;
        Ok(())
    }

    fn soft(&mut self, n: usize) -> Result<(), String> {
        let blk = self.blocks[n];
        let it = self.items[blk.p];
        let un = self.units[it.u];
        let (bc, slot) = (self.d.bc, it.u % 2);
        let causal = self.spec.forward.causal;
        let masked = self.spec.forward.key_mask.is_some();
        let g = &mut self.g;
        g.wait(Q::Vector, Q::Matrix, self.ev.s[n])?;
        g.wait(Q::Vector, Q::Matrix, back(&self.ev.gr, n, 2))?;
        let (r, w) = (blk.rows, it.bc);
        let st = self.l.s_acc[n % 2];
        let dpt = self.l.dp_acc[n % 2];
        let s_t = V::T(Mem::Acc, st, "fp32");
        let dp_t = V::T(Mem::Acc, dpt, "fp32");
        if causal {
            let diag = (it.k0 + w - 1).saturating_sub(blk.a).min(r);
            if diag > 0 {
                g.vcfg(diag, w, [bc * 4, bc * 4, 0, 0]);
                g.vop(
                    "v.causal",
                    &[("dst", s_t), ("a", s_t)],
                    &format!(", fill=f{}, row={}, col={}", reg::NEG_INF, blk.a, it.k0),
                );
            }
        }
        g.vcfg(r, w, [bc * 4, bc * 4, 0, 0]);
        if masked {
            g.vop(
                "v.bin op=add,",
                &[
                    ("dst", s_t),
                    ("a", s_t),
                    ("b", V::Row(Mem::Spad, self.l.bias[slot] + it.k0 * 4)),
                ],
                "",
            );
        }
        g.vop(
            "v.axpby",
            &[
                ("dst", s_t),
                ("a", s_t),
                ("b", V::Col(Mem::Spad, self.l.lse[slot] + blk.a * 4)),
            ],
            &format!(", alpha=f{}, beta=f{}", reg::SCALE, reg::MINUS_ONE),
        );
        g.vop(
            "v.axpby",
            &[
                ("dst", dp_t),
                ("a", dp_t),
                ("b", V::Col(Mem::Spad, self.l.dvec[slot] + blk.a * 4)),
            ],
            &format!(", alpha=f{}, beta=f{}", reg::SCALE, reg::MINUS_SCALE),
        );
        let (p, ds) = (self.l.p[n % 2].clone(), self.l.ds[n % 2].clone());
        if p.len() == 1 {
            g.vcfg(r, w, [bc * 2, bc * 4, 0, 0]);
            let pt = V::T(Mem::Spad, p[0], "bf16");
            g.vop("v.un op=exp,", &[("dst", pt), ("a", s_t)], "");
            g.vcfg(r, w, [bc * 2, bc * 4, bc * 2, 0]);
            g.vop(
                "v.bin op=mul,",
                &[
                    ("dst", V::T(Mem::Spad, ds[0], "bf16")),
                    ("a", dp_t),
                    ("b", pt),
                ],
                "",
            );
        } else {
            g.vop("v.un op=exp,", &[("dst", s_t), ("a", s_t)], "");
            g.vcfg(r, w, [bc * 4, bc * 4, bc * 4, 0]);
            g.vop(
                "v.bin op=mul,",
                &[("dst", dp_t), ("a", dp_t), ("b", s_t)],
                "",
            );
            split(g, (Mem::Acc, st, "fp32"), bc * 4, &p, bc * 2, r, w);
            split(g, (Mem::Acc, dpt, "fp32"), bc * 4, &ds, bc * 2, r, w);
        }
        if blk.first_of_unit {
            let dqs = self.l.dq.len();
            g.wait(Q::Vector, Q::Store, back(&self.ev.dq_stored, it.u, dqs))?;
            if un.first_in_group {
                g.wait(Q::Vector, Q::Store, back(&self.ev.dkv_stored, un.grp, 1))?;
            }
        }
        self.ev.go[n] = g.signal(Q::Vector, Q::Matrix)?;
        Ok(())
    }

    fn grads(&mut self, n: usize) -> Result<(), String> {
        let blk = self.blocks[n];
        let it = self.items[blk.p];
        let un = self.units[it.u];
        let (dd, bc) = (self.d.d, self.d.bc);
        let hs = it.u % 2;
        let ks = blk.p % self.l.kvs as usize;
        self.g.wait(Q::Matrix, Q::Vector, self.ev.go[n])?;
        let pairs = self.d.pairs();
        let fresh = un.first_in_group && blk.first_of_item;
        for (scores, rows_of, c) in [
            (&self.l.p[n % 2], &self.l.do_op[hs], self.l.dv),
            (&self.l.ds[n % 2], &self.l.q_op[hs], self.l.dk),
        ] {
            let a = MatOp {
                terms: scores.clone(),
                stride: bc * 2,
                transposed: true,
            };
            let b = MatOp {
                terms: rows_of.iter().map(|&t| t + blk.a * dd * 2).collect(),
                stride: dd * 2,
                transposed: false,
            };
            self.g.matmul(
                &a,
                &b,
                c + it.k0 * dd * 4,
                dd * 4,
                (it.bc, blk.rows, dd),
                fresh,
                pairs,
            );
        }
        let a = MatOp {
            terms: self.l.ds[n % 2].clone(),
            stride: bc * 2,
            transposed: false,
        };
        let b = MatOp {
            terms: self.l.k_op[ks].clone(),
            stride: dd * 2,
            transposed: false,
        };
        self.g.matmul(
            &a,
            &b,
            self.l.dq[it.u % self.l.dq.len()] + blk.a * dd * 4,
            dd * 4,
            (blk.rows, it.bc, dd),
            it.j == 0,
            pairs,
        );
        self.ev.gr[n] = self.g.signal(Q::Matrix, Q::Vector)?;
        if blk.last_of_item {
            self.ev.kv_free[blk.p] = self.ev.gr[n];
        }
        if un.last_block == n {
            self.ev.head_free[it.u] = self.ev.gr[n];
        }
        Ok(())
    }

    fn finalize(&mut self, u: usize) -> Result<(), String> {
        let last = self.units[u].last_block;
        self.g.wait(Q::Vector, Q::Matrix, self.ev.gr[last])?;
        self.ev.dq_fin[u] = self.g.signal(Q::Vector, Q::Store)?;
        Ok(())
    }

    fn store(&mut self, u: usize) -> Result<(), String> {
        let un = self.units[u];
        let d = self.d;
        let (s, dd) = (d.s, d.d);
        self.g.wait(Q::Store, Q::Vector, self.ev.dq_fin[u])?;
        let head = un.b * d.h + un.h;
        let rb = dd * 4;
        self.g.dma(
            Q::Store,
            self.spec.dq + head * s * rb,
            rb,
            Mem::Acc,
            self.l.dq[u % self.l.dq.len()],
            rb,
            s,
            rb,
        );
        self.ev.dq_stored[u] = self.g.signal(Q::Store, Q::Vector)?;
        if un.last_in_group {
            let kv = un.grp as u64;
            for (hbm, local) in [(self.spec.dk, self.l.dk), (self.spec.dv, self.l.dv)] {
                self.g
                    .dma(Q::Store, hbm + kv * s * rb, rb, Mem::Acc, local, rb, s, rb);
            }
            self.ev.dkv_stored[un.grp] = self.g.signal(Q::Store, Q::Vector)?;
        }
        Ok(())
    }
}
