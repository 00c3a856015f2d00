//! The simulation report (terminal table and JSON) and the Chrome/Perfetto
//! trace. Pure functions returning text; the CLI writes the files.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use tessera_isa::inst::Queue;
use tessera_isa::{Arch, DType};

use crate::energy::EnergyReport;
use crate::timing::{TimingReport, TraceEvent};

/// One queue's cycles, as written in JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EngineJson {
    pub busy_cycles: u64,
    pub token_wait_cycles: u64,
    pub memory_wait_cycles: u64,
    pub idle_cycles: u64,
    pub executed_instructions: u64,
    pub utilization: f64,
}

/// One profiling region, as written in JSON.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RegionJson {
    pub name: String,
    pub queue: String,
    pub cycles: u64,
    pub entries: u64,
}

/// Everything a timing run reports; field names are the JSON keys.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SimReport {
    pub hardware: String,
    pub cycles: u64,
    pub seconds: f64,
    /// Matrix operations (2 per MAC).
    pub flops: u64,
    /// Achieved matrix FLOP/s over the core's peak.
    pub utilization: f64,
    pub energy_joules: f64,
    pub average_power_watts: f64,
    pub pj_per_flop: Option<f64>,
    pub engines: BTreeMap<String, EngineJson>,
    pub energy_breakdown_joules: BTreeMap<String, f64>,
    pub static_power_watts: f64,
    pub area_mm2: f64,
    pub macs_by_type: BTreeMap<String, u64>,
    pub hbm_read_bytes: u64,
    pub hbm_write_bytes: u64,
    pub scratchpad_read_bytes: u64,
    pub scratchpad_write_bytes: u64,
    pub accumulator_read_bytes: u64,
    pub accumulator_write_bytes: u64,
    pub vector_elements: u64,
    pub regions: Vec<RegionJson>,
}

impl SimReport {
    /// Joins a timing run and its priced energy on `arch` (one core).
    pub fn new(arch: &Arch, t: &TimingReport, e: &EnergyReport) -> SimReport {
        let seconds = arch.seconds(tessera_isa::Cycles(t.cycles));
        let flops = t.counters.matrix_ops();
        let core_peak = arch.peak_flops() / f64::from(arch.spec().chip.cores);
        let utilization = if seconds > 0.0 {
            flops as f64 / (core_peak * seconds)
        } else {
            0.0
        };
        let engines = Queue::ALL
            .iter()
            .map(|q| {
                let c = t.engines[q.index()];
                let util = if t.cycles > 0 {
                    c.busy as f64 / t.cycles as f64
                } else {
                    0.0
                };
                (
                    q.name().to_string(),
                    EngineJson {
                        busy_cycles: c.busy,
                        token_wait_cycles: c.token_wait,
                        memory_wait_cycles: c.memory_wait,
                        idle_cycles: c.idle,
                        executed_instructions: c.executed,
                        utilization: util,
                    },
                )
            })
            .collect();
        let macs_by_type = DType::ALL
            .iter()
            .filter(|d| t.counters.macs[d.code() as usize] > 0)
            .map(|d| (d.name().to_string(), t.counters.macs[d.code() as usize]))
            .collect();
        let c = &t.counters;
        SimReport {
            hardware: arch.name().to_string(),
            cycles: t.cycles,
            seconds,
            flops,
            utilization,
            energy_joules: e.total_joules,
            average_power_watts: if seconds > 0.0 {
                e.total_joules / seconds
            } else {
                0.0
            },
            pj_per_flop: (flops > 0).then(|| e.total_joules * 1.0e12 / flops as f64),
            engines,
            energy_breakdown_joules: e
                .components
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            static_power_watts: e.static_watts,
            area_mm2: e.area_mm2,
            macs_by_type,
            hbm_read_bytes: c.hbm_read_bytes,
            hbm_write_bytes: c.hbm_write_bytes,
            scratchpad_read_bytes: c.spad_read_bytes,
            scratchpad_write_bytes: c.spad_write_bytes,
            accumulator_read_bytes: c.acc_read_bytes,
            accumulator_write_bytes: c.acc_write_bytes,
            vector_elements: c.vector_simple_elems + c.vector_special_elems,
            regions: t
                .regions
                .iter()
                .map(|r| RegionJson {
                    name: r.name.clone(),
                    queue: r.queue.name().to_string(),
                    cycles: r.cycles,
                    entries: r.entries,
                })
                .collect(),
        }
    }

