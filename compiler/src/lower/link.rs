//! Links kernels into one program. Each kernel is a complete program
//! (every token it signals is consumed within it); the linker appends
//! their queues in order with a barrier between consecutive kernels, so a
//! kernel starts only once the previous one has finished in every queue.
//!
//! The barrier uses tokens t10..t15, which kernels never use: the load,
//! vector and store queues each signal the matrix queue (t10, t11, t12),
//! which waits for all three and then releases them (t13, t14, t15).
//! Each queue's configuration (strides, shape) is reset by the kernels
//! themselves; address registers are set before use.

use tessera_isa::field::{Region, TokenSet};
use tessera_isa::inst::{Instruction, Op, Queue};
use tessera_isa::{Arch, Program};

use crate::error::LowerError;

/// Tokens the barrier uses; kernels must not touch them.
pub const BARRIER_TOKENS: std::ops::Range<u8> = 10..16;

/// Appends kernels one after another with barriers between them.
#[derive(Debug)]
pub struct Linker {
    program: Program,
    kernels: usize,
}

impl Linker {
    /// An empty program for `arch`.
    pub fn new(arch: &Arch) -> Linker {
        Linker {
            program: Program::new(arch.clone()),
            kernels: 0,
        }
    }

    /// Appends `kernel` after everything so far.
    ///
    /// # Errors
    /// [`LowerError::Link`] if the kernel uses a barrier token or was built
    /// for other hardware.
    pub fn push(&mut self, kernel: &Program) -> Result<(), LowerError> {
        if kernel.arch != self.program.arch {
            return Err(LowerError::Link(
                "a kernel was built for other hardware".into(),
            ));
        }
        if self.kernels > 0 {
            self.barrier();
        }
        // Regions are merged by name, so every instance of a kernel kind adds to one region.
        let mut region_map = Vec::with_capacity(kernel.regions.len());
        for name in &kernel.regions {
            let id = match self.program.regions.iter().position(|r| r == name) {
                Some(i) => i,
                None => {
                    self.program.regions.push(name.clone());
                    self.program.regions.len() - 1
                }
            };
            region_map
                .push(Region(u16::try_from(id).map_err(|_| {
                    LowerError::Link("more than 65536 regions".into())
                })?));
        }
        for q in Queue::ALL {
            let src = kernel.queue(q);
            let dst = &mut self.program.queues[q.index()];
            for inst in src {
                if matches!(inst.op, Op::Halt {}) {
                    continue;
                }
                let mut inst = *inst;
                let used = inst.wait.0 | inst.signal.0;
                // Loop ends are relative to the loop, so instructions move without change.
                if used >> BARRIER_TOKENS.start != 0 {
                    return Err(LowerError::Link("a kernel uses a barrier token".into()));
                }
                match &mut inst.op {
                    Op::ProfBegin { region } | Op::ProfEnd { region } => {
                        *region = region_map[usize::from(region.0)]
                    }
                    _ => {}
                }
                dst.push(inst);
            }
        }
        self.kernels += 1;
        Ok(())
    }

    fn barrier(&mut self) {
        let nop = |wait: u16, signal: u16| Instruction {
            op: Op::Nop {},
            wait: TokenSet(wait),
            signal: TokenSet(signal),
        };
        let matrix = Queue::Matrix.index();
        for (q, up) in [(Queue::Load, 10), (Queue::Vector, 11), (Queue::Store, 12)] {
            self.program.queues[q.index()].push(nop(0, 1 << up));
        }
        self.program.queues[matrix].push(nop(
            (1 << 10) | (1 << 11) | (1 << 12),
            (1 << 13) | (1 << 14) | (1 << 15),
        ));
        for (q, down) in [(Queue::Load, 13), (Queue::Vector, 14), (Queue::Store, 15)] {
            self.program.queues[q.index()].push(nop(1 << down, 0));
        }
    }

    /// The linked program, every queue ended with `halt`.
    ///
    /// # Errors
    /// [`LowerError::Link`] if the result breaks a program rule.
    pub fn finish(mut self) -> Result<Program, LowerError> {
        for q in &mut self.program.queues {
            if !q.is_empty() {
                q.push(Instruction::new(Op::Halt {}));
            }
        }
        self.program.validate().map_err(|errs| {
            LowerError::Link(
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        Ok(self.program)
    }
}
