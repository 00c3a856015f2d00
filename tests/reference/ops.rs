//! Element-wise and row-wise ops with their hand-written backward passes:
//! matmul and linear layers (both weight layouts), embedding gather and
//! scatter-add, LayerNorm, RMSNorm, GELU (tanh and erf), SiLU, SwiGLU,
//! rotary position embeddings and the residual add.
//!
//! Every op takes row-major slices with explicit dimensions and returns
//! fresh vectors; a backward takes the upstream gradient `dy` and returns the
//! gradient of each input. Matrices are `[rows, cols]`.

/// How a weight matrix is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `torch.nn.Linear`: `W` is `[out, in]` and `y = x W^T + b`.
    OutIn,
    /// Hugging Face GPT-2 `Conv1D`: `W` is `[in, out]` and `y = x W + b`.
    InOut,
}

/// `c[m, n] = a[m, k] b[k, n]`.
pub fn matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p];
            for j in 0..n {
                c[i * n + j] += x * b[p * n + j];
            }
        }
    }
    c
}

/// Gradients of `matmul`: `(da, db) = (dc b^T, a^T dc)`.
pub fn matmul_backward(
    a: &[f64],
    b: &[f64],
    dc: &[f64],
    m: usize,
    k: usize,
    n: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut da = vec![0.0; m * k];
    let mut db = vec![0.0; k * n];
    for i in 0..m {
        for p in 0..k {
            let mut s = 0.0;
            for j in 0..n {
                s += dc[i * n + j] * b[p * n + j];
                db[p * n + j] += a[i * k + p] * dc[i * n + j];
            }
            da[i * k + p] = s;
        }
    }
    (da, db)
}

/// Element `(i, o)` of the logical `[in, out]` matrix stored in `w`.
fn w_at(w: &[f64], layout: Layout, d_in: usize, d_out: usize, i: usize, o: usize) -> f64 {
    match layout {
        Layout::OutIn => w[o * d_in + i],
        Layout::InOut => w[i * d_out + o],
    }
}

/// A dense layer over `n` rows: `y[n, d_out] = x[n, d_in] W + b`, with `W`
/// stored as `layout` says.
pub fn linear(
    x: &[f64],
    w: &[f64],
    b: Option<&[f64]>,
    n: usize,
    d_in: usize,
    d_out: usize,
    layout: Layout,
) -> Vec<f64> {
    let mut y = vec![0.0; n * d_out];
    for r in 0..n {
        for o in 0..d_out {
            let mut s = b.map_or(0.0, |b| b[o]);
            for i in 0..d_in {
                s += x[r * d_in + i] * w_at(w, layout, d_in, d_out, i, o);
            }
            y[r * d_out + o] = s;
        }
    }
    y
}

/// Gradients of a dense layer.
#[derive(Debug, Clone)]
pub struct LinearGrads {
    pub dx: Vec<f64>,
    /// In the same layout as the weight.
    pub dw: Vec<f64>,
    pub db: Vec<f64>,
}

/// Backward of [`linear`]; `db` is the column sum of `dy` (ignore it for a
/// layer without bias).
pub fn linear_backward(
    x: &[f64],
    w: &[f64],
    dy: &[f64],
    n: usize,
    d_in: usize,
    d_out: usize,
    layout: Layout,
) -> LinearGrads {
    let mut dx = vec![0.0; n * d_in];
    let mut dw = vec![0.0; d_in * d_out];
    let mut db = vec![0.0; d_out];
    for r in 0..n {
        for o in 0..d_out {
            let g = dy[r * d_out + o];
            db[o] += g;
            for i in 0..d_in {
                dx[r * d_in + i] += g * w_at(w, layout, d_in, d_out, i, o);
                let idx = match layout {
                    Layout::OutIn => o * d_in + i,
                    Layout::InOut => i * d_out + o,
                };
                dw[idx] += g * x[r * d_in + i];
            }
        }
    }
    LinearGrads { dx, dw, db }
}

/// Gathers rows `ids` of `table[_, dim]`. Callers check the ids are in range.
pub fn embedding(ids: &[usize], table: &[f64], dim: usize) -> Vec<f64> {
    ids.iter()
        .flat_map(|&i| table[i * dim..(i + 1) * dim].iter().copied())
        .collect()
}

/// Backward of [`embedding`]: scatter-adds the rows of `dy` into a zero
/// `[vocab, dim]` table (repeated ids accumulate).
pub fn embedding_backward(ids: &[usize], dy: &[f64], vocab: usize, dim: usize) -> Vec<f64> {
    let mut dt = vec![0.0; vocab * dim];
    for (r, &i) in ids.iter().enumerate() {
        for j in 0..dim {
            dt[i * dim + j] += dy[r * dim + j];
        }
    }
    dt
}

