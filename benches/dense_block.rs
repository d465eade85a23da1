//! Dense-block memory traffic: one dense block, forward and forward+backward, in three memory
//! strategies side by side (naive concatenation, the preallocated shared buffer, the buffer with
//! memory-efficient backward), with a VoVNet OSA block of the same depth and widths beside them.
//!
//! ```text
//! cargo bench --bench dense_block                                # every shape
//! cargo bench --bench dense_block -- d121_b3                     # shapes whose name contains it
//! cargo bench --bench dense_block -- cifar --warm-up-time 1 --measurement-time 3
//! DENSE_BLOCK_MEMORY_ONLY=1 cargo bench --bench dense_block     # memory table only, no timing
//! ```
//!
//! Shapes: DenseNet-BC-100's block at CIFAR size (16 layers, k = 12, 24 input channels, 32×32,
//! batch 64) and DenseNet-121's four blocks (6/12/24/16 layers, k = 32, 56/28/14/7 px,
//! 64/128/256/512 input channels) at batch 1 and 8.
//!
//! Criterion measures time. The memory figures come from one instrumented run per shape,
//! strategy and pass, made before criterion starts, with the counting allocator installed below:
//! allocations, bytes allocated and peak bytes live (the runner's creation included, so the
//! preallocated buffers count), bytes copied from the runners' own counters, and the analytic
//! memory access cost (VoVNet's MAC, summed over the block's convs). A table is printed at the
//! end and written to `target/dense_block_memory.csv`, with criterion's median time per row
//! (read back from `target/criterion/<group>/<function>/new/estimates.json`, i.e. the last
//! criterion run of that ID, possibly an earlier one under DENSE_BLOCK_MEMORY_ONLY; criterion's own
//! "time:" line shows the mean, which on a busy machine can sit well above the median). The OSA
//! block's parameters and gradients are subtracted from its byte figures, since the dense
//! blocks' parameters are made outside their measurement.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use criterion::Criterion;
use densenet::memory::mac::{dense_block_convs, densenet40_network_mac, total_mac};
use densenet::memory::{
    measure_block, naive_copy_bytes_closed_form, random_values, BlockParams, BlockRunner,
    BlockShape, OsaBlock, OsaShape, Pass, Strategy,
};
use densenet_kernels::alloc_counter::{measure, CountingAllocator};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// The shapes, each with a short name used in bench IDs and the filter.
fn shapes() -> Vec<(String, BlockShape)> {
    let mut v = vec![("cifar_bc100_n64".to_string(), BlockShape::cifar_bc100(64))];
    for batch in [1, 8] {
        for b in 0..4 {
            v.push((
                format!("d121_b{}_n{batch}", b + 1),
                BlockShape::densenet121(b, batch),
            ));
        }
    }
    v
}

/// Criterion options that take a value, so the filter (the first free argument) is found.
const VALUE_OPTIONS: [&str; 16] = [
    "--warm-up-time",
    "--measurement-time",
    "--sample-size",
    "--save-baseline",
    "--baseline",
    "--baseline-lenient",
    "--load-baseline",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--nresamples",
    "--output-format",
    "--color",
    "--plotting-backend",
    "--profile-time",
    "--format",
];

fn filter_arg() -> Option<String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if VALUE_OPTIONS.contains(&a.as_str()) {
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            return Some(a.clone());
        }
        i += 1;
    }
    None
}

/// One row of the table.
struct Row {
    shape_name: String,
    shape: BlockShape,
    variant: &'static str,
    pass: Pass,
    bench_id: String,
    allocations: u64,
    allocated_bytes: u64,
    peak_bytes: u64,
    copied_bytes: u64,
    closed_form_copies: Option<u64>,
    mac: u64,
    one_shot_seconds: f64,
}

fn pass_name(p: Pass) -> &'static str {
    match p {
        Pass::Forward => "forward",
        Pass::ForwardBackward => "fwd+bwd",
    }
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / (1024.0 * 1024.0))
}

/// Criterion's median estimate (seconds) for a bench ID, read back from its JSON report.
fn criterion_median(id: &str) -> Option<f64> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let path = target
        .join("criterion")
        .join(id)
        .join("new")
        .join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let after = &text[text.find("\"median\"")?..];
    let after = &after[after.find("\"point_estimate\":")? + "\"point_estimate\":".len()..];
    let end = after.find([',', '}'])?;
    after[..end].trim().parse::<f64>().ok().map(|ns| ns * 1e-9)
}

