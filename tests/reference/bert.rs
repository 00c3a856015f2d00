//! BERT (`BertForMaskedLM`): word + position + token-type embeddings (token
//! types all 0) and LayerNorm, post-LN encoder blocks (self-attention with
//! an optional key padding mask, dense + residual + LayerNorm, GELU MLP +
//! residual + LayerNorm), and the MLM head `LayerNorm(act(dense(x)))`
//! projected onto the word embeddings (tied) plus `cls.predictions.bias`.
//! Weights are `nn.Linear` (`[out, in]`) with bias.

use super::attention::AttnShape;
use super::blocks::{attend_all, attend_all_backward, Probs};
use super::config::RefConfig;
use super::error::RefError;
use super::loss::{cross_entropy, cross_entropy_backward};
use super::model::Prepared;
use super::ops::{
    activation, activation_backward, add, embedding, embedding_backward, layer_norm,
    layer_norm_backward, linear, linear_backward, Layout, NormCache,
};
use super::weights::{untied_head_name, Weights};

/// What one encoder layer keeps for its backward.
struct Block {
    x: Vec<f64>,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    probs: Probs,
    ctx: Vec<f64>,
    ln_attn: NormCache,
    x_mid: Vec<f64>,
    inter: Vec<f64>,
    act: Vec<f64>,
    ln_out: NormCache,
}

