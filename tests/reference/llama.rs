//! Llama (`LlamaForCausalLM`): token embedding, pre-norm blocks of RMSNorm,
//! causal grouped-query attention with rotary embeddings on q and k, and a
//! SwiGLU MLP `down(act(gate(x)) * up(x))`; `nn.Linear` weights without bias
//! (`y = x W^T`, `W` stored `[out, in]`), a final RMSNorm and `lm_head`
//! (tied to the embedding only if the config says so).

use super::attention::AttnShape;
use super::blocks::{attend_all, attend_all_backward, Probs};
use super::config::RefConfig;
use super::error::RefError;
use super::loss::{cross_entropy, cross_entropy_backward};
use super::model::Prepared;
use super::ops::{
    add, embedding, embedding_backward, linear, linear_backward, rms_norm, rms_norm_backward,
    rotary, rotary_backward, swiglu, swiglu_backward, Layout, NormCache,
};
use super::weights::{untied_head_name, Weights};

/// What one block keeps for its backward.
struct Block {
    norm1: NormCache,
    a: Vec<f64>,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    probs: Probs,
    o: Vec<f64>,
    norm2: NormCache,
    m: Vec<f64>,
    gate: Vec<f64>,
    up: Vec<f64>,
    s: Vec<f64>,
}

/// Rotary embedding applied to each sequence of `x[rows, heads * head_dim]`,
/// positions restarting at 0 per sequence.
fn rope_all(x: &[f64], p: &Prepared, heads: usize, c: &RefConfig, backward: bool) -> Vec<f64> {
    let width = heads * c.head_dim;
    x.chunks(p.seq * width)
        .flat_map(|s| {
            if backward {
                rotary_backward(s, p.seq, heads, c.head_dim, c.rope_theta)
            } else {
                rotary(s, p.seq, heads, c.head_dim, c.rope_theta)
            }
        })
        .collect()
}

