//! Property tests of the ISA crate's seams: encode/decode of every instruction
//! in the table (generated from `INSTRUCTIONS`, so new instructions are covered
//! without touching this file), decoding arbitrary words, disassemble ->
//! assemble and container round trips of random valid programs, and the
//! "never panics on user input" promise of `Program::from_bytes` and
//! `assemble`, on random and on mutated valid inputs.
//!
//! Failures shrink to minimal cases; proptest records their seeds under
//! `isa/proptest-regressions/`, which is committed.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::FileFailurePersistence;

use tessera_isa::asm::assemble;
use tessera_isa::disasm::disassemble;
use tessera_isa::field::{Count, LoopEnd, Region, Space, TokenSet};
use tessera_isa::inst::{InstDesc, QueueSet, FIELDS_START, WORD_BITS};
use tessera_isa::program::MemSpace;
use tessera_isa::{
    Arch, DType, Dataflow, Instruction, Op, Program, Queue, Symbol, INSTRUCTIONS, PRESET_NAMES,
};

/// `cases` cases, with failures recorded in `isa/proptest-regressions/` (tests
/// run in the package directory).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/proptests.txt",
        ))),
        ..ProptestConfig::with_cases(cases)
    }
}

/// Field slots a generated word fills; every table entry has at most this many.
const MAX_FIELDS: usize = 8;

/// Mnemonics whose placement the program generator controls itself.
const STRUCTURAL: [&str; 4] = ["halt", "loop", "prof.begin", "prof.end"];

/// How a generated word fills one field's bit range. Uniform bits alone would
/// rarely hit valid small encodings (a scalar `VecSrc`, a zero offset).
#[derive(Debug, Clone, Copy)]
enum Fill {
    Random(u128),
    Small(u8),
    Ones,
}

impl Fill {
    fn bits(self, width: u32) -> u128 {
        let mask = if width >= 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        match self {
            Fill::Random(r) => r & mask,
            Fill::Small(s) => u128::from(s) & mask,
            Fill::Ones => mask,
        }
    }
}

fn fill() -> impl Strategy<Value = Fill> {
    prop_oneof![
        3 => any::<u128>().prop_map(Fill::Random),
        2 => (0u8..32).prop_map(Fill::Small),
        1 => Just(Fill::Ones),
    ]
}

/// The word the table says `desc` has with these field bits and tokens.
fn word_of(desc: &InstDesc, fills: &[Fill], wait: u16, signal: u16) -> u128 {
    let mut w = u128::from(desc.opcode) | u128::from(wait) << 8 | u128::from(signal) << 24;
    for (f, fill) in desc.fields.iter().zip(fills) {
        w |= fill.bits(f.bits) << f.lsb;
    }
    w
}

/// Words built from the table entries `descs`, filled at random; not all decode.
fn raw_table_word(descs: Vec<&'static InstDesc>) -> impl Strategy<Value = u128> {
    (
        select(descs),
        vec(fill(), MAX_FIELDS),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(d, fills, wait, signal)| word_of(d, &fills, wait, signal))
}

/// Valid instructions of the table entries `descs`, with the word they came from.
fn table_inst(descs: Vec<&'static InstDesc>) -> impl Strategy<Value = (u128, Instruction)> {
    raw_table_word(descs).prop_filter_map("field bits that encode no value", |w| {
        Instruction::decode(w).ok().map(|i| (w, i))
    })
}

fn all_descs() -> Vec<&'static InstDesc> {
    INSTRUCTIONS.iter().collect()
}

