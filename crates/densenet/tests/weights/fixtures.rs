//! The committed PyTorch fixtures load and hold exactly the keys torchvision would use.

use densenet::weights::{load_into, StateDict, Tensor};

use super::{golden, Store};

/// torchvision's state-dict names and shapes for a DenseNet, computed here independently of
/// the fixtures: (name, shape) for every parameter and running statistic.
fn torchvision_layout(
    stem: &str,
    k: usize,
    blocks: &[usize],
    init: usize,
    bn_size: Option<usize>,
    compression: f64,
    classes: usize,
) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let bn = |out: &mut Vec<(String, Vec<usize>)>, name: &str, c: usize| {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            out.push((format!("{name}.{p}"), vec![c]));
        }
    };
    let kernel = if stem == "cifar" { 3 } else { 7 };
    out.push((
        "features.conv0.weight".into(),
        vec![init, 3, kernel, kernel],
    ));
    if stem == "imagenet" {
        bn(&mut out, "features.norm0", init);
    }
    let mut c = init;
    for (b, &layers) in blocks.iter().enumerate() {
        for l in 0..layers {
            let p = format!("features.denseblock{}.denselayer{}", b + 1, l + 1);
            let inp = c + l * k;
            bn(&mut out, &format!("{p}.norm1"), inp);
            match bn_size {
                Some(s) => {
                    out.push((format!("{p}.conv1.weight"), vec![s * k, inp, 1, 1]));
                    bn(&mut out, &format!("{p}.norm2"), s * k);
                    out.push((format!("{p}.conv2.weight"), vec![k, s * k, 3, 3]));
                }
                None => out.push((format!("{p}.conv1.weight"), vec![k, inp, 3, 3])),
            }
        }
        c += layers * k;
        if b + 1 < blocks.len() {
            let next = (c as f64 * compression).floor() as usize;
            bn(&mut out, &format!("features.transition{}.norm", b + 1), c);
            out.push((
                format!("features.transition{}.conv.weight", b + 1),
                vec![next, c, 1, 1],
            ));
            c = next;
        }
    }
    bn(&mut out, "features.norm5", c);
    out.push(("classifier.weight".into(), vec![classes, c]));
    out.push(("classifier.bias".into(), vec![classes]));
    out
}

#[test]
fn golden_fixtures_load_with_the_expected_keys() {
    let fixtures = [
        (
            "cifar_bc",
            torchvision_layout("cifar", 4, &[2, 2], 8, Some(4), 0.5, 10),
            [2, 3, 16, 16],
        ),
        (
            "imagenet_bc_odd",
            torchvision_layout("imagenet", 4, &[2, 2, 2], 8, Some(4), 0.5, 7),
            [2, 3, 67, 61],
        ),
        (
            "cifar_plain",
            torchvision_layout("cifar", 4, &[3, 3], 8, None, 1.0, 5),
            [3, 3, 12, 12],
        ),
    ];
    for (name, layout, input) in fixtures {
        let dict = StateDict::load(golden(name)).unwrap();
        assert_eq!(
            dict.metadata().get("format_version").map(String::as_str),
            Some("1"),
            "{name}"
        );
        let layout_refs: Vec<(&str, Vec<usize>)> = layout
            .iter()
            .map(|(n, s)| (n.as_str(), s.clone()))
            .collect();

        // The weights (everything but the prefixed and per-run keys) fit the layout exactly.
        let per_run = ["input", "labels", "logits", "loss", "losses"];
        let weights = dict.subset(|k| {
            !per_run.contains(&k)
                && !["act.", "eval.", "grad.", "after_step.", "step3."]
                    .iter()
                    .any(|p| k.starts_with(p))
        });
        let mut model = Store::zeros(&layout_refs);
        let report = load_into(&mut model, &weights).unwrap_or_else(|e| panic!("{name}: {e}"));
        println!("{name}: {report}");
        assert_eq!(report.loaded, layout.len());
        let n_bn = layout
            .iter()
            .filter(|(n, _)| n.ends_with("running_var"))
            .count();
        assert_eq!(report.skipped_counters.len(), n_bn, "{name}");
        assert!(report.renamed.is_empty());
        for (counter, t) in weights.int_tensors() {
            assert_eq!(
                (t.shape(), t.data()),
                (&[][..], &[0][..]),
                "{name}: {counter}"
            );
        }

        // The updated parameters and statistics have the same layout under their prefixes.
        let params: Vec<_> = layout_refs
            .iter()
            .filter(|(n, _)| !n.contains("running_"))
            .cloned()
            .collect();
        let stats: Vec<_> = layout_refs
            .iter()
            .filter(|(n, _)| n.contains("running_"))
            .cloned()
            .collect();
        load_into(&mut Store::zeros(&params), &dict.strip_prefix("grad."))
            .unwrap_or_else(|e| panic!("{name} grad: {e}"));
        load_into(&mut Store::zeros(&stats), &dict.strip_prefix("after_step."))
            .unwrap_or_else(|e| panic!("{name} after_step: {e}"));
        load_into(
            &mut Store::zeros(&layout_refs),
            &dict.strip_prefix("step3."),
        )
        .unwrap_or_else(|e| panic!("{name} step3: {e}"));

        assert_eq!(dict.get("input").unwrap().shape(), &input);
        let labels = dict.get_int("labels").unwrap();
        let classes = layout.last().unwrap().1[0];
        assert_eq!(labels.shape(), &[input[0]]);
        assert!(labels
            .data()
            .iter()
            .all(|&l| (0..classes as i64).contains(&l)));
        assert_eq!(dict.get("logits").unwrap().shape(), &[input[0], classes]);
        assert_eq!(dict.get("loss").unwrap().shape(), &[] as &[usize]);
        let losses = dict.get("losses").unwrap().data();
        assert_eq!(losses.len(), 3);
        assert_eq!(losses[0], dict.get("loss").unwrap().data()[0]);
        let order = dict.metadata().get("activation_order").unwrap();
        for key in order.trim_matches(|c| c == '[' || c == ']').split(", ") {
            let key = key.trim_matches('"');
            assert!(
                dict.get(key).is_some(),
                "{name}: activation {key} listed but absent"
            );
        }
    }
}