/// Loss and gradients of one batch.
pub fn run(c: &RefConfig, w: &Weights, p: &Prepared) -> Result<(f64, Weights), RefError> {
    let (n, h, i, v) = (p.rows(), c.hidden_size, c.intermediate_size, c.vocab_size);
    let (qd, kd) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let shape = AttnShape {
        seq: p.seq,
        heads: c.num_heads,
        kv_heads: c.num_kv_heads,
        head_dim: c.head_dim,
    };
    let name = |l: usize, s: &str| format!("model.layers.{l}.{s}");
    let emb = "model.embed_tokens.weight";
    let head = if c.tie_word_embeddings {
        emb
    } else {
        untied_head_name(c.family)
    };
    let lin = |x: &[f64], wname: &str, d_in: usize, d_out: usize| -> Result<Vec<f64>, RefError> {
        Ok(linear(
            x,
            w.get(wname)?,
            None,
            n,
            d_in,
            d_out,
            Layout::OutIn,
        ))
    };

    // Forward.
    let mut x = embedding(&p.ids, w.get(emb)?, h);
    let mut blocks = Vec::with_capacity(c.num_layers);
    for l in 0..c.num_layers {
        let nm = |s: &str| name(l, s);
        let (a, norm1) = rms_norm(&x, w.get(&nm("input_layernorm.weight"))?, n, h, c.norm_eps);
        let q = rope_all(
            &lin(&a, &nm("self_attn.q_proj.weight"), h, qd)?,
            p,
            c.num_heads,
            c,
            false,
        );
        let k = rope_all(
            &lin(&a, &nm("self_attn.k_proj.weight"), h, kd)?,
            p,
            c.num_kv_heads,
            c,
            false,
        );
        let vv = lin(&a, &nm("self_attn.v_proj.weight"), h, kd)?;
        let (o, probs) = attend_all(&q, &k, &vv, p, shape, true);
        let x_mid = add(&x, &lin(&o, &nm("self_attn.o_proj.weight"), qd, h)?);
        let (m, norm2) = rms_norm(
            &x_mid,
            w.get(&nm("post_attention_layernorm.weight"))?,
            n,
            h,
            c.norm_eps,
        );
        let gate = lin(&m, &nm("mlp.gate_proj.weight"), h, i)?;
        let up = lin(&m, &nm("mlp.up_proj.weight"), h, i)?;
        let s = swiglu(c.activation, &gate, &up);
        x = add(&x_mid, &lin(&s, &nm("mlp.down_proj.weight"), i, h)?);
        blocks.push(Block {
            norm1,
            a,
            q,
            k,
            v: vv,
            probs,
            o,
            norm2,
            m,
            gate,
            up,
            s,
        });
    }
    let (hf, normf) = rms_norm(&x, w.get("model.norm.weight")?, n, h, c.norm_eps);
    let logits = linear(&hf, w.get(head)?, None, n, h, v, Layout::OutIn);
    let ce = cross_entropy(&logits, &p.targets, v)?;

    // Backward.
    let mut grads = w.zeros_like();
    let dlogits = cross_entropy_backward(&ce, &p.targets, v, 1.0);
    let r = linear_backward(&hf, w.get(head)?, &dlogits, n, h, v, Layout::OutIn);
    grads.accumulate(head, &[v, h], &r.dw);
    let (mut dx, dw) = rms_norm_backward(&normf, w.get("model.norm.weight")?, &r.dx, n, h);
    grads.accumulate("model.norm.weight", &[h], &dw);
    for (l, bk) in blocks.iter().enumerate().rev() {
        let nm = |s: &str| name(l, s);
        let mut back = |x: &[f64],
                        dy: &[f64],
                        wname: &str,
                        d_in: usize,
                        d_out: usize|
         -> Result<Vec<f64>, RefError> {
            let r = linear_backward(x, w.get(wname)?, dy, n, d_in, d_out, Layout::OutIn);
            grads.accumulate(wname, &[d_out, d_in], &r.dw);
            Ok(r.dx)
        };
        // MLP branch.
        let ds = back(&bk.s, &dx, &nm("mlp.down_proj.weight"), i, h)?;
        let (dgate, dup) = swiglu_backward(c.activation, &bk.gate, &bk.up, &ds);
        let dm = add(
            &back(&bk.m, &dgate, &nm("mlp.gate_proj.weight"), h, i)?,
            &back(&bk.m, &dup, &nm("mlp.up_proj.weight"), h, i)?,
        );
        let wn = nm("post_attention_layernorm.weight");
        let (dmid, dw) = rms_norm_backward(&bk.norm2, w.get(&wn)?, &dm, n, h);
        dx = add(&dx, &dmid);
        // Attention branch.
        let do_ = back(&bk.o, &dx, &nm("self_attn.o_proj.weight"), qd, h)?;
        let (dq, dk, dv) = attend_all_backward(&bk.q, &bk.k, &bk.v, &bk.probs, &do_, p, shape);
        let dq = rope_all(&dq, p, c.num_heads, c, true);
        let dk = rope_all(&dk, p, c.num_kv_heads, c, true);
        let da = add(
            &add(
                &back(&bk.a, &dq, &nm("self_attn.q_proj.weight"), h, qd)?,
                &back(&bk.a, &dk, &nm("self_attn.k_proj.weight"), h, kd)?,
            ),
            &back(&bk.a, &dv, &nm("self_attn.v_proj.weight"), h, kd)?,
        );
        grads.accumulate(&wn, &[h], &dw);
        let wn = nm("input_layernorm.weight");
        let (dxa, dw) = rms_norm_backward(&bk.norm1, w.get(&wn)?, &da, n, h);
        grads.accumulate(&wn, &[h], &dw);
        dx = add(&dx, &dxa);
    }
    grads.accumulate(emb, &[v, h], &embedding_backward(&p.ids, &dx, v, h));
    Ok((ce.loss, grads))
}
