//! The bodies of the fuzz targets, one function per target.
//!
//! Each function takes the fuzzer's bytes and panics only on a bug: a reader or parser that
//! panics, returns an inconsistent value, or a fast kernel that disagrees with the reference.
//! The same functions are replayed over the committed corpus (`fuzz/corpus/<target>/`) by a plain
//! `cargo test` (`crates/densenet/tests/corpus_replay.rs` includes this file as a module), so CI
//! covers the corpora without nightly or libFuzzer.
//!
//! Only `densenet` and `densenet_kernels` are used here, so the file compiles in both places.

use std::path::Path;

use densenet::data::{
    decode_idx, digits::parse_digits, parse_cifar10, parse_cifar100, Augment, Batches, DataSpec,
    Dataset, Normalization, Rng,
};
use densenet::weights::{load_into, StateDict, Tensor};
use densenet::{DenseNet, DenseNetConfig};
use densenet_kernels::dispatch::with_max_isa;
use densenet_kernels::{
    batchnorm, conv2d, linear, pool, reference, BatchNormConfig, BatchNormGeom, ChannelAffine,
    Conv2dGeom, Isa, Pool2dGeom, Workspace,
};

/// A target's body: takes the fuzzer's bytes, panics only on a bug.
pub type Body = fn(&[u8]);

/// Every target by name, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: [(&str, Body); 6] = [
    ("weights", weights),
    ("cifar", cifar),
    ("idx", idx),
    ("digits", digits),
    ("model_spec", model_spec),
    ("kernels", kernels),
];

// ---------------------------------------------------------------------------------------------
// Weights

/// The safetensors loader on arbitrary bytes: no panic; a parsed dict survives a round trip
/// (serialise, parse again: same names, shapes and value bits); loading it into a small model's
/// dict either succeeds or names the mismatch, and never modifies the target on failure.
pub fn weights(data: &[u8]) {
    let Ok(dict) = StateDict::from_bytes(data) else {
        return;
    };
    let again = StateDict::from_bytes(&dict.to_bytes().expect("a parsed dict serialises"))
        .expect("a serialised dict parses");
    // The writer may order tensors differently from the file (safetensors sorts by dtype, then
    // name), so entries are compared by name.
    assert_eq!(
        dict.len(),
        again.len(),
        "round trip changed the entry count"
    );
    for (name, a) in dict.tensors() {
        let b = again.get(name).expect("round trip lost a tensor");
        assert_eq!(a.shape(), b.shape(), "{name}: shape changed");
        let bits = |t: &Tensor| t.data().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b), "{name}: values changed");
    }
    for (name, a) in dict.int_tensors() {
        assert_eq!(
            Some(a),
            again.get_int(name),
            "{name}: integer tensor changed"
        );
    }
    assert_eq!(dict.metadata(), again.metadata());

    // A target with a few names a fuzzed file may hit.
    let mut target = StateDict::new();
    target.insert("classifier.bias", Tensor::zeros(vec![2]));
    target.insert("features.norm5.weight", Tensor::zeros(vec![1]));
    let before = target.clone();
    if load_into(&mut target, &dict).is_err() {
        assert_eq!(target, before, "a failed load modified the target");
    }
}

// ---------------------------------------------------------------------------------------------
// Data sets

/// Checks what every reader promises of a data set it returns, and runs it through
/// normalisation, augmentation and batching.
fn check_dataset(set: &Dataset) {
    assert_eq!(set.images().len(), set.len() * set.image_len());
    assert!(set.labels().iter().all(|&l| l < set.num_classes()));
    assert!(set.images().iter().all(|&v| v <= set.pixel_max()));
    if set.is_empty() {
        return;
    }
    let norm = Normalization::fit(set);
    assert!(norm.mean.iter().chain(&norm.std).all(|v| v.is_finite()));
    let mut images = 0;
    let batches = Batches::train(set, 3, &norm, Augment::STANDARD, Rng::new(1))
        .expect("batch 3 and the set's own normalisation are valid");
    for batch in batches.take(4) {
        assert_eq!(batch.images.len(), batch.n * set.image_len());
        assert!(batch.images.iter().all(|v| v.is_finite()));
        images += batch.n;
    }
    assert!(images <= set.len());
}

