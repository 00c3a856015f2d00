//! Timing mode: how many cycles a program takes on one core and where they
//! go, without computing values. The model, exact to the cycle for what it
//! states (see `docs/timing.md`):
//!
//! - Each queue issues in order, one engine instruction per cycle at most;
//!   control and configuration instructions (loops, address registers,
//!   strides, shapes, scalar registers, profiling marks, nop) run in the
//!   queue's sequencer ahead of the engine and take no cycles. An instruction
//!   starts once its waited tokens have been signalled and its engine can
//!   take it. Instructions complete in order: a signal is sent when its
//!   instruction and every earlier one of its queue have completed.
//! - Systolic array, weight-stationary with R rows and C columns: a preload
//!   shifts weights in for R cycles; a compute streams M rows and completes
//!   M + P R + C - 2 cycles after it starts, P being the processing
//!   element's pipeline stages (a partial sum crosses a row in P cycles).
//!   Without double-buffered weights a preload waits for the previous
//!   compute to drain. With them, weights flow down a per-column pipeline,
//!   top row first, and each element latches its own into a shadow register
//!   (a wavefront of slope 2 that trails the compute's of slope P): a preload
//!   may start (P - 2)^+ (R - 1) cycles after the previous compute started
//!   and the next compute may start 1 + (2 - P)^+ (R - 1) cycles after the
//!   preload did (R for P = 1, 1 for P >= 2); consecutive computes pipeline
//!   (the next streams as soon as the last row of the previous one has
//!   entered). Output-stationary: a preload only binds B; a compute of
//!   K-long dot products takes K + 2R + C + P - 3 cycles and computes do not
//!   overlap. Streaming is also bounded by scratchpad bank bandwidth.
//! - DMA: transfers of the load and store queues share `dma.engines`
//!   engines and one HBM bus with the core's share of HBM bandwidth
//!   (bandwidth / cores). A transfer's data arrives `latency` cycles after it
//!   starts and then occupies the bus for its bursts; each row is split at
//!   burst boundaries. On-chip bank conflicts lengthen it to the busiest bank.
//! - Vector unit: `latency + ceil(elements / lanes)` cycles, with
//!   `special_lanes` for division, roots and transcendental functions,
//!   bounded by the banks of its operands. An `elems`-mode gather or
//!   scatter-add moves one element per row, so its elements are the rows
//!   and its table costs at most one bank cycle per row.
//! - Every cycle of every queue, up to the end of the program, is exactly
//!   one of busy, waiting on a token, waiting on memory (a DMA engine, or
//!   bank bandwidth), or idle.

use std::collections::VecDeque;

use tessera_isa::exec::{AccessKind, Frontend, Region, Tokens};
use tessera_isa::field::{IndexMode, VecUnOp};
use tessera_isa::inst::{Instruction, Op, Queue};
use tessera_isa::program::{MemSpace, Program, Site};
use tessera_isa::{Arch, Dataflow};

use crate::functional::SimError;

/// Where one queue's cycles went. `busy + token_wait + memory_wait + idle`
/// equals the program's total cycles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCycles {
    pub busy: u64,
    pub token_wait: u64,
    pub memory_wait: u64,
    pub idle: u64,
    /// Instructions executed (loops unrolled).
    pub executed: u64,
}

impl EngineCycles {
    /// The sum of the four categories.
    pub fn total(&self) -> u64 {
        self.busy + self.token_wait + self.memory_wait + self.idle
    }
}

/// Action counts of a run; the energy model prices them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Multiply-accumulates per input type, indexed by `DType::code`.
    pub macs: [u64; 7],
    pub hbm_read_bytes: u64,
    pub hbm_write_bytes: u64,
    pub spad_read_bytes: u64,
    pub spad_write_bytes: u64,
    pub acc_read_bytes: u64,
    pub acc_write_bytes: u64,
    /// Bytes the DMA read from HBM for loads and gathers.
    pub dma_load_source_bytes: u64,
    /// Bytes those loads wrote on chip.
    pub dma_load_dest_bytes: u64,
    /// Bytes the DMA read on chip for stores.
    pub dma_store_source_bytes: u64,
    /// Bytes those stores wrote to HBM.
    pub dma_store_dest_bytes: u64,
    /// Elements through the simple vector lanes.
    pub vector_simple_elems: u64,
    /// Elements through the special-function lanes.
    pub vector_special_elems: u64,
}

