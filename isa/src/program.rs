//! A program: four instruction streams, the hardware description they were
//! built for, a data-layout symbol table and profiling-region names; its
//! binary container (`.tsr`) and its structural validation.
//!
//! Container layout, all integers little-endian:
//!
//! ```text
//! "TSRP"  u16 major=1  u16 minor=0
//! section*: tag[4] u32 len payload[len], in this order:
//!   ARCH  canonical TOML of the hardware description
//!   SYMS  u32 n, n x (u16 len, name, u8 space, u64 addr, u64 size)
//!   REGN  u32 n, n x (u16 len, name)
//!   QLOD QMAT QVEC QSTO  u32 n, n x 16-byte instruction words
//! u32 CRC-32 (IEEE) of every byte before it
//! ```
//!
//! Serialisation is deterministic: equal programs give equal bytes.

use std::fmt;

use crate::arch::{Arch, ArchError};
use crate::field::{Space, MAX_LOOP_DEPTH};
use crate::inst::{DecodeError, Instruction, Op, Queue, WORD_BYTES};

/// Container magic.
pub const MAGIC: [u8; 4] = *b"TSRP";
/// Container major version; readers reject any other.
pub const VERSION_MAJOR: u16 = 1;
/// Container minor version; readers accept any.
pub const VERSION_MINOR: u16 = 0;

const QUEUE_TAGS: [[u8; 4]; 4] = [*b"QLOD", *b"QMAT", *b"QVEC", *b"QSTO"];

/// An address space a symbol lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemSpace {
    Hbm,
    Spad,
    Acc,
}

impl MemSpace {
    /// The directive / operand name.
    pub const fn name(self) -> &'static str {
        match self {
            MemSpace::Hbm => "hbm",
            MemSpace::Spad => "spad",
            MemSpace::Acc => "acc",
        }
    }

    const fn code(self) -> u8 {
        match self {
            MemSpace::Hbm => 0,
            MemSpace::Spad => 1,
            MemSpace::Acc => 2,
        }
    }

    fn from_code(c: u8) -> Option<MemSpace> {
        [MemSpace::Hbm, MemSpace::Spad, MemSpace::Acc]
            .into_iter()
            .find(|s| s.code() == c)
    }
}

impl From<Space> for MemSpace {
    fn from(s: Space) -> MemSpace {
        match s {
            Space::Spad => MemSpace::Spad,
            Space::Acc => MemSpace::Acc,
        }
    }
}

impl fmt::Display for MemSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A named region of memory: where a tensor lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Symbol {
    pub name: String,
    pub space: MemSpace,
    pub addr: u64,
    pub size: u64,
}

/// A whole program.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// The hardware description it was built for.
    pub arch: Arch,
    /// One instruction stream per queue, indexed by [`Queue::index`].
    pub queues: [Vec<Instruction>; 4],
    /// Data layout.
    pub symbols: Vec<Symbol>,
    /// Profiling region names, indexed by region id.
    pub regions: Vec<String>,
}

/// A place in a program: a queue and an instruction index in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Site {
    pub queue: Queue,
    pub index: usize,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.queue, self.index)
    }
}

/// A structural rule a program breaks, at an instruction or in its symbol table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramError {
    /// The instruction, or `None` for the symbol table.
    pub site: Option<Site>,
    /// The instruction's mnemonic, or `symbol`.
    pub mnemonic: &'static str,
    pub rule: String,
}

impl fmt::Display for ProgramError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.site {
            Some(site) => write!(f, "{site} ({}): {}", self.mnemonic, self.rule),
            None => write!(f, "{}: {}", self.mnemonic, self.rule),
        }
    }
}

impl std::error::Error for ProgramError {}

