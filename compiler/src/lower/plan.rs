//! HBM memory planning by liveness. Parameters, optimizer states, inputs
//! and constants live for the whole run at fixed addresses (the runtime
//! writes them before the first step and reads parameters back after the
//! last); every other value gets a slot from a first-fit allocator when it
//! is defined and gives it back after its last use. `reshape` aliases its
//! operand. Values read by `output` or `assign` live to the end of the step.

use std::collections::BTreeMap;

use crate::ir::{Graph, Op};

/// Alignment of every HBM allocation.
pub const HBM_ALIGN: u64 = 256;

fn align(x: u64) -> u64 {
    x.div_ceil(HBM_ALIGN) * HBM_ALIGN
}

/// A first-fit allocator over one address range.
#[derive(Debug, Default)]
pub struct FirstFit {
    /// Free ranges `start -> end`, coalesced.
    free: BTreeMap<u64, u64>,
    /// End of the highest address ever handed out.
    pub high_water: u64,
    top: u64,
}

impl FirstFit {
    /// An allocator whose addresses start at `base`.
    pub fn new(base: u64) -> FirstFit {
        FirstFit {
            free: BTreeMap::new(),
            high_water: base,
            top: base,
        }
    }

    /// `bytes` bytes (rounded up to [`HBM_ALIGN`]).
    pub fn alloc(&mut self, bytes: u64) -> u64 {
        let size = align(bytes.max(1));
        if let Some((&start, &end)) = self.free.iter().find(|(s, e)| *e - *s >= size) {
            self.free.remove(&start);
            if end - start > size {
                self.free.insert(start + size, end);
            }
            return start;
        }
        let a = self.top;
        self.top += size;
        self.high_water = self.high_water.max(self.top);
        a
    }

    /// Returns `[addr, addr + bytes)` to the pool.
    pub fn free(&mut self, addr: u64, bytes: u64) {
        let mut start = addr;
        let mut end = addr + align(bytes.max(1));
        if let Some((&s, &e)) = self.free.range(..start).next_back() {
            if e == start {
                self.free.remove(&s);
                start = s;
            }
        }
        if let Some(&e) = self.free.get(&end) {
            self.free.remove(&end);
            end = e;
        }
        if end == self.top {
            self.top = start;
        } else {
            self.free.insert(start, end);
        }
    }
}

/// The first address for temporaries after `persistent` bytes.
pub fn plan_base(persistent: u64) -> u64 {
    align(persistent)
}

/// The last node reading each value (following `reshape` aliases), or
/// `None` for persistent values and values read at the end of the step.
pub fn last_uses(g: &Graph) -> Vec<Option<usize>> {
    let n = g.nodes.len();
    let mut root: Vec<usize> = (0..n).collect();
    for (i, node) in g.nodes.iter().enumerate() {
        if matches!(node.op, Op::Reshape { .. }) {
            root[i] = root[node.inputs[0].0];
        }
    }
    let mut last: Vec<Option<usize>> = vec![None; n];
    let mut forever = vec![false; n];
    for (i, node) in g.nodes.iter().enumerate() {
        if node.op.is_source() {
            forever[i] = true;
        }
        for v in &node.inputs {
            let r = root[v.0];
            last[r] = Some(i);
            if matches!(node.op, Op::Output { .. } | Op::Assign { .. }) {
                forever[r] = true;
            }
        }
    }
    (0..n)
        .map(|i| {
            if forever[root[i]] || root[i] != i {
                None
            } else {
                last[i]
            }
        })
        .collect()
}
