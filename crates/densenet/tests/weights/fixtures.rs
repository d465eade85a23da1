//! The committed PyTorch fixtures load and hold exactly the keys torchvision would use.

use densenet::weights::{load_into, StateDict};

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
                && !["act.", "grad.", "after_step.", "step3."]
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
