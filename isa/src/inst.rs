//! The instruction table: every instruction is declared once, in
//! [`define_instructions!`] below, with its opcode, the queues that may run it,
//! its documentation and its fields in bit order. The typed [`Op`] enum, the
//! encoder, the decoder, the text printer and parser, and the
//! [`INSTRUCTIONS`] metadata that `docs/isa.md` is checked against are all
//! generated from that one list.
//!
//! Word layout (128 bits, little-endian): bits 0..8 opcode, 8..24 wait tokens,
//! 24..40 signal tokens, 40.. the fields in declaration order; bits above the
//! last field are reserved and must be zero.

use std::fmt::{self, Write as _};

use crate::field::*;

/// Bits in one instruction word.
pub const WORD_BITS: u32 = 128;
/// Bytes in one instruction word.
pub const WORD_BYTES: usize = 16;
/// First bit of the fields.
pub const FIELDS_START: u32 = 40;
/// Bits available to the fields.
pub const FIELD_BITS: u32 = WORD_BITS - FIELDS_START;

/// One of the four in-order instruction streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Queue {
    /// DMA from HBM into the scratchpad or accumulator.
    Load,
    /// The systolic array.
    Matrix,
    /// The vector unit.
    Vector,
    /// DMA from the scratchpad or accumulator to HBM.
    Store,
}

impl Queue {
    /// All queues, in program-container order.
    pub const ALL: [Queue; 4] = [Queue::Load, Queue::Matrix, Queue::Vector, Queue::Store];

    /// Position in [`Queue::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The name used in `.queue` directives and messages.
    pub const fn name(self) -> &'static str {
        match self {
            Queue::Load => "load",
            Queue::Matrix => "matrix",
            Queue::Vector => "vector",
            Queue::Store => "store",
        }
    }

    /// Parses a queue name.
    pub fn from_name(s: &str) -> Option<Queue> {
        Queue::ALL.into_iter().find(|q| q.name() == s)
    }
}

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of queues, as a bit mask over [`Queue::index`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueSet(u8);

impl QueueSet {
    pub const ANY: QueueSet = QueueSet(0b1111);
    pub const LOAD: QueueSet = QueueSet(0b0001);
    pub const MATRIX: QueueSet = QueueSet(0b0010);
    pub const VECTOR: QueueSet = QueueSet(0b0100);
    pub const STORE: QueueSet = QueueSet(0b1000);
    pub const DMA: QueueSet = QueueSet(0b1001);

    /// Whether `q` is in the set.
    pub const fn contains(self, q: Queue) -> bool {
        self.0 >> q.index() & 1 == 1
    }

    /// The queue names, joined by `, `.
    pub fn names(self) -> String {
        if self == QueueSet::ANY {
            return "any".into();
        }
        let v: Vec<_> = Queue::ALL
            .iter()
            .filter(|q| self.contains(**q))
            .map(|q| q.name())
            .collect();
        v.join(", ")
    }
}

/// Table metadata of one field, for documentation and generic tooling.
#[derive(Debug, Clone, Copy)]
pub struct FieldDesc {
    pub name: &'static str,
    /// First bit in the word.
    pub lsb: u32,
    pub bits: u32,
    pub syntax: &'static str,
    pub doc: &'static str,
}

/// Table metadata of one instruction.
#[derive(Debug, Clone, Copy)]
pub struct InstDesc {
    pub mnemonic: &'static str,
    pub opcode: u8,
    pub queues: QueueSet,
    /// The functional unit group, for the document's sections.
    pub group: &'static str,
    pub doc: &'static str,
    pub fields: &'static [FieldDesc],
}

/// Why a word does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown opcode 0x{0:02x}")]
    UnknownOpcode(u8),
    #[error("{mnemonic}: field `{field}` holds 0x{bits:x}, which encodes no value")]
    BadField {
        mnemonic: &'static str,
        field: &'static str,
        bits: u128,
    },
    #[error("{mnemonic}: reserved bits above bit {first} are not zero")]
    Reserved { mnemonic: &'static str, first: u32 },
}

/// An operand as written in assembly: an optional `name=` and its value, with
/// the position of its first character for error messages.
#[derive(Debug, Clone)]
pub struct OperandText {
    pub key: Option<String>,
    pub value: Value,
    /// Byte offset of the operand in its line.
    pub column: usize,
}

/// An error converting assembly operands, at a byte offset of the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperandError {
    pub column: usize,
    pub message: String,
}

