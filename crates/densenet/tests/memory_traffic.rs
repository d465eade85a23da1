//! The dense-block memory-traffic library: MAC by hand, the naive block's copies against their
//! closed form, the three strategies computing the same function, measured memory ordering,
//! and the OSA block's gradients against finite differences.

use densenet::memory::mac::{
    dense_block_convs, densenet40_network_mac, osa_block_convs, total_mac, ConvShape,
};
use densenet::memory::{
    measure_block, naive_copy_bytes_closed_form, random_values, BlockParams, BlockRunner,
    BlockShape, OsaBlock, OsaShape, Pass, Strategy,
};
// The counters are process-wide: every test here holds `exclusive()` so none overlaps another.
use densenet_kernels::alloc_counter::{exclusive, CountingAllocator};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

fn shape(k0: usize, layers: usize, growth: usize, bn_size: Option<usize>) -> BlockShape {
    BlockShape {
        k0,
        layers,
        growth,
        bn_size,
        batch: 2,
        h: 5,
        w: 4,
    }
}

#[test]
fn mac_of_small_blocks_by_hand() {
    let _g = exclusive();
    // Plain block, k0 = 2, L = 2, k = 1, 4×4 (MAC = h·w·(c_in + c_out) + k²·c_in·c_out):
    //   layer 0, 3×3 2→1: 16·(2+1) + 9·2·1 = 48 + 18 = 66
    //   layer 1, 3×3 3→1: 16·(3+1) + 9·3·1 = 64 + 27 = 91        total 157
    let mut s = shape(2, 2, 1, None);
    (s.h, s.w) = (4, 4);
    assert_eq!(total_mac(&dense_block_convs(&s)), 157);
    // Bottleneck factor 2 (B = 2):
    //   layer 0: 1×1 2→2: 16·(2+2) + 1·2·2 = 68;  3×3 2→1: 16·(2+1) + 9·2·1 = 66
    //   layer 1: 1×1 3→2: 16·(3+2) + 1·3·2 = 86;  3×3 2→1: 66      total 286
    s.bn_size = Some(2);
    assert_eq!(total_mac(&dense_block_convs(&s)), 286);
    // OSA, c_in = 2, two 3×3 layers of width 3, aggregation 2+3+3 = 8 → 4, 4×4:
    //   3×3 2→3: 16·5 + 9·6 = 134;  3×3 3→3: 16·6 + 9·9 = 177;  1×1 8→4: 16·12 + 32 = 224
    let o = OsaShape {
        c_in: 2,
        layers: 2,
        width: 3,
        c_out: 4,
        batch: 1,
        h: 4,
        w: 4,
    };
    assert_eq!(o.mac(), 134 + 177 + 224);
    // Batch size is not part of the MAC.
    s.batch = 7;
    assert_eq!(total_mac(&dense_block_convs(&s)), 286);
}

#[test]
fn densenet40_against_vovnet() {
    let _g = exclusive();
    // DenseNet-40's first block: 12 plain layers, k = 12, c_in = 16 + 12·l, 32×32:
    //   Σ c_in = 12·16 + 12·(0+…+11) = 192 + 792 = 984
    //   Σ hw·(c_in + 12) = 1024·(984 + 144) = 1 155 072;  Σ 9·12·c_in = 108·984 = 106 272
    let b1 = BlockShape {
        k0: 16,
        layers: 12,
        growth: 12,
        bn_size: None,
        batch: 1,
        h: 32,
        w: 32,
    };
    assert_eq!(total_mac(&dense_block_convs(&b1)), 1_261_344);
    // OSA with 5 layers of 43 channels in its place (same output width 160), 32×32:
    //   3×3 16→43: 1024·59 + 9·16·43 = 60 416 + 6 192 = 66 608
    //   3×3 43→43 (×4): 1024·86 + 9·43·43 = 88 064 + 16 641 = 104 705
    //   1×1 (16 + 5·43 = 231)→160: 1024·391 + 231·160 = 400 384 + 36 960 = 437 344
    let osa = OsaShape {
        c_in: 16,
        layers: 5,
        width: 43,
        c_out: 160,
        batch: 1,
        h: 32,
        w: 32,
    };
    assert_eq!(osa.mac(), 66_608 + 4 * 104_705 + 437_344);
    let dense = densenet40_network_mac(None);
    let osa_net = densenet40_network_mac(Some((5, 43)));
    println!(
        "DenseNet-40 convs: {dense} MAC; with OSA(5x43) blocks: {osa_net} MAC (VoVNet: 3.7M vs 2.5M)"
    );
    assert!(osa_net < dense);
}

