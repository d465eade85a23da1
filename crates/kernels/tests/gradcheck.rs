//! Finite-difference checks of every non-convolution backward kernel.
//!
//! Each check defines a scalar loss `L = Σ w·y` (or the cross-entropy itself) with a random,
//! non-trivial upstream gradient `w`, evaluates it in `f64` from the fast forward kernel's `f32`
//! outputs at `x ± eps`, and compares the central difference with what the backward kernel
//! accumulates into a zero gradient. Shapes are tiny; `eps` is chosen per op against `f32`
//! rounding (`~1e-7·|L|/eps`) and curvature (`~eps²`), and points are kept away from kinks
//! (ReLU at 0, max-pool ties) where a difference quotient is meaningless.
mod common;

use common::*;
use densenet_kernels::batchnorm::*;
use densenet_kernels::elementwise::*;
use densenet_kernels::linear::*;
use densenet_kernels::loss::*;
use densenet_kernels::pool::*;
use densenet_kernels::{BatchNormConfig, BatchNormGeom, Pool2dGeom};

const TOL: (f64, f64) = (2e-3, 2e-3);

fn bn_forward(relu: bool, x: &[f32], gamma: &[f32], beta: &[f32], g: &BatchNormGeom) -> Vec<f32> {
    let c = g.channels;
    let (mut out, mut mean, mut invstd) = (vec![0.0; g.len()], vec![0.0; c], vec![0.0; c]);
    let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
    let f = if relu {
        batchnorm_relu_forward_train
    } else {
        batchnorm_forward_train
    };
    f(
        &mut out,
        &mut mean,
        &mut invstd,
        &mut rm,
        &mut rv,
        x,
        gamma,
        beta,
        &BatchNormConfig::default(),
        g,
    );
    out
}

fn check_bn(relu: bool) {
    let g = BatchNormGeom {
        channels: 3,
        per_channel: 10,
    };
    let mut rng = Rng::new(if relu { 1 } else { 2 });
    let x = rng.floats(g.len(), -2.0, 2.0);
    let gamma = rng.floats(3, 0.5, 1.5);
    let beta = rng.floats(3, -0.3, 0.3);
    let mut w = rng.floats(g.len(), -1.0, 1.0);
    // The statistics of the unperturbed forward, for the backward pass.
    let c = g.channels;
    let (mut mean, mut invstd) = (vec![0.0; c], vec![0.0; c]);
    batchnorm_statistics(&mut mean, &mut invstd, &x, 1e-5, &g);
    if relu {
        // Outputs near the kink contribute nothing, so the loss is smooth around x.
        let y = bn_forward(false, &x, &gamma, &beta, &g);
        for (w, y) in w.iter_mut().zip(&y) {
            if y.abs() < 0.05 {
                *w = 0.0;
            }
        }
    }
    let (mut dx, mut dg, mut db) = (vec![0.0; g.len()], vec![0.0; c], vec![0.0; c]);
    if relu {
        batchnorm_relu_backward(
            &mut dx, &mut dg, &mut db, &w, &x, &gamma, &beta, &mean, &invstd, &g,
        );
    } else {
        batchnorm_backward(
            &mut dx, &mut dg, &mut db, &w, &x, &gamma, &mean, &invstd, &g,
        );
    }
    let name = if relu { "bn_relu" } else { "bn" };
    let eps = 1e-3;
    check_grad(
        &format!("{name} d_inp"),
        &x,
        &dx,
        |x| weighted_sum(&w, &bn_forward(relu, x, &gamma, &beta, &g)),
        eps,
        TOL,
    );
    check_grad(
        &format!("{name} d_gamma"),
        &gamma,
        &dg,
        |gm| weighted_sum(&w, &bn_forward(relu, &x, gm, &beta, &g)),
        eps,
        TOL,
    );
    check_grad(
        &format!("{name} d_beta"),
        &beta,
        &db,
        |bt| weighted_sum(&w, &bn_forward(relu, &x, &gamma, bt, &g)),
        eps,
        TOL,
    );
}

#[test]
fn batchnorm() {
    check_bn(false);
}

#[test]
fn batchnorm_relu() {
    check_bn(true);
}

#[test]
fn relu() {
    let mut rng = Rng::new(3);
    // Keep every value at least 0.1 from the kink.
    let x: Vec<f32> = rng
        .floats(40, -1.0, 1.0)
        .into_iter()
        .map(|v| if v.abs() < 0.1 { v + 0.2 } else { v })
        .collect();
    let w = rng.floats(40, -1.0, 1.0);
    let mut dx = vec![0.0; 40];
    relu_backward(&mut dx, &w, &x);
    check_grad(
        "relu",
        &x,
        &dx,
        |x| {
            let mut y = vec![0.0; x.len()];
            relu_forward(&mut y, x);
            weighted_sum(&w, &y)
        },
        1e-2,
        TOL,
    );
}