/// Matches operands to fields: positional ones first, in field order, then
/// `name=value` ones in any order.
fn bind<'a>(
    mnemonic: &str,
    names: &[&'static str],
    ops: &'a [OperandText],
    line_end: usize,
) -> Result<Vec<&'a OperandText>, OperandError> {
    let mut slots: Vec<Option<&OperandText>> = vec![None; names.len()];
    let mut seen_key = false;
    for (i, op) in ops.iter().enumerate() {
        let slot = match &op.key {
            None if seen_key => {
                return Err(OperandError {
                    column: op.column,
                    message: "positional operand after a named one".into(),
                })
            }
            None if i >= names.len() => {
                return Err(OperandError {
                    column: op.column,
                    message: format!("{mnemonic} takes {} operands", names.len()),
                })
            }
            None => i,
            Some(k) => {
                seen_key = true;
                names
                    .iter()
                    .position(|n| n == k)
                    .ok_or_else(|| OperandError {
                        column: op.column,
                        message: if names.is_empty() {
                            format!("{mnemonic} takes no operand `{k}`")
                        } else {
                            format!(
                                "{mnemonic} has no operand `{k}` (operands: {})",
                                names.join(", ")
                            )
                        },
                    })?
            }
        };
        if slots[slot].is_some() {
            return Err(OperandError {
                column: op.column,
                message: format!("operand `{}` given twice", names[slot]),
            });
        }
        slots[slot] = Some(op);
    }
    slots
        .into_iter()
        .zip(names)
        .map(|(s, n)| {
            s.ok_or_else(|| OperandError {
                column: line_end,
                message: format!("{mnemonic} is missing operand `{n}`"),
            })
        })
        .collect()
}

fn field_from<T: Field>(op: &OperandText, name: &str, cx: &mut ParseCx) -> Result<T, OperandError> {
    T::parse(&op.value, cx).map_err(|message| OperandError {
        column: op.column,
        message: format!("operand `{name}`: {message}"),
    })
}

