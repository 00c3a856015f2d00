//! The static dependency checker behind `tessera check`.
//!
//! Rules, in the order they are checked:
//! 1. **Channels.** At any time a token is a channel from one producer
//!    queue to one other consumer queue, so the k-th wait pairs with the
//!    k-th signal. A token may become a channel between other queues (as
//!    kernels linked behind a barrier do) only once every earlier signal of
//!    it has been consumed and every earlier use of it happens before the
//!    new producer's first signal (likewise for a new consumer's first
//!    wait). A token waited on that nothing signals,
//!    or signalled and never waited on, is reported before execution; the
//!    rest of the rule is checked during the abstract execution.
//! 2. **Deadlock.** The four queues are executed abstractly (loops and
//!    address generation included, no data) with 8-bit token counters. If no
//!    queue can move and some have not halted, every stuck instruction is
//!    reported with what it waits for. Tokens left unconsumed at the end are
//!    reported too.
//! 3. **Races.** Happens-before is program order within a queue plus the
//!    signal-to-wait edges, tracked with vector clocks. Every byte's last
//!    writer and latest reader per queue are kept in shadow memory; two
//!    accesses from different queues to a byte, one a write, that are not
//!    ordered are a race: a consumer that can run before its producer, a
//!    buffer overwritten while still being read, or two unordered writes.
//! 4. **Addresses.** Every access stays inside its memory, is aligned to its
//!    elements, and every `mm.compute` has a bound operand of a compatible type.
//!
//! Accesses whose extent depends on index data (gather, scatter-add) are
//! taken to cover the enclosing symbol, or the rest of the memory when no
//! symbol encloses the table, so they may report races a finer analysis would not.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;

use crate::exec::{AccessKind, ExecError, Frontend, Tokens};
use crate::inst::Queue;
use crate::program::{MemSpace, Program, Site};

/// A token used as a channel from one queue to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    pub token: u8,
    pub producer: Queue,
    pub consumer: Queue,
    /// Signals consumed through this channel during the abstract execution.
    pub signals: u64,
}

/// The rule a finding breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FindingKind {
    /// Channel discipline or token balance.
    Token,
    Deadlock,
    Race,
    /// Out of bounds, misaligned, or an unbound or mismatched matrix operand.
    Address,
    /// The program executes more instructions than the checker will follow.
    Limit,
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FindingKind::Token => "token",
            FindingKind::Deadlock => "deadlock",
            FindingKind::Race => "race",
            FindingKind::Address => "address",
            FindingKind::Limit => "limit",
        })
    }
}

/// One problem, with the instructions involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: FindingKind,
    pub sites: Vec<Site>,
    /// One line, naming the sites.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

/// What the checker found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Instructions executed per queue, loops unrolled, indexed by [`Queue::index`].
    pub executed: [u64; 4],
    /// The token channels in the order they opened (a token linked behind
    /// a barrier may appear more than once).
    pub channels: Vec<Channel>,
    pub findings: Vec<Finding>,
}

impl CheckReport {
    /// True when nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Limits of the checker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckOptions {
    /// Executed instructions, over all queues, after which the checker stops.
    pub max_executed: u64,
    /// Findings after which the checker stops.
    pub max_findings: usize,
}

impl CheckOptions {
    /// Limits that suit interactive use: 50 million executed instructions, 100 findings.
    pub const STANDARD: CheckOptions = CheckOptions {
        max_executed: 50_000_000,
        max_findings: 100,
    };
}

/// Checks `p` with [`CheckOptions::STANDARD`].
///
/// ```
/// let src = ".arch fpga-8x8\n.queue load\n    nop signal=t0\n    halt\n.queue store\n    nop wait=t0\n    halt\n";
/// let p = tessera_isa::asm::assemble(src, "demo.s", None)?;
/// let report = tessera_isa::check::check(&p);
/// assert!(report.is_clean());
/// assert_eq!(report.channels[0].signals, 1);
/// # Ok::<(), tessera_isa::asm::AsmError>(())
/// ```
pub fn check(p: &Program) -> CheckReport {
    check_with(p, &CheckOptions::STANDARD)
}

type Clock = [u64; 4];

