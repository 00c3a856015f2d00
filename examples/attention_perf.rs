//! Times the fused attention kernels in timing mode on a hardware preset
//! and prints cycles, the achieved share of the array's peak (counting the
//! nominal attention FLOPs: 4*B*h*S^2*D forward, halved when causal, 2.5x
//! that backward), engine busy shares, and HBM bytes against the S x S
//! score traffic of the unfused path.
//!
//! `cargo run --release --example attention_perf -- [preset B heads kv_heads S D causal(0|1) fp32|bf16]`
//! (defaults: `default 8 12 12 1024 64 1 bf16`, GPT-2 small).

use tessera_compiler::lower::attention::{
    attention_backward, attention_forward, AttentionBackwardSpec, AttentionSpec,
};
use tessera_isa::{Arch, DType};
use tessera_sim::{simulate, SimReport};

fn engines(r: &SimReport) -> String {
    r.engines
        .iter()
        .map(|(q, e)| format!("{q} {:.0}%", 100.0 * e.utilization))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let arch = Arch::preset(&arg(0, "default"))?;
    let num = |i: usize, d: &str| -> anyhow::Result<u64> { Ok(arg(i, d).parse()?) };
    let (b, h, hk, s, d) = (
        num(1, "8")?,
        num(2, "12")?,
        num(3, "12")?,
        num(4, "1024")?,
        num(5, "64")?,
    );
    let causal = arg(6, "1") == "1";
    let input = if arg(7, "bf16") == "fp32" {
        DType::Fp32
    } else {
        DType::Bf16
    };
    let gib = 1u64 << 30;
    let forward = AttentionSpec {
        name: "attention".into(),
        batch: b,
        heads: h,
        kv_heads: hk,
        seq: s,
        head_dim: d,
        q: 0,
        k: gib,
        v: 2 * gib,
        input_type: input,
        o: 3 * gib,
        lse: 4 * gib,
        scale: 1.0 / (d as f64).sqrt(),
        causal,
        key_mask: None,
    };
    let spec = AttentionBackwardSpec {
        forward: forward.clone(),
        d_o: 5 * gib,
        dq: 6 * gib,
        dk: 7 * gib,
        dv: 8 * gib,
    };
    let peak = arch.peak_flops() / f64::from(arch.spec().chip.cores);
    let nominal = 4.0 * (b * h * s * s * d) as f64 * if causal { 0.5 } else { 1.0 };
    let scores = (b * h * s * s) as f64;
    println!(
        "{}: B={b} heads={h} kv_heads={hk} S={s} D={d} causal={causal} {}",
        arch.name(),
        input.name()
    );
    for (what, program, flops) in [
        ("forward", attention_forward(&arch, &forward)?, nominal),
        ("backward", attention_backward(&arch, &spec)?, 2.5 * nominal),
    ] {
        let (r, _) = simulate(&program, false)?;
        let rate = flops / r.seconds;
        let hbm = r.hbm_read_bytes + r.hbm_write_bytes;
        println!(
            "{what}: {} instructions, {} cycles ({:.3} ms), nominal {:.3e} FLOP at {:.1} TFLOP/s = {:.1}% of peak; array MACs issued {:.1}% of peak",
            program.queues.iter().map(Vec::len).sum::<usize>(),
            r.cycles,
            r.seconds * 1e3,
            flops,
            rate / 1e12,
            100.0 * rate / peak,
            100.0 * r.utilization
        );
        println!("  engines busy: {}", engines(&r));
        println!(
            "  HBM: {:.1} MB read, {:.1} MB written ({:.1} MB total); unfused score traffic alone: {:.1} MB (one fp32 write + read of S x S), {:.1} MB along the unfused chain",
            r.hbm_read_bytes as f64 / 1e6,
            r.hbm_write_bytes as f64 / 1e6,
            hbm as f64 / 1e6,
            scores * 8.0 / 1e6,
            scores * if what == "forward" { 28.0 } else { 36.0 } / 1e6,
        );
    }
    Ok(())
}
