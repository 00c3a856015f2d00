//! Topologies of a multi-device system and the link a collective group
//! gets on them: a ring, a 2-D or 3-D torus of point-to-point links, or a
//! switched fabric of nodes (NVLink inside a node, a NIC per device
//! between nodes, hierarchical collectives across nodes).

use crate::model_error::ModelError;
use crate::scaleout::collective::{self, AllReduceAlgo, Link};
use crate::units::Seconds;

/// How devices are connected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fabric {
    /// A bidirectional ring.
    Ring,
    /// A torus with this many dimensions (2 or 3), links in both directions.
    Torus { dims: u32 },
    /// Nodes of `node_size` devices on a switch (NVSwitch), nodes joined by
    /// a network with `inter_gbps` per device.
    Switched { node_size: u32, inter_gbps: f64 },
}

/// A topology with its bandwidths and latencies. Invariant: bandwidths
/// are positive, `bus_efficiency` in (0, 1], node size at least 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Topology {
    /// The wiring.
    pub fabric: Fabric,
    /// Per-link (ring, torus) or per-device intra-node (switched)
    /// bandwidth, GB/s one direction.
    pub link_gbps: f64,
    /// Latency per message inside a node or per hop, microseconds.
    pub latency_us: f64,
    /// Latency per message between nodes, microseconds.
    pub inter_latency_us: f64,
    /// Achieved fraction of the wire bandwidth in collectives (nccl-tests:
    /// A100 8-GPU all-reduce bus bandwidth 235 of 300 GB/s, about 0.8).
    pub bus_efficiency: f64,
}

impl Topology {
    /// The DGX-style default for a GPU with `nvlink_gbps` per direction:
    /// 8 GPUs per node, `inter_gbps` per GPU between nodes, 1 us NVLink and
    /// 3 us network latency (interconnect.csv, low-confidence alphas).
    pub fn dgx(nvlink_gbps: f64, inter_gbps: f64) -> Topology {
        Topology {
            fabric: Fabric::Switched {
                node_size: 8,
                inter_gbps,
            },
            link_gbps: nvlink_gbps,
            latency_us: 1.0,
            inter_latency_us: 3.0,
            bus_efficiency: 0.8,
        }
    }

    /// Checks the invariant.
    ///
    /// # Errors
    /// [`ModelError::Plan`] naming the broken field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |rule: &str| {
            Err(ModelError::Plan {
                plan: "topology".into(),
                rule: rule.to_string(),
            })
        };
        if !self.link_gbps.is_finite() || self.link_gbps <= 0.0 {
            return bad("`link_gbps` must be > 0");
        }
        if !(self.bus_efficiency > 0.0 && self.bus_efficiency <= 1.0) {
            return bad("`bus_efficiency` must be in (0, 1]");
        }
        match self.fabric {
            Fabric::Torus { dims } if !(2..=3).contains(&dims) => bad("torus dims must be 2 or 3"),
            Fabric::Switched {
                node_size,
                inter_gbps,
            } if node_size == 0 || !inter_gbps.is_finite() || inter_gbps <= 0.0 => {
                bad("`node_size` must be >= 1 and `inter_gbps` > 0")
            }
            _ => Ok(()),
        }
    }

    fn intra(&self) -> Link {
        let ways = match self.fabric {
            // A bidirectional ring, or rings along every torus dimension.
            Fabric::Ring => 2.0,
            Fabric::Torus { dims } => 2.0 * f64::from(dims),
            Fabric::Switched { .. } => 1.0,
        };
        Link {
            bytes_per_s: self.link_gbps * 1e9 * self.bus_efficiency * ways,
            latency_s: self.latency_us * 1e-6,
        }
    }

    /// Devices of a group of `p` members spaced `stride` apart that share a
    /// node (1 on ring and torus fabrics: every hop is a link).
    fn local(&self, p: u32, stride: u32) -> u32 {
        match self.fabric {
            Fabric::Switched { node_size, .. } if stride < node_size => {
                (node_size / stride.max(1)).clamp(1, p)
            }
            _ => 1,
        }
    }

    /// All-reduce of `bytes` over `p` devices spaced `stride` apart.
    /// Switched fabrics run it hierarchically: reduce-scatter inside the
    /// node, all-reduce of the shard between nodes, all-gather inside.
    pub fn all_reduce(&self, algo: AllReduceAlgo, bytes: f64, p: u32, stride: u32) -> Seconds {
        match self.fabric {
            Fabric::Switched { inter_gbps, .. } => {
                let g = self.local(p, stride);
                let k = p / g.max(1);
                let inter = Link {
                    bytes_per_s: inter_gbps * 1e9 * self.bus_efficiency,
                    latency_s: self.inter_latency_us * 1e-6,
                };
                if k <= 1 {
                    return collective::all_reduce(algo, bytes, p, self.intra());
                }
                collective::reduce_scatter(bytes, g, self.intra()) * 2.0
                    + collective::all_reduce(algo, bytes / f64::from(g), k, inter)
            }
            _ => collective::all_reduce(algo, bytes, p, self.intra()),
        }
    }

    /// Reduce-scatter or all-gather of a `bytes` buffer: half an all-reduce.
    pub fn reduce_scatter(&self, bytes: f64, p: u32, stride: u32) -> Seconds {
        self.all_reduce(AllReduceAlgo::Ring, bytes, p, stride) * 0.5
    }

    /// A point-to-point send between neighbours spaced `stride` apart.
    pub fn p2p(&self, bytes: f64, stride: u32) -> Seconds {
        match self.fabric {
            Fabric::Switched {
                node_size,
                inter_gbps,
            } if stride >= node_size => collective::p2p(
                bytes,
                Link {
                    bytes_per_s: inter_gbps * 1e9 * self.bus_efficiency,
                    latency_s: self.inter_latency_us * 1e-6,
                },
            ),
            Fabric::Switched { .. } => collective::p2p(bytes, self.intra()),
            _ => collective::p2p(
                bytes,
                Link {
                    bytes_per_s: self.link_gbps * 1e9 * self.bus_efficiency,
                    latency_s: self.latency_us * 1e-6,
                },
            ),
        }
    }
}