/// Checks `p`.
pub fn check_with(p: &Program, opts: &CheckOptions) -> CheckReport {
    let mut report = CheckReport {
        executed: [0; 4],
        channels: Vec::new(),
        findings: Vec::new(),
    };
    if !check_channels(p, &mut report) {
        return report;
    }
    Walker::new(p, opts, &mut report).run();
    report
}

/// The static half of rule 1; false when a token is only signalled or
/// only waited on.
fn check_channels(p: &Program, report: &mut CheckReport) -> bool {
    let mut first_signal: [Option<Site>; 16] = [None; 16];
    let mut first_wait: [Option<Site>; 16] = [None; 16];
    // Queues that signal / wait on each token (bit per queue).
    let mut signal_queues = [0u8; 16];
    let mut wait_queues = [0u8; 16];
    for q in Queue::ALL {
        for (index, inst) in p.queue(q).iter().enumerate() {
            let site = Site { queue: q, index };
            for t in inst.signal.iter() {
                first_signal[usize::from(t)].get_or_insert(site);
                signal_queues[usize::from(t)] |= 1 << q.index();
            }
            for t in inst.wait.iter() {
                first_wait[usize::from(t)].get_or_insert(site);
                wait_queues[usize::from(t)] |= 1 << q.index();
            }
        }
    }
    let mut ok = true;
    for t in 0..16u8 {
        let ti = usize::from(t);
        let message = match (first_signal[ti], first_wait[ti]) {
            (None, Some(w)) => (vec![w], format!("t{t} is waited on at {w} but no instruction signals it")),
            (Some(s), None) => (vec![s], format!("t{t} is signalled at {s} but nothing waits on it")),
            // Only one queue ever touches it: never a channel, whatever the order.
            (Some(s), Some(w)) if signal_queues[ti] == wait_queues[ti] && signal_queues[ti].count_ones() == 1 => (
                vec![s, w],
                format!("t{t} is signalled ({s}) and waited on ({w}) by the same queue; use program order instead"),
            ),
            _ => continue,
        };
        ok = false;
        report.findings.push(Finding {
            kind: FindingKind::Token,
            sites: message.0,
            message: message.1,
        });
    }
    ok
}

/// The current channel of one token.
#[derive(Debug, Clone, Copy, Default)]
struct Phase {
    producer: Option<Queue>,
    consumer: Option<Queue>,
    /// The latest signal or wait on the token per queue, in this phase.
    last: [Option<Rec>; 4],
    /// The same for the previous phase: the first wait of this one must
    /// come after them by program order and other tokens, not through
    /// this token (otherwise that wait could have taken an earlier signal).
    prev: [Option<Rec>; 4],
    /// Index of this phase's entry in `report.channels`.
    channel: Option<usize>,
}

/// An access remembered in shadow memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rec {
    queue: Queue,
    /// 1-based position in the queue's executed stream.
    seq: u64,
    /// Static instruction index.
    index: usize,
}

impl Rec {
    fn site(self) -> Site {
        Site {
            queue: self.queue,
            index: self.index,
        }
    }

    /// Whether this access happens before an instruction of `queue` whose
    /// vector clock is `vc`.
    fn before(self, queue: Queue, vc: &Clock) -> bool {
        self.queue == queue || vc[self.queue.index()] >= self.seq
    }
}

#[derive(Debug, Clone)]
struct Seg {
    end: u64,
    writer: Option<Rec>,
    readers: [Option<Rec>; 4],
}

/// Last writer and latest reader per queue of every byte, as disjoint
/// segments keyed by their start.
#[derive(Debug, Default)]
struct Shadow {
    spaces: [BTreeMap<u64, Seg>; 3],
}

fn space_index(s: MemSpace) -> usize {
    match s {
        MemSpace::Hbm => 0,
        MemSpace::Spad => 1,
        MemSpace::Acc => 2,
    }
}

fn split(map: &mut BTreeMap<u64, Seg>, x: u64) {
    let Some((&start, seg)) = map.range(..x).next_back() else {
        return;
    };
    if seg.end > x {
        let right = Seg {
            end: seg.end,
            ..seg.clone()
        };
        map.get_mut(&start).expect("just found").end = x;
        map.insert(x, right);
    }
}

