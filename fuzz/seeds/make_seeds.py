#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (standard library only).

Run from the repository root: python3 fuzz/seeds/make_seeds.py
Deterministic: the same files every run. Small files only, so the corpora stay cheap to replay.
"""
import gzip
import json
import os
import random
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
rng = random.Random(7)


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None, header_override=None):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, blob, off = {}, b"", 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        blob += raw
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    if header_override is not None:
        header = header_override
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


# ---- weights
valid = safetensors(
    [
        ("classifier.bias", "F32", [2], f32([0.5, -0.5])),
        ("features.norm5.weight", "F32", [1], f32([1.0])),
        ("features.norm5.num_batches_tracked", "I64", [], struct.pack("<q", 3)),
    ],
    metadata={"format": "pt"},
)
put("weights", "valid_small", valid)
put("weights", "dtypes", safetensors([
    ("a", "F16", [2], struct.pack("<2H", 0x3C00, 0x7C00)),
    ("b", "BF16", [2], struct.pack("<2H", 0x3F80, 0x7FC0)),
    ("c", "F64", [1], struct.pack("<d", 1e300)),
    ("d", "I32", [2], struct.pack("<2i", -1, 7)),
    ("e", "F32", [0, 3], b""),
    ("f", "F32", [2, 2], f32([float("nan"), float("inf"), -0.0, 1.0])),
]))
put("weights", "wrong_dtype", safetensors([("a", "U8", [2], b"\x01\x02")]))
put("weights", "truncated", valid[: len(valid) - 5])
put("weights", "header_only", valid[:20])
put("weights", "header_past_end", struct.pack("<Q", 1 << 20) + b"{}")
put("weights", "huge_dims", safetensors([], header_override={
    "a": {"dtype": "F32", "shape": [1 << 40, 1 << 40], "data_offsets": [0, 0]}}))
put("weights", "overlap", safetensors([], header_override={
    "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
    "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}) + f32([1.0]))
put("weights", "out_of_range", safetensors([], header_override={
    "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}) + f32([1.0]))
put("weights", "empty_dict", safetensors([]))
put("weights", "not_json", struct.pack("<Q", 8) + b"{notjson")
# Small valid files cut from the golden fixtures: their first few small tensors, as PyTorch named them.
gold = os.path.join(ROOT, "testdata", "golden")
for fixture in sorted(os.listdir(gold)) if os.path.isdir(gold) else []:
    if not fixture.endswith(".safetensors"):
        continue
    raw = open(os.path.join(gold, fixture), "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    picked, size = [], 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        s, e = info["data_offsets"]
        if e - s <= 256 and size + e - s <= 2048:
            picked.append((name, info["dtype"], info["shape"], data[s:e]))
            size += e - s
        if len(picked) >= 8:
            break
    stem = fixture.split(".")[0]
    small = safetensors(picked, metadata=header.get("__metadata__"))
    put("weights", "golden_" + stem, small)
    put("weights", "golden_" + stem + "_truncated", small[: len(small) * 3 // 4])

# ---- CIFAR
def cifar_record(label, coarse=None):
    head = bytes([label]) if coarse is None else bytes([coarse, label])
    return head + bytes(rng.randrange(256) for _ in range(3072))

put("cifar", "cifar10_one", cifar_record(3))
put("cifar", "cifar10_two", cifar_record(0) + cifar_record(9))
put("cifar", "cifar100_one", cifar_record(57, coarse=4))
put("cifar", "cifar10_bad_label", cifar_record(10))
put("cifar", "cifar10_truncated", cifar_record(1)[:3000])
put("cifar", "empty", b"")

# ---- IDX
def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data

images = idx([2, 3, 3], bytes(range(18)))
labels = idx([2], bytes([1, 0]))
put("idx", "images", images)
put("idx", "labels", labels)
put("idx", "images_gz", gzip.compress(images, mtime=0))
put("idx", "labels_gz", gzip.compress(labels, mtime=0))
put("idx", "truncated", images[:-4])
put("idx", "wrong_type", bytes([0, 0, 9, 3]) + images[4:])
put("idx", "zero_dim", idx([2, 0, 3], b""))
put("idx", "huge_dims", idx([0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF], b""))
put("idx", "gz_longer_than_header", gzip.compress(images + bytes(1000), mtime=0))
put("idx", "gz_truncated", gzip.compress(images, mtime=0)[:-10])

# ---- digits
def digits(n, h=8, w=8, classes=10, maxv=16, magic=b"DNDIGITS", version=1):
    head = magic + struct.pack("<II", version, n) + bytes([h, w, classes, maxv])
    labels = bytes(rng.randrange(classes or 1) for _ in range(n))
    pixels = bytes(rng.randrange(maxv + 1) for _ in range(n * h * w))
    return head + labels + pixels

put("digits", "five", digits(5))
put("digits", "zero_images", digits(0))
put("digits", "bad_magic", digits(2, magic=b"DNDIGITZ"))
put("digits", "version2", digits(2, version=2))
put("digits", "no_classes", digits(1, classes=0))
put("digits", "truncated", digits(3)[:-7])
put("digits", "odd_size", digits(2, h=3, w=5, classes=3, maxv=255))

# ---- model specs
for i, spec in enumerate([
    "densenet121", "densenet_bc100_k12", "DenseNet-264:classes=10",
    "bc:k=12,blocks=16-16-16", "plain:k=4,blocks=2-2,classes=3",
    "custom:k=2,blocks=1-1,init=4,bn=2,theta=0.5,drop=0.1,classes=2,stem=imagenet,in=1",
    "bc:k=2,blocks=1,init=3,classes=2", "plain:k=1,blocks=1-1-1,init=1,classes=1,in=1",
    "bc:blocks=1000000000", "bc:k=4096,blocks=4096-4096", "bc:k=4096,blocks=64-64-64,bn=64",
    "bc:theta=1e-40", "bc:theta=nan", "bc:drop=1", "bc:k=18446744073709551615",
    "bc:blocks=1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1-1", "bc:k=,", "bc:k==1", ":", "",
    "custom:stem=mars", "plain:bn=none,init=0",
    # --data and --augment
    "folder:imgs,size=64", "folder:,size=32", "cifar10:data/cifar", "digits", "crop4+flip",
    "flip+crop04",
]):
    put("model_spec", "spec%02d" % i, spec)

# ---- kernels: op byte, ints/floats byte, then geometry and values
for i in range(24):
    op = i % 4
    body = bytes([op, i // 4 % 2]) + bytes(rng.randrange(256) for _ in range(rng.randrange(16, 700)))
    put("kernels", "k%02d" % i, body)
