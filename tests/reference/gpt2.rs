//! GPT-2 (`GPT2LMHeadModel`): token plus learned position embeddings,
//! pre-LN blocks of causal multi-head attention and a GELU MLP with
//! `Conv1D` weights (`y = x W + b`, `W` stored `[in, out]`), a final
//! LayerNorm, and the LM head tied to `wte` unless the config unties it.

use super::attention::AttnShape;
use super::blocks::{attend_all, attend_all_backward, columns, set_columns, Probs};
use super::config::RefConfig;
use super::error::RefError;
use super::loss::{cross_entropy, cross_entropy_backward};
use super::model::Prepared;
use super::ops::{
    activation, activation_backward, add, embedding, embedding_backward, layer_norm,
    layer_norm_backward, linear, linear_backward, Layout, NormCache,
};
use super::weights::{untied_head_name, Weights};

/// What one block keeps for its backward.
struct Block {
    ln1: NormCache,
    a: Vec<f64>,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    probs: Probs,
    o: Vec<f64>,
    ln2: NormCache,
    m: Vec<f64>,
    f: Vec<f64>,
    g: Vec<f64>,
}

/// Loss and gradients of one batch.
pub fn run(c: &RefConfig, w: &Weights, p: &Prepared) -> Result<(f64, Weights), RefError> {
    let (n, e, i, v) = (p.rows(), c.hidden_size, c.intermediate_size, c.vocab_size);
    let shape = AttnShape {
        seq: p.seq,
        heads: c.num_heads,
        kv_heads: c.num_heads,
        head_dim: c.head_dim,
    };
    let name = |l: usize, s: &str| format!("h.{l}.{s}");
    let pos: Vec<usize> = (0..n).map(|r| r % p.seq).collect();
    let head = if c.tie_word_embeddings {
        "wte.weight"
    } else {
        untied_head_name(c.family)
    };

    // Forward.
    let mut x = add(
        &embedding(&p.ids, w.get("wte.weight")?, e),
        &embedding(&pos, w.get("wpe.weight")?, e),
    );
    let mut blocks = Vec::with_capacity(c.num_layers);
    for l in 0..c.num_layers {
        let g = |s: &str| w.get(&name(l, s));
        let (a, ln1) = layer_norm(&x, g("ln_1.weight")?, g("ln_1.bias")?, n, e, c.norm_eps);
        let qkv = linear(
            &a,
            g("attn.c_attn.weight")?,
            Some(g("attn.c_attn.bias")?),
            n,
            e,
            3 * e,
            Layout::InOut,
        );
        let (q, k, vv) = (
            columns(&qkv, n, 3 * e, 0, e),
            columns(&qkv, n, 3 * e, e, e),
            columns(&qkv, n, 3 * e, 2 * e, e),
        );
        let (o, probs) = attend_all(&q, &k, &vv, p, shape, true);
        let proj = linear(
            &o,
            g("attn.c_proj.weight")?,
            Some(g("attn.c_proj.bias")?),
            n,
            e,
            e,
            Layout::InOut,
        );
        let x_mid = add(&x, &proj);
        let (m, ln2) = layer_norm(&x_mid, g("ln_2.weight")?, g("ln_2.bias")?, n, e, c.norm_eps);
        let f = linear(
            &m,
            g("mlp.c_fc.weight")?,
            Some(g("mlp.c_fc.bias")?),
            n,
            e,
            i,
            Layout::InOut,
        );
        let act = activation(c.activation, &f);
        let out = linear(
            &act,
            g("mlp.c_proj.weight")?,
            Some(g("mlp.c_proj.bias")?),
            n,
            i,
            e,
            Layout::InOut,
        );
        let x_next = add(&x_mid, &out);
        blocks.push(Block {
            ln1,
            a,
            q,
            k,
            v: vv,
            probs,
            o,
            ln2,
            m,
            f,
            g: act,
        });
        x = x_next;
    }
    let (hf, lnf) = layer_norm(
        &x,
        w.get("ln_f.weight")?,
        w.get("ln_f.bias")?,
        n,
        e,
        c.norm_eps,
    );
    let logits = linear(&hf, w.get(head)?, None, n, e, v, Layout::OutIn);
    let ce = cross_entropy(&logits, &p.targets, v)?;

    // Backward.
    let mut grads = w.zeros_like();
    let dlogits = cross_entropy_backward(&ce, &p.targets, v, 1.0);
    let lg = linear_backward(&hf, w.get(head)?, &dlogits, n, e, v, Layout::OutIn);
    grads.accumulate(head, &[v, e], &lg.dw);
    let (mut dx, dw, db) = layer_norm_backward(&lnf, w.get("ln_f.weight")?, &lg.dx, n, e);
    grads.accumulate("ln_f.weight", &[e], &dw);
    grads.accumulate("ln_f.bias", &[e], &db);
    for (l, bk) in blocks.iter().enumerate().rev() {
        let g = |s: &str| w.get(&name(l, s));
        let mut put = |s: &str, shape: &[usize], d: &[f64]| grads.accumulate(&name(l, s), shape, d);
        // MLP branch: x = x_mid + c_proj(act(c_fc(ln_2(x_mid)))).
        let r = linear_backward(&bk.g, g("mlp.c_proj.weight")?, &dx, n, i, e, Layout::InOut);
        put("mlp.c_proj.weight", &[i, e], &r.dw);
        put("mlp.c_proj.bias", &[e], &r.db);
        let df = activation_backward(c.activation, &bk.f, &r.dx);
        let r = linear_backward(&bk.m, g("mlp.c_fc.weight")?, &df, n, e, i, Layout::InOut);
        put("mlp.c_fc.weight", &[e, i], &r.dw);
        put("mlp.c_fc.bias", &[i], &r.db);
        let (dm, dw, db) = layer_norm_backward(&bk.ln2, g("ln_2.weight")?, &r.dx, n, e);
        put("ln_2.weight", &[e], &dw);
        put("ln_2.bias", &[e], &db);
        dx = add(&dx, &dm);
        // Attention branch: x_mid = x + c_proj(attn(c_attn(ln_1(x)))).
        let r = linear_backward(&bk.o, g("attn.c_proj.weight")?, &dx, n, e, e, Layout::InOut);
        put("attn.c_proj.weight", &[e, e], &r.dw);
        put("attn.c_proj.bias", &[e], &r.db);
        let (dq, dk, dv) = attend_all_backward(&bk.q, &bk.k, &bk.v, &bk.probs, &r.dx, p, shape);
        let mut dqkv = vec![0.0; n * 3 * e];
        set_columns(&mut dqkv, &dq, n, 3 * e, 0, e);
        set_columns(&mut dqkv, &dk, n, 3 * e, e, e);
        set_columns(&mut dqkv, &dv, n, 3 * e, 2 * e, e);
        let r = linear_backward(
            &bk.a,
            g("attn.c_attn.weight")?,
            &dqkv,
            n,
            e,
            3 * e,
            Layout::InOut,
        );
        put("attn.c_attn.weight", &[e, 3 * e], &r.dw);
        put("attn.c_attn.bias", &[3 * e], &r.db);
        let (da, dw, db) = layer_norm_backward(&bk.ln1, g("ln_1.weight")?, &r.dx, n, e);
        put("ln_1.weight", &[e], &dw);
        put("ln_1.bias", &[e], &db);
        dx = add(&dx, &da);
    }
    grads.accumulate(
        "wte.weight",
        &[v, e],
        &embedding_backward(&p.ids, &dx, v, e),
    );
    grads.accumulate(
        "wpe.weight",
        &[c.max_positions, e],
        &embedding_backward(&pos, &dx, c.max_positions, e),
    );
    Ok((ce.loss, grads))
}
