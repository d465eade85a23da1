#!/usr/bin/env python3
"""Write the PyTorch golden fixtures that `crates/densenet/tests/golden.rs` compares against.

Usage (from the repository root; needs `pip install -r scripts/requirements.txt`):

    python3 scripts/golden/make_golden.py --out testdata/golden
    python3 scripts/golden/make_golden.py --densenet121 testdata/large   # optional, ~40 MB

Each fixture is one safetensors file. Every tensor is stored as little-endian f32 in PyTorch's
NCHW layout, except `labels` (i64 class indices) and the `num_batches_tracked` buffers (i64
scalars). The Rust network keeps activations channel-major (CNHW), so the golden test transposes
the NCHW activations before comparing them (for a batch of one the two layouts coincide).

Keys
----
weights (torchvision state-dict names, never the legacy `norm.1` style):
    features.conv0.weight, features.norm0.{weight,bias,running_mean,running_var,num_batches_tracked},
    features.denseblockB.denselayerL.{norm1,conv1,norm2,conv2}.*, features.transitionT.{norm,conv}.*,
    features.norm5.*, classifier.{weight,bias}
    -- the values *before* any training step.
input                     [N, 3, H, W] f32
labels                    [N] i64
act.stem                  output of pool0 (ImageNet stem) or of conv0 (CIFAR stem)
act.denseblockB           output of dense block B (all its channels, i.e. after the concat)
act.transitionT           output of transition T (after its 2x2 average pool)
act.norm5                 `features(x)`: after norm5, *before* the final ReLU
act.pooled                [N, C] after the final ReLU and global average pooling
logits                    [N, num_classes]
eval.act.*, eval.logits   the same stages in evaluation mode (BN with the initial running
                          statistics), on the initial weights
loss                      [] cross-entropy, mean over the batch
grad.<param name>         d loss / d param, for every parameter
after_step.<bn>.running_mean / .running_var
                          BN running statistics after that one training forward
                          (momentum 0.1, unbiased variance, as torch.nn.BatchNorm2d does)
step3.<param name>        parameters after 3 SGD steps on the same batch
step3.<bn>.running_mean / .running_var
                          BN running statistics after the 3 training forwards of those steps
losses                    [3] the loss of each of the 3 forwards (losses[0] == loss)

The header metadata holds: format_version ("1"), torch_version, torchvision_version, seed,
compute_dtype, config (JSON: growth_rate, block_config, num_init_features, bn_size (null for the
plain layer), compression, drop_rate, num_classes, stem, input_shape), activation_order (JSON
list: the act.* keys and `logits` in forward order), parameters (JSON list of parameter names in
module order), bn_modules (JSON list), sgd (JSON: lr, momentum, nesterov, weight_decay,
dampening, steps).

How the 3 SGD steps are taken
-----------------------------
torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4, dampening=0) over all
parameters (BN weights and biases included, as torch does by default). Step s (s = 1, 2, 3):
zero the gradients, run the training forward on the same batch (which also updates the running
statistics), record losses[s-1], backward, optimizer.step(). So step3.* holds the parameters
after the third update, and the gradients `grad.*` are those of the first forward. In PyTorch's
formulation: g = grad + wd * p; buf = g on the first step, else momentum * buf + g;
p -= lr * (g + momentum * buf).

Precision
---------
Parameters and inputs are drawn in f32 (so the stored f32 values are exact), then the whole
computation runs in float64 and its results are rounded to f32 when written. The reference is
therefore the exact answer to f32 precision, and any difference the Rust test sees is the Rust
implementation's own rounding (not a sum of two implementations' errors).

Models
------
* `cifar_bc`: torchvision.models.densenet.DenseNet(growth_rate=4, block_config=(2, 2),
  num_init_features=8, bn_size=4, drop_rate=0, num_classes=10), then the CIFAR stem:
  features.conv0 is replaced by nn.Conv2d(3, 8, kernel_size=3, stride=1, padding=1, bias=False)
  (kaiming_normal_ init, like torchvision's own convs) and features.norm0, features.relu0 and
  features.pool0 are deleted (`del model.features.norm0` etc.), so `features` runs
  conv0 -> denseblock1 -> transition1 -> denseblock2 -> norm5. torchvision's transition always
  halves the channels (compression 0.5).
* `imagenet_bc_odd`: the unmodified torchvision DenseNet (7x7/2 conv0, norm0, relu0, 3x3/2 max
  pool0) with growth_rate=4, block_config=(2, 2, 2), num_init_features=8, bn_size=4, at the odd
  input size 67x61, so every pool floors.
* `cifar_plain`: a DenseNet without bottleneck and without compression, which torchvision
  cannot express (its _DenseLayer always has the 1x1 bottleneck and its transition always
  halves). Built from the small modules below with the same key names: each dense layer is
  norm1 -> relu1 -> conv1 (3x3, padding 1, k output channels, no bias), the transitions are
  torchvision's _Transition with as many output channels as input channels (floor(theta * C)
  with theta = 1), the stem is the CIFAR conv0 above, then norm5 and the classifier.

After construction the BN affine parameters, the BN running statistics and the classifier bias
are re-drawn from the seeded generator (torchvision initialises them to constants, which would
hide mistakes such as swapping weight and bias or ignoring the running statistics).
"""

