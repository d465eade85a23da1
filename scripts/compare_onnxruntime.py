#!/usr/bin/env python3
"""Run a DenseNet weight file through PyTorch and ONNX Runtime: reference logits and timings.

Usage:

    pip install -r scripts/requirements.txt onnxruntime onnx onnxscript
    python3 scripts/export_torchvision.py --arch densenet121 --out d121.safetensors
    python3 scripts/compare_onnxruntime.py --weights d121.safetensors --size 224 --batch 1 \
        --threads 2 --out d121-reference.safetensors [--rust-logits rust-logits.safetensors]

The model is rebuilt from the `config` JSON in the weight file's metadata (written by
export_torchvision.py and make_golden.py; pass --config to override), with torchvision's key
names (legacy `norm.1` names and a `module.` prefix are accepted). A seeded random input
(NCHW, f32) runs through PyTorch in eval mode and through ONNX Runtime on the same model
exported to ONNX; the script prints the largest differences between them and median
wall-clock latencies over --runs runs, and writes `input`, `torch_logits` and `ort_logits` to
--out so the Rust side can compare its own inference against the same input. With
--rust-logits (a safetensors file holding `logits`, e.g. written by the Rust inference on the
`input` of --out) it also prints the Rust-vs-PyTorch and Rust-vs-ONNX Runtime differences.
"""

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from safetensors.torch import load_file, save_file

sys.dont_write_bytecode = True  # no __pycache__ in the source tree from the import below
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden"))
from make_golden import build  # noqa: E402

LEGACY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def read_config(path, override):
    if override:
        return json.loads(override)
    from safetensors import safe_open

    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    if "config" not in meta:
        raise SystemExit(f"{path}: no `config` metadata; pass --config '{{...}}'")
    return json.loads(meta["config"])


def load_model(path, config):
    config = dict(config)
    config.setdefault("num_init_features", config.get("init_features"))
    config.setdefault("drop_rate", 0.0)
    model = build(config)
    state = {}
    for key, value in load_file(path).items():
        while key.startswith("module."):
            key = key[len("module."):]
        match = LEGACY.match(key)
        state[match.group(1) + match.group(2) if match else key] = value
    # A golden fixture also holds inputs, activations and gradients: keep only model keys.
    wanted = set(model.state_dict())
    result = model.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing:
        raise SystemExit(f"{path}: missing {missing}")
    return model.eval()


def median_ms(fn, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def diff(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max()), float((np.abs(a - b) / np.maximum(np.abs(b), 1e-30)).max())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--config", help="config JSON overriding the file's metadata")
    parser.add_argument("--size", type=int, nargs="+", default=[224], help="H [W]")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write input and both logits here (safetensors)")
    parser.add_argument("--rust-logits", help="safetensors file with the Rust `logits` for --out's input")
    args = parser.parse_args()

    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    config = read_config(args.weights, args.config)
    model = load_model(args.weights, config)
    h = args.size[0]
    w = args.size[1] if len(args.size) > 1 else h
    x = torch.randn(args.batch, 3, h, w, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        torch_logits = model(x)
        torch_ms = median_ms(lambda: model(x), args.runs)

    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = os.path.join(tmp, "model.onnx")
        torch.onnx.export(model, (x,), onnx_path, input_names=["input"], output_names=["logits"], dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = args.threads
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        feed = {"input": x.numpy()}
        ort_logits = session.run(None, feed)[0]
        ort_ms = median_ms(lambda: session.run(None, feed), args.runs)

    print(f"config {json.dumps(config)}; input {list(x.shape)}; {args.threads} thread(s); median of {args.runs}")
    print(f"pytorch eval  {torch_ms:9.2f} ms")
    print(f"onnxruntime   {ort_ms:9.2f} ms")
    a, r = diff(ort_logits, torch_logits.numpy())
    print(f"onnxruntime vs pytorch logits: max abs {a:.3e}, max rel {r:.3e}")
    if args.rust_logits:
        rust = load_file(args.rust_logits)["logits"].numpy()
        for name, ref in (("pytorch", torch_logits.numpy()), ("onnxruntime", ort_logits)):
            a, r = diff(rust, ref)
            print(f"rust vs {name} logits: max abs {a:.3e}, max rel {r:.3e}")
    if args.out:
        save_file(
            {"input": x.contiguous(), "torch_logits": torch_logits.contiguous(),
             "ort_logits": torch.from_numpy(np.ascontiguousarray(ort_logits))},
            args.out,
            metadata={"config": json.dumps(config), "seed": str(args.seed), "layout": "NCHW",
                      "torch_version": torch.__version__, "onnxruntime_version": ort.__version__},
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
