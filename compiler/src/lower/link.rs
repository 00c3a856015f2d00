//! Links kernels into one program. Each kernel is a complete program
//! (every token it signals is consumed within it); the linker appends
//! their queues in order with a barrier between consecutive kernels, so a
//! kernel starts only once the previous one has finished in every queue.
//!
//! The barrier uses tokens t10..t15, which kernels never use: the load,
//! vector and store queues each signal the matrix queue (t10, t11, t12),
//! which waits for all three and then releases them (t13, t14, t15).
//! The matrix queue brackets each kernel in a profiling region named by
//! the caller (the op it computes), so region times are kernel spans.
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
    /// The region of the last kernel, open in the matrix queue.
    open: Option<Region>,
}

impl Linker {
    /// An empty program for `arch`.
    pub fn new(arch: &Arch) -> Linker {
        Linker {
            program: Program::new(arch.clone()),
            kernels: 0,
            open: None,
        }
    }

    /// Appends `kernel` after everything so far.
    ///
    /// # Errors
    /// [`LowerError::Link`] if the kernel uses a barrier token or was built
    /// for other hardware.
    pub fn push(&mut self, kernel: &Program, region: &str) -> Result<(), LowerError> {
        if kernel.arch != self.program.arch {
            return Err(LowerError::Link(
                "a kernel was built for other hardware".into(),
            ));
        }
        if self.kernels > 0 {
            self.barrier();
        }
        // One region per kernel kind, in the matrix queue, from the barrier
        // that starts the kernel to the one that sees every queue finish it:
        // the kernel's whole span. The kernels' own regions are dropped.
        let id = match self.program.regions.iter().position(|r| r == region) {
            Some(i) => i,
            None => {
                self.program.regions.push(region.to_string());
                self.program.regions.len() - 1
            }
        };
        let id = Region(
            u16::try_from(id).map_err(|_| LowerError::Link("more than 65536 regions".into()))?,
        );
        let matrix = &mut self.program.queues[Queue::Matrix.index()];
        if let Some(prev) = self.open.replace(id) {
            matrix.push(Instruction::new(Op::ProfEnd { region: prev }));
        }
        matrix.push(Instruction::new(Op::ProfBegin { region: id }));
        for q in Queue::ALL {
            let src = kernel.queue(q);
            let dst = &mut self.program.queues[q.index()];
            for inst in src {
                if matches!(inst.op, Op::Halt {}) {
                    continue;
                }
                let inst = *inst;
                let used = inst.wait.0 | inst.signal.0;
                // Loop ends are relative to the loop, so instructions move without change.
                if used >> BARRIER_TOKENS.start != 0 {
                    return Err(LowerError::Link("a kernel uses a barrier token".into()));
                }
                if matches!(inst.op, Op::ProfBegin { .. } | Op::ProfEnd { .. }) {
                    continue;
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
        if let Some(last) = self.open.take() {
            // Join: the matrix queue closes the last region once every queue is done.
            let nop = |wait: u16, signal: u16| Instruction {
                op: Op::Nop {},
                wait: TokenSet(wait),
                signal: TokenSet(signal),
            };
            for (q, up) in [(Queue::Load, 10), (Queue::Vector, 11), (Queue::Store, 12)] {
                self.program.queues[q.index()].push(nop(0, 1 << up));
            }
            let matrix = &mut self.program.queues[Queue::Matrix.index()];
            matrix.push(nop((1 << 10) | (1 << 11) | (1 << 12), 0));
            matrix.push(Instruction::new(Op::ProfEnd { region: last }));
        }
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