import argparse
import copy
import json
import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from safetensors.torch import save_file
from torchvision.models.densenet import DenseNet, _Transition

FORMAT_VERSION = "1"

SGD = {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4, "dampening": 0.0, "steps": 3}

FIXTURES = {
    "cifar_bc": {
        "seed": 1,
        "config": {
            "growth_rate": 4,
            "block_config": [2, 2],
            "num_init_features": 8,
            "bn_size": 4,
            "compression": 0.5,
            "drop_rate": 0.0,
            "num_classes": 10,
            "stem": "cifar",
            "input_shape": [2, 3, 16, 16],
        },
    },
    "imagenet_bc_odd": {
        "seed": 2,
        "config": {
            "growth_rate": 4,
            "block_config": [2, 2, 2],
            "num_init_features": 8,
            "bn_size": 4,
            "compression": 0.5,
            "drop_rate": 0.0,
            "num_classes": 7,
            "stem": "imagenet",
            "input_shape": [2, 3, 67, 61],
        },
    },
    "cifar_plain": {
        "seed": 3,
        "config": {
            "growth_rate": 4,
            "block_config": [3, 3],
            "num_init_features": 8,
            "bn_size": None,
            "compression": 1.0,
            "drop_rate": 0.0,
            "num_classes": 5,
            "stem": "cifar",
            "input_shape": [3, 3, 12, 12],
        },
    },
}


def cifar_stem_conv(num_init_features):
    conv = nn.Conv2d(3, num_init_features, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight)
    return conv


def to_cifar_stem(model, num_init_features):
    """Turn a torchvision DenseNet's ImageNet stem into the CIFAR stem, in place."""
    model.features.conv0 = cifar_stem_conv(num_init_features)
    del model.features.norm0
    del model.features.relu0
    del model.features.pool0
    return model


class PlainDenseLayer(nn.Module):
    """A dense layer without bottleneck: BN -> ReLU -> 3x3 conv producing k channels."""

    def __init__(self, num_input_features, growth_rate):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(num_input_features, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, prev_features):
        return self.conv1(self.relu1(self.norm1(torch.cat(prev_features, 1))))


class PlainDenseBlock(nn.ModuleDict):
    """Same concatenation semantics (and key names) as torchvision's _DenseBlock."""

    def __init__(self, num_layers, num_input_features, growth_rate):
        super().__init__()
        for i in range(num_layers):
            self.add_module("denselayer%d" % (i + 1), PlainDenseLayer(num_input_features + i * growth_rate, growth_rate))

    def forward(self, init_features):
        features = [init_features]
        for _, layer in self.items():
            features.append(layer(features))
        return torch.cat(features, 1)


class PlainDenseNet(nn.Module):
    """torchvision's DenseNet structure and key names, with plain layers and compression theta."""

    def __init__(self, growth_rate, block_config, num_init_features, compression, num_classes):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([("conv0", cifar_stem_conv(num_init_features))]))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            self.features.add_module("denseblock%d" % (i + 1), PlainDenseBlock(num_layers, num_features, growth_rate))
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                out = int(num_features * compression)
                self.features.add_module("transition%d" % (i + 1), _Transition(num_features, out))
                num_features = out
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        out = F.relu(self.features(x))
        out = F.adaptive_avg_pool2d(out, (1, 1))
        return self.classifier(torch.flatten(out, 1))