/// A race between an earlier access and the current one.
struct Conflict {
    earlier: Rec,
    earlier_writes: bool,
    start: u64,
    end: u64,
}

impl Shadow {
    /// Records an access of `[start, end)` and returns the unordered earlier accesses it conflicts with.
    fn access(
        &mut self,
        space: MemSpace,
        start: u64,
        end: u64,
        kind: AccessKind,
        me: Rec,
        vc: &Clock,
    ) -> Vec<Conflict> {
        let map = &mut self.spaces[space_index(space)];
        split(map, start);
        split(map, end);
        let mut conflicts = Vec::new();
        let keys: Vec<u64> = map.range(start..end).map(|(k, _)| *k).collect();
        let mut gaps = Vec::new();
        let mut cursor = start;
        for k in keys {
            if k > cursor {
                gaps.push((cursor, k));
            }
            let seg = map.get_mut(&k).expect("key from range");
            if let Some(w) = seg.writer {
                if !w.before(me.queue, vc) {
                    conflicts.push(Conflict {
                        earlier: w,
                        earlier_writes: true,
                        start: k,
                        end: seg.end,
                    });
                }
            }
            if kind == AccessKind::Write {
                for r in seg.readers.iter().flatten() {
                    if !r.before(me.queue, vc) {
                        conflicts.push(Conflict {
                            earlier: *r,
                            earlier_writes: false,
                            start: k,
                            end: seg.end,
                        });
                    }
                }
            } else {
                seg.readers[me.queue.index()] = Some(me);
            }
            cursor = seg.end;
        }
        if cursor < end {
            gaps.push((cursor, end));
        }
        match kind {
            AccessKind::Write => {
                let stale: Vec<u64> = map.range(start..end).map(|(k, _)| *k).collect();
                for k in stale {
                    map.remove(&k);
                }
                map.insert(
                    start,
                    Seg {
                        end,
                        writer: Some(me),
                        readers: [None; 4],
                    },
                );
            }
            AccessKind::Read => {
                for (s, e) in gaps {
                    let mut readers = [None; 4];
                    readers[me.queue.index()] = Some(me);
                    map.insert(
                        s,
                        Seg {
                            end: e,
                            writer: None,
                            readers,
                        },
                    );
                }
            }
        }
        conflicts
    }
}

struct Walker<'p, 'r> {
    p: &'p Program,
    opts: &'r CheckOptions,
    report: &'r mut CheckReport,
    fronts: Vec<Frontend<'p>>,
    clocks: [Clock; 4],
    tokens: Tokens,
    /// Clocks of the signals not yet consumed, per token, oldest first.
    pending: [VecDeque<Clock>; 16],
    phases: [Phase; 16],
    shadow: Shadow,
    seen: HashSet<(FindingKind, Site, Site)>,
    stopped: bool,
}

impl<'p, 'r> Walker<'p, 'r> {
    fn new(p: &'p Program, opts: &'r CheckOptions, report: &'r mut CheckReport) -> Self {
        Walker {
            p,
            opts,
            report,
            fronts: Queue::ALL
                .iter()
                .map(|q| Frontend::new(p.queue(*q)))
                .collect(),
            clocks: [[0; 4]; 4],
            tokens: Tokens::default(),
            pending: Default::default(),
            phases: [Phase::default(); 16],
            shadow: Shadow::default(),
            seen: HashSet::new(),
            stopped: false,
        }
    }

    fn find(&mut self, kind: FindingKind, sites: Vec<Site>, message: String) {
        let key = (kind, sites[0], *sites.get(1).unwrap_or(&sites[0]));
        if !self.seen.insert(key) {
            return;
        }
        self.report.findings.push(Finding {
            kind,
            sites,
            message,
        });
        if self.report.findings.len() >= self.opts.max_findings {
            self.stopped = true;
        }
    }

    fn capacity(&self, s: MemSpace) -> u64 {
        self.p.arch.capacity(s).get()
    }

