//! Masked softmax and scaled dot-product attention (multi-head and
//! grouped-query) over one sequence, with hand-written backward passes.

/// Which keys a query may attend to.
#[derive(Debug, Clone, Copy)]
pub enum Mask<'a> {
    /// Every key.
    Full,
    /// Keys at positions `<=` the query's (decoder models).
    Causal,
    /// Keys whose flag is true (BERT's attention mask, one flag per position).
    Keys(&'a [bool]),
}

impl Mask<'_> {
    /// Whether query `q` may see key `k`.
    pub fn allows(&self, q: usize, k: usize) -> bool {
        match self {
            Mask::Full => true,
            Mask::Causal => k <= q,
            Mask::Keys(keep) => keep[k],
        }
    }
}

/// Row-wise softmax of `x[rows, cols]` over the allowed entries; masked
/// entries get probability exactly 0 (as adding a very negative number does
/// in PyTorch). Every row must allow at least one entry.
pub fn softmax_masked(x: &[f64], rows: usize, cols: usize, mask: Mask) -> Vec<f64> {
    let mut p = vec![0.0; rows * cols];
    for r in 0..rows {
        let max = (0..cols)
            .filter(|&c| mask.allows(r, c))
            .map(|c| x[r * cols + c])
            .fold(f64::NEG_INFINITY, f64::max);
        let mut sum = 0.0;
        for c in 0..cols {
            if mask.allows(r, c) {
                let e = (x[r * cols + c] - max).exp();
                p[r * cols + c] = e;
                sum += e;
            }
        }
        for c in 0..cols {
            p[r * cols + c] /= sum;
        }
    }
    p
}

/// Backward of [`softmax_masked`] given its output `p`: `p * (dy - sum(dy p))`.
pub fn softmax_backward(p: &[f64], dy: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut dx = vec![0.0; rows * cols];
    for r in 0..rows {
        let dot: f64 = (0..cols).map(|c| dy[r * cols + c] * p[r * cols + c]).sum();
        for c in 0..cols {
            dx[r * cols + c] = p[r * cols + c] * (dy[r * cols + c] - dot);
        }
    }
    dx
}

/// Shape of one attention call over a single sequence.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub seq: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; divides `heads`. Query head `h` reads key/value head
    /// `h / (heads / kv_heads)`, as Hugging Face `repeat_kv` arranges them.
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttnShape {
    fn kv_of(&self, h: usize) -> usize {
        h / (self.heads / self.kv_heads)
    }
}

/// `softmax(q k^T / sqrt(head_dim) + mask) v` per head. `q` is
/// `[seq, heads * head_dim]`, `k` and `v` are `[seq, kv_heads * head_dim]`;
/// the output is `[seq, heads * head_dim]`. Also returns the probabilities,
/// `[heads][seq * seq]`, for the backward.
pub fn attention(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    s: AttnShape,
    mask: Mask,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let (n, dh) = (s.seq, s.head_dim);
    let qw = s.heads * dh;
    let kw = s.kv_heads * dh;
    let scale = 1.0 / (dh as f64).sqrt();
    let mut out = vec![0.0; n * qw];
    let mut probs = Vec::with_capacity(s.heads);
    for h in 0..s.heads {
        let g = s.kv_of(h);
        let mut scores = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let dot: f64 = (0..dh)
                    .map(|d| q[i * qw + h * dh + d] * k[j * kw + g * dh + d])
                    .sum();
                scores[i * n + j] = dot * scale;
            }
        }
        let p = softmax_masked(&scores, n, n, mask);
        for i in 0..n {
            for j in 0..n {
                let pij = p[i * n + j];
                for d in 0..dh {
                    out[i * qw + h * dh + d] += pij * v[j * kw + g * dh + d];
                }
            }
        }
        probs.push(p);
    }
    (out, probs)
}

/// Backward of [`attention`]: `(dq, dk, dv)`; key/value gradients of the
/// query heads sharing a key/value head are summed.
pub fn attention_backward(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    probs: &[Vec<f64>],
    dout: &[f64],
    s: AttnShape,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (n, dh) = (s.seq, s.head_dim);
    let qw = s.heads * dh;
    let kw = s.kv_heads * dh;
    let scale = 1.0 / (dh as f64).sqrt();
    let mut dq = vec![0.0; q.len()];
    let mut dk = vec![0.0; k.len()];
    let mut dv = vec![0.0; v.len()];
    for (h, p) in probs.iter().enumerate() {
        let g = s.kv_of(h);
        let mut dp = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                let mut acc = 0.0;
                for d in 0..dh {
                    let go = dout[i * qw + h * dh + d];
                    acc += go * v[j * kw + g * dh + d];
                    dv[j * kw + g * dh + d] += p[i * n + j] * go;
                }
                dp[i * n + j] = acc;
            }
        }
        let ds = softmax_backward(p, &dp, n, n);
        for i in 0..n {
            for j in 0..n {
                let gs = ds[i * n + j] * scale;
                if gs == 0.0 {
                    continue;
                }
                for d in 0..dh {
                    dq[i * qw + h * dh + d] += gs * k[j * kw + g * dh + d];
                    dk[j * kw + g * dh + d] += gs * q[i * qw + h * dh + d];
                }
            }
        }
    }
    (dq, dk, dv)
}