/// Loss and gradients of one batch.
pub fn run(c: &RefConfig, w: &Weights, p: &Prepared) -> Result<(f64, Weights), RefError> {
    let (n, h, i, v) = (p.rows(), c.hidden_size, c.intermediate_size, c.vocab_size);
    let shape = AttnShape {
        seq: p.seq,
        heads: c.num_heads,
        kv_heads: c.num_heads,
        head_dim: c.head_dim,
    };
    let name = |l: usize, s: &str| format!("bert.encoder.layer.{l}.{s}");
    let word = "bert.embeddings.word_embeddings.weight";
    let head = if c.tie_word_embeddings {
        word
    } else {
        untied_head_name(c.family)
    };
    let pos: Vec<usize> = (0..n).map(|r| r % p.seq).collect();
    let types = vec![0usize; n];
    // A dense layer `<prefix>.weight` / `<prefix>.bias`.
    let dense =
        |x: &[f64], prefix: &str, d_in: usize, d_out: usize| -> Result<Vec<f64>, RefError> {
            let wt = w.get(&format!("{prefix}.weight"))?;
            let b = w.get(&format!("{prefix}.bias"))?;
            Ok(linear(x, wt, Some(b), n, d_in, d_out, Layout::OutIn))
        };
    let ln = |x: &[f64], prefix: &str| -> Result<(Vec<f64>, NormCache), RefError> {
        let wt = w.get(&format!("{prefix}.weight"))?;
        let b = w.get(&format!("{prefix}.bias"))?;
        Ok(layer_norm(x, wt, b, n, h, c.norm_eps))
    };

    // Forward.
    let e = add(
        &add(
            &embedding(&p.ids, w.get(word)?, h),
            &embedding(
                &pos,
                w.get("bert.embeddings.position_embeddings.weight")?,
                h,
            ),
        ),
        &embedding(
            &types,
            w.get("bert.embeddings.token_type_embeddings.weight")?,
            h,
        ),
    );
    let (mut x, ln_emb) = ln(&e, "bert.embeddings.LayerNorm")?;
    let mut blocks = Vec::with_capacity(c.num_layers);
    for l in 0..c.num_layers {
        let nm = |s: &str| name(l, s);
        let q = dense(&x, &nm("attention.self.query"), h, h)?;
        let k = dense(&x, &nm("attention.self.key"), h, h)?;
        let vv = dense(&x, &nm("attention.self.value"), h, h)?;
        let (ctx, probs) = attend_all(&q, &k, &vv, p, shape, false);
        let ao = dense(&ctx, &nm("attention.output.dense"), h, h)?;
        let (x_mid, ln_attn) = ln(&add(&ao, &x), &nm("attention.output.LayerNorm"))?;
        let inter = dense(&x_mid, &nm("intermediate.dense"), h, i)?;
        let act = activation(c.activation, &inter);
        let out = dense(&act, &nm("output.dense"), i, h)?;
        let (x_next, ln_out) = ln(&add(&out, &x_mid), &nm("output.LayerNorm"))?;
        blocks.push(Block {
            x,
            q,
            k,
            v: vv,
            probs,
            ctx,
            ln_attn,
            x_mid,
            inter,
            act,
            ln_out,
        });
        x = x_next;
    }
    let t = dense(&x, "cls.predictions.transform.dense", h, h)?;
    let t_act = activation(c.activation, &t);
    let (t_ln, ln_head) = ln(&t_act, "cls.predictions.transform.LayerNorm")?;
    let logits = linear(
        &t_ln,
        w.get(head)?,
        Some(w.get("cls.predictions.bias")?),
        n,
        h,
        v,
        Layout::OutIn,
    );
    let ce = cross_entropy(&logits, &p.targets, v)?;

    // Backward.
    let mut grads = w.zeros_like();
    let mut dense_back = |x: &[f64],
                          dy: &[f64],
                          prefix: &str,
                          d_in: usize,
                          d_out: usize|
     -> Result<Vec<f64>, RefError> {
        let wn = format!("{prefix}.weight");
        let r = linear_backward(x, w.get(&wn)?, dy, n, d_in, d_out, Layout::OutIn);
        grads.accumulate(&wn, &[d_out, d_in], &r.dw);
        grads.accumulate(&format!("{prefix}.bias"), &[d_out], &r.db);
        Ok(r.dx)
    };
    let dlogits = cross_entropy_backward(&ce, &p.targets, v, 1.0);
    let r = linear_backward(&t_ln, w.get(head)?, &dlogits, n, h, v, Layout::OutIn);
    let (head_dw, head_db) = (r.dw, r.db);
    let mut norm_grads: Vec<(String, Vec<f64>, Vec<f64>)> = Vec::new();
    let mut ln_back = |cache: &NormCache, dy: &[f64], prefix: &str| -> Result<Vec<f64>, RefError> {
        let (dx, dw, db) =
            layer_norm_backward(cache, w.get(&format!("{prefix}.weight"))?, dy, n, h);
        norm_grads.push((prefix.to_string(), dw, db));
        Ok(dx)
    };
    let dt_act = ln_back(&ln_head, &r.dx, "cls.predictions.transform.LayerNorm")?;
    let dt = activation_backward(c.activation, &t, &dt_act);
    let mut dx = dense_back(&x, &dt, "cls.predictions.transform.dense", h, h)?;
    for (l, bk) in blocks.iter().enumerate().rev() {
        let nm = |s: &str| name(l, s);
        // x_next = LN(dense(act(inter(x_mid))) + x_mid).
        let dsum = ln_back(&bk.ln_out, &dx, &nm("output.LayerNorm"))?;
        let dact = dense_back(&bk.act, &dsum, &nm("output.dense"), i, h)?;
        let dinter = activation_backward(c.activation, &bk.inter, &dact);
        let dmid = add(
            &dsum,
            &dense_back(&bk.x_mid, &dinter, &nm("intermediate.dense"), h, i)?,
        );
        // x_mid = LN(dense(attn(q, k, v)) + x).
        let dsum = ln_back(&bk.ln_attn, &dmid, &nm("attention.output.LayerNorm"))?;
        let dctx = dense_back(&bk.ctx, &dsum, &nm("attention.output.dense"), h, h)?;
        let (dq, dk, dv) = attend_all_backward(&bk.q, &bk.k, &bk.v, &bk.probs, &dctx, p, shape);
        let dxq = dense_back(&bk.x, &dq, &nm("attention.self.query"), h, h)?;
        let dxk = dense_back(&bk.x, &dk, &nm("attention.self.key"), h, h)?;
        let dxv = dense_back(&bk.x, &dv, &nm("attention.self.value"), h, h)?;
        dx = add(&add(&dsum, &dxq), &add(&dxk, &dxv));
    }
    let de = ln_back(&ln_emb, &dx, "bert.embeddings.LayerNorm")?;
    for (prefix, dw, db) in norm_grads {
        grads.accumulate(&format!("{prefix}.weight"), &[h], &dw);
        grads.accumulate(&format!("{prefix}.bias"), &[h], &db);
    }
    grads.accumulate(head, &[v, h], &head_dw);
    grads.accumulate("cls.predictions.bias", &[v], &head_db);
    grads.accumulate(word, &[v, h], &embedding_backward(&p.ids, &de, v, h));
    let pn = "bert.embeddings.position_embeddings.weight";
    grads.accumulate(
        pn,
        &[c.max_positions, h],
        &embedding_backward(&pos, &de, c.max_positions, h),
    );
    let tn = "bert.embeddings.token_type_embeddings.weight";
    grads.accumulate(
        tn,
        &[c.type_vocab_size, h],
        &embedding_backward(&types, &de, c.type_vocab_size, h),
    );
    Ok((ce.loss, grads))
}