impl Counters {
    /// Matrix floating-point (or integer) operations: two per MAC.
    pub fn matrix_ops(&self) -> u64 {
        2 * self.macs.iter().sum::<u64>()
    }
}

/// Time spent inside one profiling region, summed over its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionTime {
    pub name: String,
    pub queue: Queue,
    pub cycles: u64,
    pub entries: u64,
}

/// The result of a timing run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimingReport {
    /// Cycles from the start to the last completion.
    pub cycles: u64,
    /// Per queue, by [`Queue::index`].
    pub engines: [EngineCycles; 4],
    pub counters: Counters,
    pub regions: Vec<RegionTime>,
    /// Cycles, summed over DMA transfers, by which a transfer's on-chip bank
    /// cycles (`start + latency + bank cycles`) ended it later than its HBM
    /// data did; 0 when the HBM side bounds every transfer.
    pub dma_bank_bound: u64,
}

/// One executed instruction, for traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceEvent {
    pub site: Site,
    pub mnemonic: &'static str,
    pub start: u64,
    pub end: u64,
}

/// Why a queue's next instruction could not start earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    Idle,
    Token,
    Memory,
}

#[derive(Debug, Default)]
struct QueueClock {
    /// Earliest cycle the next instruction may issue.
    issue: u64,
    /// Cycles accounted so far.
    covered: u64,
    /// Latest completion of any instruction of this queue.
    last_end: u64,
    cycles: EngineCycles,
    /// Open profiling regions: (region id, start cycle).
    open: Vec<(u16, u64)>,
}

impl QueueClock {
    /// Accounts an instruction active over `[start, end)` of which `stall`
    /// trailing cycles wait on memory bandwidth; the gap before `start` is
    /// attributed to `gap`.
    fn account(&mut self, start: u64, end: u64, stall: u64, gap: Gap) {
        if start > self.covered {
            let g = start - self.covered;
            match gap {
                Gap::Idle => self.cycles.idle += g,
                Gap::Token => self.cycles.token_wait += g,
                Gap::Memory => self.cycles.memory_wait += g,
            }
            self.covered = start;
        }
        if end > self.covered {
            let active = end - self.covered;
            let stall = stall.min(active);
            self.cycles.memory_wait += stall;
            self.cycles.busy += active - stall;
            self.covered = end;
        }
        self.last_end = self.last_end.max(end);
    }
}

/// State of the systolic array.
#[derive(Debug, Default)]
struct ArrayState {
    /// The weight-load path is free from here.
    weights_free: u64,
    /// A compute may use the last preload's weights from here: when it
    /// finished (single buffering) or when its weights' wavefront is far
    /// enough ahead of the compute's (double buffering).
    weights_ready: u64,
    /// The input side accepts a new stream from here.
    stream_free: u64,
    /// Start and end of the last compute.
    last_compute: (u64, u64),
    /// Double-buffered weights: the first cycle a preload may start without
    /// overwriting a shadow weight the last compute has not switched to yet,
    /// (P - 2)^+ (R - 1) cycles after that compute started (`docs/timing.md`
    /// derives it); 0 before any compute.
    shadow_free: u64,
}