/// Why bytes are not a program.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContainerError {
    #[error("not a Tessera program (bad magic bytes)")]
    BadMagic,
    #[error(
        "container version {major}.{minor} is not supported (this reader takes {VERSION_MAJOR}.x)"
    )]
    Version { major: u16, minor: u16 },
    #[error("truncated: {what} needs {need} bytes at offset {offset}, file has {len}")]
    Truncated {
        what: String,
        offset: usize,
        need: usize,
        len: usize,
    },
    #[error("expected section `{expected}` at offset {offset}, found `{found}`")]
    Section {
        expected: String,
        found: String,
        offset: usize,
    },
    #[error(
        "checksum mismatch: stored 0x{stored:08x}, computed 0x{computed:08x} (file corrupted)"
    )]
    Checksum { stored: u32, computed: u32 },
    #[error("{0} trailing bytes after the checksum")]
    Trailing(usize),
    #[error("section {section}: {message}")]
    Malformed {
        section: &'static str,
        message: String,
    },
    #[error("embedded hardware description: {0}")]
    Arch(#[from] ArchError),
    #[error("{site}: {source}")]
    Decode { site: Site, source: DecodeError },
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ContainerError> {
        if self.bytes.len() - self.pos < n {
            return Err(ContainerError::Truncated {
                what: what.to_string(),
                offset: self.pos,
                need: n,
                len: self.bytes.len(),
            });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u16(&mut self, what: &str) -> Result<u16, ContainerError> {
        Ok(u16::from_le_bytes(
            self.take(2, what)?.try_into().expect("2 bytes"),
        ))
    }

    fn u32(&mut self, what: &str) -> Result<u32, ContainerError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self, what: &str) -> Result<u64, ContainerError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }

    fn string(&mut self, section: &'static str) -> Result<String, ContainerError> {
        let n = usize::from(self.u16(section)?);
        let b = self.take(n, section)?;
        String::from_utf8(b.to_vec()).map_err(|_| ContainerError::Malformed {
            section,
            message: "a name is not UTF-8".into(),
        })
    }

    fn section(&mut self, tag: &[u8; 4]) -> Result<Reader<'a>, ContainerError> {
        let offset = self.pos;
        let name = String::from_utf8_lossy(tag).into_owned();
        let found = self.take(4, &format!("section {name} header"))?;
        if found != tag {
            return Err(ContainerError::Section {
                expected: name,
                found: String::from_utf8_lossy(found).into_owned(),
                offset,
            });
        }
        let len = self.u32(&format!("section {name} length"))? as usize;
        let body = self.take(len, &format!("section {name}"))?;
        Ok(Reader {
            bytes: body,
            pos: 0,
        })
    }

    fn finish(&self, section: &'static str) -> Result<(), ContainerError> {
        if self.pos != self.bytes.len() {
            return Err(ContainerError::Malformed {
                section,
                message: format!("{} unused bytes at its end", self.bytes.len() - self.pos),
            });
        }
        Ok(())
    }
}

fn put_section(out: &mut Vec<u8>, tag: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(tag);
    out.extend_from_slice(
        &u32::try_from(body.len())
            .expect("section under 4 GiB")
            .to_le_bytes(),
    );
    out.extend_from_slice(body);
}

