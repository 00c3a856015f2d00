//! Co-simulation cases: one weight-stationary int8 or bf16 fold run through the
//! functional simulator (expected results) and the timing simulator (cycles
//! from the preload's start to the compute's end), packaged for the RTL
//! testbench generator.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{anyhow, Result};
use tessera_isa::asm::assemble;
use tessera_isa::program::MemSpace;
use tessera_isa::Arch;
use tessera_rtl::pe::PeType;
use tessera_rtl::testbench::FoldCase;
use tessera_sim::{run_functional, timing, Memory};

/// Runs C (m x n) = A (m x k) * W (k x n) with inputs of type `ty` (raw
/// bits, row-major) on `arch` in both simulator modes. Returns the case with
/// its expected C, and the cycles of the fold (preload start to compute end).
///
/// # Errors
/// A fold that does not fit the hardware description, or a simulator error.
pub fn fold(
    arch: &Arch,
    ty: PeType,
    (m, k, n): (usize, usize, usize),
    a: Vec<u16>,
    w: Vec<u16>,
) -> Result<(FoldCase, u64)> {
    let (dt, acc) = match ty {
        PeType::Int8 => ("int8", "int32"),
        PeType::Bf16 => ("bf16", "fp32"),
    };
    let eb = ty.input_bits() as usize / 8;
    let src = format!(
        "\
.region fold
.queue load
    addr.set r1, 0x4000
    dma.load dst=spad[r0], src=hbm[r0], rows={m}, row_bytes={ak}, planes=1, transpose=none
    dma.load dst=spad[r1], src=hbm[r1], rows={k}, row_bytes={wn}, planes=1, transpose=none, signal=t0
    halt
.queue matrix
    addr.set r1, 0x4000
    nop wait=t0
    prof.begin fold
    mm.preload b=spad[r1]:{dt}, k={k}, n={n}, transpose=false
    mm.compute a=spad[r0]:{dt}, c=acc[r0]:{acc}, m={m}, transpose=false, mode=overwrite, signal=t1
    prof.end fold
    halt
.queue store
    addr.set r1, 0x8000
    dma.store dst=hbm[r1], src=acc[r0], rows={m}, row_bytes={nb}, planes=1, transpose=none, wait=t1
    halt
",
        ak = eb * k,
        wn = eb * n,
        nb = 4 * n
    );
    let p = assemble(&src, "fold.s", Some(arch)).map_err(|e| anyhow!("{e}"))?;
    let bytes = |v: &[u16]| -> Vec<u8> {
        v.iter()
            .flat_map(|x| x.to_le_bytes().into_iter().take(eb))
            .collect()
    };
    let mut mem = Memory::new(&p.arch);
    mem.write(MemSpace::Hbm, 0, &bytes(&a))?;
    mem.write(MemSpace::Hbm, 0x4000, &bytes(&w))?;
    run_functional(&p, &mut mem, 1 << 24)?;
    let c = mem
        .read_vec(MemSpace::Hbm, 0x8000, 4 * m * n)?
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let t = timing::run(&p, 1 << 24, &mut |_| {})?;
    let cycles = t
        .regions
        .iter()
        .find(|r| r.name == "fold")
        .map(|r| r.cycles)
        .ok_or_else(|| anyhow!("the fold program lost its profiling region"))?;
    Ok((
        FoldCase {
            ty,
            m,
            k,
            n,
            a,
            w,
            c,
        },
        cycles,
    ))
}

/// A deterministic fold of type `ty` that fills the array (k = rows, n =
/// cols) with m = 2 x rows. int8 inputs include -128 and 127; bf16 inputs
/// are mostly normal numbers of moderate range (so sums cancel and round)
/// with a zero, a subnormal, the largest finite value, an infinity and a NaN.
///
/// # Errors
/// As [`fold`].
pub fn full_fold(arch: &Arch, ty: PeType, seed: u64) -> Result<(FoldCase, u64)> {
    let (r, c) = (arch.rows() as usize, arch.cols() as usize);
    let m = 2 * r;
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 32) as u32
    };
    let mut elem = |ty: PeType| -> u16 {
        let x = next();
        match ty {
            PeType::Int8 => x as u8 as u16,
            // Sign, exponent 120..135, random fraction.
            PeType::Bf16 => ((x & 0x8000) | ((120 + (x >> 16) % 16) << 7) | (x & 0x7f)) as u16,
        }
    };
    let mut a: Vec<u16> = (0..m * r).map(|_| elem(ty)).collect();
    let w: Vec<u16> = (0..r * c).map(|_| elem(ty)).collect();
    let specials: &[u16] = match ty {
        PeType::Int8 => &[0x80, 0x7f],
        PeType::Bf16 => &[0x0000, 0x0001, 0x7f7f, 0xff80, 0x7fc1],
    };
    // The last rows of A, so the first rows check plain arithmetic.
    let tail = a.len() - specials.len();
    a[tail..].copy_from_slice(specials);
    fold(arch, ty, (m, r, c), a, w)
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