/// What LayerNorm keeps for its backward.
#[derive(Debug, Clone)]
pub struct NormCache {
    /// LayerNorm: the normalised input; RMSNorm: the input itself.
    pub xhat: Vec<f64>,
    /// `1 / sqrt(var + eps)` (LayerNorm) or `1 / sqrt(mean(x^2) + eps)` (RMSNorm), per row.
    pub rstd: Vec<f64>,
}

/// `torch.nn.LayerNorm` over the last dimension (biased variance).
pub fn layer_norm(
    x: &[f64],
    w: &[f64],
    b: &[f64],
    n: usize,
    d: usize,
    eps: f64,
) -> (Vec<f64>, NormCache) {
    let mut y = vec![0.0; n * d];
    let mut xhat = vec![0.0; n * d];
    let mut rstd = vec![0.0; n];
    for r in 0..n {
        let row = &x[r * d..(r + 1) * d];
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        let rs = 1.0 / (var + eps).sqrt();
        rstd[r] = rs;
        for j in 0..d {
            let h = (row[j] - mean) * rs;
            xhat[r * d + j] = h;
            y[r * d + j] = h * w[j] + b[j];
        }
    }
    (y, NormCache { xhat, rstd })
}

/// Backward of [`layer_norm`]: `(dx, dw, db)`.
pub fn layer_norm_backward(
    c: &NormCache,
    w: &[f64],
    dy: &[f64],
    n: usize,
    d: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; n * d];
    let mut dw = vec![0.0; d];
    let mut db = vec![0.0; d];
    for r in 0..n {
        let mut sum_g = 0.0;
        let mut sum_gh = 0.0;
        for j in 0..d {
            let g = dy[r * d + j] * w[j];
            let h = c.xhat[r * d + j];
            sum_g += g;
            sum_gh += g * h;
            dw[j] += dy[r * d + j] * h;
            db[j] += dy[r * d + j];
        }
        for j in 0..d {
            let g = dy[r * d + j] * w[j];
            let h = c.xhat[r * d + j];
            dx[r * d + j] = c.rstd[r] * (g - sum_g / d as f64 - h * sum_gh / d as f64);
        }
    }
    (dx, dw, db)
}

/// Hugging Face `LlamaRMSNorm`: `w * x / sqrt(mean(x^2) + eps)`.
pub fn rms_norm(x: &[f64], w: &[f64], n: usize, d: usize, eps: f64) -> (Vec<f64>, NormCache) {
    let mut y = vec![0.0; n * d];
    let mut rstd = vec![0.0; n];
    for r in 0..n {
        let row = &x[r * d..(r + 1) * d];
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let rs = 1.0 / (ms + eps).sqrt();
        rstd[r] = rs;
        for j in 0..d {
            y[r * d + j] = w[j] * row[j] * rs;
        }
    }
    let xhat = x.to_vec();
    (y, NormCache { xhat, rstd })
}

/// Backward of [`rms_norm`]: `(dx, dw)`.
pub fn rms_norm_backward(
    c: &NormCache,
    w: &[f64],
    dy: &[f64],
    n: usize,
    d: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; n * d];
    let mut dw = vec![0.0; d];
    for r in 0..n {
        let rs = c.rstd[r];
        let x = &c.xhat[r * d..(r + 1) * d];
        let dot: f64 = (0..d).map(|j| dy[r * d + j] * w[j] * x[j]).sum();
        for j in 0..d {
            dw[j] += dy[r * d + j] * x[j] * rs;
            dx[r * d + j] = rs * dy[r * d + j] * w[j] - x[j] * rs * rs * rs * dot / d as f64;
        }
    }
    (dx, dw)
}

/// Element-wise activations, named as in Hugging Face `ACT2FN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `gelu_new` / `gelu_pytorch_tanh`: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
    GeluTanh,
    /// `gelu`: `0.5 x (1 + erf(x / sqrt 2))`.
    GeluErf,
    /// `silu` / `swish`: `x sigmoid(x)`.
    Silu,
}

