#!/usr/bin/env python3
"""Export a torchvision DenseNet to a safetensors file the Rust loader accepts.

Usage:

    python3 scripts/export_torchvision.py --arch densenet121 --out densenet121.safetensors
    python3 scripts/export_torchvision.py --arch densenet121 --checkpoint densenet121-a639ec97.pth \
        --out densenet121.safetensors

With --checkpoint, the weights come from a PyTorch checkpoint the user already has (a state
dict, or a dict holding one under "state_dict" or "model"); the legacy torchvision key names
(`denselayer1.norm.1.weight`) are renamed exactly as torchvision's own loader does and a
DataParallel `module.` prefix is stripped. The checkpoint is loaded with `weights_only=True`
(no pickled code runs) and then into the torchvision model; any missing or unexpected key other
than a `num_batches_tracked` counter (old checkpoints predate them, and legacy-named ones are
not renamed by torchvision's pattern) refuses the checkpoint with the lists of keys.
Without --checkpoint the model keeps torchvision's random initialisation (seeded by --seed),
which is enough to test loading and inference speed but not accuracy.

The output holds torchvision's state-dict names, contiguous little-endian f32 tensors for
every parameter and running statistic, and the i64 `num_batches_tracked` counters. The header
metadata records the architecture, its config JSON and the torch version.
"""

import argparse
import json
import os
import re
import sys

import torch
import torchvision
from safetensors.torch import save_file

ARCHS = {
    "densenet121": {"growth_rate": 32, "block_config": [6, 12, 24, 16], "num_init_features": 64},
    "densenet161": {"growth_rate": 48, "block_config": [6, 12, 36, 24], "num_init_features": 96},
    "densenet169": {"growth_rate": 32, "block_config": [6, 12, 32, 32], "num_init_features": 64},
    "densenet201": {"growth_rate": 32, "block_config": [6, 12, 48, 32], "num_init_features": 64},
}

# The same pattern torchvision.models.densenet._load_state_dict applies.
LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def read_checkpoint(path):
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise SystemExit(f"{path}: not a state dict (found {type(state).__name__})")
    renamed = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module."):]
        match = LEGACY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        renamed[key] = value
    return renamed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="densenet121")
    parser.add_argument("--checkpoint", help="a .pth state dict to export (default: random init)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output .safetensors path")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = getattr(torchvision.models, args.arch)(weights=None, num_classes=args.num_classes)
    if args.checkpoint:
        result = model.load_state_dict(read_checkpoint(args.checkpoint), strict=False)
        # Old checkpoints predate the num_batches_tracked counters; everything else must match.
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
        if missing or unexpected:
            raise SystemExit(f"{args.checkpoint} does not fit {args.arch}:\n  missing: {missing}\n"
                             f"  unexpected: {unexpected}")
        source = os.path.basename(args.checkpoint)
    else:
        print("no --checkpoint: exporting randomly initialised weights", file=sys.stderr)
        source = f"random init, seed {args.seed}"

    tensors = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu()
        tensors[key] = value.contiguous() if value.dtype == torch.int64 else value.to(torch.float32).contiguous()
    config = dict(ARCHS[args.arch], bn_size=4, compression=0.5, drop_rate=0.0,
                  num_classes=args.num_classes, stem="imagenet")
    metadata = {
        "format": "densenet-rs weights",
        "arch": args.arch,
        "config": json.dumps(config),
        "source": source,
        "torch_version": torch.__version__,
        "torchvision_version": torchvision.__version__,
    }
    tmp = args.out + ".tmp"
    save_file(tensors, tmp, metadata=metadata)
    os.replace(tmp, args.out)
    n_params = sum(t.numel() for k, t in tensors.items() if t.dtype == torch.float32)
    print(f"{args.out}: {len(tensors)} tensors, {n_params} f32 values, {os.path.getsize(args.out)} bytes",
          file=sys.stderr)


if __name__ == "__main__":
    main()