/// The CIFAR-10 and CIFAR-100 binary readers on arbitrary bytes.
pub fn cifar(data: &[u8]) {
    let path = Path::new("<fuzz>");
    for parsed in [parse_cifar10(data, path), parse_cifar100(data, path)] {
        match parsed {
            Ok(set) => check_dataset(&set),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

/// The IDX reader (raw or gzip) on arbitrary bytes, as an image file (3 dimensions) and as a
/// label file (1 dimension).
pub fn idx(data: &[u8]) {
    let path = Path::new("<fuzz>");
    if let Ok((dims, pixels)) = decode_idx(data, 3, path) {
        assert_eq!(dims.len(), 3);
        assert_eq!(pixels.len(), dims.iter().product::<usize>());
        let labels = vec![0; dims[0]];
        if let Ok(set) = Dataset::new(
            "fuzz",
            1,
            dims[1],
            dims[2],
            255,
            pixels,
            labels,
            vec!["only".into()],
        ) {
            check_dataset(&set);
        }
    }
    if let Ok((dims, labels)) = decode_idx(data, 1, path) {
        assert_eq!(dims, [labels.len()]);
    }
}

/// The bundled digits file format on arbitrary bytes.
pub fn digits(data: &[u8]) {
    match parse_digits(data, Path::new("<fuzz>")) {
        Ok(set) => {
            check_dataset(&set);
            let _ = densenet::data::digits::split_digits(&set);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

// ---------------------------------------------------------------------------------------------
// Model specs

/// Networks at most this large are built in full to check the closed-form parameter count.
const BUILD_LIMIT: u64 = 20_000;

/// The model-spec parser on arbitrary text (and the `--data` and `--augment` parsers, which must
/// round-trip through `Display`): no panic; an accepted spec validates, respects
/// [`densenet::config::MAX_PARAMETERS`], prints a spec that parses back to the same
/// configuration, and (when small) builds a network whose store holds exactly the counted
/// parameters.
pub fn model_spec(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    // The other text arguments of the command line: `--data` and `--augment`.
    if let Ok(spec) = text.parse::<DataSpec>() {
        assert_eq!(spec.to_string().parse::<DataSpec>().ok(), Some(spec));
    }
    if let Ok(aug) = Augment::parse(&text) {
        assert_eq!(Augment::parse(&aug.to_string()).ok(), Some(aug));
    }
    let cfg: DenseNetConfig = match text.parse() {
        Ok(cfg) => cfg,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    cfg.validate().expect("a parsed spec validates");
    let count = cfg
        .parameter_count()
        .expect("a valid config's count fits u64");
    assert!(count <= densenet::config::MAX_PARAMETERS);
    let back: DenseNetConfig = cfg.spec().parse().expect("spec() parses back");
    assert_eq!(back, cfg, "spec() does not round-trip");
    for (h, w) in [(1, 1), (7, 5), (32, 32)] {
        let _ = cfg.block_sizes(h, w);
    }
    if count <= BUILD_LIMIT {
        let net = DenseNet::new(cfg, 0).expect("a valid small config builds");
        let stored = net.store().num_parameters() + net.store().num_buffers();
        assert_eq!(stored as u64, count, "closed-form parameter count");
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels

/// Reads small numbers from the fuzzer's bytes; past the end every read is zero.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.bytes.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + usize::from(self.byte()) % (hi - lo + 1)
    }

    /// `len` values: small integers in `-4..=4` (`ints`), else floats in `[-1, 1)`.
    fn values(&mut self, len: usize, ints: bool) -> Vec<f32> {
        (0..len)
            .map(|_| {
                let b = self.byte();
                if ints {
                    f32::from(b % 9) - 4.0
                } else {
                    f32::from(b) / 128.0 - 1.0
                }
            })
            .collect()
    }
}

/// Float tolerance of the convolution, pooling and linear checks:
/// `|fast − ref| <= 2e-4·(1 + |ref|)`. The reference sums in `f64`; the fast kernels sum at most
/// `6·5·5 = 150` (forward), `6·5·5` (input gradient) or `3·9·9 = 243` (weight gradient) `f32`
/// products of magnitude at most 3, whose rounding stays far below this. With integer values
/// (`ints`) every product and sum is exact, and the comparison is exact.
const FLOAT_TOL: f32 = 2e-4;

/// Batch-norm tolerance, `1e-3·(1 + |ref|)`: the output is scaled by `1/σ`, up to `1/√eps ≈ 316`
/// for a near-constant channel, which magnifies the last-bit difference of a mean.
const BN_TOL: f32 = 1e-3;

#[track_caller]
fn assert_close(what: &str, tier: Isa, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what} on {tier}: lengths");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if tol == 0.0 {
            g == w
        } else {
            (g - w).abs() <= tol * (1.0 + w.abs())
        };
        assert!(ok, "{what} on {tier}: index {i}: got {g}, reference {w}");
    }
}

/// Every tier this CPU runs.
fn tiers() -> impl Iterator<Item = Isa> {
    Isa::ALL.into_iter().filter(|isa| isa.is_supported())
}

/// Kernel geometry: small shapes and values decoded from the bytes; for every op, every SIMD
/// tier (capped with `with_max_isa`) must match the reference kernels, and no valid geometry
/// may panic. Invalid geometries are skipped (the kernels document them as preconditions).
pub fn kernels(data: &[u8]) {
    let mut r = Reader {
        bytes: data,
        pos: 0,
    };
    let op = r.byte() % 6;
    let ints = r.byte().is_multiple_of(2);
    match op {
        0 => conv(&mut r, ints),
        1 => pools(&mut r, ints),
        2 => bn(&mut r, ints),
        3 => fully_connected(&mut r, ints),
        4 => pointwise_bn(&mut r, ints),
        _ => pooled_bn(&mut r, ints),
    }
}

/// The transition's pooled batch norm + ReLU backward against its reference: the input gradient
/// (overwritten or accumulated) and the two batch-norm sums.
fn pooled_bn(r: &mut Reader, ints: bool) {
    let (c, batch, h, w) = (r.range(1, 5), r.range(1, 3), r.range(2, 9), r.range(2, 9));
    let accumulate = r.byte() & 1 != 0;
    let m = batch * h * w;
    let inp = r.values(c * m, ints);
    let d_pooled = r.values(c * batch * (h / 2) * (w / 2), ints);
    let d_inp0 = r.values(c * m, ints);
    let [gamma, beta, mean, invstd] = [(); 4].map(|_| r.values(c, ints));
    let (mut want, mut w1, mut w2) = (d_inp0.clone(), vec![0.0; c], vec![0.0; c]);
    reference::batchnorm_relu_avgpool2_backward(
        &mut want,
        &mut w1,
        &mut w2,
        &d_pooled,
        &inp,
        [&gamma, &beta, &mean, &invstd],
        [batch, h, w],
        accumulate,
    );
    let bn = batchnorm::BnReluSaved {
        gamma: &gamma,
        beta: &beta,
        mean: &mean,
        invstd: &invstd,
    };
    let tol = if ints { 0.0 } else { FLOAT_TOL };
    for tier in tiers() {
        with_max_isa(tier, || {
            let (mut d, mut s1, mut s2) = (d_inp0.clone(), vec![f64::NAN; c], vec![f64::NAN; c]);
            batchnorm::batchnorm_relu_avgpool2_backward(
                &mut d,
                &mut s1,
                &mut s2,
                &d_pooled,
                &inp,
                bn,
                [batch, h, w],
                accumulate,
            );
            assert_close("pooled_bn d_inp", tier, &d, &want, tol);
            let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            assert_close("pooled_bn sum_dy", tier, &f(&s1), &f(&w1), tol);
            assert_close("pooled_bn sum_dy_xmu", tier, &f(&s2), &f(&w2), tol);
        });
    }
}

/// The fused backward of a 1×1 convolution through batch norm + ReLU against its reference:
/// the weight gradient (accumulated), the input gradient (overwritten or accumulated) and the
/// two batch-norm sums.
fn pointwise_bn(r: &mut Reader, ints: bool) {
    let (batch, h, w) = (r.range(1, 3), r.range(1, 9), r.range(1, 9));
    let (c, oc) = (r.range(1, 6), r.range(1, 6));
    let g = Conv2dGeom::square(batch, c, oc, h, w, 1, 1, 0);
    let accumulate = r.byte() & 1 != 0;
    let inp = r.values(g.input_len(), ints);
    let weight = r.values(g.weight_len(), ints);
    let d_out = r.values(g.output_len(), ints);
    let d_inp0 = r.values(g.input_len(), ints);
    let d_w0 = r.values(g.weight_len(), ints);
    let [gamma, beta, mean, invstd] = [(); 4].map(|_| r.values(c, ints));
    let (mut want_d, mut want_dw) = (d_inp0.clone(), d_w0.clone());
    let (mut want_s1, mut want_s2) = (vec![0.0; c], vec![0.0; c]);
    reference::pointwise_bn_relu_backward(
        &mut want_d,
        &mut want_dw,
        &mut want_s1,
        &mut want_s2,
        &d_out,
        &weight,
        &inp,
        [&gamma, &beta, &mean, &invstd],
        accumulate,
    );
    let tol = if ints { 0.0 } else { FLOAT_TOL };
    let bn = batchnorm::BnReluSaved {
        gamma: &gamma,
        beta: &beta,
        mean: &mean,
        invstd: &invstd,
    };
    let mut ws = Workspace::new();
    for tier in tiers() {
        with_max_isa(tier, || {
            let (mut d, mut dw) = (d_inp0.clone(), d_w0.clone());
            let (mut s1, mut s2) = (vec![f64::NAN; c], vec![f64::NAN; c]);
            conv2d::pointwise_bn_relu_backward(
                &mut d, &mut dw, &mut s1, &mut s2, &d_out, &weight, &inp, bn, &g, &mut ws,
                accumulate,
            );
            assert_close("pointwise_bn d_inp", tier, &d, &want_d, tol);
            assert_close("pointwise_bn d_weight", tier, &dw, &want_dw, tol);
            let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            assert_close("pointwise_bn sum_dy", tier, &f(&s1), &f(&want_s1), tol);
            assert_close("pointwise_bn sum_dy_xmu", tier, &f(&s2), &f(&want_s2), tol);
        });
    }
}

fn conv(r: &mut Reader, ints: bool) {
    let g = Conv2dGeom {
        batch: r.range(1, 3),
        in_channels: r.range(0, 6),
        out_channels: r.range(1, 6),
        in_h: r.range(1, 9),
        in_w: r.range(1, 9),
        kernel_h: r.range(1, 5),
        kernel_w: r.range(1, 5),
        stride_h: r.range(1, 3),
        stride_w: r.range(1, 3),
        pad_h: r.range(0, 2),
        pad_w: r.range(0, 2),
    };
    if !g.is_valid() {
        return;
    }
    let flags = r.byte();
    let inp = r.values(g.input_len(), ints);
    let weight = r.values(g.weight_len(), ints);
    let d_out = r.values(g.output_len(), ints);
    let d_inp0 = r.values(g.input_len(), ints);
    let d_w0 = r.values(g.weight_len(), ints);
    let bias = (flags & 1 != 0).then(|| r.values(g.out_channels, ints));
    let (scale, shift) = (r.values(g.in_channels, ints), r.values(g.in_channels, ints));
    let pre = (flags & 2 != 0).then(|| ChannelAffine {
        scale: &scale,
        shift: &shift,
        relu: flags & 4 != 0,
    });
    let tol = if ints { 0.0 } else { FLOAT_TOL };

    // The reference takes no fused input map: apply it to the input first (per channel, CNHW).
    let mapped: Vec<f32> = match &pre {
        None => inp.clone(),
        Some(p) => {
            let chan = g.batch * g.in_h * g.in_w;
            inp.iter()
                .enumerate()
                .map(|(i, &x)| p.apply(i / chan, x))
                .collect()
        }
    };
    let mut want_out = vec![0.0; g.output_len()];
    reference::conv2d_forward(&mut want_out, &mapped, &weight, bias.as_deref(), &g);
    let mut want_d_inp = d_inp0.clone();
    reference::conv2d_backward_input(&mut want_d_inp, &d_out, &weight, &g);
    let mut want_d_w = d_w0.clone();
    let mut want_d_b = vec![0.0; g.out_channels];
    reference::conv2d_backward_weight(&mut want_d_w, Some(&mut want_d_b), &d_out, &mapped, &g);

    let mut ws = Workspace::with_capacity(conv2d::conv2d_workspace_len(&g));
    for tier in tiers() {
        with_max_isa(tier, || {
            let mut out = vec![f32::NAN; g.output_len()];
            conv2d::conv2d_forward(&mut out, &inp, &weight, bias.as_deref(), pre, &g, &mut ws);
            assert_close("conv2d_forward", tier, &out, &want_out, tol);
            let mut d_inp = d_inp0.clone();
            conv2d::conv2d_backward_input(&mut d_inp, &d_out, &weight, &g, &mut ws);
            assert_close("conv2d_backward_input", tier, &d_inp, &want_d_inp, tol);
            let mut d_w = d_w0.clone();
            let mut d_b = vec![0.0; g.out_channels];
            conv2d::conv2d_backward_weight(
                &mut d_w,
                Some(&mut d_b),
                &d_out,
                &inp,
                pre,
                &g,
                &mut ws,
            );
            assert_close("conv2d_backward_weight", tier, &d_w, &want_d_w, tol);
            assert_close("conv2d_backward_bias", tier, &d_b, &want_d_b, tol);
        });
    }
}

fn pools(r: &mut Reader, ints: bool) {
    let g = Pool2dGeom {
        planes: r.range(1, 4),
        in_h: r.range(1, 9),
        in_w: r.range(1, 9),
        kernel: r.range(1, 4),
        stride: r.range(1, 3),
        pad: r.range(0, 2),
    };
    if !g.is_valid() {
        return;
    }
    let inp = r.values(g.input_len(), ints);
    let d_out = r.values(g.output_len(), ints);
    let mut want = vec![0.0; g.output_len()];
    reference::maxpool2d_forward(&mut want, &inp, &g);
    let mut want_d = vec![0.0; g.input_len()];
    reference::maxpool2d_backward(&mut want_d, &d_out, &inp, &g);
    let avg = Pool2dGeom { pad: 0, ..g };
    // Without padding the window may no longer fit: then there is no average pool to test.
    let want_avg = avg.is_valid().then(|| {
        let mut want = vec![0.0; avg.output_len()];
        reference::avgpool2d_forward(&mut want, &inp, &avg);
        want
    });
    for tier in tiers() {
        with_max_isa(tier, || {
            let mut out = vec![f32::NAN; g.output_len()];
            pool::maxpool2d_forward(&mut out, &inp, &g);
            assert_close("maxpool2d_forward", tier, &out, &want, 0.0);
            let mut d = vec![0.0; g.input_len()];
            pool::maxpool2d_backward(&mut d, &d_out, &inp, &g);
            assert_close("maxpool2d_backward", tier, &d, &want_d, FLOAT_TOL);
            if let Some(want_avg) = &want_avg {
                let mut out = vec![f32::NAN; avg.output_len()];
                pool::avgpool2d_forward(&mut out, &inp, &avg);
                assert_close("avgpool2d_forward", tier, &out, want_avg, FLOAT_TOL);
            }
        });
    }
}

fn bn(r: &mut Reader, ints: bool) {
    let g = BatchNormGeom {
        channels: r.range(1, 5),
        per_channel: r.range(2, 40),
    };
    let inp = r.values(g.len(), ints);
    let gamma = r.values(g.channels, ints);
    let beta = r.values(g.channels, ints);
    let cfg = BatchNormConfig::default();
    // out, mean, invstd, running mean, running variance.
    let fresh = || {
        let c = g.channels;
        [
            vec![0.0; g.len()],
            vec![0.0; c],
            vec![0.0; c],
            vec![0.0; c],
            vec![1.0; c],
        ]
    };
    let mut want = fresh();
    {
        let [o, m, s, rm, rv] = &mut want;
        reference::batchnorm_forward_train(o, m, s, rm, rv, &inp, &gamma, &beta, &cfg, &g);
    }
    for tier in tiers() {
        with_max_isa(tier, || {
            let mut got = fresh();
            let [o, m, s, rm, rv] = &mut got;
            batchnorm::batchnorm_forward_train(o, m, s, rm, rv, &inp, &gamma, &beta, &cfg, &g);
            for (name, (a, b)) in ["out", "mean", "invstd", "running_mean", "running_var"]
                .iter()
                .zip(got.iter().zip(&want))
            {
                assert_close(name, tier, a, b, BN_TOL);
            }
        });
    }
}

fn fully_connected(r: &mut Reader, ints: bool) {
    let (batch, in_f, out_f) = (r.range(1, 4), r.range(1, 40), r.range(1, 12));
    let inp = r.values(batch * in_f, ints);
    let weight = r.values(out_f * in_f, ints);
    let bias = r.byte().is_multiple_of(2).then(|| r.values(out_f, ints));
    let tol = if ints { 0.0 } else { FLOAT_TOL };
    let mut want = vec![0.0; batch * out_f];
    reference::linear_forward(&mut want, &inp, &weight, bias.as_deref(), batch);
    for tier in tiers() {
        with_max_isa(tier, || {
            let mut out = vec![f32::NAN; batch * out_f];
            linear::linear_forward(&mut out, &inp, &weight, bias.as_deref(), batch);
            assert_close("linear_forward", tier, &out, &want, tol);
        });
    }
}