macro_rules! define_instructions {
    ($(
        $group:literal {
            $(
                $(#[doc = $doc:literal])+
                $name:ident = $opcode:literal, $mnemonic:literal, $queues:ident {
                    $( $(#[doc = $fdoc:literal])+ $field:ident : $ty:ty ),* $(,)?
                }
            )+
        }
    )+) => {
        /// An operation with its operands; see `docs/isa.md` for semantics.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Op {
            $($(
                $(#[doc = $doc])+
                $name { $( $(#[doc = $fdoc])+ $field: $ty ),* },
            )+)+
        }

        $($(
            #[allow(unused_comparisons, clippy::absurd_extreme_comparisons)]
            const _: () = assert!(
                0 $(+ <$ty as Field>::BITS)* <= FIELD_BITS,
                concat!($mnemonic, ": fields do not fit in the instruction word")
            );
        )+)+

        /// The instruction table, in opcode order within each group.
        pub static INSTRUCTIONS: &[InstDesc] = &[
            $($(
                InstDesc {
                    mnemonic: $mnemonic,
                    opcode: $opcode,
                    queues: QueueSet::$queues,
                    group: $group,
                    doc: concat!($($doc, "\n"),+),
                    fields: {
                        #[allow(unused_mut, unused_assignments)]
                        const F: &[FieldDesc] = {
                            const NAMES: &[&str] = &[$(stringify!($field)),*];
                            const N: usize = NAMES.len();
                            let bits: [u32; N] = [$(<$ty as Field>::BITS),*];
                            let syntax: [&str; N] = [$(<$ty as Field>::SYNTAX),*];
                            let docs: [&str; N] = [$(concat!($($fdoc),+)),*];
                            let mut out = [FieldDesc { name: "", lsb: 0, bits: 0, syntax: "", doc: "" }; N];
                            let mut i = 0;
                            let mut lsb = FIELDS_START;
                            while i < N {
                                out[i] = FieldDesc { name: NAMES[i], lsb, bits: bits[i], syntax: syntax[i], doc: docs[i] };
                                lsb += bits[i];
                                i += 1;
                            }
                            &{ out }
                        };
                        F
                    },
                },
            )+)+
        ];

        impl Op {
            /// The 8-bit opcode.
            pub const fn opcode(&self) -> u8 {
                match self { $($(Op::$name { .. } => $opcode,)+)+ }
            }

            /// The assembly mnemonic.
            pub const fn mnemonic(&self) -> &'static str {
                match self { $($(Op::$name { .. } => $mnemonic,)+)+ }
            }

            /// The queues that may run this operation.
            pub const fn queues(&self) -> QueueSet {
                match self { $($(Op::$name { .. } => QueueSet::$queues,)+)+ }
            }

            /// The fields packed from bit 0 (shift by [`FIELDS_START`] for the word).
            #[allow(unused_mut, unused_assignments, unused_variables)]
            fn field_bits(&self) -> u128 {
                match self {
                    $($(Op::$name { $($field),* } => {
                        let mut bits = 0u128;
                        let mut shift = 0u32;
                        $(
                            bits |= Field::to_bits($field) << shift;
                            shift += <$ty as Field>::BITS;
                        )*
                        bits
                    })+)+
                }
            }

            #[allow(unused_mut, unused_assignments, unused_variables, clippy::let_and_return)]
            fn from_field_bits(opcode: u8, bits: u128) -> Result<Op, DecodeError> {
                match opcode {
                    $($($opcode => {
                        let mut shift = 0u32;
                        $(
                            let raw = (bits >> shift) & ((1u128 << <$ty as Field>::BITS) - 1);
                            let $field = <$ty as Field>::from_bits(raw).ok_or(DecodeError::BadField {
                                mnemonic: $mnemonic,
                                field: stringify!($field),
                                bits: raw,
                            })?;
                            shift += <$ty as Field>::BITS;
                        )*
                        if shift < 128 && bits >> shift != 0 {
                            return Err(DecodeError::Reserved { mnemonic: $mnemonic, first: FIELDS_START + shift });
                        }
                        Ok(Op::$name { $($field),* })
                    })+)+
                    other => Err(DecodeError::UnknownOpcode(other)),
                }
            }

            /// Appends the operands as `name=value, ...`.
            #[allow(unused_mut, unused_assignments, unused_variables)]
            fn write_operands(&self, out: &mut String, cx: &WriteCx<'_>) {
                match self {
                    $($(Op::$name { $($field),* } => {
                        let mut first = true;
                        $(
                            out.push_str(if first { " " } else { ", " });
                            first = false;
                            out.push_str(concat!(stringify!($field), "="));
                            Field::write($field, out, cx);
                        )*
                    })+)+
                }
            }

            /// Builds the operation named `mnemonic` from its operands.
            ///
            /// # Errors
            /// `Ok(None)` when no instruction has this mnemonic; otherwise an
            /// error at the operand that is missing, unknown or ill-formed.
            #[allow(unused_variables, unused_mut)]
            pub fn parse(
                mnemonic: &str,
                ops: &[OperandText],
                line_end: usize,
                cx: &mut ParseCx,
            ) -> Result<Option<Op>, OperandError> {
                match mnemonic {
                    $($($mnemonic => {
                        let names: &[&'static str] = &[$(stringify!($field)),*];
                        let bound = bind($mnemonic, names, ops, line_end)?;
                        let mut it = bound.into_iter();
                        $(
                            let $field: $ty = field_from(it.next().expect("bound one per field"), stringify!($field), cx)?;
                        )*
                        Ok(Some(Op::$name { $($field),* }))
                    })+)+
                    _ => Ok(None),
                }
            }
        }
    };
}

define_instructions! {
    "control" {
        /// Does nothing; a place to wait for or signal tokens.
        Nop = 0x00, "nop", ANY {}

        /// Stops this queue. Every non-empty queue ends with `halt`, outside any loop.
        Halt = 0x01, "halt", ANY {}

        /// Runs the next instructions up to `end` `count` times. The loop's
        /// iteration number (0 to count-1) is this nesting level's index for
        /// address generation; at most 4 loops nest in one queue, and each body
        /// lies wholly inside the enclosing one.
        Loop = 0x02, "loop", ANY {
            /// Iterations.
            count: Count<32>,
            /// First instruction after the body.
            end: LoopEnd,
        }

        /// Sets address register `reg` to `base` and clears its strides.
        AddrSet = 0x03, "addr.set", ANY {
            /// Register.
            reg: Reg,
            /// Base byte address.
            base: UInt<48>,
        }

        /// Sets the stride that loop level `level` adds to register `reg` per
        /// iteration: the register's address is base + sum(stride[l] * index[l])
        /// over the enclosing loops.
        AddrStep = 0x04, "addr.step", ANY {
            /// Register.
            reg: Reg,
            /// Loop nesting level, 0 outermost.
            level: Level,
            /// Bytes added per iteration of that level.
            stride: SInt<40>,
        }

        /// Marks the start of profiling region `region` in this queue.
        ProfBegin = 0x05, "prof.begin", ANY {
            /// Region name.
            region: Region,
        }

        /// Marks the end of profiling region `region` in this queue.
        ProfEnd = 0x06, "prof.end", ANY {
            /// Region name.
            region: Region,
        }
    }

    "dma" {
        /// Sets the HBM-side strides of this queue's later transfers (0 = packed).
        DmaHbmStride = 0x10, "dma.hstride", DMA {
            /// Bytes between consecutive rows.
            row: UInt<40>,
            /// Bytes between consecutive planes.
            plane: UInt<40>,
        }

        /// Sets the on-chip-side strides of this queue's later transfers (0 = packed).
        DmaLocalStride = 0x11, "dma.lstride", DMA {
            /// Bytes between consecutive rows.
            row: UInt<32>,
            /// Bytes between consecutive planes.
            plane: UInt<32>,
        }

        /// Copies a box of `planes` x `rows` x `row_bytes` bytes from HBM to
        /// on-chip memory, with the strides set by `dma.hstride` and
        /// `dma.lstride`. The counts describe the source box. With `transpose`
        /// = E, each plane's rows x (row_bytes/E) matrix of E-byte elements is
        /// written transposed: (row_bytes/E) rows of rows*E bytes.
        DmaLoad = 0x12, "dma.load", LOAD {
            /// On-chip destination.
            dst: LocalAddr,
            /// HBM source.
            src: HbmAddr,
            /// Rows per plane.
            rows: Count<12>,
            /// Bytes per row.
            row_bytes: Count<16>,
            /// Planes.
            planes: Count<8>,
            /// Element size to transpose, or `none`.
            transpose: Transpose,
        }

        /// For i in 0..rows, copies `row_bytes` bytes from HBM row idx[i] of
        /// `table` (row stride from `dma.hstride`) to on-chip row i of `dst`
        /// (row stride from `dma.lstride`). idx holds int32 values; a negative
        /// index writes zeros.
        DmaGather = 0x13, "dma.gather", LOAD {
            /// On-chip destination.
            dst: LocalAddr,
            /// HBM table.
            table: HbmAddr,
            /// On-chip int32 indices.
            idx: LocalAddr,
            /// Indices to gather.
            rows: Count<12>,
            /// Bytes per row.
            row_bytes: Count<16>,
        }

        /// Copies a box from on-chip memory to HBM; the mirror of `dma.load`.
        DmaStore = 0x14, "dma.store", STORE {
            /// HBM destination.
            dst: HbmAddr,
            /// On-chip source.
            src: LocalAddr,
            /// Rows per plane.
            rows: Count<12>,
            /// Bytes per row.
            row_bytes: Count<16>,
            /// Planes.
            planes: Count<8>,
            /// Element size to transpose, or `none`.
            transpose: Transpose,
        }

        /// For i in 0..rows, adds on-chip fp32 row i of `src` into HBM row idx[i]
        /// of `table`, in ascending i (embedding gradients). Negative indices are
        /// skipped. `row_bytes` is a multiple of 4.
        DmaScatterAdd = 0x15, "dma.scatter_add", STORE {
            /// HBM table (fp32).
            table: HbmAddr,
            /// On-chip fp32 rows.
            src: LocalAddr,
            /// On-chip int32 indices.
            idx: LocalAddr,
            /// Indices to scatter.
            rows: Count<12>,
            /// Bytes per row.
            row_bytes: Count<16>,
        }
    }

    "matrix" {
        /// Sets the row strides in bytes of the matrix operands that follow (0 = packed).
        MmStride = 0x20, "mm.stride", MATRIX {
            /// Row stride of the streamed (left) operand.
            a: UInt<24>,
            /// Row stride of the preloaded (right) operand.
            b: UInt<24>,
            /// Row stride of the accumulator result.
            c: UInt<24>,
        }

        /// Binds the right operand B (k x n) of the next `mm.compute`. With a
        /// weight-stationary array it is shifted into the processing elements
        /// now (into the shadow buffer when weights are double-buffered; then
        /// it takes effect at the next `mm.compute`); with an output-stationary
        /// array it streams during `mm.compute`. Weight-stationary needs
        /// k <= rows and n <= cols; output-stationary needs n <= cols.
        MmPreload = 0x21, "mm.preload", MATRIX {
            /// Scratchpad operand, stored k x n (n x k when transposed).
            b: Tile,
            /// Reduction length.
            k: Count<16>,
            /// Output columns.
            n: Count<11>,
            /// B is stored transposed.
            transpose: bool,
        }

        /// C (m x n) = A (m x k) * B, or C += A * B, with B and k, n from the
        /// last `mm.preload`. Products accumulate in the type of C: fp32 for
        /// floating inputs, int32 for int8. Output-stationary arrays need m <= rows.
        MmCompute = 0x22, "mm.compute", MATRIX {
            /// Scratchpad operand, stored m x k (k x m when transposed).
            a: Tile,
            /// Accumulator result (fp32 or int32).
            c: Tile,
            /// Rows of A and C.
            m: Count<16>,
            /// A is stored transposed.
            transpose: bool,
            /// Overwrite C or add to it.
            mode: WriteMode,
        }
    }

    "vector" {
        /// Sets the rows x cols shape of the vector operations that follow.
        VShape = 0x30, "v.shape", VECTOR {
            /// Rows.
            rows: Count<16>,
            /// Columns.
            cols: Count<16>,
        }

        /// Sets the row strides in bytes of the vector operands that follow (0 = packed).
        VStride = 0x31, "v.stride", VECTOR {
            /// Destination.
            d: UInt<20>,
            /// First source.
            a: UInt<20>,
            /// Second source (and a `row`/`col` broadcast's own layout).
            b: UInt<20>,
            /// Mask of `v.sel`, indices of `v.gather`/`v.scatter_add`.
            m: UInt<20>,
        }

        /// dst = a OP b elementwise; b may broadcast a row, a column or a scalar.
        VBin = 0x32, "v.bin", VECTOR {
            /// Operation.
            op: VecBinOp,
            /// Destination.
            dst: Tile,
            /// First source.
            a: Tile,
            /// Second source.
            b: VecSrc,
        }

        /// dst = OP(a) elementwise; `copy` between types is a cast.
        VUn = 0x33, "v.un", VECTOR {
            /// Operation.
            op: VecUnOp,
            /// Destination.
            dst: Tile,
            /// Source.
            a: Tile,
        }

        /// dst = alpha * a + beta * b elementwise, computed as two fp32 products
        /// and one fp32 sum (optimizer moments, momentum, interpolation).
        VAxpby = 0x34, "v.axpby", VECTOR {
            /// Destination.
            dst: Tile,
            /// First source.
            a: Tile,
            /// Second source.
            b: VecSrc,
            /// Scale of a.
            alpha: FReg,
            /// Scale of b.
            beta: FReg,
        }

        /// Reduces a along `axis` into dst (one column for `rows`, one row for
        /// `cols`), in ascending index order; `accumulate` combines with dst.
        VReduce = 0x35, "v.reduce", VECTOR {
            /// Operation.
            op: ReduceOp,
            /// Direction.
            axis: Axis,
            /// Destination.
            dst: Tile,
            /// Source.
            a: Tile,
            /// Overwrite dst or combine with it.
            mode: WriteMode,
        }

        /// dst = (mask != 0) ? a : b elementwise.
        VSel = 0x36, "v.sel", VECTOR {
            /// Destination.
            dst: Tile,
            /// Mask.
            mask: Tile,
            /// Taken where mask is non-zero.
            a: Tile,
            /// Taken where mask is zero.
            b: VecSrc,
        }

        /// Causal mask: dst(i, j) = fill where col + j > row + i, else a(i, j).
        VCausal = 0x37, "v.causal", VECTOR {
            /// Destination.
            dst: Tile,
            /// Source.
            a: Tile,
            /// Register holding the fill value (usually -inf).
            fill: FReg,
            /// Sequence position of tile row 0.
            row: SInt<20>,
            /// Sequence position of tile column 0.
            col: SInt<20>,
        }

        /// `rows`: dst row i = table row idx[i]; `elems`: dst(i, 0) = table(i, idx[i]).
        /// idx is int32 (row stride `m`); a negative index gives 0.
        VGather = 0x38, "v.gather", VECTOR {
            /// What an index selects.
            mode: IndexMode,
            /// Destination.
            dst: Tile,
            /// Table (row stride `a`).
            table: Tile,
            /// On-chip int32 indices.
            idx: LocalAddr,
        }

        /// `rows`: table row idx[i] += src row i; `elems`: table(i, idx[i]) += src(i, 0),
        /// in ascending i. Negative indices are skipped.
        VScatterAdd = 0x39, "v.scatter_add", VECTOR {
            /// What an index selects.
            mode: IndexMode,
            /// Table (row stride `d`).
            table: Tile,
            /// Source (row stride `a`).
            src: Tile,
            /// On-chip int32 indices.
            idx: LocalAddr,
        }

        /// Sets scalar register `reg` to an fp32 constant.
        VFset = 0x3a, "v.fset", VECTOR {
            /// Register.
            reg: FReg,
            /// Value.
            value: F32Imm,
        }

        /// Loads scalar register `reg` from an on-chip fp32 (loss scale,
        /// learning-rate schedule, overflow flag).
        VFload = 0x3b, "v.fload", VECTOR {
            /// Register.
            reg: FReg,
            /// On-chip fp32 source.
            src: LocalAddr,
        }
    }
}

/// One instruction: an operation plus the dependency tokens it waits for
/// before it starts and signals when its effects are complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Instruction {
    pub op: Op,
    /// Tokens each decremented once before the operation starts.
    pub wait: TokenSet,
    /// Tokens each incremented once after the operation completes.
    pub signal: TokenSet,
}

impl Instruction {
    /// An instruction with no tokens.
    pub const fn new(op: Op) -> Instruction {
        Instruction {
            op,
            wait: TokenSet::EMPTY,
            signal: TokenSet::EMPTY,
        }
    }

    /// The 128-bit word.
    ///
    /// ```
    /// # use tessera_isa::{Instruction, Op};
    /// let halt = Instruction::new(Op::Halt {});
    /// assert_eq!(Instruction::decode(halt.encode()), Ok(halt));
    /// ```
    pub fn encode(&self) -> u128 {
        u128::from(self.op.opcode())
            | u128::from(self.wait.0) << 8
            | u128::from(self.signal.0) << 24
            | self.op.field_bits() << FIELDS_START
    }

    /// Decodes a 128-bit word.
    ///
    /// # Errors
    /// An unknown opcode, a field value no operand has, or set reserved bits.
    pub fn decode(word: u128) -> Result<Instruction, DecodeError> {
        let op = Op::from_field_bits((word & 0xff) as u8, word >> FIELDS_START)?;
        Ok(Instruction {
            op,
            wait: TokenSet((word >> 8) as u16),
            signal: TokenSet((word >> 24) as u16),
        })
    }

    /// The assembly text of this instruction at index `cx.here` of its queue.
    pub fn write(&self, out: &mut String, cx: &WriteCx<'_>) {
        out.push_str(self.op.mnemonic());
        self.op.write_operands(out, cx);
        let mut sep = if matches!(self.op, Op::Nop {} | Op::Halt {}) {
            " "
        } else {
            ", "
        };
        for (key, set) in [("wait", self.wait), ("signal", self.signal)] {
            if !set.is_empty() {
                let _ = write!(out, "{sep}{key}={set}");
                sep = ", ";
            }
        }
    }

    /// The table entry of this instruction.
    pub fn desc(&self) -> &'static InstDesc {
        desc_of(self.op.mnemonic()).expect("every op is in the table")
    }
}

/// The table entry for a mnemonic.
pub fn desc_of(mnemonic: &str) -> Option<&'static InstDesc> {
    INSTRUCTIONS.iter().find(|d| d.mnemonic == mnemonic)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn opcodes_and_mnemonics_are_unique() {
        let mut ops = HashSet::new();
        let mut names = HashSet::new();
        for d in INSTRUCTIONS {
            assert!(ops.insert(d.opcode), "opcode 0x{:02x} twice", d.opcode);
            assert!(names.insert(d.mnemonic), "{} twice", d.mnemonic);
            let end = d.fields.last().map_or(FIELDS_START, |f| f.lsb + f.bits);
            assert!(end <= WORD_BITS, "{} overflows", d.mnemonic);
        }
    }

    #[test]
    fn reserved_bits_and_unknown_opcodes_are_rejected() {
        let halt = Instruction::new(Op::Halt {}).encode();
        assert!(matches!(
            Instruction::decode(halt | 1 << 100),
            Err(DecodeError::Reserved { .. })
        ));
        assert_eq!(
            Instruction::decode(0xff),
            Err(DecodeError::UnknownOpcode(0xff))
        );
    }
}