def build(config):
    if config["bn_size"] is None:
        return PlainDenseNet(
            config["growth_rate"],
            config["block_config"],
            config["num_init_features"],
            config["compression"],
            config["num_classes"],
        )
    if config["compression"] != 0.5:
        raise SystemExit("torchvision's DenseNet always uses compression 0.5")
    model = DenseNet(
        growth_rate=config["growth_rate"],
        block_config=tuple(config["block_config"]),
        num_init_features=config["num_init_features"],
        bn_size=config["bn_size"],
        drop_rate=config["drop_rate"],
        num_classes=config["num_classes"],
    )
    if config["stem"] == "cifar":
        to_cifar_stem(model, config["num_init_features"])
    return model


def randomise_constants(model, gen):
    """Give BN affine parameters, running statistics and the classifier bias non-trivial values."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_((torch.rand(c, generator=gen) - 0.5) * 0.4)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            elif isinstance(m, nn.Linear):
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)


def stage_names(model, stem):
    """Names of the feature modules whose outputs are recorded, in forward order."""
    names = []
    for name, _ in model.features.named_children():
        if name == ("pool0" if stem == "imagenet" else "conv0"):
            names.append((name, "act.stem"))
        elif name.startswith("denseblock") or name.startswith("transition") or name == "norm5":
            names.append((name, "act." + name))
    return names


def forward_recording(model, x, stem):
    """The training forward of torchvision's DenseNet, recording each stage's output."""
    acts = OrderedDict()
    wanted = dict(stage_names(model, stem))
    out = x
    for name, module in model.features.named_children():
        out = module(out)
        if name in wanted:
            acts[wanted[name]] = out
    pooled = torch.flatten(F.adaptive_avg_pool2d(F.relu(out), (1, 1)), 1)
    acts["act.pooled"] = pooled
    logits = model.classifier(pooled)
    acts["logits"] = logits
    return acts


def f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def make_fixture(name, spec):
    config = spec["config"]
    seed = spec["seed"]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = build(config)
    randomise_constants(model, gen)
    n, c, h, w = config["input_shape"]
    x32 = torch.randn(n, c, h, w, generator=gen)
    labels = torch.randint(0, config["num_classes"], (n,), generator=gen, dtype=torch.int64)

    out = OrderedDict()
    for key, value in model.state_dict().items():
        out[key] = value.detach().clone().contiguous() if value.dtype == torch.int64 else f32(value)
    out["input"] = f32(x32)
    out["labels"] = labels

    model = model.double()
    x = x32.double()

    # Evaluation mode first, on the initial weights: BN uses the running statistics (and does
    # not update them), so this checks the inference path.
    eval_model = copy.deepcopy(model).eval()
    with torch.no_grad():
        eval_acts = forward_recording(eval_model, x, config["stem"])
        if not torch.equal(eval_acts["logits"], eval_model(x)):
            raise SystemExit(f"{name}: recorded eval forward differs from model.forward")
    for key, value in eval_acts.items():
        out["eval." + key] = f32(value)

    model.train()

    # The recorded forward must be exactly torchvision's forward; check on a copy (the check
    # itself is a training forward and would move the running statistics).
    check = copy.deepcopy(model)
    expected = check(x)
    acts = forward_recording(model, x, config["stem"])
    if not torch.equal(acts["logits"], expected):
        raise SystemExit(f"{name}: recorded forward differs from model.forward")

    params = OrderedDict(model.named_parameters())
    bn_modules = [m_name for m_name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    opt = torch.optim.SGD(
        params.values(),
        lr=SGD["lr"],
        momentum=SGD["momentum"],
        nesterov=SGD["nesterov"],
        weight_decay=SGD["weight_decay"],
        dampening=SGD["dampening"],
    )

    loss = F.cross_entropy(acts["logits"], labels)
    opt.zero_grad()
    loss.backward()
    for key, value in acts.items():
        out[key] = f32(value)
    out["loss"] = f32(loss)
    for p_name, p in params.items():
        out["grad." + p_name] = f32(p.grad)
    modules = dict(model.named_modules())
    for m_name in bn_modules:
        out[f"after_step.{m_name}.running_mean"] = f32(modules[m_name].running_mean)
        out[f"after_step.{m_name}.running_var"] = f32(modules[m_name].running_var)

    losses = [loss.detach()]
    opt.step()
    for _ in range(SGD["steps"] - 1):
        opt.zero_grad()
        step_loss = F.cross_entropy(forward_recording(model, x, config["stem"])["logits"], labels)
        step_loss.backward()
        opt.step()
        losses.append(step_loss.detach())
    for p_name, p in params.items():
        out["step3." + p_name] = f32(p)
    for m_name in bn_modules:
        out[f"step3.{m_name}.running_mean"] = f32(modules[m_name].running_mean)
        out[f"step3.{m_name}.running_var"] = f32(modules[m_name].running_var)
    out["losses"] = f32(torch.stack(losses))

    metadata = {
        "format_version": FORMAT_VERSION,
        "fixture": name,
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "seed": str(seed),
        "compute_dtype": "float64",
        "layout": "NCHW",
        "config": json.dumps(config),
        "activation_order": json.dumps(list(acts.keys())),
        "parameters": json.dumps(list(params.keys())),
        "bn_modules": json.dumps(bn_modules),
        "sgd": json.dumps(SGD),
    }
    return out, metadata, [float(v) for v in losses]


def make_densenet121(seed=121):
    """An inference-only sample at full size: torchvision's densenet121 (random weights, BN
    statistics re-drawn as above), one 224x224 image, evaluation-mode stages and logits."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = torchvision.models.densenet121(weights=None)
    randomise_constants(model, gen)
    config = {
        "growth_rate": 32,
        "block_config": [6, 12, 24, 16],
        "num_init_features": 64,
        "bn_size": 4,
        "compression": 0.5,
        "drop_rate": 0.0,
        "num_classes": 1000,
        "stem": "imagenet",
        "input_shape": [1, 3, 224, 224],
    }
    x32 = torch.randn(*config["input_shape"], generator=gen)
    out = OrderedDict()
    for key, value in model.state_dict().items():
        out[key] = value.detach().clone().contiguous() if value.dtype == torch.int64 else f32(value)
    out["input"] = f32(x32)
    model = model.double().eval()
    with torch.no_grad():
        acts = forward_recording(model, x32.double(), "imagenet")
        if not torch.equal(acts["logits"], model(x32.double())):
            raise SystemExit("densenet121: recorded eval forward differs from model.forward")
    for key, value in acts.items():
        out["eval." + key] = f32(value)
    metadata = {
        "format_version": FORMAT_VERSION,
        "fixture": "densenet121_eval",
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
        "seed": str(seed),
        "compute_dtype": "float64",
        "layout": "NCHW",
        "config": json.dumps(config),
        "activation_order": json.dumps(list(acts.keys())),
    }
    return out, metadata