    fn run(&mut self) {
        let mut total: u64 = 0;
        while !self.stopped {
            let mut progress = false;
            for q in Queue::ALL {
                while let Some((index, inst)) = self.fronts[q.index()].peek() {
                    if !self.tokens.ready(inst) || self.stopped {
                        break;
                    }
                    self.step(q, index);
                    progress = true;
                    total += 1;
                    if total >= self.opts.max_executed {
                        let site = Site { queue: q, index };
                        self.find(
                            FindingKind::Limit,
                            vec![site],
                            format!("the program executes more than {} instructions; checking stopped at {site}", self.opts.max_executed),
                        );
                        self.stopped = true;
                    }
                }
            }
            if self.fronts.iter().all(Frontend::is_done) {
                self.finish();
                return;
            }
            if !progress {
                self.deadlock();
                return;
            }
        }
    }

    fn step(&mut self, q: Queue, index: usize) {
        let qi = q.index();
        let inst = *self.fronts[qi].peek().expect("peeked by caller").1;
        let site = Site { queue: q, index };
        self.tokens.take(&inst);
        let before_waits = self.clocks[qi];
        for t in inst.wait.iter() {
            if let Some(vc) = self.pending[usize::from(t)].pop_front() {
                for (mine, theirs) in self.clocks[qi].iter_mut().zip(vc) {
                    *mine = (*mine).max(theirs);
                }
            }
        }
        self.report.executed[qi] += 1;
        self.clocks[qi][qi] = self.report.executed[qi];
        let me = Rec {
            queue: q,
            seq: self.report.executed[qi],
            index,
        };
        for t in inst.wait.iter() {
            self.wait_phase(t, me, &before_waits);
        }
        let fe = &self.fronts[qi];
        match fe.accesses(&inst, &self.p.symbols, |s| self.capacity(s)) {
            Ok(accesses) => {
                for a in accesses {
                    let cap = self.capacity(a.region.space);
                    match a.region.end() {
                        Some(end) if end <= cap => {}
                        _ => {
                            let verb = if a.kind == AccessKind::Read {
                                "reads"
                            } else {
                                "writes"
                            };
                            self.find(
                                FindingKind::Address,
                                vec![site],
                                format!(
                                    "{site} ({}) {verb} {}, past the {cap} bytes of {}",
                                    inst.op.mnemonic(),
                                    a.region,
                                    a.region.space
                                ),
                            );
                            continue;
                        }
                    }
                    let vc = self.clocks[qi];
                    for (s, e) in a.region.intervals() {
                        for c in self.shadow.access(a.region.space, s, e, a.kind, me, &vc) {
                            self.race(&inst, site, a.kind, a.region.space, c);
                        }
                    }
                }
            }
            Err(e) => self.exec_error(site, inst.op.mnemonic(), &e),
        }
        if let Err(e) = self.fronts[qi].advance() {
            self.exec_error(site, inst.op.mnemonic(), &e);
        }
        self.tokens.give(&inst);
        for t in inst.signal.iter() {
            self.signal_phase(t, me);
            self.pending[usize::from(t)].push_back(self.clocks[qi]);
        }
    }

