//! Parameter counts, names, initialisation, spec parsing and the summary, against torchvision.
//!
//! The ImageNet counts are torchvision's documented `num_params` (densenet121 7,978,856 etc.).
//! The CIFAR counts were computed with PyTorch 2.15 / torchvision 0.29 from a model built of
//! torchvision's `_DenseBlock` and `_Transition` with the CIFAR stem (a 3×3 conv, no
//! norm0/pool0), `norm5` and a 10-class `nn.Linear`; for plain DenseNet each layer is a
//! `BatchNorm2d` + 3×3 `Conv2d` and transitions keep all channels:
//! `sum(p.numel() for p in model.parameters())`. They agree with the paper's Table 2
//! (1.0M, 7.0M, 27.2M, 0.8M, 15.3M, 25.6M).
//! The multiply-add count of densenet121 at 224×224, 2,834,161,664, was counted in PyTorch with
//! forward hooks summing `weight.numel()·OH·OW` over every `Conv2d` and `weight.numel()` over the
//! `Linear` (torchvision lists 2.83 GFLOPS).

use densenet::config::PRESETS;
use densenet::params::TensorKind;
use densenet::{DenseNetConfig, ParamStore, Stem};

fn count(name: &str) -> usize {
    let cfg = DenseNetConfig::preset(name).unwrap();
    let store = ParamStore::new(&cfg, 0).unwrap();
    let (h, w) = if cfg.stem == Stem::ImageNet {
        (224, 224)
    } else {
        (32, 32)
    };
    let summary = cfg.summary(h, w).unwrap();
    assert_eq!(
        summary.total_params as usize,
        store.num_parameters(),
        "{name}: summary and store disagree"
    );
    store.num_parameters()
}

#[test]
fn imagenet_counts_match_torchvision() {
    assert_eq!(count("densenet121"), 7_978_856);
    assert_eq!(count("densenet169"), 14_149_480);
    assert_eq!(count("densenet201"), 20_013_928);
    assert_eq!(count("densenet161"), 28_681_000);
}

#[test]
fn cifar_counts_match_pytorch() {
    assert_eq!(count("densenet40_k12"), 1_019_722);
    assert_eq!(count("densenet100_k12"), 6_979_642);
    assert_eq!(count("densenet100_k24"), 27_249_082);
    assert_eq!(count("densenet_bc100_k12"), 769_162);
    assert_eq!(count("densenet_bc250_k24"), 15_324_406);
    assert_eq!(count("densenet_bc190_k40"), 25_624_430);
}

#[test]
fn every_preset_builds_and_round_trips_its_spec() {
    for name in PRESETS {
        let cfg = DenseNetConfig::preset(name).unwrap();
        cfg.validate().unwrap();
        let back: DenseNetConfig = cfg.spec().parse().unwrap();
        assert_eq!(back, cfg, "{name}");
        assert_eq!(name.parse::<DenseNetConfig>().unwrap(), cfg);
    }
}

#[test]
fn summary_of_densenet121() {
    let s = DenseNetConfig::preset("densenet121")
        .unwrap()
        .summary(224, 224)
        .unwrap();
    println!("{s}");
    assert_eq!(s.total_params, 7_978_856);
    assert_eq!(s.total_macs, 2_834_161_664);
    let stages: Vec<&str> = s.rows.iter().map(|r| r.stage.as_str()).collect();
    assert_eq!(
        stages,
        [
            "stem",
            "denseblock1",
            "transition1",
            "denseblock2",
            "transition2",
            "denseblock3",
            "transition3",
            "denseblock4",
            "classifier"
        ]
    );
    assert_eq!(s.rows[0].output, (64, 56, 56));
    assert_eq!(s.rows[7].output, (1024, 7, 7));
}