/// The network's own parameter store takes a fixture's weights with their counters, and gives
/// back exactly torchvision's state dict: the same keys (counters included), shapes and values.
#[test]
fn param_store_round_trips_a_torchvision_state_dict() {
    use densenet::weights::load_params;
    use densenet::{DenseNet, DenseNetConfig, Stem};

    let config = DenseNetConfig {
        growth_rate: 4,
        block_config: vec![2, 2, 2],
        init_features: 8,
        bn_size: Some(4),
        compression: 0.5,
        drop_rate: 0.0,
        num_classes: 7,
        in_channels: 3,
        stem: Stem::ImageNet,
    };
    let fixture = StateDict::load(golden("imagenet_bc_odd")).unwrap();
    let mut weights =
        fixture.subset(|k| k.starts_with("features.") || k.starts_with("classifier."));
    for (name, _) in fixture
        .int_tensors()
        .filter(|(n, _)| n.ends_with("tracked"))
    {
        let module = name.trim_end_matches(".num_batches_tracked");
        weights.insert_int(
            name,
            densenet::weights::IntTensor::new(vec![], vec![module.len() as i64]).unwrap(),
        );
    }
    let mut model = DenseNet::new(config, 3).unwrap();
    let report = load_params(model.store_mut(), &weights).unwrap();
    assert_eq!(report.counters_loaded, model.store().bn_names().len());
    assert!(report.skipped_counters.is_empty(), "{report:?}");

    let back = StateDict::from_params(model.store()).unwrap();
    let mut want: Vec<&str> = weights.names().collect();
    let mut got: Vec<&str> = back.names().collect();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want);
    for (name, t) in weights.tensors() {
        assert_eq!(back.get(name), Some(t), "{name}");
    }
    for (name, t) in weights.int_tensors() {
        assert_eq!(back.get_int(name), Some(t), "{name}");
    }

    // A negative counter is refused before anything changes.
    let before = StateDict::from_params(model.store()).unwrap();
    let mut bad = weights.clone();
    bad.insert_int(
        "features.norm5.num_batches_tracked",
        densenet::weights::IntTensor::new(vec![], vec![-1]).unwrap(),
    );
    let conv0 = weights.get("features.conv0.weight").unwrap();
    bad.insert(
        "features.conv0.weight",
        Tensor::zeros(conv0.shape().to_vec()),
    );
    assert!(matches!(
        load_params(model.store_mut(), &bad),
        Err(densenet::weights::WeightsError::BadCounter { .. })
    ));
    assert_eq!(StateDict::from_params(model.store()).unwrap(), before);
}
