//! Relocatable kernels. Layers of a model run the same kernels on
//! different HBM addresses, so a kernel is generated and assembled once
//! with *placeholder* addresses, one per operand slot, and every later use
//! patches the `addr.set` bases that fall in a placeholder's range. This is
//! what keeps compiling a GPT-2 step fast.
//!
//! Invariant: a kernel generator derives every HBM address it emits as an
//! operand's base plus an offset below 2^40 (no products or comparisons of
//! addresses), and emits it through `addr.set`. Placeholders lie above
//! 2^47, where no real HBM address (at most 2^48 - 1, validated by the
//! caller) and no on-chip address can be.

use std::collections::HashMap;

use tessera_isa::field::UInt;
use tessera_isa::{Op, Program};

use crate::error::LowerError;

const BASE: u64 = 1 << 47;
const SPAN: u32 = 40;

/// The placeholder address of operand slot `i` (`i` < 64).
pub fn placeholder(i: usize) -> u64 {
    BASE + ((i as u64) << SPAN)
}

/// `template` with every placeholder base replaced by `slots[i] + offset`.
pub fn relocate(template: &Program, slots: &[u64]) -> Program {
    let mut p = template.clone();
    for q in &mut p.queues {
        for inst in q.iter_mut() {
            if let Op::AddrSet { base, .. } = &mut inst.op {
                let b = base.get();
                if b >= BASE {
                    let (slot, off) = (((b - BASE) >> SPAN) as usize, b & ((1 << SPAN) - 1));
                    let real = slots.get(slot).map_or(0, |s| s + off);
                    // Real addresses were validated against the HBM size, so they fit 48 bits.
                    *base = UInt::new(real).unwrap_or(*base);
                }
            }
        }
    }
    p
}

/// Assembled templates by key (the kernel's description with placeholder
/// addresses).
#[derive(Debug, Default)]
pub struct TemplateCache {
    templates: HashMap<String, Program>,
}

impl TemplateCache {
    /// The kernel described by `key`, built by `build` on first use, then
    /// relocated to `slots`.
    ///
    /// # Errors
    /// Whatever `build` reports.
    pub fn get(
        &mut self,
        key: String,
        slots: &[u64],
        build: impl FnOnce() -> Result<Program, LowerError>,
    ) -> Result<Program, LowerError> {
        if let Some(t) = self.templates.get(&key) {
            return Ok(relocate(t, slots));
        }
        let t = build()?;
        let p = relocate(&t, slots);
        self.templates.insert(key, t);
        Ok(p)
    }
}
