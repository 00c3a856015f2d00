//! The built-in hardware descriptions. Each is derived from [`base`] by
//! changing only what differs, so the designs stay comparable.

use crate::arch::{
    ArchSpec, ArraySpec, ChipSpec, ClockSpec, Dataflow, DmaSpec, HbmSpec, SramSpec, VectorSpec,
};
use crate::dtype::DType;

/// The default design: one 128x128 bf16/fp16/fp8/int8 core at 1 GHz on 7 nm
/// with 1.6 TB/s of HBM.
fn base() -> ArchSpec {
    ArchSpec {
        name: "default".into(),
        array: ArraySpec {
            rows: 128,
            cols: 128,
            dataflow: Dataflow::WeightStationary,
            double_buffered_weights: true,
            input_types: vec![
                DType::Bf16,
                DType::Fp16,
                DType::Fp8E4M3,
                DType::Fp8E5M2,
                DType::Int8,
            ],
            pe_pipeline_stages: 1,
        },
        clock: ClockSpec {
            frequency_mhz: 1000.0,
        },
        scratchpad: SramSpec {
            size_kib: 24 * 1024,
            banks: 32,
            bank_width_bytes: 64,
        },
        accumulator: SramSpec {
            size_kib: 4 * 1024,
            banks: 16,
            bank_width_bytes: 64,
        },
        vector: VectorSpec {
            lanes: 256,
            special_lanes: 64,
            latency_cycles: 8,
        },
        dma: DmaSpec {
            engines: 4,
            burst_bytes: 64,
        },
        hbm: HbmSpec {
            bandwidth_gb_per_s: 1600.0,
            latency_ns: 300.0,
            capacity_gib: 32.0,
        },
        chip: ChipSpec {
            process_nm: 7,
            cores: 1,
        },
    }
}

/// An 8x8 int8/bf16 core that fits a mid-size FPGA (ECP5-85F class) at 100 MHz
/// with board DDR3.
fn fpga_8x8() -> ArchSpec {
    let mut s = base();
    s.name = "fpga-8x8".into();
    s.array.rows = 8;
    s.array.cols = 8;
    s.array.input_types = vec![DType::Int8, DType::Bf16];
    // Single-buffered weights: half the weight registers, and what the RTL
    // generator builds today.
    s.array.double_buffered_weights = false;
    s.clock.frequency_mhz = 100.0;
    s.scratchpad = SramSpec {
        size_kib: 64,
        banks: 4,
        bank_width_bytes: 16,
    };
    s.accumulator = SramSpec {
        size_kib: 16,
        banks: 2,
        bank_width_bytes: 32,
    };
    s.vector = VectorSpec {
        lanes: 8,
        special_lanes: 2,
        latency_cycles: 4,
    };
    s.dma = DmaSpec {
        engines: 1,
        burst_bytes: 64,
    };
    s.hbm = HbmSpec {
        bandwidth_gb_per_s: 3.2,
        latency_ns: 120.0,
        capacity_gib: 1.0,
    };
    s.chip.process_nm = 40;
    s
}

/// A datacenter-class chip: four 256x256 cores at 1.5 GHz on 5 nm with
/// 3.35 TB/s of HBM3 (about H100-class peak).
fn datacenter() -> ArchSpec {
    let mut s = base();
    s.name = "datacenter".into();
    s.array.rows = 256;
    s.array.cols = 256;
    s.clock.frequency_mhz = 1500.0;
    s.scratchpad = SramSpec {
        size_kib: 48 * 1024,
        banks: 64,
        bank_width_bytes: 64,
    };
    s.accumulator = SramSpec {
        size_kib: 8 * 1024,
        banks: 32,
        bank_width_bytes: 64,
    };
    s.vector.lanes = 512;
    s.vector.special_lanes = 128;
    s.dma.engines = 8;
    s.hbm = HbmSpec {
        bandwidth_gb_per_s: 3350.0,
        latency_ns: 350.0,
        capacity_gib: 80.0,
    };
    s.chip = ChipSpec {
        process_nm: 5,
        cores: 4,
    };
    s
}

/// The description of a named preset, unvalidated.
pub(crate) fn spec(name: &str) -> Option<ArchSpec> {
    match name {
        "fpga-8x8" => Some(fpga_8x8()),
        "default" => Some(base()),
        "datacenter" => Some(datacenter()),
        _ => None,
    }
}