fn put_name(out: &mut Vec<u8>, s: &str) {
    let n = u16::try_from(s.len()).expect("names are shorter than 64 KiB");
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl Program {
    /// An empty program for `arch`.
    pub fn new(arch: Arch) -> Program {
        Program {
            arch,
            queues: Default::default(),
            symbols: Vec::new(),
            regions: Vec::new(),
        }
    }

    /// The stream of queue `q`.
    pub fn queue(&self, q: Queue) -> &[Instruction] {
        &self.queues[q.index()]
    }

    /// Instructions in all queues.
    pub fn len(&self) -> usize {
        self.queues.iter().map(Vec::len).sum()
    }

    /// True when every queue is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The container bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION_MAJOR.to_le_bytes());
        out.extend_from_slice(&VERSION_MINOR.to_le_bytes());
        put_section(&mut out, b"ARCH", self.arch.to_toml().as_bytes());
        let mut syms = Vec::new();
        syms.extend_from_slice(&(self.symbols.len() as u32).to_le_bytes());
        for s in &self.symbols {
            put_name(&mut syms, &s.name);
            syms.push(s.space.code());
            syms.extend_from_slice(&s.addr.to_le_bytes());
            syms.extend_from_slice(&s.size.to_le_bytes());
        }
        put_section(&mut out, b"SYMS", &syms);
        let mut regs = Vec::new();
        regs.extend_from_slice(&(self.regions.len() as u32).to_le_bytes());
        for r in &self.regions {
            put_name(&mut regs, r);
        }
        put_section(&mut out, b"REGN", &regs);
        for (q, tag) in QUEUE_TAGS.iter().enumerate() {
            let code = &self.queues[q];
            let mut body = Vec::with_capacity(4 + code.len() * WORD_BYTES);
            body.extend_from_slice(&(code.len() as u32).to_le_bytes());
            for i in code {
                body.extend_from_slice(&i.encode().to_le_bytes());
            }
            put_section(&mut out, tag, &body);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads container bytes. Never panics, whatever the bytes.
    ///
    /// # Errors
    /// The first problem found: magic, version, truncation, section order,
    /// checksum, embedded description, or an instruction that does not decode.
    ///
    /// ```
    /// # use tessera_isa::{Arch, Program};
    /// let p = Program::new(Arch::preset("fpga-8x8")?);
    /// assert_eq!(Program::from_bytes(&p.to_bytes())?, p);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Program, ContainerError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(4, "magic").map_err(|_| ContainerError::BadMagic)? != MAGIC {
            return Err(ContainerError::BadMagic);
        }
        let major = r.u16("version")?;
        let minor = r.u16("version")?;
        if major != VERSION_MAJOR {
            return Err(ContainerError::Version { major, minor });
        }
        let arch_body = r.section(b"ARCH")?;
        let mut syms = r.section(b"SYMS")?;
        let mut regs = r.section(b"REGN")?;
        let mut code = Vec::with_capacity(4);
        for tag in &QUEUE_TAGS {
            code.push(r.section(tag)?);
        }
        let covered = r.pos;
        let stored = r.u32("checksum")?;
        if r.pos != bytes.len() {
            return Err(ContainerError::Trailing(bytes.len() - r.pos));
        }
        let computed = crc32fast::hash(&bytes[..covered]);
        if stored != computed {
            return Err(ContainerError::Checksum { stored, computed });
        }

        let toml = std::str::from_utf8(arch_body.bytes).map_err(|_| ContainerError::Malformed {
            section: "ARCH",
            message: "not UTF-8".into(),
        })?;
        let arch = Arch::from_toml(toml)?;

        let n = syms.u32("SYMS")? as usize;
        let mut symbols = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            let name = syms.string("SYMS")?;
            let code = syms.take(1, "SYMS")?[0];
            let space = MemSpace::from_code(code).ok_or_else(|| ContainerError::Malformed {
                section: "SYMS",
                message: format!("symbol `{name}` has unknown space code {code}"),
            })?;
            let addr = syms.u64("SYMS")?;
            let size = syms.u64("SYMS")?;
            symbols.push(Symbol {
                name,
                space,
                addr,
                size,
            });
        }
        syms.finish("SYMS")?;

        let n = regs.u32("REGN")? as usize;
        let mut regions = Vec::with_capacity(n.min(1 << 16));
        for _ in 0..n {
            regions.push(regs.string("REGN")?);
        }
        regs.finish("REGN")?;

        let mut queues: [Vec<Instruction>; 4] = Default::default();
        for (q, mut body) in Queue::ALL.into_iter().zip(code) {
            let section = ["QLOD", "QMAT", "QVEC", "QSTO"][q.index()];
            let n = body.u32(section)? as usize;
            if body.bytes.len() - body.pos != n * WORD_BYTES {
                return Err(ContainerError::Malformed {
                    section,
                    message: format!(
                        "declares {n} instructions but holds {} bytes",
                        body.bytes.len() - body.pos
                    ),
                });
            }
            let mut out = Vec::with_capacity(n);
            for index in 0..n {
                let w = u128::from_le_bytes(
                    body.take(WORD_BYTES, section)?
                        .try_into()
                        .expect("16 bytes"),
                );
                let inst = Instruction::decode(w).map_err(|source| ContainerError::Decode {
                    site: Site { queue: q, index },
                    source,
                })?;
                out.push(inst);
            }
            queues[q.index()] = out;
        }
        Ok(Program {
            arch,
            queues,
            symbols,
            regions,
        })
    }

    /// Checks the structural rules that need no execution: each instruction is
    /// legal in its queue and on this hardware, each non-empty queue ends with
    /// one `halt`, loops nest properly within 4 levels, profiling regions are
    /// balanced, and symbols are unique and inside their memories.
    ///
    /// # Errors
    /// Every rule broken, in queue and instruction order.
    pub fn validate(&self) -> Result<(), Vec<ProgramError>> {
        let mut errors = Vec::new();
        for q in Queue::ALL {
            validate_queue(self, q, &mut errors);
        }
        for (i, r) in self.regions.iter().enumerate() {
            if self.regions[..i].contains(r) {
                errors.push(ProgramError {
                    site: None,
                    mnemonic: "region",
                    rule: format!("region name `{r}` appears twice in the region table"),
                });
            }
            if !is_identifier(r) {
                errors.push(ProgramError {
                    site: None,
                    mnemonic: "region",
                    rule: format!(
                        "region name {r:?} is not an identifier ([A-Za-z_][A-Za-z0-9_.]*)"
                    ),
                });
            }
        }
        for (i, s) in self.symbols.iter().enumerate() {
            if !is_identifier(&s.name) {
                errors.push(ProgramError {
                    site: None,
                    mnemonic: "symbol",
                    rule: format!(
                        "symbol name {:?} is not an identifier ([A-Za-z_][A-Za-z0-9_.]*)",
                        s.name
                    ),
                });
            }
            let cap = match s.space {
                MemSpace::Hbm => self.arch.hbm_bytes(),
                MemSpace::Spad => self.arch.scratchpad_bytes(),
                MemSpace::Acc => self.arch.accumulator_bytes(),
            };
            let site = None;
            if s.addr.checked_add(s.size).is_none_or(|end| end > cap.get()) {
                errors.push(ProgramError {
                    site,
                    mnemonic: "symbol",
                    rule: format!(
                        "symbol `{}` ends past the {} bytes of {}",
                        s.name,
                        cap.get(),
                        s.space
                    ),
                });
            }
            if self.symbols[..i].iter().any(|o| o.name == s.name) {
                errors.push(ProgramError {
                    site,
                    mnemonic: "symbol",
                    rule: format!("symbol `{}` is defined twice", s.name),
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn validate_queue(p: &Program, q: Queue, errors: &mut Vec<ProgramError>) {
    let code = p.queue(q);
    let arch = &p.arch;
    let mut err = |index: usize, inst: &Instruction, rule: String| {
        errors.push(ProgramError {
            site: Some(Site { queue: q, index }),
            mnemonic: inst.op.mnemonic(),
            rule,
        })
    };
    // Open loops as (end index, profiling depth at entry).
    let mut loops: Vec<(usize, usize)> = Vec::new();
    let mut prof: Vec<u16> = Vec::new();
    for (index, inst) in code.iter().enumerate() {
        while loops.last().is_some_and(|&(end, _)| end == index) {
            let (_, depth) = loops.pop().expect("checked non-empty");
            if prof.len() != depth {
                err(
                    index,
                    inst,
                    "a profiling region opened inside a loop body must close inside it".into(),
                );
                prof.truncate(depth);
            }
        }
        if !inst.op.queues().contains(q) {
            err(
                index,
                inst,
                format!(
                    "runs only on the {} queue, not {q}",
                    inst.op.queues().names()
                ),
            );
        }
        match inst.op {
            Op::Halt {} if index + 1 != code.len() => err(
                index,
                inst,
                "halt must be the last instruction of its queue".into(),
            ),
            Op::Halt {} if !loops.is_empty() => {
                err(index, inst, "halt may not be inside a loop body".into())
            }
            Op::Loop { end, .. } => {
                let stop = index + 1 + end.body_len();
                if stop > code.len() {
                    err(
                        index,
                        inst,
                        format!(
                            "loop body ends at {stop}, past the end of the queue ({})",
                            code.len()
                        ),
                    );
                } else if loops.last().is_some_and(|&(outer, _)| stop > outer) {
                    err(
                        index,
                        inst,
                        "loop body must end inside the enclosing loop's body".into(),
                    );
                } else if loops.len() == MAX_LOOP_DEPTH {
                    err(
                        index,
                        inst,
                        format!("loops nest deeper than {MAX_LOOP_DEPTH} levels"),
                    );
                } else {
                    loops.push((stop, prof.len()));
                }
            }
            Op::ProfBegin { region } => {
                if usize::from(region.0) >= p.regions.len() {
                    err(
                        index,
                        inst,
                        format!("region id {} has no name in the region table", region.0),
                    );
                }
                prof.push(region.0);
            }
            Op::ProfEnd { region } => match prof.pop() {
                Some(open) if open == region.0 => {}
                Some(open) => err(
                    index,
                    inst,
                    format!(
                        "closes region {} but region {open} is the innermost open one",
                        region.0
                    ),
                ),
                None => err(index, inst, "closes a region that is not open".into()),
            },
            Op::MmPreload { b, k, n, .. } => {
                if b.addr.space != Space::Spad {
                    err(index, inst, "operand b must be in the scratchpad".into());
                }
                check_input_type(arch, b.dtype)
                    .map_err(|r| err(index, inst, r))
                    .ok();
                if n.get() > u64::from(arch.cols()) {
                    err(
                        index,
                        inst,
                        format!(
                            "n = {} exceeds the array's {} columns",
                            n.get(),
                            arch.cols()
                        ),
                    );
                }
                if arch.dataflow() == crate::Dataflow::WeightStationary
                    && k.get() > u64::from(arch.rows())
                {
                    err(
                        index,
                        inst,
                        format!(
                            "k = {} exceeds the array's {} rows (weight-stationary)",
                            k.get(),
                            arch.rows()
                        ),
                    );
                }
            }
            Op::MmCompute { a, c, m, .. } => {
                if a.addr.space != Space::Spad {
                    err(index, inst, "operand a must be in the scratchpad".into());
                }
                if c.addr.space != Space::Acc {
                    err(index, inst, "result c must be in the accumulator".into());
                }
                check_input_type(arch, a.dtype)
                    .map_err(|r| err(index, inst, r))
                    .ok();
                if c.dtype != a.dtype.accumulator_type() {
                    err(
                        index,
                        inst,
                        format!(
                            "{} inputs accumulate in {}, but c is {}",
                            a.dtype,
                            a.dtype.accumulator_type(),
                            c.dtype
                        ),
                    );
                }
                if arch.dataflow() == crate::Dataflow::OutputStationary
                    && m.get() > u64::from(arch.rows())
                {
                    err(
                        index,
                        inst,
                        format!(
                            "m = {} exceeds the array's {} rows (output-stationary)",
                            m.get(),
                            arch.rows()
                        ),
                    );
                }
            }
            Op::DmaScatterAdd { row_bytes, .. } if row_bytes.get() % 4 != 0 => err(
                index,
                inst,
                format!(
                    "row_bytes = {} is not a multiple of 4 (fp32 rows)",
                    row_bytes.get()
                ),
            ),
            Op::DmaLoad {
                row_bytes,
                transpose,
                ..
            }
            | Op::DmaStore {
                row_bytes,
                transpose,
                ..
            } => {
                if let Some(e) = transpose.element_bytes() {
                    if row_bytes.get() % e != 0 {
                        err(index, inst, format!("row_bytes = {} is not a multiple of the {e}-byte transpose element", row_bytes.get()));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(last) = code.last() {
        if !matches!(last.op, Op::Halt {}) {
            err(
                code.len() - 1,
                last,
                "the last instruction of a queue must be halt".into(),
            );
        }
        if !prof.is_empty() {
            err(
                code.len() - 1,
                last,
                format!(
                    "{} profiling region(s) left open at the end of the queue",
                    prof.len()
                ),
            );
        }
    }
}

/// Whether `s` is an assembler identifier: `[A-Za-z_][A-Za-z0-9_.]*`, and
/// not `inf`, which reads as a floating-point literal.
pub fn is_identifier(s: &str) -> bool {
    if s == "inf" {
        return false;
    }
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

fn check_input_type(arch: &Arch, t: crate::DType) -> Result<(), String> {
    if !arch.supports_input(t) {
        return Err(format!(
            "the array of `{}` does not take {t} inputs",
            arch.name()
        ));
    }
    Ok(())
}
