//! Finite-difference gradient check of whole tiny networks, in training mode (batch statistics).
//!
//! For every trainable tensor `θ_i` with analytic gradient `g_i`, the central difference of the
//! loss along the unit direction `v = g_i/|g_i|` must equal `g_i·v = |g_i|`; a gradient with
//! wrong entries, a wrong sign or a missing term gives a smaller (or negative) directional
//! derivative. A second check moves *all* parameters at once along a random direction.
//! The loss is computed in f32, so `ε = 1e-3` balances rounding noise (≈1e-7/ε) against the
//! curvature and ReLU-kink error (≈ε; at 4e-3 the tiny-batch BN curvature already shows as 4%
//! on the stem conv); the tolerance is 3% relative plus 2e-4 absolute.

use densenet::init::Rng;
use densenet::{DenseNet, DenseNetConfig, TrainWorkspace};

const EPS: f32 = 1e-3;

fn loss(model: &mut DenseNet, ws: &mut TrainWorkspace, x: &[f32], y: &[usize]) -> f64 {
    f64::from(model.forward_train(ws, x, y).unwrap())
}

fn check(spec: &str, n: usize, h: usize, w: usize) {
    let cfg: DenseNetConfig = spec.parse().unwrap();
    let mut model = DenseNet::new(cfg.clone(), 3).unwrap();
    let mut rng = Rng::new(11);
    // BN γ away from 1 and β away from 0, so their gradients are generic.
    for name in model.store().tensor_names() {
        if name.contains("norm") && (name.ends_with(".weight") || name.ends_with(".bias")) {
            let bias = name.ends_with(".bias");
            for v in model.store_mut().tensor_mut(&name).unwrap().1 {
                *v = if bias {
                    0.2 * rng.normal()
                } else {
                    0.8 + 0.4 * rng.uniform() as f32
                };
            }
        }
    }
    let x: Vec<f32> = (0..n * cfg.in_channels * h * w)
        .map(|_| rng.normal())
        .collect();
    let y: Vec<usize> = (0..n).map(|i| i % cfg.num_classes).collect();
    let mut ws = model.workspace(n, h, w, true).unwrap();
    model.store_mut().zero_grads();
    let base = loss(&mut model, &mut ws, &x, &y);
    model.backward(&mut ws).unwrap();
    let names: Vec<String> = model
        .store()
        .tensor_names()
        .into_iter()
        .filter(|n| model.store().grad(n).is_some())
        .collect();
    let grads: Vec<Vec<f32>> = names
        .iter()
        .map(|n| model.store().grad(n).unwrap().to_vec())
        .collect();
    let mut checked = 0;
    for (name, g) in names.iter().zip(&grads) {
        let norm = g.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
        if norm < 1e-4 {
            continue;
        }
        let dir: Vec<f32> = g.iter().map(|&v| (f64::from(v) / norm) as f32).collect();
        let orig = model.store().tensor(name).unwrap().1.to_vec();
        let mut at = |sign: f32, model: &mut DenseNet| {
            let t = model.store_mut().tensor_mut(name).unwrap().1;
            for ((p, &o), &d) in t.iter_mut().zip(&orig).zip(&dir) {
                *p = o + sign * EPS * d;
            }
            loss(model, &mut ws, &x, &y)
        };
        let fd = (at(1.0, &mut model) - at(-1.0, &mut model)) / (2.0 * f64::from(EPS));
        model
            .store_mut()
            .tensor_mut(name)
            .unwrap()
            .1
            .copy_from_slice(&orig);
        let err = (fd - norm).abs();
        assert!(
            err <= 0.03 * norm + 2e-4,
            "{spec}: {name}: finite difference {fd}, analytic {norm}"
        );
        checked += 1;
    }
    assert!(
        checked * 2 > names.len(),
        "{spec}: only {checked} of {} tensors had a usable gradient",
        names.len()
    );

    // All parameters along one random direction.
    let dirs: Vec<Vec<f32>> = grads
        .iter()
        .map(|g| g.iter().map(|_| rng.normal()).collect())
        .collect();
    let total: f64 = dirs
        .iter()
        .flatten()
        .map(|&v| f64::from(v).powi(2))
        .sum::<f64>()
        .sqrt();
    let analytic: f64 = grads
        .iter()
        .zip(&dirs)
        .flat_map(|(g, d)| g.iter().zip(d))
        .map(|(&g, &d)| f64::from(g) * f64::from(d) / total)
        .sum();
    let origs: Vec<Vec<f32>> = names
        .iter()
        .map(|n| model.store().tensor(n).unwrap().1.to_vec())
        .collect();
    let mut moved = |sign: f32, model: &mut DenseNet| {
        for ((name, o), d) in names.iter().zip(&origs).zip(&dirs) {
            let t = model.store_mut().tensor_mut(name).unwrap().1;
            for ((p, &o), &d) in t.iter_mut().zip(o).zip(d) {
                *p = o + sign * EPS * (f64::from(d) / total) as f32;
            }
        }
        loss(model, &mut ws, &x, &y)
    };
    let fd = (moved(1.0, &mut model) - moved(-1.0, &mut model)) / (2.0 * f64::from(EPS));
    assert!(
        (fd - analytic).abs() <= 0.03 * analytic.abs() + 2e-4,
        "{spec}: random direction: finite difference {fd}, analytic {analytic} (loss {base})"
    );
}

#[test]
fn bc_network_with_cifar_stem() {
    check("bc:k=3,blocks=2-2,init=4,bn=2,classes=3", 3, 6, 6);
}

#[test]
fn bc_network_with_imagenet_stem() {
    check(
        "bc:k=2,blocks=2-1,init=4,bn=2,classes=3,stem=imagenet",
        2,
        16,
        16,
    );
}

#[test]
fn plain_network_with_compression() {
    check("plain:k=3,blocks=2-2,init=5,theta=0.5,classes=4", 2, 6, 6);
}

/// Transitions at odd sizes (pooling drops the last row and column: their gradient comes only
/// from the batch norm's mean terms), without compression, and down to a 1×1 block.
#[test]
fn odd_sizes_through_pooled_transitions() {
    check("bc:k=3,blocks=2-2,init=4,bn=2,classes=3", 2, 7, 5);
    check("plain:k=3,blocks=1-1-1,init=4,theta=1.0,classes=3", 2, 7, 5);
    check("bc:k=2,blocks=1-1,init=4,bn=2,theta=1.0,classes=3", 3, 3, 3);
    check(
        "bc:k=2,blocks=2-1,init=4,bn=2,classes=3,stem=imagenet",
        2,
        18,
        18,
    );
}
