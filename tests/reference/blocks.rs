//! Pieces the three models share: attention over every sequence of a batch,
//! and slicing the columns of a fused projection.

use super::attention::{attention, attention_backward, AttnShape, Mask};
use super::model::Prepared;

/// Probabilities of every head of every sequence: `[batch][head][seq * seq]`.
pub type Probs = Vec<Vec<Vec<f64>>>;

/// The mask of sequence `b`: causal for decoders, key padding (or none) for BERT.
pub fn mask_of(p: &Prepared, b: usize, causal: bool) -> Mask<'_> {
    match (&p.keys, causal) {
        (_, true) => Mask::Causal,
        (Some(k), false) => Mask::Keys(&k[b * p.seq..(b + 1) * p.seq]),
        (None, false) => Mask::Full,
    }
}

/// [`attention`] on each sequence of the batch; rows are `(b, t)`.
pub fn attend_all(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    p: &Prepared,
    s: AttnShape,
    causal: bool,
) -> (Vec<f64>, Probs) {
    let (qw, kw) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    let mut out = Vec::with_capacity(q.len());
    let mut probs = Vec::with_capacity(p.batch);
    for b in 0..p.batch {
        let rq = b * p.seq * qw..(b + 1) * p.seq * qw;
        let rk = b * p.seq * kw..(b + 1) * p.seq * kw;
        let (o, pr) = attention(&q[rq], &k[rk.clone()], &v[rk], s, mask_of(p, b, causal));
        out.extend(o);
        probs.push(pr);
    }
    (out, probs)
}

/// Backward of [`attend_all`]: `(dq, dk, dv)`.
pub fn attend_all_backward(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    probs: &Probs,
    dout: &[f64],
    p: &Prepared,
    s: AttnShape,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (qw, kw) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
    let (mut dq, mut dk, mut dv) = (Vec::new(), Vec::new(), Vec::new());
    for (b, pr) in probs.iter().enumerate() {
        let rq = b * p.seq * qw..(b + 1) * p.seq * qw;
        let rk = b * p.seq * kw..(b + 1) * p.seq * kw;
        let (a, bk, c) =
            attention_backward(&q[rq.clone()], &k[rk.clone()], &v[rk], pr, &dout[rq], s);
        dq.extend(a);
        dk.extend(bk);
        dv.extend(c);
    }
    (dq, dk, dv)
}

/// Columns `from..from + width` of `x[rows, cols]`.
pub fn columns(x: &[f64], rows: usize, cols: usize, from: usize, width: usize) -> Vec<f64> {
    (0..rows)
        .flat_map(|r| x[r * cols + from..r * cols + from + width].iter().copied())
        .collect()
}

/// Writes `part[rows, width]` into columns `from..from + width` of `x[rows, cols]`.
pub fn set_columns(
    x: &mut [f64],
    part: &[f64],
    rows: usize,
    cols: usize,
    from: usize,
    width: usize,
) {
    for r in 0..rows {
        x[r * cols + from..r * cols + from + width]
            .copy_from_slice(&part[r * width..(r + 1) * width]);
    }
}