/// Cycles a region needs from banked SRAM: the number of distinct
/// `bank_width` chunks the busiest bank must deliver. Rows sharing a chunk
/// (short packed rows) cost it once.
fn bank_cycles(arch: &Arch, r: &Region) -> u64 {
    let spec = match r.space {
        MemSpace::Spad => &arch.spec().scratchpad,
        MemSpace::Acc => &arch.spec().accumulator,
        MemSpace::Hbm => return 0,
    };
    let (banks, width) = (u64::from(spec.banks), u64::from(spec.bank_width_bytes));
    // Closed forms for the common layouts, equal to the general count below.
    let busiest_in_span = |s: u64, len: u64| {
        let first = s / width;
        let chunks = (s + len - 1) / width - first + 1;
        chunks / banks + u64::from(chunks % banks > 0)
    };
    let contiguous_rows = r.row_stride == r.row_bytes || r.rows == 1;
    if contiguous_rows && (r.planes == 1 || r.plane_stride == r.rows * r.row_bytes) {
        return busiest_in_span(r.base, r.rows * r.planes * r.row_bytes);
    }
    let stripe = banks * width;
    if r.planes == 1
        && r.row_stride % stripe == 0
        && r.row_stride >= r.row_bytes + r.base % width + width
    {
        // Every row starts at the same bank and offset, and no chunk is shared.
        return r.rows * busiest_in_span(r.base, r.row_bytes);
    }
    // Difference array of per-bank additions over ascending byte intervals;
    // `all` is added to every bank. Rows ascend unless planes overlap; then
    // the merged intervals are used.
    let mut diff = vec![0i64; banks as usize + 1];
    let mut all = 0u64;
    let ascending = r.planes == 1 || r.plane_stride >= (r.rows - 1) * r.row_stride + r.row_bytes;
    let merged;
    let spans: Box<dyn Iterator<Item = (u64, u64)>> = if ascending {
        Box::new((0..r.planes).flat_map(move |p| {
            (0..r.rows).map(move |row| {
                let s = r.base + p * r.plane_stride + row * r.row_stride;
                (s, s + r.row_bytes)
            })
        }))
    } else {
        merged = r.intervals();
        Box::new(merged.iter().copied())
    };
    // Last chunk counted: intervals ascend, so a shared chunk is the previous one's last.
    let mut last: Option<u64> = None;
    for (s, e) in spans {
        let end_chunk = (e - 1) / width;
        let mut first = s / width;
        if let Some(l) = last {
            first = first.max(l + 1);
        }
        last = Some(end_chunk.max(last.unwrap_or(0)));
        if first > end_chunk {
            continue;
        }
        let chunks = end_chunk - first + 1;
        all += chunks / banks;
        let rem = chunks % banks;
        let b0 = first % banks;
        let b1 = b0 + rem;
        if b1 <= banks {
            diff[b0 as usize] += 1;
            diff[b1 as usize] -= 1;
        } else {
            diff[b0 as usize] += 1;
            diff[banks as usize] -= 1;
            diff[0] += 1;
            diff[(b1 - banks) as usize] -= 1;
        }
    }
    let mut run = 0i64;
    let mut max = 0i64;
    for d in &diff[..banks as usize] {
        run += d;
        max = max.max(run);
    }
    all + max as u64
}

/// HBM bursts a region touches: each row split at burst boundaries.
fn bursts(burst: u64, r: &Region) -> u64 {
    let per_row = |s: u64| (s + r.row_bytes - 1) / burst - s / burst + 1;
    if r.row_stride % burst == 0 && (r.planes == 1 || r.plane_stride % burst == 0) {
        // Every row has the base's alignment.
        return r.rows * r.planes * per_row(r.base);
    }
    let mut n = 0;
    for p in 0..r.planes {
        for row in 0..r.rows {
            let s = r.base + p * r.plane_stride + row * r.row_stride;
            n += (s + r.row_bytes - 1) / burst - s / burst + 1;
        }
    }
    n
}

/// Whether access `i` of a `v.gather` / `v.scatter_add` is its table, in
/// the order `Frontend::accesses` lists them (gather: index, table,
/// destination; scatter-add: index, source, table read, table write).
fn indexed_table(op: &Op, i: usize) -> bool {
    match op {
        Op::VGather { .. } => i == 1,
        Op::VScatterAdd { .. } => i >= 2,
        _ => false,
    }
}