    /// Rule 1 for a wait: the token's consumer is this queue (the first
    /// wait of a phase makes it so), never its producer.
    fn wait_phase(&mut self, t: u8, me: Rec, pre: &Clock) {
        let ph = self.phases[usize::from(t)];
        let site = me.site();
        let unordered = |events: &[Option<Rec>; 4], skip: Option<Queue>| {
            events
                .iter()
                .flatten()
                .find(|r| Some(r.queue) != skip && !r.before(me.queue, pre))
                .copied()
        };
        match ph.consumer {
            None if ph.producer != Some(me.queue) && unordered(&ph.prev, None).is_some() => {
                let other = unordered(&ph.prev, None).map_or(site, Rec::site);
                self.find(
                    FindingKind::Token,
                    vec![other, site],
                    format!("t{t} is waited on by more than one queue ({other}, {site}); a token is a channel from one queue to one other until every earlier use of it happens before a new consumer waits on it"),
                );
            }
            None if ph.producer == Some(me.queue) => {
                let s = ph.last[me.queue.index()].map_or(site, Rec::site);
                self.find(
                    FindingKind::Token,
                    vec![s, site],
                    format!("t{t} is signalled ({s}) and waited on ({site}) by the same queue; use program order instead"),
                );
            }
            None => {
                let producer = ph.producer.unwrap_or(me.queue);
                self.report.channels.push(Channel {
                    token: t,
                    producer,
                    consumer: me.queue,
                    signals: 0,
                });
                let ph = &mut self.phases[usize::from(t)];
                ph.consumer = Some(me.queue);
                ph.channel = Some(self.report.channels.len() - 1);
            }
            Some(c) if c != me.queue && self.consumer_may_change(t, me, pre) => {
                let producer = ph.producer.unwrap_or(c);
                self.report.channels.push(Channel {
                    token: t,
                    producer,
                    consumer: me.queue,
                    signals: 0,
                });
                let ph = &mut self.phases[usize::from(t)];
                ph.consumer = Some(me.queue);
                ph.last[c.index()] = None;
                ph.channel = Some(self.report.channels.len() - 1);
            }
            Some(c) if c != me.queue => {
                let other = ph.last[c.index()].map_or(site, Rec::site);
                self.find(
                    FindingKind::Token,
                    vec![other, site],
                    format!("t{t} is waited on by more than one queue ({other}, {site}); a token is a channel from one queue to one other"),
                );
            }
            Some(_) => {}
        }
        let ph = &mut self.phases[usize::from(t)];
        ph.last[me.queue.index()] = Some(me);
        if let Some(i) = ph.channel {
            self.report.channels[i].signals += 1;
        }
    }

    /// Whether the wait `me` may take over token `t` from its consumer:
    /// every earlier use of the token other than the producer's happens
    /// before it.
    fn consumer_may_change(&self, t: u8, me: Rec, pre: &Clock) -> bool {
        let ph = &self.phases[usize::from(t)];
        ph.last
            .iter()
            .flatten()
            .filter(|r| Some(r.queue) != ph.producer)
            .all(|r| r.before(me.queue, pre))
    }

    /// Rule 1 for a signal: the token's producer is this queue, or becomes
    /// it when nothing is outstanding and every earlier use of the token
    /// happens before this signal.
    fn signal_phase(&mut self, t: u8, me: Rec) {
        let ti = usize::from(t);
        let ph = self.phases[ti];
        let qi = me.queue.index();
        match ph.producer {
            Some(p) if p == me.queue => {}
            None => self.phases[ti].producer = Some(me.queue),
            Some(p) => {
                let vc = self.clocks[qi];
                let ordered = self.pending[ti].is_empty()
                    && ph.last.iter().flatten().all(|r| r.before(me.queue, &vc));
                if ordered {
                    self.phases[ti] = Phase {
                        producer: Some(me.queue),
                        prev: ph.last,
                        ..Phase::default()
                    };
                } else {
                    let other = ph.last[p.index()].map_or(me.site(), Rec::site);
                    let site = me.site();
                    self.find(
                        FindingKind::Token,
                        vec![other, site],
                        format!(
                            "t{t} is signalled by more than one queue ({other}, {site}); a token is a channel from one queue to one other until every earlier use of it happens before a new producer signals it"
                        ),
                    );
                }
            }
        }
        self.phases[ti].last[qi] = Some(me);
    }

    fn exec_error(&mut self, site: Site, mnemonic: &str, e: &ExecError) {
        self.find(
            FindingKind::Address,
            vec![site],
            format!("{site} ({mnemonic}): {e}"),
        );
    }

    fn race(
        &mut self,
        inst: &crate::Instruction,
        site: Site,
        kind: AccessKind,
        space: MemSpace,
        c: Conflict,
    ) {
        let other = c.earlier.site();
        let (what, why) = match (c.earlier_writes, kind) {
            (true, AccessKind::Read) => (
                "reads",
                format!("written by {other}, and no token orders the write before the read"),
            ),
            (true, AccessKind::Write) => (
                "writes",
                format!("also written by {other}, and no token orders the two writes"),
            ),
            (false, _) => (
                "overwrites",
                format!(
                    "still being read by {other}, and no token orders the read before the write"
                ),
            ),
        };
        self.find(
            FindingKind::Race,
            vec![other, site],
            format!(
                "{site} ({}) {what} {space}[0x{:x}..0x{:x}) {why}",
                inst.op.mnemonic(),
                c.start,
                c.end
            ),
        );
    }