#[test]
fn naive_copies_equal_the_closed_form() {
    let _g = exclusive();
    for s in [shape(3, 4, 2, Some(2)), shape(5, 3, 3, None)] {
        let mut p = BlockParams::new(s, 1).unwrap();
        let mut r = BlockRunner::new(&p, Strategy::Naive).unwrap();
        let x = random_values(s.k0 * s.per_channel(), 2);
        let d = random_values(s.out_channels() * s.per_channel(), 3);
        r.forward(&mut p, &x);
        let fwd = r.copies().forward_bytes;
        r.backward(&mut p, &d);
        // Independently of the closed form: layer l copies (k0 + l·k) channels of M floats,
        // and the output concatenation copies k0 + L·k.
        let by_sum: u64 = (0..=s.layers)
            .map(|l| ((s.k0 + l * s.growth) * s.per_channel() * 4) as u64)
            .sum();
        assert_eq!(fwd, by_sum);
        assert_eq!(fwd, naive_copy_bytes_closed_form(&s, Pass::Forward));
        assert_eq!(r.copies().backward_bytes, by_sum);
        assert_eq!(
            r.copies().total(),
            naive_copy_bytes_closed_form(&s, Pass::ForwardBackward)
        );
    }
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / scale)
        .fold(0.0, f32::max)
}

#[test]
fn three_strategies_compute_the_same_block() {
    let _g = exclusive();
    for s in [shape(3, 4, 2, Some(2)), shape(4, 3, 3, None)] {
        let x = random_values(s.k0 * s.per_channel(), 21);
        let d = random_values(s.out_channels() * s.per_channel(), 22);
        let mut results = Vec::new();
        for strategy in Strategy::ALL {
            let mut p = BlockParams::new(s, 5).unwrap();
            let mut r = BlockRunner::new(&p, strategy).unwrap();
            let out = r.forward(&mut p, &x).to_vec();
            let d_in = r.backward(&mut p, &d).to_vec();
            results.push((strategy, out, d_in, p.store().grads().to_vec()));
        }
        let (_, out0, din0, g0) = &results[0];
        for (strategy, out, d_in, g) in &results[1..] {
            let (e_out, e_in, e_g) = (
                max_rel_diff(out0, out),
                max_rel_diff(din0, d_in),
                max_rel_diff(g0, g),
            );
            println!(
                "{} vs naive: out {e_out:e}, d_in {e_in:e}, grads {e_g:e}",
                strategy.name()
            );
            assert!(
                e_out < 1e-5 && e_in < 1e-4 && e_g < 1e-4,
                "{strategy:?} differs"
            );
        }
        // The block input passes through unchanged as the first k0 output channels.
        assert_eq!(&out0[..x.len()], &x[..]);
    }
}

#[test]
fn measured_memory_naive_above_shared_above_efficient() {
    let _g = exclusive();
    let mut peaks = Vec::new();
    for layers in [8, 16] {
        let s = BlockShape {
            k0: 16,
            layers,
            growth: 8,
            bn_size: Some(4),
            batch: 2,
            h: 8,
            w: 8,
        };
        let mut p = BlockParams::new(s, 3).unwrap();
        let t: Vec<_> = Strategy::ALL
            .iter()
            .map(|&st| measure_block(&mut p, st, Pass::ForwardBackward).unwrap())
            .collect();
        for (st, tr) in Strategy::ALL.iter().zip(&t) {
            println!("L={layers} {}: {tr:?}", st.name());
        }
        assert!(t[0].peak_bytes > t[1].peak_bytes, "naive vs shared");
        assert!(t[1].peak_bytes > t[2].peak_bytes, "shared vs efficient");
        // The shared buffer copies only its input in and the output gradient in.
        let m = s.per_channel() as u64;
        assert_eq!(
            t[1].copies.total(),
            (s.k0 + s.out_channels()) as u64 * m * 4
        );
        // The efficient block's state is known to the byte: feature and gradient buffers
        // [C, M], scratch a [C, M], b and c [B, M], the bottleneck outputs [L, B, M]; its peak
        // can only exceed that by the conv workspace and small per-channel vectors.
        let (c, b) = (s.out_channels() as u64, 4 * s.growth as u64);
        let floor = (3 * c * m + 2 * b * m + layers as u64 * b * m) * 4;
        assert!(t[2].peak_bytes >= floor, "{} < {floor}", t[2].peak_bytes);
        peaks.push([t[0].peak_bytes, t[1].peak_bytes, t[2].peak_bytes]);
    }
    // Doubling depth: the stored prefixes grow ~4x, the efficient state ~2x.
    let growth: Vec<f64> = (0..3)
        .map(|i| peaks[1][i] as f64 / peaks[0][i] as f64)
        .collect();
    println!(
        "peak growth L=8 -> 16: naive {:.2}x, shared {:.2}x, efficient {:.2}x",
        growth[0], growth[1], growth[2]
    );
    assert!(growth[0] > growth[2] + 0.5 && growth[1] > growth[2] + 0.3);
    assert!(growth[2] < 2.2);
}