#[test]
fn every_table_entry_has_a_decodable_word() {
    for d in INSTRUCTIONS {
        assert!(
            d.fields.len() <= MAX_FIELDS,
            "{} has too many fields",
            d.mnemonic
        );
        let mut lsb = FIELDS_START;
        for f in d.fields {
            assert_eq!(f.lsb, lsb, "{}.{} is not packed", d.mnemonic, f.name);
            lsb += f.bits;
        }
        assert!(lsb <= WORD_BITS, "{} overflows the word", d.mnemonic);
        // All fields zero, else all fields 1 (counts start at 1), else larger.
        let inst = (0u8..32)
            .find_map(|v| Instruction::decode(word_of(d, &[Fill::Small(v); MAX_FIELDS], 0, 0)).ok())
            .unwrap_or_else(|| panic!("no small field values decode as {}", d.mnemonic));
        assert_eq!(inst.op.opcode(), d.opcode);
        assert_eq!(inst.op.mnemonic(), d.mnemonic);
        assert_eq!(inst.op.queues(), d.queues);
        assert!(std::ptr::eq(inst.desc(), d));
        assert_eq!(Instruction::decode(inst.encode()), Ok(inst));
        let tokens = Instruction {
            wait: TokenSet(0xa5a5),
            signal: TokenSet(0x8001),
            ..inst
        };
        assert_eq!(Instruction::decode(tokens.encode()), Ok(tokens));
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn encode_inverts_decode((word, inst) in table_inst(all_descs())) {
        prop_assert_eq!(inst.encode(), word);
        prop_assert_eq!(Instruction::decode(inst.encode()), Ok(inst));
        prop_assert_eq!(inst.desc().opcode, (word & 0xff) as u8);
    }

    #[test]
    fn decoding_any_word_never_panics(word in prop_oneof![
        any::<u128>(),
        raw_table_word(all_descs()),
        (raw_table_word(all_descs()), 0u32..WORD_BITS).prop_map(|(w, b)| w ^ 1 << b),
    ]) {
        if let Ok(inst) = Instruction::decode(word) {
            prop_assert_eq!(inst.encode(), word);
        }
    }
}

// ---------------------------------------------------------------------------
// Random valid programs.

/// Structured queue contents, flattened into instructions by [`flatten`], so
/// loop bodies and profiling regions nest properly by construction.
#[derive(Debug, Clone)]
enum Item {
    Inst(Instruction),
    Loop {
        count: u32,
        tokens: (u16, u16),
        body: Vec<Item>,
    },
    Prof {
        region: u16,
        begin: (u16, u16),
        end: (u16, u16),
        body: Vec<Item>,
    },
}

fn with_tokens(op: Op, (wait, signal): (u16, u16)) -> Instruction {
    Instruction {
        op,
        wait: TokenSet(wait),
        signal: TokenSet(signal),
    }
}

fn flatten(items: &[Item], regions: usize, out: &mut Vec<Instruction>) {
    for item in items {
        match item {
            Item::Inst(i) => out.push(*i),
            Item::Loop {
                count,
                tokens,
                body,
            } => {
                let at = out.len();
                out.push(Instruction::new(Op::Nop {}));
                flatten(body, regions, out);
                let op = Op::Loop {
                    count: Count::new(u64::from(*count).max(1)).expect("1 to 2^32-1"),
                    end: LoopEnd::new((out.len() - at - 1) as u64).expect("loop bodies are short"),
                };
                out[at] = with_tokens(op, *tokens);
            }
            Item::Prof {
                region,
                begin,
                end,
                body,
            } => {
                let region = Region((usize::from(*region) % regions) as u16);
                out.push(with_tokens(Op::ProfBegin { region }, *begin));
                flatten(body, regions, out);
                out.push(with_tokens(Op::ProfEnd { region }, *end));
            }
        }
    }
}

/// The input element types of `arch`'s array.
fn inputs(arch: &Arch) -> Vec<DType> {
    DType::ALL
        .into_iter()
        .filter(|t| arch.supports_input(*t))
        .collect()
}

/// `v` folded into 1..=max.
fn fold(v: u64, max: u32) -> u64 {
    (v - 1) % u64::from(max) + 1
}

/// Adjusts operands that the table can encode but `Program::validate` rejects
/// on `arch` (memory spaces, element types, array limits, row sizes).
fn legalize(op: Op, arch: &Arch) -> Op {
    let types = inputs(arch);
    let input = |t: DType| types[usize::from(t.code()) % types.len()];
    match op {
        Op::MmPreload {
            mut b,
            k,
            n,
            transpose,
        } => {
            b.addr.space = Space::Spad;
            b.dtype = input(b.dtype);
            let k = if arch.dataflow() == Dataflow::WeightStationary {
                Count::new(fold(k.get(), arch.rows())).expect("within rows")
            } else {
                k
            };
            let n = Count::new(fold(n.get(), arch.cols())).expect("within cols");
            Op::MmPreload { b, k, n, transpose }
        }
        Op::MmCompute {
            mut a,
            mut c,
            m,
            transpose,
            mode,
        } => {
            a.addr.space = Space::Spad;
            a.dtype = input(a.dtype);
            c.addr.space = Space::Acc;
            c.dtype = a.dtype.accumulator_type();
            let m = if arch.dataflow() == Dataflow::OutputStationary {
                Count::new(fold(m.get(), arch.rows())).expect("within rows")
            } else {
                m
            };
            Op::MmCompute {
                a,
                c,
                m,
                transpose,
                mode,
            }
        }
        Op::DmaScatterAdd {
            table,
            src,
            idx,
            rows,
            row_bytes,
        } => Op::DmaScatterAdd {
            table,
            src,
            idx,
            rows,
            row_bytes: Count::new((row_bytes.get() / 4).max(1) * 4).expect("rounded down"),
        },
        Op::DmaLoad {
            dst,
            src,
            rows,
            row_bytes,
            planes,
            transpose,
        } => {
            let e = transpose.element_bytes().unwrap_or(1);
            let row_bytes = Count::new((row_bytes.get() / e).max(1) * e).expect("rounded down");
            Op::DmaLoad {
                dst,
                src,
                rows,
                row_bytes,
                planes,
                transpose,
            }
        }
        Op::DmaStore {
            dst,
            src,
            rows,
            row_bytes,
            planes,
            transpose,
        } => {
            let e = transpose.element_bytes().unwrap_or(1);
            let row_bytes = Count::new((row_bytes.get() / e).max(1) * e).expect("rounded down");
            Op::DmaStore {
                dst,
                src,
                rows,
                row_bytes,
                planes,
                transpose,
            }
        }
        other => other,
    }
}

/// A non-structural instruction legal in queue `q` on `arch`.
fn leaf(q: Queue, arch: Arch) -> impl Strategy<Value = Instruction> {
    // Queue-specific entries thrice, so the `any`-queue ones do not dominate.
    let descs: Vec<&'static InstDesc> = INSTRUCTIONS
        .iter()
        .filter(|d| d.queues.contains(q) && !STRUCTURAL.contains(&d.mnemonic))
        .flat_map(|d| std::iter::repeat_n(d, if d.queues == QueueSet::ANY { 1 } else { 3 }))
        .collect();
    table_inst(descs).prop_map(move |(_, i)| Instruction {
        op: legalize(i.op, &arch),
        ..i
    })
}

fn tokens() -> impl Strategy<Value = (u16, u16)> {
    prop_oneof![
        3 => Just((0, 0)),
        1 => (0u32..16, 0u32..16).prop_map(|(w, s)| (1 << w, 1 << s)),
        1 => (any::<u16>(), any::<u16>()),
    ]
}

/// The contents of queue `q` before its `halt`; loops nest at most 4 deep.
fn queue_items(q: Queue, arch: Arch) -> impl Strategy<Value = Vec<Item>> {
    let item = leaf(q, arch)
        .prop_map(Item::Inst)
        .prop_recursive(4, 24, 4, |inner| {
            let count = prop_oneof![1u32..5, any::<u32>()];
            prop_oneof![
                4 => inner.clone(),
                1 => (count, tokens(), vec(inner.clone(), 1..4))
                    .prop_map(|(count, tokens, body)| Item::Loop { count, tokens, body }),
                1 => (any::<u16>(), tokens(), tokens(), vec(inner, 0..4))
                    .prop_map(|(region, begin, end, body)| Item::Prof { region, begin, end, body }),
            ]
        });
    vec(item, 0..8)
}

/// Identifiers, including ones that spell registers, tokens, keywords and
/// mnemonics: symbol and region names live in their own namespaces.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[A-Za-z_][A-Za-z0-9_.]{0,10}",
        1 => select(vec![
            "r1", "t0", "f2", "spad", "acc", "hbm", "row", "col", "nan", "true", "false",
            "none", "rows", "elems", "halt", "loop", "nop", "dma.load", "L0", "L1", "fp32",
            "bf16", "int8", "region0", "x.y", "_",
        ])
        .prop_map(String::from),
    ]
    .prop_filter(
        "`inf` reads as a float (see FIXME in names_that_validate_reassemble)",
        |n| n != "inf",
    )
}