def write(path, tensors, metadata):
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, path)
    os.chmod(path, 0o644)
    return os.path.getsize(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="testdata/golden", help="output folder")
    parser.add_argument("--only", choices=sorted(FIXTURES), help="write one fixture only")
    parser.add_argument(
        "--densenet121",
        metavar="FOLDER",
        help="instead, write the ~40 MB DenseNet-121 inference sample densenet121_eval.safetensors "
        "to FOLDER (testdata/large, which git ignores; the Rust test skips it when absent)",
    )
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    if args.densenet121:
        os.makedirs(args.densenet121, exist_ok=True)
        path = os.path.join(args.densenet121, "densenet121_eval.safetensors")
        tensors, metadata = make_densenet121()
        print(f"{path}: {len(tensors)} tensors, {write(path, tensors, metadata)} bytes", file=sys.stderr)
        return
    os.makedirs(args.out, exist_ok=True)
    for name, spec in FIXTURES.items():
        if args.only and name != args.only:
            continue
        tensors, metadata, losses = make_fixture(name, spec)
        path = os.path.join(args.out, name + ".safetensors")
        size = write(path, tensors, metadata)
        print(f"{path}: {len(tensors)} tensors, {size} bytes, losses {losses}", file=sys.stderr)


if __name__ == "__main__":
    main()