#[test]
fn names_follow_torchvision() {
    let cfg = DenseNetConfig::preset("densenet121").unwrap();
    let store = ParamStore::new(&cfg, 0).unwrap();
    let names = store.tensor_names();
    assert_eq!(
        &names[..8],
        [
            "features.conv0.weight",
            "features.norm0.weight",
            "features.norm0.bias",
            "features.norm0.running_mean",
            "features.norm0.running_var",
            "features.denseblock1.denselayer1.norm1.weight",
            "features.denseblock1.denselayer1.norm1.bias",
            "features.denseblock1.denselayer1.norm1.running_mean",
        ]
    );
    let (shape, _) = store
        .tensor("features.denseblock1.denselayer1.conv1.weight")
        .unwrap();
    assert_eq!(shape, [128, 64, 1, 1]);
    let (shape, _) = store
        .tensor("features.denseblock4.denselayer16.conv2.weight")
        .unwrap();
    assert_eq!(shape, [32, 128, 3, 3]);
    let (shape, _) = store.tensor("features.transition3.conv.weight").unwrap();
    assert_eq!(shape, [512, 1024, 1, 1]);
    assert_eq!(
        store.tensor("features.norm5.running_var").unwrap().0,
        [1024]
    );
    assert_eq!(store.tensor("classifier.weight").unwrap().0, [1000, 1024]);
    assert_eq!(names.last().unwrap(), "classifier.bias");
    assert!(store.tensor("features.norm0.num_batches_tracked").is_none());
    assert_eq!(store.batches_tracked("features.norm0"), Some(0));
    assert_eq!(
        store.batches_tracked("features.norm0.num_batches_tracked"),
        Some(0)
    );
    // 5 tensors per BN in torchvision's state dict: 4 f32 here plus one counter.
    let bns = store.bn_names().len();
    assert_eq!(bns, 1 + 58 * 2 + 3 + 1);
    assert!(store.grad("features.norm5.running_mean").is_none());
    assert_eq!(store.grad("classifier.bias").unwrap().len(), 1000);

    // Plain DenseNet with the CIFAR stem: norm1/conv1 only, conv1 being 3x3; no norm0.
    let plain = ParamStore::new(&DenseNetConfig::preset("densenet40_k12").unwrap(), 0).unwrap();
    let names = plain.tensor_names();
    assert_eq!(names[0], "features.conv0.weight");
    assert_eq!(
        plain.tensor("features.conv0.weight").unwrap().0,
        [16, 3, 3, 3]
    );
    assert!(plain.tensor("features.norm0.weight").is_none());
    assert_eq!(
        plain
            .tensor("features.denseblock1.denselayer2.conv1.weight")
            .unwrap()
            .0,
        [12, 28, 3, 3]
    );
    assert!(names
        .iter()
        .all(|n| !n.contains("norm2") && !n.contains("conv2")));
}

#[test]
fn tensor_mut_writes_through() {
    let cfg: DenseNetConfig = "bc:k=4,blocks=2-2".parse().unwrap();
    let mut store = ParamStore::new(&cfg, 1).unwrap();
    store
        .tensor_mut("features.norm5.running_mean")
        .unwrap()
        .1
        .fill(3.0);
    assert!(store
        .tensor("features.norm5.running_mean")
        .unwrap()
        .1
        .iter()
        .all(|&v| v == 3.0));
    assert!(store.set_batches_tracked("features.norm5", 7));
    assert_eq!(store.batches_tracked("features.norm5"), Some(7));
    assert!(!store.set_batches_tracked("features.norm9", 7));
}

#[test]
fn initialisation_matches_torchvision_distributions() {
    let cfg = DenseNetConfig::preset("densenet121").unwrap();
    let store = ParamStore::new(&cfg, 42).unwrap();
    let again = ParamStore::new(&cfg, 42).unwrap();
    let other = ParamStore::new(&cfg, 43).unwrap();
    assert_eq!(store.params(), again.params());
    assert_ne!(store.params(), other.params());
    for name in store.tensor_names() {
        let (shape, v) = store.tensor(&name).unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n;
        match store.kind(&name).unwrap() {
            TensorKind::ConvWeight => {
                let fan_in: usize = shape[1..].iter().product();
                let want = 2.0 / fan_in as f64;
                // Kaiming normal: std √(2/fan_in). Sampling error of the variance is
                // ≈ √(2/n) relative; n ≥ 4096 for every conv here.
                assert!(
                    (var / want - 1.0).abs() < 0.1,
                    "{name}: var {var} vs {want}"
                );
                assert!(
                    mean.abs() < 4.0 * (want / n).sqrt() + 1e-9,
                    "{name}: mean {mean}"
                );
            }
            TensorKind::LinearWeight => {
                let bound = 1.0 / (shape[1] as f64).sqrt();
                assert!(v.iter().all(|&x| f64::from(x).abs() <= bound));
                let want = bound * bound / 3.0;
                assert!((var / want - 1.0).abs() < 0.05, "{name}");
            }
            TensorKind::BnWeight | TensorKind::RunningVar => {
                assert!(v.iter().all(|&x| x == 1.0), "{name}")
            }
            TensorKind::BnBias | TensorKind::LinearBias | TensorKind::RunningMean => {
                assert!(v.iter().all(|&x| x == 0.0), "{name}")
            }
        }
    }
}