fn symbols(arch: &Arch) -> impl Strategy<Value = Vec<Symbol>> {
    let caps = [
        (MemSpace::Hbm, arch.hbm_bytes().get()),
        (MemSpace::Spad, arch.scratchpad_bytes().get()),
        (MemSpace::Acc, arch.accumulator_bytes().get()),
    ];
    vec(
        (name(), select(caps.to_vec()), any::<u64>(), any::<u64>()),
        0..4,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(name, (space, cap), a, s)| {
                let addr = a % (cap + 1);
                Symbol {
                    name,
                    space,
                    addr,
                    size: s % (cap - addr + 1),
                }
            })
            .collect()
    })
}

fn unique(names: &[String]) -> bool {
    names
        .iter()
        .enumerate()
        .all(|(i, n)| !names[..i].contains(n))
}

/// Random programs that pass `Program::validate`, for a preset.
fn program() -> impl Strategy<Value = Program> {
    select(PRESET_NAMES.to_vec())
        .prop_flat_map(|preset| {
            let arch = Arch::preset(preset).expect("a preset");
            let queue = |q| proptest::option::weighted(0.8, queue_items(q, arch.clone()));
            (
                Just(arch.clone()),
                (
                    queue(Queue::Load),
                    queue(Queue::Matrix),
                    queue(Queue::Vector),
                    queue(Queue::Store),
                ),
                // Distinct: see FIXME in names_that_validate_reassemble.
                vec(name(), 1..=3).prop_filter("distinct region names", |r| unique(r)),
                symbols(&arch),
                (any::<u16>(), any::<u16>()),
            )
        })
        .prop_map(|(arch, (l, m, v, s), regions, symbols, halt_tokens)| {
            let mut p = Program::new(arch);
            for (q, items) in Queue::ALL.into_iter().zip([l, m, v, s]) {
                let Some(items) = items else { continue };
                let code = &mut p.queues[q.index()];
                flatten(&items, regions.len(), code);
                code.push(with_tokens(Op::Halt {}, halt_tokens));
            }
            p.regions = regions;
            p.symbols = symbols;
            p
        })
        .prop_filter("invalid program", |p| p.validate().is_ok())
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn disassembly_reassembles_to_the_same_program(p in program()) {
        let text = disassemble(&p);
        for hw in [Some(&p.arch), None] {
            let again = assemble(&text, "rt.s", hw)
                .map_err(|e| TestCaseError::fail(format!("{e}\n--- text ---\n{text}")))?;
            prop_assert!(again == p, "reassembled differs\n--- text ---\n{}", text);
            prop_assert!(again.to_bytes() == p.to_bytes());
        }
    }

    #[test]
    fn container_round_trips(p in program()) {
        prop_assert_eq!(Program::from_bytes(&p.to_bytes()), Ok(p));
    }

    #[test]
    fn corrupted_containers_are_rejected(
        p in program(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
        extra in vec(any::<u8>(), 1..16),
    ) {
        let bytes = p.to_bytes();
        let i = at.index(bytes.len());
        let mut flipped = bytes.clone();
        flipped[i] ^= flip;
        prop_assert!(Program::from_bytes(&flipped).is_err(), "byte {} ^ {:#x} accepted", i, flip);
        prop_assert!(Program::from_bytes(&bytes[..i]).is_err(), "truncated to {} accepted", i);
        let mut longer = bytes.clone();
        longer.extend_from_slice(&extra);
        prop_assert!(Program::from_bytes(&longer).is_err());

        // With the checksum recomputed the corruption reaches the section
        // parsers, the TOML reader and the decoder: any answer but a panic.
        let end = flipped.len() - 4;
        if i < end {
            let crc = crc32(&flipped[..end]);
            flipped[end..].copy_from_slice(&crc.to_le_bytes());
            if let Ok(q) = Program::from_bytes(&flipped) {
                prop_assert_eq!(Program::from_bytes(&q.to_bytes()), Ok(q));
            }
        }
    }
}

/// CRC-32 (IEEE), bitwise; the container's checksum.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                crc >> 1 ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn crc32_matches_the_container() {
    let p = Program::new(Arch::preset("fpga-8x8").expect("a preset"));
    let bytes = p.to_bytes();
    let (body, stored) = bytes.split_at(bytes.len() - 4);
    assert_eq!(crc32(body).to_le_bytes(), stored);
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn reading_any_bytes_never_panics(
        bytes in prop_oneof![
            vec(any::<u8>(), 0..256),
            vec(any::<u8>(), 0..256).prop_map(|b| [b"TSRP\x01\x00\x00\x00".as_slice(), &b].concat()),
        ]
    ) {
        let _ = Program::from_bytes(&bytes);
    }
}