/// `Σ out·g` for the OSA block, the loss whose gradient `backward(g)` computes.
fn osa_loss(block: &mut OsaBlock, x: &[f32], g: &[f32]) -> f64 {
    let out = block.forward(x);
    out.iter()
        .zip(g)
        .map(|(o, g)| f64::from(*o) * f64::from(*g))
        .sum()
}

#[test]
fn osa_input_gradient_matches_finite_differences() {
    let _g = exclusive();
    let s = OsaShape {
        c_in: 3,
        layers: 3,
        width: 4,
        c_out: 5,
        batch: 2,
        h: 4,
        w: 3,
    };
    let mut block = OsaBlock::new(s, 9).unwrap();
    let m = s.per_channel();
    let x = random_values(s.c_in * m, 1);
    let g = random_values(s.c_out * m, 2);
    block.forward(&x);
    let d_in = block.backward(&g).to_vec();
    // A perturbation can move a pre-activation across ReLU's kink (batch norm mixes every value
    // of a channel), where a finite difference is wrong by design; so most points, not all,
    // must agree closely.
    let eps = 5e-4f32;
    let (mut checked, mut off) = (0, 0);
    for i in (0..x.len()).step_by(7) {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp[i] += eps;
        xm[i] -= eps;
        let fd = (osa_loss(&mut block, &xp, &g) - osa_loss(&mut block, &xm, &g))
            / (2.0 * f64::from(eps));
        let err = (fd - f64::from(d_in[i])).abs() / fd.abs().max(1.0);
        checked += 1;
        if err > 5e-3 {
            println!("x[{i}]: fd {fd} analytic {}", d_in[i]);
            off += 1;
        }
    }
    println!("OSA input gradient: {off} of {checked} points off by more than 5e-3");
    assert!(
        off * 10 <= checked,
        "OSA input gradient: {off} of {checked} points off"
    );
    // Weight gradients of the first 3×3 conv and of the 1×1 aggregation.
    let d_w = block.weight_grads().to_vec();
    let (mut checked, mut off) = (0, 0);
    for conv in [0, s.layers] {
        for j in (0..d_w[conv].len()).step_by(5) {
            let w0 = block.weights_mut()[conv][j];
            block.weights_mut()[conv][j] = w0 + eps;
            let lp = osa_loss(&mut block, &x, &g);
            block.weights_mut()[conv][j] = w0 - eps;
            let lm = osa_loss(&mut block, &x, &g);
            block.weights_mut()[conv][j] = w0;
            let fd = (lp - lm) / (2.0 * f64::from(eps));
            let err = (fd - f64::from(d_w[conv][j])).abs() / fd.abs().max(1.0);
            checked += 1;
            if err > 5e-3 {
                println!("conv {conv} weight {j}: fd {fd} analytic {}", d_w[conv][j]);
                off += 1;
            }
        }
    }
    println!("OSA weight gradients: {off} of {checked} points off by more than 5e-3");
    assert!(
        off * 10 <= checked,
        "OSA weight gradients: {off} of {checked} points off"
    );
}

#[test]
fn bad_shapes_are_errors() {
    let _g = exclusive();
    assert!(BlockParams::new(shape(0, 2, 2, None), 1).is_err());
    let mut one = shape(2, 2, 2, None);
    (one.batch, one.h, one.w) = (1, 1, 1);
    assert!(BlockParams::new(one, 1).is_err());
    let o = OsaShape {
        c_in: 1,
        layers: 0,
        width: 1,
        c_out: 1,
        batch: 2,
        h: 2,
        w: 2,
    };
    assert!(OsaBlock::new(o, 1).is_err());
    // The conv list of an OSA block ends with its aggregation over c_in + L·width channels.
    let convs = osa_block_convs(&OsaShape { layers: 2, ..o });
    assert_eq!(
        convs.last(),
        Some(&ConvShape {
            h: 2,
            w: 2,
            c_in: 3,
            c_out: 1,
            kernel: 1
        })
    );
}