#[test]
fn custom_specs_parse() {
    let c: DenseNetConfig = "bc:k=12,blocks=16-16-16".parse().unwrap();
    assert_eq!(c, DenseNetConfig::preset("densenet_bc100_k12").unwrap());
    let c: DenseNetConfig = "plain:k=12,blocks=12-12-12".parse().unwrap();
    assert_eq!(c, DenseNetConfig::preset("densenet40_k12").unwrap());
    let c: DenseNetConfig =
        "bc:k=8,blocks=3-4,init=20,bn=2,theta=0.75,drop=0.2,classes=7,stem=imagenet,in=1"
            .parse()
            .unwrap();
    assert_eq!(c.growth_rate, 8);
    assert_eq!(c.block_config, [3, 4]);
    assert_eq!(c.init_features, 20);
    assert_eq!(c.bn_size, Some(2));
    assert_eq!(c.compression, 0.75);
    assert_eq!(c.drop_rate, 0.2);
    assert_eq!(c.num_classes, 7);
    assert_eq!(c.stem, Stem::ImageNet);
    assert_eq!(c.in_channels, 1);
    assert_eq!(c.transition_out_channels(0), 33); // ⌊0.75·(20+24)⌋
    let c: DenseNetConfig = "densenet121:classes=10".parse().unwrap();
    assert_eq!(c.num_classes, 10);
    assert_eq!(c.growth_rate, 32);
    let c: DenseNetConfig = "bc:k=6,bn=none,theta=1".parse().unwrap();
    assert_eq!((c.bn_size, c.init_features), (None, 12));
    let c: DenseNetConfig = "DenseNet-BC100-K12".parse().unwrap();
    assert_eq!(c, DenseNetConfig::preset("densenet_bc100_k12").unwrap());
}

#[test]
fn bad_specs_name_the_bad_part() {
    let cases = [
        ("resnet50", "resnet50"),
        ("", "empty"),
        ("bc:k=twelve", "k=twelve"),
        ("bc:k=0", "growth rate"),
        ("bc:blocks=4-x-4", "blocks=4-x-4"),
        ("bc:blocks=4-0-4", "block 2"),
        ("bc:blocks=", "blocks="),
        ("bc:theta=1.5", "theta"),
        ("bc:theta=nan", "theta=nan"),
        ("bc:drop=1", "drop"),
        ("bc:stem=mnist", "stem=mnist"),
        ("bc:colour=red", "colour=red"),
        ("bc:k", "expected key=value"),
        ("bc:bn=0", "bn=0"),
        ("bc:classes=0", "classes"),
        ("bc:in=0", "in=0"),
        ("bc:k=1,blocks=1-1,init=1,theta=0.1", "transition 1"),
        ("bc:k=99999999999999999999999", "k=99999999999999999999999"),
    ];
    for (spec, needle) in cases {
        let err = spec.parse::<DenseNetConfig>().unwrap_err().to_string();
        assert!(err.contains(needle), "{spec:?} gave {err:?}");
    }
}

#[test]
fn input_sizes_are_checked() {
    let c = DenseNetConfig::preset("densenet121").unwrap();
    assert_eq!(
        c.block_sizes(224, 224).unwrap(),
        [(56, 56), (28, 28), (14, 14), (7, 7)]
    );
    assert!(c.block_sizes(16, 16).is_err());
    assert!(c.summary(3, 224).is_err());
    let c = DenseNetConfig::preset("densenet_bc100_k12").unwrap();
    assert_eq!(c.block_sizes(32, 32).unwrap(), [(32, 32), (16, 16), (8, 8)]);
    assert!(c.block_sizes(3, 3).is_err());
}

mod spec_never_panics {
    use super::*;
    use proptest::prelude::*;

    const PIECES: [&str; 24] = [
        "bc",
        "plain",
        "custom",
        "densenet121",
        ":",
        ",",
        "=",
        "-",
        "k",
        "blocks",
        "init",
        "bn",
        "theta",
        "drop",
        "classes",
        "stem",
        "in",
        "none",
        "cifar",
        "imagenet",
        "0",
        "1e9",
        "18446744073709551616",
        "0.5",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn arbitrary_strings(s in "\\PC{0,40}") {
            let _ = s.parse::<DenseNetConfig>();
        }

        #[test]
        fn spec_like_strings(parts in proptest::collection::vec(0..PIECES.len(), 0..16)) {
            let s: String = parts.iter().map(|&i| PIECES[i]).collect();
            if let Ok(c) = s.parse::<DenseNetConfig>() {
                // Whatever parses is valid and round-trips.
                prop_assert!(c.validate().is_ok());
                prop_assert_eq!(c.spec().parse::<DenseNetConfig>().unwrap(), c);
            }
        }
    }
}
