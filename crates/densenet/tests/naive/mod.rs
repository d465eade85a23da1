//! The naive twin: DenseNet written the way a framework runs it, from `kernels::reference`
//! functions and `Vec` concatenation, keeping every intermediate tensor, with parameters read by
//! torchvision name. It shares no code with the crate's network beyond the reference kernels,
//! the configuration and the parameter names, so agreement tests the block memory plan,
//! the fused BN+ReLU, the shared statistics and the gradient accumulation.
#![allow(dead_code)]

use std::collections::HashMap;

use densenet::config::{DenseNetConfig, Stem};
use densenet::ParamStore;
use densenet_kernels::reference as r;
use densenet_kernels::{BatchNormConfig, BatchNormGeom, Conv2dGeom, Pool2dGeom};

/// Named tensors copied out of a store (weights and running statistics).
pub type Tensors = HashMap<String, Vec<f32>>;

pub fn tensors_of(store: &ParamStore) -> Tensors {
    store
        .tensor_names()
        .into_iter()
        .map(|n| {
            let v = store.tensor(&n).unwrap().1.to_vec();
            (n, v)
        })
        .collect()
}

/// What a naive pass produces.
pub struct NaiveOut {
    pub logits: Vec<f32>,
    pub loss: f32,
    /// Gradients of trainable tensors by name (training with labels only).
    pub grads: Tensors,
    /// Weights and running statistics after the pass.
    pub tensors: Tensors,
}

struct Bn {
    name: String,
    x: Vec<f32>,
    mean: Vec<f32>,
    invstd: Vec<f32>,
    c: usize,
    m: usize,
}

enum Op {
    /// conv over `x` with weight `name`, geometry.
    Conv {
        name: String,
        x: Vec<f32>,
        g: Conv2dGeom,
    },
    BnRelu(Bn),
    MaxPool {
        x: Vec<f32>,
        g: Pool2dGeom,
    },
    AvgPool {
        g: Pool2dGeom,
    },
    Dropout {
        p: f32,
        seed: u64,
    },
    /// out = concat(prev, new): backward splits the gradient.
    Concat {
        prev_len: usize,
    },
}

pub struct Naive<'a> {
    pub cfg: &'a DenseNetConfig,
    pub t: Tensors,
    pub bn: BatchNormConfig,
    pub train: bool,
    pub model_seed: u64,
    pub step: u64,
}

