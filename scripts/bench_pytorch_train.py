#!/usr/bin/env python3
"""Time one PyTorch training step of the networks `cargo bench --bench e2e` times, for a side-by-side
comparison on the same machine (PyTorch from PyPI; run by hand, never by CI).

Usage:

    pip install -r scripts/requirements.txt
    python3 scripts/bench_pytorch_train.py --model bc100 --threads 2
    python3 scripts/bench_pytorch_train.py --model densenet121 --threads 2 --memory-efficient

The step is the one the Rust bench times: zero gradients, forward in train mode, cross-entropy,
backward, SGD (lr 0.1, momentum 0.9, Nesterov, weight decay 1e-4), on a seeded random batch
(DenseNet-BC-100 k=12: 64 images of 32x32, CIFAR stem; densenet121: 8 images of 224x224).
One untimed step, then --steps timed ones; prints the median and minimum, and the process's
peak resident memory (max RSS, which includes the interpreter and PyTorch's own libraries).
"""

import argparse
import os
import resource
import statistics
import sys
import time

import torch

sys.dont_write_bytecode = True  # no __pycache__ in the source tree from the import below
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden"))
from make_golden import build  # noqa: E402

CONFIGS = {
    "bc100": (
        {"growth_rate": 12, "block_config": [16, 16, 16], "num_init_features": 24, "bn_size": 4,
         "compression": 0.5, "drop_rate": 0.0, "num_classes": 10, "stem": "cifar"},
        (64, 3, 32, 32),
    ),
    "densenet121": (
        {"growth_rate": 32, "block_config": [6, 12, 24, 16], "num_init_features": 64, "bn_size": 4,
         "compression": 0.5, "drop_rate": 0.0, "num_classes": 1000, "stem": "imagenet"},
        (8, 3, 224, 224),
    ),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(CONFIGS), default="bc100")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--memory-efficient", action="store_true",
                        help="torchvision's checkpointed dense layers (memory_efficient=True)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config, shape = CONFIGS[args.model]
    model = build(config)
    model.train()
    if args.memory_efficient:
        for module in model.modules():
            if hasattr(module, "memory_efficient"):
                module.memory_efficient = True
    x = torch.randn(*shape)
    y = torch.randint(0, config["num_classes"], (shape[0],))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pytorch {torch.__version__}, {args.model}, {args.threads} thread(s)"
          f"{', memory-efficient' if args.memory_efficient else ''}: "
          f"median {statistics.median(times):.3f} s, min {min(times):.3f} s; max RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