fn instrument(name: &str, shape: BlockShape, rows: &mut Vec<Row>) {
    let mut params = BlockParams::new(shape, 1).expect("bench shapes are valid");
    let mac = total_mac(&dense_block_convs(&shape));
    for pass in [Pass::Forward, Pass::ForwardBackward] {
        for strategy in Strategy::ALL {
            let t0 = Instant::now();
            let t = measure_block(&mut params, strategy, pass).expect("bench shapes are valid");
            rows.push(Row {
                shape_name: name.to_string(),
                shape,
                variant: strategy.name(),
                pass,
                bench_id: format!(
                    "dense_block_{name}_{}/{}",
                    pass_name(pass).replace('+', "_"),
                    strategy.name()
                ),
                allocations: t.allocations,
                allocated_bytes: t.allocated_bytes,
                peak_bytes: t.peak_bytes,
                copied_bytes: t.copies.total(),
                closed_form_copies: (strategy == Strategy::Naive)
                    .then(|| naive_copy_bytes_closed_form(&shape, pass)),
                mac,
                one_shot_seconds: t0.elapsed().as_secs_f64(),
            });
        }
        let osa = OsaShape::matching(&shape);
        let m = osa.per_channel();
        let x = random_values(osa.c_in * m, 11);
        let d = random_values(osa.c_out * m, 12);
        let t0 = Instant::now();
        let ((copied, param_bytes), delta) = measure(|| {
            let mut b = OsaBlock::new(osa, 3).expect("bench shapes are valid");
            b.forward(&x);
            if pass == Pass::ForwardBackward {
                b.backward(&d);
            }
            (b.copied_bytes(), b.parameter_bytes())
        });
        rows.push(Row {
            shape_name: name.to_string(),
            shape,
            variant: "osa",
            pass,
            bench_id: format!(
                "dense_block_{name}_{}/osa",
                pass_name(pass).replace('+', "_")
            ),
            // The dense blocks' parameters are made outside their measurement; the OSA block
            // owns its own, so their (exactly known) bytes are set apart here.
            allocations: delta.allocations,
            allocated_bytes: delta.allocated_bytes - param_bytes,
            peak_bytes: delta.peak_extra_bytes - param_bytes,
            copied_bytes: copied,
            closed_form_copies: None,
            mac: osa.mac(),
            one_shot_seconds: t0.elapsed().as_secs_f64(),
        });
    }
}

fn bench_shape(c: &mut Criterion, name: &str, shape: BlockShape) {
    let m = shape.per_channel();
    let x = random_values(shape.k0 * m, 1);
    let d = random_values(shape.out_channels() * m, 2);
    let osa = OsaShape::matching(&shape);
    for pass in [Pass::Forward, Pass::ForwardBackward] {
        let mut g = c.benchmark_group(format!(
            "dense_block_{name}_{}",
            pass_name(pass).replace('+', "_")
        ));
        g.sample_size(10);
        for strategy in Strategy::ALL {
            let mut params = BlockParams::new(shape, 1).expect("bench shapes are valid");
            // Created once: the shared strategies preallocate here; the naive one allocates
            // every pass, as a framework does.
            let mut r = BlockRunner::new(&params, strategy).expect("bench shapes are valid");
            g.bench_function(strategy.name(), |b| {
                b.iter(|| {
                    r.forward(&mut params, &x);
                    if pass == Pass::ForwardBackward {
                        r.backward(&mut params, &d);
                    }
                })
            });
        }
        let mut ob = OsaBlock::new(osa, 3).expect("bench shapes are valid");
        let od = random_values(osa.c_out * m, 2);
        g.bench_function("osa", |b| {
            b.iter(|| {
                ob.forward(&x);
                if pass == Pass::ForwardBackward {
                    ob.backward(&od);
                }
            })
        });
        g.finish();
    }
}