// ---------------------------------------------------------------------------
// The assembler on hostile text.

/// Hand-written source using what the disassembler never prints: `.equ`,
/// expressions, symbol operands, positional operands, comments, user labels.
const SAMPLE: &str = "\
.arch fpga-8x8
.equ T, 16            ; a constant
.hbm A, 0x100, 4096   # a symbol
.spad S, 0, 1024
.region attn
.queue load
    addr.set r0, A + T - 1
    addr.set r1, S
    dma.hstride row=0, plane=0
top:
    loop 4, done
    dma.load spad[r1+16], hbm[r0-4], 8, 16, 1, 2, signal=t0|t1
done:
    halt wait=t3
.queue matrix
    prof.begin attn
    mm.preload spad[r1]:int8, 8, 8, false, wait=t0
    mm.compute a=spad[r1+64]:bf16, c=acc[r2]:fp32, m=8, transpose=true, mode=accumulate
    prof.end attn, signal=t2
    halt
.queue vector
    v.fset f1, -1.5e-3
    v.fset f2, nan(0x7fc00001)
    v.bin add, spad[r0]:bf16, spad[r1]:bf16, row(spad[r2+8]:fp32)
    halt wait=t1|t2
";

fn mutation() -> impl Strategy<Value = (u8, prop::sample::Index, prop::sample::Index, String)> {
    (
        0u8..4,
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        vec(
            select(
                "[]=,:;#.+-|()0x1fr tspadachbm_9é\n"
                    .chars()
                    .collect::<Vec<_>>(),
            ),
            1..6,
        )
        .prop_map(|c| c.into_iter().collect()),
    )
}