fn is_special(op: VecUnOp) -> bool {
    !matches!(
        op,
        VecUnOp::Copy
            | VecUnOp::Neg
            | VecUnOp::Abs
            | VecUnOp::Square
            | VecUnOp::Relu
            | VecUnOp::NonFinite
            | VecUnOp::Sign
    )
}

struct Machine<'p> {
    p: &'p Program,
    arch: &'p Arch,
    fronts: Vec<Frontend<'p>>,
    clocks: [QueueClock; 4],
    tokens: Tokens,
    /// Completion cycles of signals not yet consumed, per token.
    pending: [VecDeque<u64>; 16],
    array: ArrayState,
    dma_free: Vec<u64>,
    hbm_bus_free: u64,
    dma_bank_bound: u64,
    hbm_bytes_per_cycle: f64,
    latency: u64,
    counters: Counters,
    regions: Vec<RegionTime>,
}

/// Upper bound on executed instructions for [`run`].
pub const DEFAULT_LIMIT: u64 = 1 << 34;

/// Runs `p` in timing mode; `trace` receives every executed instruction.
///
/// # Errors
/// An invalid program, an instruction whose operands cannot be resolved, a
/// deadlock, or more than `limit` executed instructions.
pub fn run(
    p: &Program,
    limit: u64,
    trace: &mut dyn FnMut(TraceEvent),
) -> Result<TimingReport, SimError> {
    if let Err(errors) = p.validate() {
        return Err(SimError::Invalid(errors[0].to_string()));
    }
    let arch = &p.arch;
    let mut m = Machine {
        p,
        arch,
        fronts: Queue::ALL
            .iter()
            .map(|q| Frontend::new(p.queue(*q)))
            .collect(),
        clocks: Default::default(),
        tokens: Tokens::default(),
        pending: Default::default(),
        array: ArrayState::default(),
        dma_free: vec![0; arch.spec().dma.engines as usize],
        hbm_bus_free: 0,
        dma_bank_bound: 0,
        hbm_bytes_per_cycle: arch.hbm_bytes_per_cycle() / f64::from(arch.spec().chip.cores),
        latency: arch.hbm_latency_cycles().get(),
        counters: Counters::default(),
        regions: Vec::new(),
    };
    let mut total = 0u64;
    loop {
        // The ready queue whose next instruction could issue earliest goes next,
        // so shared resources are granted in time order.
        let mut best: Option<(u64, Queue)> = None;
        for q in Queue::ALL {
            let Some((_, inst)) = m.fronts[q.index()].peek() else {
                continue;
            };
            if !m.tokens.ready(inst) {
                continue;
            }
            let t = m.token_time(inst).max(m.clocks[q.index()].issue);
            if best.is_none_or(|(bt, _)| t < bt) {
                best = Some((t, q));
            }
        }
        let Some((_, q)) = best else {
            if m.fronts.iter().all(Frontend::is_done) {
                break;
            }
            let parts: Vec<String> = Queue::ALL
                .iter()
                .filter_map(|q| {
                    let (index, inst) = m.fronts[q.index()].peek()?;
                    Some(format!(
                        "{} ({}) {}",
                        Site { queue: *q, index },
                        inst.op.mnemonic(),
                        m.tokens.blocked_reason(inst)
                    ))
                })
                .collect();
            return Err(SimError::Deadlock(parts.join("; ")));
        };
        m.step(q, trace)?;
        total += 1;
        if total > limit {
            return Err(SimError::Limit(limit));
        }
    }
    let end = m
        .clocks
        .iter()
        .map(|c| c.last_end.max(c.issue))
        .max()
        .unwrap_or(0);
    let mut engines = [EngineCycles::default(); 4];
    for (e, c) in engines.iter_mut().zip(&mut m.clocks) {
        c.account(end, end, 0, Gap::Idle);
        *e = c.cycles;
    }
    Ok(TimingReport {
        cycles: end,
        engines,
        counters: m.counters,
        regions: m.regions,
        dma_bank_bound: m.dma_bank_bound,
    })
}

