//! Cross-entropy with PyTorch's `ignore_index = -100` and mean over the
//! counted tokens, and Hugging Face's causal-LM label shift.

use super::error::RefError;

/// The label PyTorch and Hugging Face skip.
pub const IGNORE: i64 = -100;

/// Result of [`cross_entropy`].
#[derive(Debug, Clone)]
pub struct CrossEntropy {
    /// Mean loss over counted rows; NaN when no row counts (as PyTorch gives).
    pub loss: f64,
    /// Rows whose target is not [`IGNORE`].
    pub count: usize,
    /// Softmax of the logits, `[rows, vocab]`, kept for the backward.
    pub probs: Vec<f64>,
}

/// Mean cross-entropy of `logits[rows, vocab]` against `targets[rows]`.
///
/// # Errors
/// A target that is neither [`IGNORE`] nor in `0..vocab`.
pub fn cross_entropy(
    logits: &[f64],
    targets: &[i64],
    vocab: usize,
) -> Result<CrossEntropy, RefError> {
    let rows = targets.len();
    let mut probs = vec![0.0; rows * vocab];
    let mut total = 0.0;
    let mut count = 0;
    for (r, &t) in targets.iter().enumerate() {
        let row = &logits[r * vocab..(r + 1) * vocab];
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|x| (x - max).exp()).sum();
        for c in 0..vocab {
            probs[r * vocab + c] = (row[c] - max).exp() / sum;
        }
        if t == IGNORE {
            continue;
        }
        if t < 0 || t as usize >= vocab {
            return Err(RefError::Input {
                what: "labels",
                rule: format!("label {t} at row {r} is neither -100 nor in 0..{vocab}"),
            });
        }
        total += max + sum.ln() - row[t as usize];
        count += 1;
    }
    Ok(CrossEntropy {
        loss: total / count as f64,
        count,
        probs,
    })
}

/// Backward of [`cross_entropy`] scaled by `dloss`:
/// `(softmax - onehot) / count` on counted rows, 0 on ignored ones.
pub fn cross_entropy_backward(
    ce: &CrossEntropy,
    targets: &[i64],
    vocab: usize,
    dloss: f64,
) -> Vec<f64> {
    let mut d = vec![0.0; ce.probs.len()];
    if ce.count == 0 {
        return d;
    }
    let s = dloss / ce.count as f64;
    for (r, &t) in targets.iter().enumerate() {
        if t == IGNORE {
            continue;
        }
        for c in 0..vocab {
            d[r * vocab + c] = ce.probs[r * vocab + c] * s;
        }
        d[r * vocab + t as usize] -= s;
    }
    d
}

/// Hugging Face's causal-LM shift over `labels[batch, seq]`: the logits at
/// `(b, t)` predict `labels[b, t + 1]`; the last position of each sequence
/// predicts nothing ([`IGNORE`]).
pub fn shift_labels(labels: &[i64], batch: usize, seq: usize) -> Vec<i64> {
    let mut out = vec![IGNORE; batch * seq];
    for b in 0..batch {
        for t in 0..seq.saturating_sub(1) {
            out[b * seq + t] = labels[b * seq + t + 1];
        }
    }
    out
}
