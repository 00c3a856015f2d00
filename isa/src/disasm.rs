//! The disassembler: a [`Program`] to assembly text that assembles back to
//! the same container bytes (for a preset hardware description, or with the
//! same description passed to the assembler).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use crate::field::{label_name, WriteCx};
use crate::inst::{Op, Queue};
use crate::program::Program;

/// Column the `; queue#index` comments start at.
const COMMENT_COLUMN: usize = 64;

/// The assembly text of `p`.
///
/// ```
/// # use tessera_isa::{asm::assemble, disasm::disassemble};
/// let src = ".arch fpga-8x8\n.queue matrix\n    halt\n";
/// let p = assemble(src, "a.s", None)?;
/// let again = assemble(&disassemble(&p), "b.s", None)?;
/// assert_eq!(p.to_bytes(), again.to_bytes());
/// # Ok::<(), tessera_isa::asm::AsmError>(())
/// ```
pub fn disassemble(p: &Program) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "; Tessera program: {} instructions for hardware `{}` (fingerprint {:016x})",
        p.len(),
        p.arch.name(),
        p.arch.fingerprint()
    );
    let is_preset = crate::Arch::preset(p.arch.name()).is_ok_and(|a| a == p.arch);
    if !is_preset {
        out.push_str("; custom hardware description: assemble with --hw and the same TOML\n");
    }
    let _ = writeln!(out, ".arch {}", p.arch.name());
    for s in &p.symbols {
        let _ = writeln!(
            out,
            ".{} {}, 0x{:x}, {}",
            s.space.name(),
            s.name,
            s.addr,
            s.size
        );
    }
    for r in &p.regions {
        let _ = writeln!(out, ".region {r}");
    }
    for q in Queue::ALL {
        let code = p.queue(q);
        if code.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n.queue {q}");
        let targets: BTreeSet<usize> = code
            .iter()
            .enumerate()
            .filter_map(|(i, inst)| match inst.op {
                Op::Loop { end, .. } => Some(i + 1 + end.body_len()),
                _ => None,
            })
            .collect();
        let mut depth = 0usize;
        let mut ends: Vec<usize> = Vec::new();
        for (i, inst) in code.iter().enumerate() {
            while ends.last() == Some(&i) {
                ends.pop();
                depth -= 1;
            }
            if targets.contains(&i) {
                let _ = writeln!(out, "{}:", label_name(i));
            }
            let mut line = "    ".repeat(depth + 1);
            inst.write(
                &mut line,
                &WriteCx {
                    here: i,
                    regions: &p.regions,
                },
            );
            let pad = COMMENT_COLUMN.saturating_sub(line.len()).max(1);
            let _ = writeln!(out, "{line}{:pad$}; {q}#{i}", "");
            if let Op::Loop { end, .. } = inst.op {
                ends.push(i + 1 + end.body_len());
                depth += 1;
            }
        }
        if targets.contains(&code.len()) {
            let _ = writeln!(out, "{}:", label_name(code.len()));
        }
    }
    out
}