fn table(rows: &[Row]) -> (String, String) {
    let mut t = String::new();
    let mut csv = String::from(
        "shape,k0,layers,growth,bn_size,batch,h,w,variant,pass,median_time_s,one_shot_time_s,\
         allocations,allocated_bytes,peak_bytes,copied_bytes,copied_bytes_closed_form,mac\n",
    );
    let _ = writeln!(
        t,
        "{:<16} {:<9} {:<8} {:>10} {:>8} {:>11} {:>10} {:>11} {:>12}",
        "shape",
        "variant",
        "pass",
        "median ms",
        "allocs",
        "alloc MiB",
        "peak MiB",
        "copied MiB",
        "MAC"
    );
    for r in rows {
        let median = criterion_median(&r.bench_id);
        let time = median.map_or("-".to_string(), |s| format!("{:.2}", s * 1e3));
        let _ = writeln!(
            t,
            "{:<16} {:<9} {:<8} {:>10} {:>8} {:>11} {:>10} {:>11} {:>12}",
            r.shape_name,
            r.variant,
            pass_name(r.pass),
            time,
            r.allocations,
            mib(r.allocated_bytes),
            mib(r.peak_bytes),
            mib(r.copied_bytes),
            r.mac
        );
        let s = r.shape;
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{:.6},{},{},{},{},{},{}",
            r.shape_name,
            s.k0,
            s.layers,
            s.growth,
            s.bn_size.map_or("none".to_string(), |b| b.to_string()),
            s.batch,
            s.h,
            s.w,
            r.variant,
            pass_name(r.pass),
            median.map_or(String::new(), |m| format!("{m:.6}")),
            r.one_shot_seconds,
            r.allocations,
            r.allocated_bytes,
            r.peak_bytes,
            r.copied_bytes,
            r.closed_form_copies
                .map_or(String::new(), |c| c.to_string()),
            r.mac
        );
    }
    (t, csv)
}

fn main() {
    let filter = filter_arg();
    let selected: Vec<(String, BlockShape)> = shapes()
        .into_iter()
        .filter(|(n, _)| {
            filter
                .as_ref()
                .is_none_or(|f| n.contains(f.as_str()) || f.contains(n.as_str()))
        })
        .collect();
    // Memory first, alone in the process, so no other work disturbs the counters.
    let mut rows = Vec::new();
    for (name, shape) in &selected {
        eprintln!("instrumented run: {name} ({})", shape.label());
        instrument(name, *shape, &mut rows);
        for r in rows.iter().rev().take(8) {
            if let Some(cf) = r.closed_form_copies {
                assert_eq!(
                    r.copied_bytes, cf,
                    "naive copies differ from the closed form"
                );
            }
        }
    }
    // DENSE_BLOCK_MEMORY_ONLY=1: the instrumented runs and the table, without timing.
    if std::env::var_os("DENSE_BLOCK_MEMORY_ONLY").is_none() {
        let mut c = Criterion::default().configure_from_args();
        for (name, shape) in &selected {
            bench_shape(&mut c, name, *shape);
        }
        c.final_summary();
    }

    let (text, csv) = table(&rows);
    println!("\nDense-block memory traffic (time: criterion median; memory: one instrumented run)");
    println!("{text}");
    println!(
        "VoVNet comparison (MAC = h*w*(c_in+c_out) + k^2*c_in*c_out, summed over convs):\n  \
         DenseNet-40 first dense block (12 plain layers, k=12, 16->160 ch, 32x32): {}\n  \
         OSA block in its place (5 layers x 43 ch, 1x1 231->160, 32x32):          {}\n  \
         DenseNet-40 all convs (stem, 3 blocks, 2 transitions):                   {}\n  \
         same with each dense block replaced by OSA(5x43):                        {}\n  \
         VoVNet (Lee et al. 2019) reports 3.7M for the dense block and 2.5M for the OSA module.",
        total_mac(&dense_block_convs(&BlockShape {
            k0: 16,
            layers: 12,
            growth: 12,
            bn_size: None,
            batch: 1,
            h: 32,
            w: 32
        })),
        OsaShape {
            c_in: 16,
            layers: 5,
            width: 43,
            c_out: 160,
            batch: 1,
            h: 32,
            w: 32
        }
        .mac(),
        densenet40_network_mac(None),
        densenet40_network_mac(Some((5, 43))),
    );
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let path = target.join("dense_block_memory.csv");
    match std::fs::create_dir_all(&target).and_then(|()| std::fs::write(&path, csv)) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}
