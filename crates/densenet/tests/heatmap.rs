//! The connection-strength heat map on hand-built weights whose matrix is known in closed form.

use densenet::heatmap::connection_strengths;
use densenet::{DenseNetConfig, ParamStore};

/// The value planted on the connection from source `s` to target row `t` of block `b`: distinct
/// for every (b, t, s), exactly representable, and signed so that the absolute value matters.
fn planted(b: usize, t: usize, s: usize) -> f32 {
    let v = (1 + 100 * b + 10 * t + s) as f32 / 8.0;
    if (t + s).is_multiple_of(2) {
        v
    } else {
        -v
    }
}

/// Writes `planted(b, t, s)` into every weight of every target conv that reads a channel of
/// source `s`, following the channel ranges of the block buffer, not the heat map code.
fn plant(cfg: &DenseNetConfig, store: &mut ParamStore) {
    let k = cfg.growth_rate;
    for (b, &layers) in cfg.block_config.iter().enumerate() {
        let k0 = cfg.block_in_channels(b);
        let rows = layers + usize::from(b + 1 < cfg.block_config.len());
        for t in 0..rows {
            let name = if t == layers {
                format!("features.transition{}.conv.weight", b + 1)
            } else {
                format!(
                    "features.denseblock{}.denselayer{}.conv1.weight",
                    b + 1,
                    t + 1
                )
            };
            let (shape, w) = store.tensor_mut(&name).expect(&name);
            let (ic, taps) = (shape[1], shape[2] * shape[3]);
            assert_eq!(ic, k0 + t * k, "{name}");
            for (i, v) in w.iter_mut().enumerate() {
                let c = (i / taps) % ic;
                let s = if c < k0 { 0 } else { 1 + (c - k0) / k };
                *v = planted(b, t, s);
            }
        }
    }
}

fn check_exact(spec: &str) {
    let cfg: DenseNetConfig = spec.parse().unwrap();
    let mut store = ParamStore::new(&cfg, 7).unwrap();
    plant(&cfg, &mut store);
    let maps = connection_strengths(&cfg, &store).unwrap();
    assert_eq!(maps.len(), cfg.block_config.len());
    for (b, map) in maps.iter().enumerate() {
        let layers = cfg.block_config[b];
        assert_eq!(map.layers, layers);
        assert_eq!(map.has_transition, b + 1 < cfg.block_config.len());
        assert_eq!(map.sources(), layers + 1);
        for t in 0..map.targets() {
            for s in 0..map.sources() {
                let want = (s <= t).then(|| planted(b, t, s).abs());
                assert_eq!(
                    map.get(t, s),
                    want,
                    "{spec}: block {b} target {t} source {s}"
                );
            }
        }
    }
}

#[test]
fn planted_constants_come_back_exactly_with_a_bottleneck() {
    check_exact("bc:k=3,blocks=4-2-3,init=5,classes=2");
}

#[test]
fn planted_constants_come_back_exactly_without_a_bottleneck() {
    // Plain layers: the target is the 3x3 conv, so every channel has 9 taps.
    check_exact("plain:k=2,blocks=3-2,init=4,classes=2");
}

#[test]
fn normalisation_is_per_input_feature_map() {
    // One layer, block input of 6 channels, growth 2: the transition reads 6 + 2 channels.
    // Half of the input channels carry |w| = 1, the other half 0, so the input's mean is 0.5
    // whatever the width; the layer's channels carry 3 and 5, mean 4.
    let cfg: DenseNetConfig = "bc:k=2,blocks=1-1,init=6,classes=2".parse().unwrap();
    let mut store = ParamStore::new(&cfg, 1).unwrap();
    let (shape, w) = store
        .tensor_mut("features.transition1.conv.weight")
        .unwrap();
    assert_eq!(shape, [4, 8, 1, 1]);
    for (i, v) in w.iter_mut().enumerate() {
        *v = [1.0, 0.0, -1.0, 0.0, 1.0, 0.0, 3.0, -5.0][i % 8];
    }
    let maps = connection_strengths(&cfg, &store).unwrap();
    assert_eq!(maps[0].get(1, 0), Some(0.5));
    assert_eq!(maps[0].get(1, 1), Some(4.0));
    assert_eq!(maps[0].max(), 4.0f32.max(maps[0].get(0, 0).unwrap()));
}

#[test]
fn a_store_of_another_model_is_refused_with_the_tensor_name() {
    let small: DenseNetConfig = "bc:k=2,blocks=2,classes=2".parse().unwrap();
    let other: DenseNetConfig = "bc:k=4,blocks=2,classes=2".parse().unwrap();
    let store = ParamStore::new(&other, 0).unwrap();
    let e = connection_strengths(&small, &store)
        .unwrap_err()
        .to_string();
    assert!(e.contains("denselayer1.conv1.weight"), "{e}");
    let longer: DenseNetConfig = "bc:k=4,blocks=3,classes=2".parse().unwrap();
    let e = connection_strengths(&longer, &store)
        .unwrap_err()
        .to_string();
    assert!(e.contains("denselayer3.conv1.weight"), "{e}");
}
