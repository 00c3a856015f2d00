//! Co-simulation cases: one weight-stationary int8 fold run through the
//! functional simulator (expected results) and the timing simulator (cycles
//! from the preload's start to the compute's end), packaged for the RTL
//! testbench generator.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{anyhow, Result};
use tessera_isa::asm::assemble;
use tessera_isa::program::MemSpace;
use tessera_isa::Arch;
use tessera_rtl::testbench::FoldCase;
use tessera_sim::{run_functional, timing, Memory};

/// Runs C (m x n) = A (m x k) * W (k x n) on `arch` in both simulator modes.
/// Returns the case with its expected C, and the cycles of the fold.
///
/// # Errors
/// A fold that does not fit the hardware description, or a simulator error.
pub fn fold(
    arch: &Arch,
    m: usize,
    k: usize,
    n: usize,
    a: Vec<i8>,
    w: Vec<i8>,
) -> Result<(FoldCase, u64)> {
    let src = format!(
        "\
.region fold
.queue load
    addr.set r1, 0x4000
    dma.load dst=spad[r0], src=hbm[r0], rows={m}, row_bytes={k}, planes=1, transpose=none
    dma.load dst=spad[r1], src=hbm[r1], rows={k}, row_bytes={n}, planes=1, transpose=none, signal=t0
    halt
.queue matrix
    addr.set r1, 0x4000
    nop wait=t0
    prof.begin fold
    mm.preload b=spad[r1]:int8, k={k}, n={n}, transpose=false
    mm.compute a=spad[r0]:int8, c=acc[r0]:int32, m={m}, transpose=false, mode=overwrite, signal=t1
    prof.end fold
    halt
.queue store
    addr.set r1, 0x8000
    dma.store dst=hbm[r1], src=acc[r0], rows={m}, row_bytes={nb}, planes=1, transpose=none, wait=t1
    halt
",
        nb = 4 * n
    );
    let p = assemble(&src, "fold.s", Some(arch)).map_err(|e| anyhow!("{e}"))?;
    let mut mem = Memory::new(&p.arch);
    mem.write(
        MemSpace::Hbm,
        0,
        &a.iter().map(|x| *x as u8).collect::<Vec<_>>(),
    )?;
    mem.write(
        MemSpace::Hbm,
        0x4000,
        &w.iter().map(|x| *x as u8).collect::<Vec<_>>(),
    )?;
    run_functional(&p, &mut mem, 1 << 24)?;
    let c = mem
        .read_vec(MemSpace::Hbm, 0x8000, 4 * m * n)?
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let t = timing::run(&p, 1 << 24, &mut |_| {})?;
    let cycles = t
        .regions
        .iter()
        .find(|r| r.name == "fold")
        .map(|r| r.cycles)
        .ok_or_else(|| anyhow!("the fold program lost its profiling region"))?;
    Ok((FoldCase { m, k, n, a, w, c }, cycles))
}

/// A deterministic fold that fills the array (k = rows, n = cols) with
/// m = 2 x rows, whose inputs include -128 and 127.
///
/// # Errors
/// As [`fold`].
pub fn full_fold(arch: &Arch, seed: u64) -> Result<(FoldCase, u64)> {
    let (r, c) = (arch.rows() as usize, arch.cols() as usize);
    let m = 2 * r;
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 32) as u8 as i8
    };
    let mut a: Vec<i8> = (0..m * r).map(|_| next()).collect();
    let w: Vec<i8> = (0..r * c).map(|_| next()).collect();
    a[0] = -128;
    a[1] = 127;
    fold(arch, m, r, c, a, w)
}

/// Yosys's data directory, where the FPGA cell simulation models live:
/// `yosys-config --datdir` when available, else Debian's location.
pub fn yosys_datdir() -> PathBuf {
    Command::new("yosys-config")
        .arg("--datdir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| PathBuf::from("/usr/share/yosys"))
}
