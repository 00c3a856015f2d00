//! Random valid programs, built from the instruction table, through both
//! simulator modes: neither may panic (an error naming an instruction is
//! fine: random programs deadlock, leave memory, or misalign), and when both
//! finish they agree on what executed and every queue's cycles add up.

use proptest::prelude::*;
use tessera_isa::check::{check, FindingKind};
use tessera_isa::inst::{Instruction, Op, Queue, INSTRUCTIONS};
use tessera_isa::{Arch, Program};
use tessera_sim::{run_functional, timing, Memory};

/// A random instruction legal in `q`, from the table: random field bits,
/// kept when they decode. Loop bodies are clamped to stay short.
fn instruction(q: Queue) -> impl Strategy<Value = Option<Instruction>> {
    let legal: Vec<_> = INSTRUCTIONS
        .iter()
        .filter(|d| d.queues.contains(q) && d.mnemonic != "halt")
        .collect();
    (
        prop::sample::select(legal),
        any::<u128>(),
        any::<u16>(),
        any::<u16>(),
        0u32..4,
    )
        .prop_map(move |(d, bits, w, s, tok)| {
            let mut word = u128::from(d.opcode);
            for f in d.fields {
                // Small values keep shapes and addresses mostly inside the memories.
                let width = f.bits.min(if f.bits > 12 { 6 } else { f.bits });
                let v = (bits >> f.lsb) & ((1u128 << width) - 1);
                word |= v << f.lsb;
            }
            // Tokens sparingly: a few waits and signals on t0..t3.
            let mask = |m: u16| u128::from(m & 0xf & ((1u16 << tok) - 1));
            word |= mask(w) << 8 | mask(s) << 24;
            let inst = Instruction::decode(word).ok()?;
            Some(match inst.op {
                Op::Loop { count, .. } => Instruction {
                    op: Op::Loop {
                        count: tessera_isa::field::Count::new(count.get() % 4 + 1)?,
                        end: tessera_isa::field::LoopEnd::new(1)?,
                    },
                    ..inst
                },
                _ => inst,
            })
        })
}

fn program() -> impl Strategy<Value = Program> {
    let queue = |q: Queue| prop::collection::vec(instruction(q), 0..10);
    (
        queue(Queue::Load),
        queue(Queue::Matrix),
        queue(Queue::Vector),
        queue(Queue::Store),
    )
        .prop_filter_map("invalid", |(l, m, v, s)| {
            let mut p = Program::new(Arch::preset("fpga-8x8").ok()?);
            for (q, code) in Queue::ALL.into_iter().zip([l, m, v, s]) {
                let mut code: Vec<Instruction> = code.into_iter().flatten().collect();
                if !code.is_empty() {
                    code.push(Instruction::new(Op::Halt {}));
                }
                p.queues[q.index()] = code;
            }
            p.regions = vec!["r".into(); 1];
            p.validate().is_ok().then_some(p)
        })
}

proptest! {
    // Random words often fail to decode or validate; allow for the filtering.
    #![proptest_config(ProptestConfig { cases: 256, max_local_rejects: 1 << 22, ..ProptestConfig::default() })]

    #[test]
    fn simulators_never_panic_and_agree(p in program()) {
        let f = run_functional(&p, &mut Memory::new(&p.arch), 10_000);
        let t = timing::run(&p, 10_000, &mut |_| {});
        if let (Ok(f), Ok(t)) = (&f, &t) {
            let executed: Vec<u64> = t.engines.iter().map(|e| e.executed).collect();
            prop_assert_eq!(executed, f.executed.to_vec());
            for e in &t.engines {
                prop_assert_eq!(e.total(), t.cycles);
            }
        }
        // With one producer and one consumer queue per token, the queues form a
        // deterministic process network: deadlock is then a property of the
        // program, not of the mode's interleaving. (Without channel discipline
        // it depends on which consumer wins a token, so it is not compared.)
        // A token may change channel behind a barrier; the checker verifies
        // each change on the interleaving it executes, so a program with no
        // token finding is such a network up to where it stops. A functional
        // run that stops earlier on a data error (a gathered index out of
        // range: timing has no data) cannot see the deadlock, so it is not compared.
        let channels_ok = !check(&p).findings.iter().any(|x| x.kind == FindingKind::Token);
        let dead = |r: Result<(), String>| r.is_err_and(|e| e.starts_with("deadlock"));
        let f_data_error = f.as_ref().is_err_and(|e| !e.to_string().starts_with("deadlock"));
        let (fd, td) = (dead(f.map(|_| ()).map_err(|e| e.to_string())), dead(t.map(|_| ()).map_err(|e| e.to_string())));
        if channels_ok && !f_data_error {
            prop_assert_eq!(fd, td);
        }
    }
}
