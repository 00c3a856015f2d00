//! Collective cost formulas (nccl-tests `PERFORMANCE.md`; Thakur,
//! Rabenseifner & Gropp 2005): ring all-reduce
//! `2(p-1) alpha + 2(p-1)/p * S/B`, reduce-scatter and all-gather
//! `(p-1) alpha + (p-1)/p * S/B`, tree all-reduce
//! `2 ceil(log2 p) alpha + 2 S/B`, point-to-point `alpha + S/B`.
//! `S` is the whole buffer in bytes, `B` the per-device bandwidth of the
//! link the collective runs on (bytes/s, one direction), `alpha` the
//! per-message latency.

use crate::units::Seconds;

/// All-reduce algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AllReduceAlgo {
    /// Bandwidth-optimal ring.
    Ring,
    /// (Double binary) tree: latency-optimal, twice the bytes per device.
    Tree,
}

/// A link as a collective sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Bytes per second per device, one direction.
    pub bytes_per_s: f64,
    /// Per-message latency in seconds.
    pub latency_s: f64,
}

/// All-reduce of `bytes` over `p` devices.
pub fn all_reduce(algo: AllReduceAlgo, bytes: f64, p: u32, link: Link) -> Seconds {
    if p <= 1 || bytes <= 0.0 {
        return Seconds::ZERO;
    }
    let pf = f64::from(p);
    match algo {
        AllReduceAlgo::Ring => Seconds(
            2.0 * (pf - 1.0) * link.latency_s + 2.0 * (pf - 1.0) / pf * bytes / link.bytes_per_s,
        ),
        AllReduceAlgo::Tree => {
            Seconds(2.0 * pf.log2().ceil() * link.latency_s + 2.0 * bytes / link.bytes_per_s)
        }
    }
}

/// Reduce-scatter (or all-gather) of a `bytes` buffer over `p` devices.
pub fn reduce_scatter(bytes: f64, p: u32, link: Link) -> Seconds {
    if p <= 1 || bytes <= 0.0 {
        return Seconds::ZERO;
    }
    let pf = f64::from(p);
    Seconds((pf - 1.0) * link.latency_s + (pf - 1.0) / pf * bytes / link.bytes_per_s)
}

/// All-gather: the same cost as [`reduce_scatter`].
pub fn all_gather(bytes: f64, p: u32, link: Link) -> Seconds {
    reduce_scatter(bytes, p, link)
}

/// One point-to-point send of `bytes`.
pub fn p2p(bytes: f64, link: Link) -> Seconds {
    if bytes <= 0.0 {
        return Seconds::ZERO;
    }
    Seconds(link.latency_s + bytes / link.bytes_per_s)
}