/// Deletes a char range, inserts chars, duplicates a line or swaps two lines.
fn mutate(
    text: &str,
    (kind, a, b, chars): &(u8, prop::sample::Index, prop::sample::Index, String),
) -> String {
    let mut c: Vec<char> = text.chars().collect();
    match kind {
        0 if !c.is_empty() => {
            let i = a.index(c.len());
            let j = i + b.index(c.len() - i + 1).min(12);
            c.drain(i..j);
            c.into_iter().collect()
        }
        1 => {
            let i = a.index(c.len() + 1);
            c.splice(i..i, chars.chars());
            c.into_iter().collect()
        }
        _ => {
            let mut lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                return text.to_string();
            }
            let i = a.index(lines.len());
            if *kind == 2 {
                lines.insert(i, lines[i]);
            } else {
                let j = b.index(lines.len());
                lines.swap(i, j);
            }
            lines.join("\n")
        }
    }
}

/// Anything that assembles must survive disassemble -> assemble unchanged.
fn check_assembles_or_errs(text: &str) -> Result<(), TestCaseError> {
    if let Ok(p) = assemble(text, "m.s", None) {
        let again = assemble(&disassemble(&p), "rt.s", None)
            .map_err(|e| TestCaseError::fail(format!("{e}\n--- source ---\n{text}")))?;
        prop_assert!(
            again.to_bytes() == p.to_bytes(),
            "round trip differs\n{}",
            text
        );
    }
    Ok(())
}