impl Machine<'_> {
    /// When the tokens `inst` waits on were signalled (their matching signals' completions).
    fn token_time(&self, inst: &Instruction) -> u64 {
        inst.wait
            .iter()
            .filter_map(|t| self.pending[usize::from(t)].front().copied())
            .max()
            .unwrap_or(0)
    }

    fn step(&mut self, q: Queue, trace: &mut dyn FnMut(TraceEvent)) -> Result<(), SimError> {
        let qi = q.index();
        let (index, inst) = {
            let (i, inst) = self.fronts[qi]
                .peek()
                .expect("chosen queue has an instruction");
            (i, *inst)
        };
        let site = Site { queue: q, index };
        let at = |rule: String| SimError::At {
            site,
            mnemonic: inst.op.mnemonic(),
            rule,
        };
        let token_ready = self.token_time(&inst);
        let issue = self.clocks[qi].issue;
        let ready = issue.max(token_ready);
        self.tokens.take(&inst);
        for t in inst.wait.iter() {
            self.pending[usize::from(t)].pop_front();
        }
        let accesses = self.fronts[qi]
            .checked_accesses(&inst, &self.p.symbols, |s| self.arch.capacity(s).get())
            .map_err(|e| at(e.to_string()))?;
        for a in &accesses {
            let bytes = a.region.bytes();
            let c = &mut self.counters;
            match (a.region.space, a.kind) {
                (MemSpace::Hbm, AccessKind::Read) if !a.indirect => c.hbm_read_bytes += bytes,
                (MemSpace::Hbm, AccessKind::Write) if !a.indirect => c.hbm_write_bytes += bytes,
                (MemSpace::Spad, AccessKind::Read) => c.spad_read_bytes += bytes,
                (MemSpace::Spad, AccessKind::Write) => c.spad_write_bytes += bytes,
                (MemSpace::Acc, AccessKind::Read) => c.acc_read_bytes += bytes,
                (MemSpace::Acc, AccessKind::Write) => c.acc_write_bytes += bytes,
                _ => {}
            }
        }

        let (rows, cols) = (u64::from(self.arch.rows()), u64::from(self.arch.cols()));
        let stages = u64::from(self.arch.pe_stages());
        // `resource`: when the shared resource this instruction needed (a DMA engine) became free.
        let (start, end, stall, resource) = match inst.op {
            Op::DmaLoad { .. }
            | Op::DmaStore { .. }
            | Op::DmaGather { .. }
            | Op::DmaScatterAdd { .. } => {
                let (slot, free) = self
                    .dma_free
                    .iter()
                    .copied()
                    .enumerate()
                    .min_by_key(|&(i, t)| (t, i))
                    .expect("at least one DMA engine");
                let start = ready.max(free);
                let burst = u64::from(self.arch.spec().dma.burst_bytes);
                let (hbm_bursts, local) = self.dma_shape(&inst, &accesses, burst);
                let data = ((hbm_bursts * burst) as f64 / self.hbm_bytes_per_cycle).ceil() as u64;
                let bus_start = (start + self.latency).max(self.hbm_bus_free);
                self.hbm_bus_free = bus_start + data;
                let by_hbm = (bus_start + data).max(start + 1);
                let end = by_hbm.max(start + self.latency + local);
                self.dma_bank_bound += end - by_hbm;
                self.dma_free[slot] = end;
                (start, end, 0, Some(free))
            }
            Op::MmPreload { .. } => {
                let a = &mut self.array;
                // (start, cycles the weight path is busy, cycles until a
                // compute may start on these weights).
                let (start, dur, to_ready) = match self.arch.dataflow() {
                    Dataflow::WeightStationary
                        if self.arch.spec().array.double_buffered_weights =>
                    {
                        // Row r's weights reach it 2 r cycles after the
                        // preload starts and must precede the next compute's
                        // first row there (P r): 1 + (2 - P)^+ (R - 1).
                        let lag = 1 + 2u64.saturating_sub(stages) * (rows - 1);
                        (ready.max(a.weights_free).max(a.shadow_free), rows, lag)
                    }
                    Dataflow::WeightStationary => {
                        (ready.max(a.weights_free).max(a.last_compute.1), rows, rows)
                    }
                    Dataflow::OutputStationary => (ready, 0, 0),
                };
                a.weights_free = start + dur;
                a.weights_ready = start + to_ready;
                (start, start + dur, 0, None)
            }
            Op::MmCompute { m, .. } => {
                let pre = *self.fronts[qi].preload().ok_or_else(|| {
                    at("mm.compute with no operand bound by an earlier mm.preload".into())
                })?;
                // accesses: A, then B. Weight-stationary streams only A (B was
                // read by the preload); output-stationary streams both.
                let streamed = match self.arch.dataflow() {
                    Dataflow::WeightStationary => &accesses[..1],
                    Dataflow::OutputStationary => &accesses[..2],
                };
                let banks = streamed
                    .iter()
                    .map(|a| bank_cycles(self.arch, &a.region))
                    .max()
                    .unwrap_or(0);
                self.counters.macs[pre.dtype.code() as usize] += m.get() * pre.k * pre.n;
                let a = &mut self.array;
                let (start, stream, tail) = match self.arch.dataflow() {
                    Dataflow::WeightStationary => {
                        let stream = m.get().max(banks);
                        (
                            ready.max(a.weights_ready).max(a.stream_free),
                            stream,
                            stages * rows + cols - 2,
                        )
                    }
                    Dataflow::OutputStationary => {
                        let stream = pre.k.max(banks);
                        (
                            ready.max(a.last_compute.1).max(a.weights_ready),
                            stream,
                            2 * rows + cols + stages - 3,
                        )
                    }
                };
                let nominal = if self.arch.dataflow() == Dataflow::WeightStationary {
                    m.get()
                } else {
                    pre.k
                };
                a.stream_free = start + stream;
                a.last_compute = (start, start + stream + tail);
                // Row r switches at start + P r and is written at T + 2 r of
                // a preload starting at T: T >= start + (P - 2)^+ (R - 1).
                a.shadow_free = start + stages.saturating_sub(2) * (rows - 1);
                (start, start + stream + tail, stream - nominal, None)
            }
            Op::VBin { .. }
            | Op::VUn { .. }
            | Op::VAxpby { .. }
            | Op::VReduce { .. }
            | Op::VSel { .. }
            | Op::VCausal { .. }
            | Op::VGather { .. }
            | Op::VScatterAdd { .. }
            | Op::VFload { .. } => {
                let v = self.arch.spec().vector.clone();
                let fe = &self.fronts[qi];
                // `elems` mode moves one element per row: the table is only
                // indexed (see `indexed_table`), not streamed.
                let per_elem = matches!(
                    inst.op,
                    Op::VGather {
                        mode: IndexMode::Elems,
                        ..
                    } | Op::VScatterAdd {
                        mode: IndexMode::Elems,
                        ..
                    }
                );
                let elems = match inst.op {
                    Op::VFload { .. } => 1,
                    _ if per_elem => fe.vector.rows,
                    _ => fe.vector.rows * fe.vector.cols,
                };
                let special = match inst.op {
                    Op::VUn { op, .. } => is_special(op),
                    Op::VBin { op, .. } => matches!(
                        op,
                        tessera_isa::field::VecBinOp::Div | tessera_isa::field::VecBinOp::Pow
                    ),
                    _ => false,
                };
                let lanes = if special { v.special_lanes } else { v.lanes };
                if special {
                    self.counters.vector_special_elems += elems;
                } else {
                    self.counters.vector_simple_elems += elems;
                }
                let compute = elems.div_ceil(u64::from(lanes));
                let banks = accesses
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| !a.indirect)
                    .map(|(i, a)| {
                        let c = bank_cycles(self.arch, &a.region);
                        if per_elem && indexed_table(&inst.op, i) {
                            // One element per row: at most one chunk per row
                            // from the busiest bank, and no more than the tile holds.
                            c.min(fe.vector.rows)
                        } else {
                            c
                        }
                    })
                    .max()
                    .unwrap_or(0);
                let stream = compute.max(banks);
                let start = ready.max(self.clocks[qi].last_end);
                (
                    start,
                    start + u64::from(v.latency_cycles) + stream,
                    stream - compute,
                    None,
                )
            }
            _ => (ready, ready, 0, None),
        };
        // Control and configuration run in the sequencer, ahead of the engine: no issue slot.
        let engine_op = end > start;
        // Why the queue waited before `start`: for a token, for a shared memory
        // resource, or neither (its own engine, or nothing to do).
        let gap = if start == ready && token_ready > issue {
            Gap::Token
        } else if resource.is_some_and(|r| start > ready && start == r) {
            Gap::Memory
        } else {
            Gap::Idle
        };

        match inst.op {
            Op::ProfBegin { region } => self.clocks[qi].open.push((region.0, ready)),
            Op::ProfEnd { region } => {
                let now = ready.max(self.clocks[qi].last_end);
                if let Some((_, began)) = self.clocks[qi].open.pop() {
                    let name = self
                        .p
                        .regions
                        .get(usize::from(region.0))
                        .cloned()
                        .unwrap_or_default();
                    match self
                        .regions
                        .iter_mut()
                        .find(|r| r.name == name && r.queue == q)
                    {
                        Some(r) => {
                            r.cycles += now - began;
                            r.entries += 1;
                        }
                        None => self.regions.push(RegionTime {
                            name,
                            queue: q,
                            cycles: now - began,
                            entries: 1,
                        }),
                    }
                }
            }
            _ => {}
        }

        let clock = &mut self.clocks[qi];
        // Completion is in order: a signal is sent once every earlier
        // instruction of the queue has completed too.
        let signal_at = end.max(clock.last_end);
        clock.account(start, end, stall, gap);
        clock.issue = if engine_op { start + 1 } else { start };
        clock.cycles.executed += 1;
        trace(TraceEvent {
            site,
            mnemonic: inst.op.mnemonic(),
            start,
            end,
        });
        self.fronts[qi].advance().map_err(|e| at(e.to_string()))?;
        self.tokens.give(&inst);
        for t in inst.signal.iter() {
            self.pending[usize::from(t)].push_back(signal_at);
        }
        Ok(())
    }

    /// HBM bursts and on-chip bank cycles of a DMA, and its byte counters.
    fn dma_shape(
        &mut self,
        inst: &Instruction,
        accesses: &[tessera_isa::exec::Access],
        burst: u64,
    ) -> (u64, u64) {
        let c = &mut self.counters;
        match inst.op {
            Op::DmaLoad { .. } | Op::DmaStore { .. } => {
                let (src, dst) = (accesses[0].region, accesses[1].region);
                let (hbm, local) = if src.space == MemSpace::Hbm {
                    (src, dst)
                } else {
                    (dst, src)
                };
                if src.space == MemSpace::Hbm {
                    c.dma_load_source_bytes += src.bytes();
                    c.dma_load_dest_bytes += dst.bytes();
                } else {
                    c.dma_store_source_bytes += src.bytes();
                    c.dma_store_dest_bytes += dst.bytes();
                }
                (bursts(burst, &hbm), bank_cycles(self.arch, &local))
            }
            Op::DmaGather {
                rows, row_bytes, ..
            } => {
                let bytes = rows.get() * row_bytes.get();
                c.dma_load_source_bytes += bytes;
                c.dma_load_dest_bytes += bytes;
                c.hbm_read_bytes += bytes;
                let local = accesses[2].region;
                (
                    rows.get() * row_bytes.get().div_ceil(burst),
                    bank_cycles(self.arch, &local),
                )
            }
            Op::DmaScatterAdd {
                rows, row_bytes, ..
            } => {
                let bytes = rows.get() * row_bytes.get();
                c.dma_store_source_bytes += bytes;
                c.dma_store_dest_bytes += bytes;
                // Read-modify-write of each HBM row.
                c.hbm_read_bytes += bytes;
                c.hbm_write_bytes += bytes;
                let local = accesses[1].region;
                (
                    2 * rows.get() * row_bytes.get().div_ceil(burst),
                    bank_cycles(self.arch, &local),
                )
            }
            _ => (0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bank_cycles_count_the_busiest_bank() {
        let arch = Arch::preset("fpga-8x8").unwrap(); // scratchpad: 4 banks x 16 bytes
        let r = |base, rows, row_bytes, stride| {
            Region::rows(MemSpace::Spad, base, rows, row_bytes, stride)
        };
        assert_eq!(bank_cycles(&arch, &r(0, 1, 64, 0)), 1);
        assert_eq!(bank_cycles(&arch, &r(0, 1, 128, 0)), 2);
        // Rows 64 bytes apart all start in bank 0: a column of conflicts.
        assert_eq!(bank_cycles(&arch, &r(0, 8, 16, 64)), 8);
        // Rows 16 bytes apart rotate through the banks.
        assert_eq!(bank_cycles(&arch, &r(0, 8, 16, 16)), 2);
        // Eight 2-byte rows packed in one chunk cost one read.
        assert_eq!(bank_cycles(&arch, &r(0, 8, 2, 0)), 1);
        // A row crossing a chunk boundary touches two banks, wrapping around.
        assert_eq!(bank_cycles(&arch, &r(56, 1, 16, 0)), 1);
    }

    /// The general per-row count, for checking the closed forms.
    fn bank_cycles_by_rows(arch: &Arch, r: &Region) -> u64 {
        let (banks, width) = (
            u64::from(arch.spec().scratchpad.banks),
            u64::from(arch.spec().scratchpad.bank_width_bytes),
        );
        let mut chunks = std::collections::BTreeSet::new();
        for p in 0..r.planes {
            for row in 0..r.rows {
                let s = r.base + p * r.plane_stride + row * r.row_stride;
                chunks.extend(s / width..=(s + r.row_bytes - 1) / width);
            }
        }
        let mut per_bank = vec![0u64; banks as usize];
        for c in chunks {
            per_bank[(c % banks) as usize] += 1;
        }
        per_bank.into_iter().max().unwrap_or(0)
    }

    #[test]
    fn bank_cycles_closed_forms_match_the_definition() {
        let arch = Arch::preset("fpga-8x8").unwrap();
        let mut seed = 7u64;
        let mut next = |m: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        for _ in 0..3000 {
            let row_bytes = 1 + next(80);
            let rows = 1 + next(12);
            let row_stride =
                [row_bytes, 64, 128, 16 * (1 + next(9)), row_bytes + next(40)][next(5) as usize];
            let planes = 1 + next(3);
            let plane_stride = [rows * row_stride, 256, 64 * (1 + next(8))][next(3) as usize];
            let r = Region {
                space: MemSpace::Spad,
                base: next(200),
                row_bytes,
                rows,
                row_stride,
                planes,
                plane_stride,
            };
            assert_eq!(
                bank_cycles(&arch, &r),
                bank_cycles_by_rows(&arch, &r),
                "{r:?}"
            );
        }
    }

    #[test]
    fn bursts_split_rows_at_boundaries() {
        let r = Region::rows(MemSpace::Hbm, 60, 2, 8, 100);
        assert_eq!(bursts(64, &r), 2 + 1);
    }
}
