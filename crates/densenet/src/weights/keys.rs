//! Key normalisation: the names other DenseNet implementations give the same tensors.
//!
//! Every rule maps a foreign key to torchvision's current state-dict name, and leaves a
//! torchvision name unchanged, so normalising twice is the same as normalising once:
//!
//! | source | foreign key | torchvision key |
//! |---|---|---|
//! | `nn.DataParallel` | `module.features.conv0.weight` | `features.conv0.weight` |
//! | torchvision before 0.3 (its published checkpoints) | `…denselayer1.norm.1.weight`, `…conv.2.weight` | `…denselayer1.norm1.weight`, `…conv2.weight` |
//! | efficient_densenet_pytorch | `features.norm_final.*` | `features.norm5.*` |
//! | efficient_densenet_pytorch, old shared-memory bottleneck | `…denselayer1.bn.norm_weight`, `.norm_bias`, `.norm_running_mean`, `.norm_running_var`, `.conv_weight` | `…denselayer1.norm1.weight`, `.bias`, `.running_mean`, `.running_var`, `…conv1.weight` |
//!
//! The legacy rule is exactly torchvision's own `_load_state_dict` pattern,
//! `^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$`
//! replaced by `\1\2`; like torchvision it leaves `norm.1.num_batches_tracked` alone (checkpoints
//! of that era predate the counter).

/// The torchvision state-dict name for `key`, applying the rules in the module table in order:
/// DataParallel prefix, `norm_final`, the old efficient bottleneck, torchvision's legacy names.
pub fn canonical_key(key: &str) -> String {
    let mut key = key;
    while let Some(rest) = key.strip_prefix("module.") {
        key = rest;
    }
    let key = match key.strip_prefix("features.norm_final.") {
        Some(rest) => format!("features.norm5.{rest}"),
        None => key.to_owned(),
    };
    let key = efficient_bottleneck(&key).unwrap_or(key);
    legacy_torchvision(&key).unwrap_or(key)
}

/// True when `segment` matches `.*denselayer\d+` (ASCII digits).
fn ends_with_denselayer_index(segment: &str) -> bool {
    let without_digits = segment.trim_end_matches(|c: char| c.is_ascii_digit());
    without_digits.len() < segment.len() && without_digits.ends_with("denselayer")
}

/// torchvision's legacy pattern: `<prefix>denselayerN.<norm|relu|conv>.<1|2>.<param>`.
fn legacy_torchvision(key: &str) -> Option<String> {
    let (rest, param) = key.rsplit_once('.')?;
    if !matches!(param, "weight" | "bias" | "running_mean" | "running_var") {
        return None;
    }
    let (rest, index) = rest.rsplit_once('.')?;
    if !matches!(index, "1" | "2") {
        return None;
    }
    let (layer, module) = rest.rsplit_once('.')?;
    if !matches!(module, "norm" | "relu" | "conv") || !ends_with_denselayer_index(layer) {
        return None;
    }
    Some(format!("{layer}.{module}{index}.{param}"))
}

/// efficient_densenet_pytorch's old `_EfficientDensenetBottleneck`, registered as `bn` in each
/// dense layer, held norm1 and conv1 as flat parameters.
fn efficient_bottleneck(key: &str) -> Option<String> {
    let (rest, param) = key.rsplit_once('.')?;
    let (layer, module) = rest.rsplit_once('.')?;
    if module != "bn" || !ends_with_denselayer_index(layer) {
        return None;
    }
    let new = match param {
        "norm_weight" => "norm1.weight",
        "norm_bias" => "norm1.bias",
        "norm_running_mean" => "norm1.running_mean",
        "norm_running_var" => "norm1.running_var",
        "conv_weight" => "conv1.weight",
        _ => return None,
    };
    Some(format!("{layer}.{new}"))
}

/// True for the BN batch counters, which this crate neither needs nor requires.
pub(crate) fn is_batch_counter(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
}