    fn deadlock(&mut self) {
        let mut sites = Vec::new();
        let mut parts = Vec::new();
        // A queue stuck on a token another queue consumes competes for it: in
        // another interleaving it could have taken that queue's signal.
        let mut competing = Vec::new();
        for q in Queue::ALL {
            let Some((index, inst)) = self.fronts[q.index()].peek() else {
                continue;
            };
            for t in inst.wait.iter() {
                let ph = self.phases[usize::from(t)];
                if let Some(c) = ph.consumer.filter(|&c| c != q && self.tokens.count(t) == 0) {
                    let other = ph.last[c.index()].map_or(Site { queue: c, index: 0 }, Rec::site);
                    competing.push((t, other, Site { queue: q, index }));
                }
            }
        }
        for (t, other, site) in competing {
            self.find(
                FindingKind::Token,
                vec![other, site],
                format!("t{t} is waited on by more than one queue ({other}, {site}); a token is a channel from one queue to one other"),
            );
        }
        for q in Queue::ALL {
            let Some((index, inst)) = self.fronts[q.index()].peek() else {
                continue;
            };
            let site = Site { queue: q, index };
            sites.push(site);
            parts.push(format!(
                "{site} ({}) {}",
                inst.op.mnemonic(),
                self.tokens.blocked_reason(inst)
            ));
        }
        self.find(
            FindingKind::Deadlock,
            sites,
            format!("no queue can proceed: {}", parts.join("; ")),
        );
    }