#[test]
fn dropout() {
    let mut rng = Rng::new(4);
    let x = rng.floats(50, -1.0, 1.0);
    let w = rng.floats(50, -1.0, 1.0);
    let (p, seed) = (0.3, 77);
    let mut dx = vec![0.0; 50];
    dropout_backward(&mut dx, &w, p, seed);
    check_grad(
        "dropout",
        &x,
        &dx,
        |x| {
            let mut y = vec![0.0; x.len()];
            dropout_forward(&mut y, x, p, seed);
            weighted_sum(&w, &y)
        },
        1e-2,
        TOL,
    );
}

#[test]
fn maxpool() {
    let g = Pool2dGeom {
        planes: 2,
        in_h: 7,
        in_w: 6,
        kernel: 3,
        stride: 2,
        pad: 1,
    };
    // Distinct values 0.1 apart in a shuffled order: no ties within a step of eps.
    let mut rng = Rng::new(5);
    let mut x: Vec<f32> = (0..g.input_len()).map(|i| i as f32 * 0.1).collect();
    for i in (1..x.len()).rev() {
        x.swap(i, rng.below(i + 1));
    }
    let w = rng.floats(g.output_len(), -1.0, 1.0);
    let mut dx = vec![0.0; g.input_len()];
    maxpool2d_backward(&mut dx, &w, &x, &g);
    check_grad(
        "maxpool",
        &x,
        &dx,
        |x| {
            let mut y = vec![0.0; g.output_len()];
            maxpool2d_forward(&mut y, x, &g);
            weighted_sum(&w, &y)
        },
        1e-2,
        TOL,
    );
}

#[test]
fn avgpool() {
    for (kernel, stride) in [(2, 2), (3, 1), (3, 2)] {
        let g = Pool2dGeom {
            planes: 2,
            in_h: 7,
            in_w: 6,
            kernel,
            stride,
            pad: 0,
        };
        let mut rng = Rng::new(6);
        let x = rng.floats(g.input_len(), -1.0, 1.0);
        let w = rng.floats(g.output_len(), -1.0, 1.0);
        let mut dx = vec![0.0; g.input_len()];
        avgpool2d_backward(&mut dx, &w, &g);
        check_grad(
            &format!("avgpool k={kernel} s={stride}"),
            &x,
            &dx,
            |x| {
                let mut y = vec![0.0; g.output_len()];
                avgpool2d_forward(&mut y, x, &g);
                weighted_sum(&w, &y)
            },
            1e-2,
            TOL,
        );
    }
}

#[test]
fn global_avgpool() {
    let (c, n, hw) = (3, 2, 5);
    let mut rng = Rng::new(7);
    let x = rng.floats(c * n * hw, -1.0, 1.0);
    let w = rng.floats(n * c, -1.0, 1.0);
    let mut dx = vec![0.0; x.len()];
    global_avgpool_backward(&mut dx, &w, c, n, hw);
    check_grad(
        "global_avgpool",
        &x,
        &dx,
        |x| {
            let mut y = vec![0.0; n * c];
            global_avgpool_forward(&mut y, x, c, n, hw);
            weighted_sum(&w, &y)
        },
        1e-2,
        TOL,
    );
}

#[test]
fn linear() {
    let (n, i_f, o_f) = (3, 7, 5);
    let mut rng = Rng::new(8);
    let x = rng.floats(n * i_f, -1.0, 1.0);
    let wt = rng.floats(o_f * i_f, -1.0, 1.0);
    let b = rng.floats(o_f, -1.0, 1.0);
    let w = rng.floats(n * o_f, -1.0, 1.0);
    let fwd = |x: &[f32], wt: &[f32], b: &[f32]| {
        let mut y = vec![0.0; n * o_f];
        linear_forward(&mut y, x, wt, Some(b), n);
        weighted_sum(&w, &y)
    };
    let mut dx = vec![0.0; x.len()];
    linear_backward_input(&mut dx, &w, &wt, n);
    let (mut dw, mut db) = (vec![0.0; wt.len()], vec![0.0; o_f]);
    linear_backward_weight(&mut dw, Some(&mut db), &w, &x, n);
    check_grad("linear d_inp", &x, &dx, |x| fwd(x, &wt, &b), 1e-2, TOL);
    check_grad("linear d_weight", &wt, &dw, |wt| fwd(&x, wt, &b), 1e-2, TOL);
    check_grad("linear d_bias", &b, &db, |b| fwd(&x, &wt, b), 1e-2, TOL);
}

#[test]
fn softmax_cross_entropy() {
    let (n, k) = (4, 6);
    let mut rng = Rng::new(9);
    let z = rng.floats(n * k, -3.0, 3.0);
    let labels: Vec<usize> = (0..n).map(|_| rng.below(k)).collect();
    let d_loss = 1.7;
    let mut p = vec![0.0; z.len()];
    softmax_cross_entropy_forward(&mut p, &z, &labels);
    let mut dz = vec![0.0; z.len()];
    softmax_cross_entropy_backward(&mut dz, &p, &labels, d_loss);
    check_grad(
        "softmax_cross_entropy",
        &z,
        &dz,
        |z| {
            let mut p = vec![0.0; z.len()];
            f64::from(d_loss) * f64::from(softmax_cross_entropy_forward(&mut p, z, &labels))
        },
        1e-2,
        TOL,
    );
}
