//! Plan search: enumerates the parallel plans of a job on a device count,
//! estimates them in parallel (`rayon`), keeps those that fit in memory,
//! and returns them fastest first (ties broken by the plan text, so the
//! result is deterministic).

use rayon::prelude::*;

use crate::model_error::ModelError;
use crate::scaleout::collective::AllReduceAlgo;
use crate::scaleout::plan::{GradSync, Offload, Plan, Schedule, Zero};
use crate::scaleout::step::{check, estimate, Estimate, LayerTimer};
use crate::scaleout::topology::{Fabric, Topology};
use crate::workload::{Recompute, Workload};

/// Which plans to consider.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchSpace {
    /// Fix these degrees when set.
    pub tp: Option<u32>,
    pub pp: Option<u32>,
    pub dp: Option<u32>,
    /// Fix the micro-batch when set (else 1, 2, 4, 8).
    pub micro_batch: Option<u32>,
    /// Fix the recomputation when set.
    pub recompute: Option<Recompute>,
}

fn divisors(n: u32) -> Vec<u32> {
    (1..=n).filter(|d| n % d == 0).collect()
}

/// Every valid plan of the space.
pub fn candidates(
    job: &Workload,
    topo: &Topology,
    devices: u32,
    global_batch: u32,
    space: &SearchSpace,
) -> Vec<Plan> {
    let max_tp = match topo.fabric {
        Fabric::Switched { node_size, .. } => node_size,
        _ => 8,
    };
    let mut out = Vec::new();
    for tp in [1u32, 2, 4, 8, 16] {
        if tp > max_tp || devices % tp != 0 || space.tp.is_some_and(|t| t != tp) {
            continue;
        }
        for pp in divisors(job.layers) {
            if devices % (tp * pp) != 0 || space.pp.is_some_and(|p| p != pp) {
                continue;
            }
            let dp = devices / (tp * pp);
            if space.dp.is_some_and(|d| d != dp) {
                continue;
            }
            let mbs: Vec<u32> = match space.micro_batch {
                Some(m) => vec![m],
                None => vec![1, 2, 4, 8],
            };
            let schedules: Vec<Schedule> = if pp == 1 {
                vec![Schedule::OneFOneB]
            } else {
                vec![
                    Schedule::GPipe,
                    Schedule::OneFOneB,
                    Schedule::Interleaved { v: 2 },
                    Schedule::Interleaved { v: 4 },
                ]
            };
            let zeros: &[Zero] = if dp > 1 {
                &[Zero::None, Zero::Stage1, Zero::Stage2, Zero::Stage3]
            } else {
                &[Zero::None]
            };
            let recomputes: Vec<Recompute> = match space.recompute {
                Some(r) => vec![r],
                None => vec![Recompute::None, Recompute::Selective, Recompute::Full],
            };
            let algos: &[AllReduceAlgo] = if dp > 1 {
                &[AllReduceAlgo::Ring, AllReduceAlgo::Tree]
            } else {
                &[AllReduceAlgo::Ring]
            };
            for &micro_batch in &mbs {
                for &schedule in &schedules {
                    for &zero in zeros {
                        for sp in [false, true] {
                            for &recompute in &recomputes {
                                for offload in [Offload::None, Offload::Cpu] {
                                    for &all_reduce in algos {
                                        let plan = Plan {
                                            tp,
                                            pp,
                                            dp,
                                            micro_batch,
                                            schedule,
                                            zero,
                                            sequence_parallel: sp,
                                            recompute,
                                            offload,
                                            all_reduce,
                                            grad_sync: GradSync::Overlapped,
                                        };
                                        if check(job, &plan, devices, global_batch).is_ok() {
                                            out.push(plan);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Estimates every candidate in parallel and returns those that fit,
/// fastest first.
///
/// # Errors
/// [`ModelError::Plan`] when no plan fits in memory, or the device cannot
/// run the job.
pub fn search(
    timer: &dyn LayerTimer,
    topo: &Topology,
    job: &Workload,
    devices: u32,
    global_batch: u32,
    space: &SearchSpace,
) -> Result<Vec<Estimate>, ModelError> {
    let plans = candidates(job, topo, devices, global_batch, space);
    let results: Result<Vec<Estimate>, ModelError> = plans
        .par_iter()
        .map(|p| estimate(timer, topo, job, p, devices, global_batch))
        .collect();
    let mut fits: Vec<Estimate> = results?.into_iter().filter(|e| e.fits).collect();
    if fits.is_empty() {
        return Err(ModelError::Plan {
            plan: format!("search over {} plans", plans.len()),
            rule: format!(
                "none fits in the memory of {} {} devices",
                devices,
                timer.name()
            ),
        });
    }
    fits.sort_by(|a, b| {
        a.step
            .0
            .total_cmp(&b.step.0)
            .then_with(|| a.plan.cmp(&b.plan))
    });
    Ok(fits)
}