#[test]
fn sample_assembles() {
    let p = assemble(SAMPLE, "sample.s", None).expect("the sample is valid");
    assert_eq!(p.len(), 15);
    check_assembles_or_errs(SAMPLE).expect("round trip");
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn assembling_any_text_never_panics(text in prop_oneof![
        "\\PC*",
        "[ \n.:;,=|()\\[\\]+-_0-9a-z]{0,80}",
        vec(select(vec![
            ".queue load\n", ".queue vector\n", ".arch fpga-8x8\n", ".region a\n", ".hbm x, 0, 4\n",
            "halt\n", "nop\n", "loop 2, L\n", "L:\n", "prof.begin a\n", "prof.end a\n",
            "addr.set r1, x+1\n", "v.fset f0, inf\n", "wait=t0", "signal=t1|t2", ", ", "spad[r0]:bf16",
            "0x", "-", "nan(", ")", ";", "é",
        ]), 0..16).prop_map(|v| v.concat()),
    ]) {
        check_assembles_or_errs(&text)?;
    }

    #[test]
    fn assembling_mutated_sample_never_panics(muts in vec(mutation(), 1..4)) {
        let text = muts.iter().fold(SAMPLE.to_string(), |t, m| mutate(&t, m));
        check_assembles_or_errs(&text)?;
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn assembling_mutated_disassembly_never_panics(p in program(), muts in vec(mutation(), 1..4)) {
        let text = muts.iter().fold(disassemble(&p), |t, m| mutate(&t, m));
        check_assembles_or_errs(&text)?;
    }
}

// ---------------------------------------------------------------------------
// Cases the properties found, pinned.

/// Error columns are computed against the line with its comment stripped;
/// offsets must not land inside a multi-byte character of the comment.
#[test]
fn comments_do_not_shift_error_columns() {
    for src in ["0;é", "nop x;é", "¡🛰#"] {
        assert!(assemble(src, "c.s", None).is_err(), "{src:?}");
    }
    let e = assemble(".queue load\n  addr.set r1 0 ; note\n", "c.s", None).unwrap_err();
    assert_eq!(e.column, 15, "{e}");
}

/// A program that validates must reassemble from its disassembly.
#[test]
fn names_that_validate_reassemble() {
    let arch = Arch::preset("fpga-8x8").expect("a preset");
    let halt = Instruction::new(Op::Halt {});
    let mut inf_symbol = Program::new(arch.clone());
    inf_symbol.symbols.push(Symbol {
        name: "inf".into(),
        space: MemSpace::Hbm,
        addr: 0,
        size: 4,
    });
    let mut inf_region = Program::new(arch.clone());
    inf_region.regions.push("inf".into());
    inf_region.queues[Queue::Load.index()] = vec![
        Instruction::new(Op::ProfBegin { region: Region(0) }),
        Instruction::new(Op::ProfEnd { region: Region(0) }),
        halt,
    ];
    let mut twice = Program::new(arch);
    twice.regions = vec!["a".into(), "a".into()];
    for p in [inf_symbol, inf_region, twice] {
        // `validate` rejects what the assembler could not read back: `inf`
        // reads as a float, and a region table may not repeat a name.
        assert!(p.validate().is_err(), "{p:?}");
    }
}

/// Nested `f(...)` operands recurse in the parser. Run in a child process
/// because a stack overflow aborts instead of panicking.
#[test]
fn deeply_nested_operands() {
    const DEPTH: usize = 100_000;
    if std::env::var_os("TESSERA_DEEP_NESTING_CHILD").is_some() {
        let src = format!(
            ".queue load\nnop {}x{}\n",
            "f(".repeat(DEPTH),
            ")".repeat(DEPTH)
        );
        assert!(assemble(&src, "deep.s", None).is_err());
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args(["--exact", "deeply_nested_operands", "--test-threads=1"])
        .env("TESSERA_DEEP_NESTING_CHILD", "1")
        .output()
        .expect("the test binary runs");
    // Calls never nest in the grammar, so the deep input is an ordinary
    // `AsmError` in the child, not a stack overflow.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
