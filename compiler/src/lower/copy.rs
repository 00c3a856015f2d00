//! Strided copies between HBM regions, staged through the scratchpad:
//! the data-movement half of head splitting and merging, slicing, padding,
//! repeating kv heads and committing assigned values.
//!
//! A copy moves a box of `outer x planes x rows` rows of `row_bytes`
//! bytes; each level has its own source and destination stride. The load
//! queue brings chunks of planes in (t0, load -> store) and the store queue
//! writes them out and frees the buffer (t1, store -> load, 2 credits).

use std::fmt::Write;

use tessera_isa::asm::assemble;
use tessera_isa::program::MemSpace;
use tessera_isa::{Arch, Program};

use crate::error::LowerError;

/// A strided box copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoxCopy {
    /// Profiling region.
    pub name: String,
    /// Source base address.
    pub src: u64,
    /// Destination base address.
    pub dst: u64,
    /// `(count, src stride, dst stride)` of the outermost level.
    pub outer: (u64, u64, u64),
    /// `(count, src stride, dst stride)` of the plane level.
    pub planes: (u64, u64, u64),
    /// `(count, src stride, dst stride)` of the row level.
    pub rows: (u64, u64, u64),
    /// Contiguous bytes per row (at most 65,535).
    pub row_bytes: u64,
}

impl BoxCopy {
    /// A contiguous copy of `bytes` bytes: rows of 32 KiB, then one shorter row.
    pub fn contiguous(name: &str, src: u64, dst: u64, bytes: u64) -> Vec<BoxCopy> {
        const ROW: u64 = 32_768;
        let mut out = Vec::new();
        let (full, tail) = (bytes / ROW, bytes % ROW);
        if full > 0 {
            out.push(BoxCopy {
                name: name.to_string(),
                src,
                dst,
                outer: (1, 0, 0),
                planes: (full, ROW, ROW),
                rows: (1, ROW, ROW),
                row_bytes: ROW,
            });
        }
        if tail > 0 {
            out.push(BoxCopy {
                name: name.to_string(),
                src: src + full * ROW,
                dst: dst + full * ROW,
                outer: (1, 0, 0),
                planes: (1, tail, tail),
                rows: (1, tail, tail),
                row_bytes: tail,
            });
        }
        out
    }

    /// Assembles the copy.
    ///
    /// # Errors
    /// [`LowerError::Kernel`] if a row is too long or one row does not fit
    /// the scratchpad.
    pub fn lower(&self, arch: &Arch) -> Result<Program, LowerError> {
        let err = |rule: String| LowerError::Kernel {
            kernel: self.name.clone(),
            rule,
        };
        if self.row_bytes == 0 || self.row_bytes > 65_535 {
            return Err(err(format!(
                "rows of {} bytes: must be 1 to 65,535",
                self.row_bytes
            )));
        }
        let total = self.outer.0 * self.planes.0 * self.rows.0;
        if total == 0 {
            return Err(err("empty copy".into()));
        }
        let half = arch.capacity(MemSpace::Spad).0 / 2;
        let row_bytes = self.row_bytes;
        // Chunk: some rows of one plane, or some whole planes.
        let rows_fit = (half / row_bytes).min(4095);
        if rows_fit == 0 {
            return Err(err(format!(
                "a row of {row_bytes} bytes does not fit half the scratchpad ({half})"
            )));
        }
        let mut chunks = Vec::new(); // (src, dst, planes, rows)
        for o in 0..self.outer.0 {
            let (so, d_o) = (self.src + o * self.outer.1, self.dst + o * self.outer.2);
            if self.rows.0 <= rows_fit {
                let planes_fit = (half / (self.rows.0 * row_bytes)).clamp(1, 255);
                let mut p = 0;
                while p < self.planes.0 {
                    let n = planes_fit.min(self.planes.0 - p);
                    chunks.push((
                        so + p * self.planes.1,
                        d_o + p * self.planes.2,
                        n,
                        self.rows.0,
                    ));
                    p += n;
                }
            } else {
                for p in 0..self.planes.0 {
                    let mut r = 0;
                    while r < self.rows.0 {
                        let n = rows_fit.min(self.rows.0 - r);
                        chunks.push((
                            so + p * self.planes.1 + r * self.rows.1,
                            d_o + p * self.planes.2 + r * self.rows.2,
                            1,
                            n,
                        ));
                        r += n;
                    }
                }
            }
        }
        let (mut load, mut store) = (String::new(), String::new());
        let _ = writeln!(
            load,
            "dma.hstride row={}, plane={}",
            self.rows.1, self.planes.1
        );
        let _ = writeln!(
            store,
            "prof.begin {}\nnop signal=t1\nnop signal=t1",
            self.name
        );
        let _ = writeln!(
            store,
            "dma.hstride row={}, plane={}",
            self.rows.2, self.planes.2
        );
        for (i, &(src, dst, planes, rows)) in chunks.iter().enumerate() {
            let local = (i as u64 % 2) * half;
            let local_plane = rows * row_bytes;
            for q in [&mut load, &mut store] {
                let _ = writeln!(q, "dma.lstride row={row_bytes}, plane={local_plane}");
            }
            let _ = writeln!(
                load,
                "addr.set r1, {src}\naddr.set r2, {local}\n\
                 dma.load dst=spad[r2], src=hbm[r1], rows={rows}, row_bytes={row_bytes}, planes={planes}, transpose=none, wait=t1, signal=t0"
            );
            let _ = writeln!(
                store,
                "addr.set r1, {dst}\naddr.set r2, {local}\n\
                 dma.store dst=hbm[r1], src=spad[r2], rows={rows}, row_bytes={row_bytes}, planes={planes}, transpose=none, wait=t0, signal=t1"
            );
        }
        let _ = writeln!(load, "nop wait=t1\nnop wait=t1");
        let _ = writeln!(store, "prof.end {}", self.name);
        let src = format!(".queue load\n{load}halt\n.queue store\n{store}halt\n");
        assemble(&src, &self.name, Some(arch))
            .map_err(|e| err(format!("internal assembly error: {e}")))
    }
}
