//! Full activation recomputation (Chen et al. 2016; Megatron-LM's
//! `--recompute-granularity full`): each Transformer block keeps only the
//! values it reads from outside itself (its input on the residual stream,
//! parameters, masks and tables); everything it computes internally is
//! recomputed from them just before the block's backward.
//!
//! A node belongs to block L when the deepest layer parameter it depends on
//! (transitively) is layer L's, and it is not part of the head: the head
//! starts at the first node that reads a parameter of no layer (final norm,
//! tied or separate output projection) while depending on a layer. Layer
//! parameters are those whose name has a numeric component
//! (`transformer.h.3.attn.c_attn.weight`, `model.layers.3.*`,
//! `bert.encoder.layer.3.*`); the embeddings, which depend on no layer,
//! belong to no block and are kept.

use crate::ir::{Graph, Op};

/// The layer index in a parameter name: its first all-digit component.
fn layer_of_name(name: &str) -> Option<u32> {
    name.split('.')
        .find(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|c| c.parse().ok())
}

/// The block each node of `g[from..to]` belongs to (`None`: kept, never
/// recomputed: sources, sinks, nodes outside the range, embeddings and the
/// head). Indices below `from` are `None`.
pub fn blocks(g: &Graph, from: usize, to: usize) -> Vec<Option<u32>> {
    let to = to.min(g.nodes.len());
    let mut layer: Vec<Option<u32>> = vec![None; to];
    let mut head = vec![false; to];
    let mut block = vec![None; to];
    for i in 0..to {
        let node = &g.nodes[i];
        if let Op::Param { name, .. } = &node.op {
            layer[i] = layer_of_name(name);
            continue;
        }
        let deepest = node.inputs.iter().filter_map(|v| layer[v.0]).max();
        layer[i] = deepest;
        let reads_global_param = node.inputs.iter().any(
            |v| matches!(&g.nodes[v.0].op, Op::Param { name, .. } if layer_of_name(name).is_none()),
        );
        head[i] =
            node.inputs.iter().any(|v| head[v.0]) || (deepest.is_some() && reads_global_param);
        if i >= from && !head[i] && node.ty.is_some() && !node.op.is_source() {
            block[i] = deepest;
        }
    }
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_index_is_the_first_numeric_component() {
        assert_eq!(layer_of_name("transformer.h.11.mlp.c_fc.weight"), Some(11));
        assert_eq!(
            layer_of_name("model.layers.0.self_attn.q_proj.weight"),
            Some(0)
        );
        assert_eq!(
            layer_of_name("bert.encoder.layer.7.output.dense.bias"),
            Some(7)
        );
        assert_eq!(layer_of_name("transformer.wte.weight"), None);
        assert_eq!(layer_of_name("lm_head.weight"), None);
    }
}