impl Naive<'_> {
    fn w(&self, name: &str) -> &[f32] {
        self.t
            .get(name)
            .unwrap_or_else(|| panic!("no tensor {name}"))
    }

    fn conv(&self, tape: &mut Vec<Op>, name: &str, x: Vec<f32>, g: Conv2dGeom) -> Vec<f32> {
        let mut out = vec![0.0; g.output_len()];
        r::conv2d_forward(&mut out, &x, self.w(&format!("{name}.weight")), None, &g);
        tape.push(Op::Conv {
            name: name.into(),
            x,
            g,
        });
        out
    }

    fn bn_relu(&mut self, tape: &mut Vec<Op>, name: &str, x: Vec<f32>, c: usize) -> Vec<f32> {
        let m = x.len() / c;
        let g = BatchNormGeom {
            channels: c,
            per_channel: m,
        };
        let mut out = vec![0.0; x.len()];
        let (gamma, beta) = (
            self.w(&format!("{name}.weight")).to_vec(),
            self.w(&format!("{name}.bias")).to_vec(),
        );
        if self.train {
            let (mut mean, mut invstd) = (vec![0.0; c], vec![0.0; c]);
            let mut rm = self.t[&format!("{name}.running_mean")].clone();
            let mut rv = self.t[&format!("{name}.running_var")].clone();
            r::batchnorm_relu_forward_train(
                &mut out,
                &mut mean,
                &mut invstd,
                &mut rm,
                &mut rv,
                &x,
                &gamma,
                &beta,
                &self.bn,
                &g,
            );
            self.t.insert(format!("{name}.running_mean"), rm);
            self.t.insert(format!("{name}.running_var"), rv);
            tape.push(Op::BnRelu(Bn {
                name: name.into(),
                x,
                mean,
                invstd,
                c,
                m,
            }));
        } else {
            let mut y = vec![0.0; x.len()];
            r::batchnorm_forward_infer(
                &mut y,
                &x,
                &gamma,
                &beta,
                &self.t[&format!("{name}.running_mean")],
                &self.t[&format!("{name}.running_var")],
                self.bn.eps,
                &g,
            );
            r::relu_forward(&mut out, &y);
        }
        out
    }

    /// Forward (and, with labels in training mode, backward) of the whole network.
    pub fn run(
        mut self,
        input_nchw: &[f32],
        n: usize,
        h: usize,
        w: usize,
        labels: Option<&[usize]>,
    ) -> NaiveOut {
        let cfg = self.cfg;
        let ic = cfg.in_channels;
        let hw = h * w;
        let mut x = vec![0.0; input_nchw.len()];
        for ni in 0..n {
            for ci in 0..ic {
                x[(ci * n + ni) * hw..(ci * n + ni + 1) * hw]
                    .copy_from_slice(&input_nchw[(ni * ic + ci) * hw..(ni * ic + ci + 1) * hw]);
            }
        }
        let mut tape = Vec::new();
        let c0 = cfg.init_features;
        let (mut fh, mut fw);
        let mut feats = match cfg.stem {
            Stem::Cifar => {
                (fh, fw) = (h, w);
                self.conv(
                    &mut tape,
                    "features.conv0",
                    x,
                    Conv2dGeom::square(n, ic, c0, h, w, 3, 1, 1),
                )
            }
            Stem::ImageNet => {
                let g = Conv2dGeom::square(n, ic, c0, h, w, 7, 2, 3);
                let (ch, cw) = (g.out_h(), g.out_w());
                let y = self.conv(&mut tape, "features.conv0", x, g);
                let a = self.bn_relu(&mut tape, "features.norm0", y, c0);
                let pg = Pool2dGeom {
                    planes: c0 * n,
                    in_h: ch,
                    in_w: cw,
                    kernel: 3,
                    stride: 2,
                    pad: 1,
                };
                (fh, fw) = (pg.out_h(), pg.out_w());
                let mut out = vec![0.0; pg.output_len()];
                r::maxpool2d_forward(&mut out, &a, &pg);
                tape.push(Op::MaxPool { x: a, g: pg });
                out
            }
        };
        let k = cfg.growth_rate;
        let mut c = c0;
        for (b, &layers) in cfg.block_config.iter().enumerate() {
            for l in 0..layers {
                let name = format!("features.denseblock{}.denselayer{}", b + 1, l + 1);
                // The framework way: the layer's input is a fresh concatenation, kept for backward.
                let a1 = self.bn_relu(&mut tape, &format!("{name}.norm1"), feats.clone(), c);
                let mut out = match cfg.bn_size {
                    Some(bs) => {
                        let z = self.conv(
                            &mut tape,
                            &format!("{name}.conv1"),
                            a1,
                            Conv2dGeom::square(n, c, bs * k, fh, fw, 1, 1, 0),
                        );
                        let a2 = self.bn_relu(&mut tape, &format!("{name}.norm2"), z, bs * k);
                        self.conv(
                            &mut tape,
                            &format!("{name}.conv2"),
                            a2,
                            Conv2dGeom::square(n, bs * k, k, fh, fw, 3, 1, 1),
                        )
                    }
                    None => self.conv(
                        &mut tape,
                        &format!("{name}.conv1"),
                        a1,
                        Conv2dGeom::square(n, c, k, fh, fw, 3, 1, 1),
                    ),
                };
                if self.train && cfg.drop_rate > 0.0 {
                    let seed = densenet::block::dropout_seed(self.model_seed, self.step, b, l);
                    let mut d = vec![0.0; out.len()];
                    r::dropout_forward(&mut d, &out, cfg.drop_rate, seed);
                    out = d;
                    tape.push(Op::Dropout {
                        p: cfg.drop_rate,
                        seed,
                    });
                }
                let prev_len = feats.len();
                let mut cat = feats.clone();
                cat.extend_from_slice(&out);
                feats = cat;
                tape.push(Op::Concat { prev_len });
                c += k;
            }
            if b + 1 < cfg.block_config.len() {
                let name = format!("features.transition{}", b + 1);
                let ct = cfg.transition_out_channels(b);
                let a = self.bn_relu(&mut tape, &format!("{name}.norm"), feats, c);
                let t = self.conv(
                    &mut tape,
                    &format!("{name}.conv"),
                    a,
                    Conv2dGeom::square(n, c, ct, fh, fw, 1, 1, 0),
                );
                let pg = Pool2dGeom {
                    planes: ct * n,
                    in_h: fh,
                    in_w: fw,
                    kernel: 2,
                    stride: 2,
                    pad: 0,
                };
                let mut p = vec![0.0; pg.output_len()];
                r::avgpool2d_forward(&mut p, &t, &pg);
                tape.push(Op::AvgPool { g: pg });
                (fh, fw, c, feats) = (pg.out_h(), pg.out_w(), ct, p);
            }
        }
        let a = self.bn_relu(&mut tape, "features.norm5", feats, c);
        let mut pooled = vec![0.0; n * c];
        r::global_avgpool_forward(&mut pooled, &a, c, n, fh * fw);
        let classes = cfg.num_classes;
        let mut logits = vec![0.0; n * classes];
        r::linear_forward(
            &mut logits,
            &pooled,
            self.w("classifier.weight"),
            Some(self.w("classifier.bias")),
            n,
        );

        let mut out = NaiveOut {
            logits: logits.clone(),
            loss: f32::NAN,
            grads: Tensors::new(),
            tensors: Tensors::new(),
        };
        if let (Some(labels), true) = (labels, self.train) {
            let mut probs = vec![0.0; logits.len()];
            out.loss = r::softmax_cross_entropy_forward(&mut probs, &logits, labels);
            let mut d_logits = vec![0.0; logits.len()];
            r::softmax_cross_entropy_backward(&mut d_logits, &probs, labels, 1.0);
            let grads = &mut out.grads;
            let mut gw = vec![0.0; classes * c];
            let mut gb = vec![0.0; classes];
            r::linear_backward_weight(&mut gw, Some(&mut gb), &d_logits, &pooled, n);
            grads.insert("classifier.weight".into(), gw);
            grads.insert("classifier.bias".into(), gb);
            let mut d_pooled = vec![0.0; n * c];
            r::linear_backward_input(&mut d_pooled, &d_logits, self.w("classifier.weight"), n);
            let mut dy = vec![0.0; c * n * fh * fw];
            r::global_avgpool_backward(&mut dy, &d_pooled, c, n, fh * fw);
            // Walk the tape backwards; `dy` is the gradient of the current tensor.
            let mut pending_slot: Vec<Vec<f32>> = Vec::new();
            for op in tape.into_iter().rev() {
                match op {
                    Op::BnRelu(bn) => {
                        let g = BatchNormGeom {
                            channels: bn.c,
                            per_channel: bn.m,
                        };
                        let mut dx = vec![0.0; bn.x.len()];
                        let mut dg = vec![0.0; bn.c];
                        let mut db = vec![0.0; bn.c];
                        r::batchnorm_relu_backward(
                            &mut dx,
                            &mut dg,
                            &mut db,
                            &dy,
                            &bn.x,
                            self.w(&format!("{}.weight", bn.name)),
                            self.w(&format!("{}.bias", bn.name)),
                            &bn.mean,
                            &bn.invstd,
                            &g,
                        );
                        grads.insert(format!("{}.weight", bn.name), dg);
                        grads.insert(format!("{}.bias", bn.name), db);
                        dy = dx;
                        // A norm1 reads the block's concatenation; its gradient adds to the
                        // gradient flowing into that concatenation from later layers.
                        if bn.name.ends_with(".norm1") {
                            let skip = pending_slot.pop().expect("skip gradient");
                            for (a, b) in dy.iter_mut().zip(&skip) {
                                *a += b;
                            }
                        }
                    }
                    Op::Conv { name, x, g } => {
                        let mut dw = vec![0.0; g.weight_len()];
                        r::conv2d_backward_weight(&mut dw, None, &dy, &x, &g);
                        grads.insert(format!("{name}.weight"), dw);
                        if name != "features.conv0" {
                            let mut dx = vec![0.0; g.input_len()];
                            r::conv2d_backward_input(
                                &mut dx,
                                &dy,
                                self.w(&format!("{name}.weight")),
                                &g,
                            );
                            dy = dx;
                        }
                    }
                    Op::MaxPool { x, g } => {
                        let mut dx = vec![0.0; g.input_len()];
                        r::maxpool2d_backward(&mut dx, &dy, &x, &g);
                        dy = dx;
                    }
                    Op::AvgPool { g } => {
                        let mut dx = vec![0.0; g.input_len()];
                        r::avgpool2d_backward(&mut dx, &dy, &g);
                        dy = dx;
                    }
                    Op::Dropout { p, seed } => {
                        let mut dx = vec![0.0; dy.len()];
                        r::dropout_backward(&mut dx, &dy, p, seed);
                        dy = dx;
                    }
                    Op::Concat { prev_len } => {
                        // Split: the new channels' gradient continues into the layer; the
                        // prefix's waits until the layer's norm1 has produced its own part.
                        let prev = dy[..prev_len].to_vec();
                        dy = dy[prev_len..].to_vec();
                        pending_slot.push(prev);
                    }
                }
            }
        }
        out.tensors = self.t;
        out
    }
}