    /// A readable summary table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "hardware        {}", self.hardware);
        let _ = writeln!(s, "cycles          {}", self.cycles);
        let _ = writeln!(s, "time            {:.3} us", self.seconds * 1e6);
        let _ = writeln!(
            s,
            "matrix ops      {} ({:.2} TFLOP/s)",
            self.flops,
            if self.seconds > 0.0 {
                self.flops as f64 / self.seconds / 1e12
            } else {
                0.0
            }
        );
        let _ = writeln!(
            s,
            "utilization     {:.2} % of the core's peak",
            100.0 * self.utilization
        );
        let _ = writeln!(
            s,
            "energy          {:.3} uJ ({:.3} W average)",
            self.energy_joules * 1e6,
            self.average_power_watts
        );
        if let Some(p) = self.pj_per_flop {
            let _ = writeln!(s, "energy per op   {p:.3} pJ");
        }
        let _ = writeln!(
            s,
            "HBM traffic     {} B read, {} B written",
            self.hbm_read_bytes, self.hbm_write_bytes
        );
        let _ = writeln!(
            s,
            "\n{:<8} {:>12} {:>12} {:>12} {:>12} {:>10} {:>7}",
            "queue", "busy", "token wait", "memory wait", "idle", "executed", "busy %"
        );
        for q in Queue::ALL {
            let e = &self.engines[q.name()];
            let _ = writeln!(
                s,
                "{:<8} {:>12} {:>12} {:>12} {:>12} {:>10} {:>6.1}%",
                q.name(),
                e.busy_cycles,
                e.token_wait_cycles,
                e.memory_wait_cycles,
                e.idle_cycles,
                e.executed_instructions,
                100.0 * e.utilization
            );
        }
        let _ = writeln!(s, "\n{:<12} {:>14} {:>7}", "energy", "joules", "share");
        for (k, v) in &self.energy_breakdown_joules {
            let share = if self.energy_joules > 0.0 {
                100.0 * v / self.energy_joules
            } else {
                0.0
            };
            let _ = writeln!(s, "{k:<12} {v:>14.6e} {share:>6.1}%");
        }
        if !self.regions.is_empty() {
            let _ = writeln!(
                s,
                "\n{:<24} {:<8} {:>12} {:>8}",
                "region", "queue", "cycles", "entries"
            );
            for r in &self.regions {
                let _ = writeln!(
                    s,
                    "{:<24} {:<8} {:>12} {:>8}",
                    r.name, r.queue, r.cycles, r.entries
                );
            }
        }
        s
    }
}

/// A Chrome trace-event JSON document (opens in the Perfetto UI) with one
/// track per queue; timestamps in microseconds of the core clock.
pub fn chrome_trace(arch: &Arch, events: &[TraceEvent]) -> String {
    let us_per_cycle = arch.cycle_seconds() * 1e6;
    let mut s = String::from("{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n");
    for q in Queue::ALL {
        let _ = writeln!(
            s,
            "{{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":0,\"tid\":{},\"args\":{{\"name\":\"{}\"}}}},",
            q.index(),
            q.name()
        );
    }
    let _ = writeln!(s, "{{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":0,\"args\":{{\"name\":\"tessera core ({})\"}}}}", arch.name());
    for e in events.iter().filter(|e| e.end > e.start) {
        let _ = writeln!(
            s,
            ",{{\"ph\":\"X\",\"name\":\"{}\",\"pid\":0,\"tid\":{},\"ts\":{},\"dur\":{},\"args\":{{\"index\":{},\"start_cycle\":{},\"end_cycle\":{}}}}}",
            e.mnemonic,
            e.site.queue.index(),
            fmt_f64(e.start as f64 * us_per_cycle),
            fmt_f64((e.end - e.start) as f64 * us_per_cycle),
            e.site.index,
            e.start,
            e.end
        );
    }
    s.push_str("]}\n");
    s
}

/// Shortest round-trip decimal form, so traces are byte-identical across runs.
fn fmt_f64(x: f64) -> String {
    format!("{x:?}")
}