const GELU_C: f64 = 0.797_884_560_802_865_4; // sqrt(2 / pi)

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Activation {
    /// Parses a Hugging Face `hidden_act` / `activation_function` name.
    pub fn from_hf(name: &str) -> Option<Activation> {
        match name {
            "gelu_new" | "gelu_pytorch_tanh" => Some(Activation::GeluTanh),
            "gelu" => Some(Activation::GeluErf),
            "silu" | "swish" => Some(Activation::Silu),
            _ => None,
        }
    }

    /// The activation at `x`.
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Activation::GeluTanh => 0.5 * x * (1.0 + (GELU_C * (x + 0.044715 * x * x * x)).tanh()),
            Activation::GeluErf => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            Activation::Silu => x * sigmoid(x),
        }
    }

    /// Its derivative at `x`.
    pub fn derivative(self, x: f64) -> f64 {
        match self {
            Activation::GeluTanh => {
                let t = (GELU_C * (x + 0.044715 * x * x * x)).tanh();
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * x * x)
            }
            Activation::GeluErf => {
                let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
                0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)) + x * pdf
            }
            Activation::Silu => {
                let s = sigmoid(x);
                s * (1.0 + x * (1.0 - s))
            }
        }
    }
}

/// The activation applied element-wise.
pub fn activation(act: Activation, x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| act.apply(v)).collect()
}

/// Backward of [`activation`].
pub fn activation_backward(act: Activation, x: &[f64], dy: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| g * act.derivative(v))
        .collect()
}

/// The gated MLP product of Llama: `act(gate) * up`, element-wise.
pub fn swiglu(act: Activation, gate: &[f64], up: &[f64]) -> Vec<f64> {
    gate.iter()
        .zip(up)
        .map(|(&g, &u)| act.apply(g) * u)
        .collect()
}

/// Backward of [`swiglu`]: `(dgate, dup)`.
pub fn swiglu_backward(
    act: Activation,
    gate: &[f64],
    up: &[f64],
    dy: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let dgate = (0..gate.len())
        .map(|i| dy[i] * up[i] * act.derivative(gate[i]))
        .collect();
    let dup = (0..gate.len())
        .map(|i| dy[i] * act.apply(gate[i]))
        .collect();
    (dgate, dup)
}

/// The residual connection `a + b`; its backward passes `dy` to both inputs.
pub fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// `cos` and `sin` tables `[seq, head_dim]` of Hugging Face's Llama rotary
/// embedding: `inv_freq[i] = theta^(-2i/head_dim)`, angles
/// `pos * cat(inv_freq, inv_freq)`, positions `0..seq`.
pub fn rope_tables(seq: usize, head_dim: usize, theta: f64) -> (Vec<f64>, Vec<f64>) {
    let half = head_dim / 2;
    let mut cos = vec![0.0; seq * head_dim];
    let mut sin = vec![0.0; seq * head_dim];
    for p in 0..seq {
        for j in 0..head_dim {
            let i = j % half;
            let inv = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
            let a = p as f64 * inv;
            cos[p * head_dim + j] = a.cos();
            sin[p * head_dim + j] = a.sin();
        }
    }
    (cos, sin)
}

/// Applies rotary embeddings to `x[seq, heads * head_dim]` (one sequence),
/// `x * cos + rotate_half(x) * sin` per head, where
/// `rotate_half(x) = cat(-x[half..], x[..half])`. `head_dim` is even.
pub fn rotary(x: &[f64], seq: usize, heads: usize, head_dim: usize, theta: f64) -> Vec<f64> {
    let (cos, sin) = rope_tables(seq, head_dim, theta);
    let half = head_dim / 2;
    let mut y = vec![0.0; x.len()];
    for p in 0..seq {
        for h in 0..heads {
            let base = (p * heads + h) * head_dim;
            for j in 0..head_dim {
                let rot = if j < half {
                    -x[base + j + half]
                } else {
                    x[base + j - half]
                };
                y[base + j] = x[base + j] * cos[p * head_dim + j] + rot * sin[p * head_dim + j];
            }
        }
    }
    y
}

/// Backward of [`rotary`] (the transpose of the rotation).
pub fn rotary_backward(
    dy: &[f64],
    seq: usize,
    heads: usize,
    head_dim: usize,
    theta: f64,
) -> Vec<f64> {
    let (cos, sin) = rope_tables(seq, head_dim, theta);
    let half = head_dim / 2;
    let mut dx = vec![0.0; dy.len()];
    for p in 0..seq {
        for h in 0..heads {
            let base = (p * heads + h) * head_dim;
            for j in 0..head_dim {
                let t = p * head_dim;
                dx[base + j] += dy[base + j] * cos[t + j];
                // y[j] (j < half) took -x[j + half]; y[j] (j >= half) took x[j - half].
                if j < half {
                    dx[base + j + half] -= dy[base + j] * sin[t + j];
                } else {
                    dx[base + j - half] += dy[base + j] * sin[t + j];
                }
            }
        }
    }
    dx
}