    fn finish(&mut self) {
        for t in 0..16u8 {
            let left = self.tokens.count(t);
            if left > 0 {
                let (sites, producer) = match self.phases[usize::from(t)].producer {
                    Some(p) => (
                        vec![self.phases[usize::from(t)].last[p.index()]
                            .map_or(Site { queue: p, index: 0 }, Rec::site)],
                        p.name(),
                    ),
                    None => (
                        vec![Site {
                            queue: Queue::Load,
                            index: 0,
                        }],
                        "?",
                    ),
                };
                self.find(
                    FindingKind::Token,
                    sites,
                    format!("t{t} has {left} signal(s) from the {producer} queue that nothing consumes by the end; every signal needs a matching wait"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::assemble;

    fn findings(body: &str) -> Vec<String> {
        let src = format!(".arch fpga-8x8\n{body}");
        let p = assemble(&src, "t.s", None).unwrap();
        check(&p).findings.iter().map(ToString::to_string).collect()
    }

    const LOAD: &str =
        "dma.load dst=spad[r0], src=hbm[r0], rows=8, row_bytes=16, planes=1, transpose=none";

    #[test]
    fn producer_consumer_with_token_is_clean() {
        let f = findings(&format!(
            ".queue load\n    {LOAD}, signal=t0\n    halt\n.queue store\n    dma.store dst=hbm[r1+4096], src=spad[r1], rows=8, row_bytes=16, planes=1, transpose=none, wait=t0\n    halt\n"
        ));
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn missing_token_is_a_read_before_write_race() {
        let f = findings(&format!(
            ".queue load\n    {LOAD}\n    halt\n.queue store\n    dma.store dst=hbm[r1+4096], src=spad[r1], rows=8, row_bytes=16, planes=1, transpose=none\n    halt\n"
        ));
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(
            f[0].starts_with("race: store#0 (dma.store) reads spad[0x0..0x80) written by load#0"),
            "{f:?}"
        );
    }

    #[test]
    fn overwrite_while_reading_is_reported() {
        // The store reads the buffer after t0; the second load rewrites it without waiting for the store.
        let f = findings(&format!(
            ".queue load\n    {LOAD}, signal=t0\n    {LOAD}\n    halt\n.queue store\n    dma.store dst=hbm[r1+4096], src=spad[r1], rows=8, row_bytes=16, planes=1, transpose=none, wait=t0\n    halt\n"
        ));
        // Which side is reported depends on the walk order; the pair is what matters.
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].starts_with("race: "), "{f:?}");
        assert!(f[0].contains("load#1") && f[0].contains("store#0"), "{f:?}");
    }

    #[test]
    fn write_after_read_is_reported_from_the_writer() {
        // load#1 is held back by t1 so the store reads first; nothing orders that read before the rewrite.
        let f = findings(&format!(
            ".queue load\n    {LOAD}, signal=t0\n    {LOAD}, wait=t1\n    halt\n.queue matrix\n    nop signal=t1\n    halt\n.queue store\n    dma.store dst=hbm[r1+4096], src=spad[r1], rows=8, row_bytes=16, planes=1, transpose=none, wait=t0\n    halt\n"
        ));
        assert_eq!(
            f,
            vec!["race: load#1 (dma.load) overwrites spad[0x0..0x80) still being read by store#0, and no token orders the read before the write"]
        );
    }

    #[test]
    fn deadlock_names_every_stuck_queue() {
        let f = findings(".queue load\n    nop wait=t1, signal=t0\n    halt\n.queue store\n    nop wait=t0, signal=t1\n    halt\n");
        assert_eq!(
            f,
            vec!["deadlock: no queue can proceed: load#0 (nop) waits for t1; store#0 (nop) waits for t0"]
        );
    }

    #[test]
    fn channel_rules() {
        let f = findings(".queue load\n    nop wait=t3\n    halt\n");
        assert_eq!(
            f,
            vec!["token: t3 is waited on at load#0 but no instruction signals it"]
        );
        let f = findings(".queue load\n    nop signal=t2\n    halt\n.queue matrix\n    nop signal=t2\n    halt\n.queue store\n    nop wait=t2\n    nop wait=t2\n    halt\n");
        assert!(
            f[0].contains("t2 is signalled by more than one queue (load#0, matrix#0)"),
            "{f:?}"
        );
        let f = findings(".queue load\n    nop signal=t2\n    nop signal=t2\n    halt\n.queue store\n    nop wait=t2\n    halt\n");
        assert!(
            f[0].contains("t2 has 1 signal(s) from the load queue that nothing consumes"),
            "{f:?}"
        );
    }

    #[test]
    fn a_token_changes_channel_only_behind_a_barrier() {
        // t0 is load -> store, then vector -> load: the store queue's wait
        // releases the vector queue (t1), whose t2 releases the load queue, so
        // every earlier use of t0 happens before the vector queue's signal.
        let linked = ".queue load\n    nop signal=t0\n    nop wait=t2\n    nop wait=t0\n    halt\n\
                      .queue vector\n    nop wait=t1\n    nop signal=t2\n    nop signal=t0\n    halt\n\
                      .queue store\n    nop wait=t0\n    nop signal=t1\n    halt\n";
        assert_eq!(findings(linked), Vec::<String>::new());
        // Without the barrier the vector queue's signal is unordered with the store's wait.
        let racy = ".queue load\n    nop signal=t0\n    halt\n\
                    .queue vector\n    nop signal=t0\n    halt\n\
                    .queue store\n    nop wait=t0\n    nop wait=t0\n    halt\n";
        let f = findings(racy);
        assert!(
            f.iter()
                .any(|m| m.contains("t0 is signalled by more than one queue (load#0, vector#0)")),
            "{f:?}"
        );
    }

    #[test]
    fn out_of_bounds_and_unbound_operands() {
        let f = findings(".queue load\n    addr.set r0, 65530\n    dma.load dst=spad[r0], src=hbm[r1], rows=1, row_bytes=16, planes=1, transpose=none\n    halt\n");
        assert!(
            f[0].starts_with(
                "address: load#1 (dma.load) writes spad[0xfffa..0x1000a), past the 65536 bytes"
            ),
            "{f:?}"
        );
        let f = findings(".queue matrix\n    mm.compute a=spad[r0]:int8, c=acc[r0]:int32, m=4, transpose=false, mode=overwrite\n    halt\n");
        assert!(f[0].contains("no operand bound"), "{f:?}");
    }

    #[test]
    fn token_counters_saturate_and_stall() {
        // 300 signals with the consumer draining them: the producer stalls at 255 and resumes.
        let f = findings(".queue load\n    loop 300, e\n    nop signal=t0\ne:\n    halt\n.queue store\n    loop 300, e\n    nop wait=t0\ne:\n    halt\n");
        assert!(f.is_empty(), "{f:?}");
    }
}
