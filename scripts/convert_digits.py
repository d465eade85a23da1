#!/usr/bin/env python3
"""Convert scikit-learn's bundled digits set into crates/densenet/data/digits.bin.

The source is sklearn/datasets/data/digits.csv.gz from the scikit-learn wheel
(`pip install scikit-learn`): 1,797 handwritten digits, 8x8 pixels, values 0..16, one
row per image (64 pixels then the label). It is the test part of the UCI "Optical
Recognition of Handwritten Digits" data set (E. Alpaydin, C. Kaynak, 1998), CC BY 4.0.

Output format (all integers little-endian), version 1:
    offset 0   8 bytes  magic b"DNDIGITS"
    offset 8   u32      format version (1)
    offset 12  u32      number of images N
    offset 16  u8       height (8)
    offset 17  u8       width (8)
    offset 18  u8       number of classes (10)
    offset 19  u8       largest pixel value (16)
    offset 20  N bytes  labels, 0..9, in the source order
    then       N*64     pixels, image after image, row-major, values 0..16

The order of the source file is kept, so the documented split (first 1,347 images for
training, last 450 for testing) is reproducible from the CSV alone.

Usage: python3 scripts/convert_digits.py [OUT]   (default crates/densenet/data/digits.bin)
"""

import gzip
import os
import struct
import sys


def main() -> None:
    import sklearn  # imported here so `--help`-style reading of the file needs no sklearn

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "crates", "densenet", "data", "digits.bin")
    src = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "data", "digits.csv.gz")
    with gzip.open(src, "rt") as f:
        rows = [line.strip().split(",") for line in f if line.strip()]
    labels = bytearray()
    pixels = bytearray()
    for i, row in enumerate(rows):
        values = [int(float(v)) for v in row]
        if len(values) != 65:
            raise SystemExit(f"{src}: row {i} has {len(values)} values, expected 65")
        px, label = values[:64], values[64]
        if not all(0 <= p <= 16 for p in px) or not 0 <= label <= 9:
            raise SystemExit(f"{src}: row {i} out of range")
        pixels.extend(px)
        labels.append(label)
    header = b"DNDIGITS" + struct.pack("<II4B", 1, len(rows), 8, 8, 10, 16)
    tmp = out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(header + bytes(labels) + bytes(pixels))
    os.replace(tmp, out)
    print(f"wrote {out}: {len(rows)} images, {len(header) + len(labels) + len(pixels)} bytes")


if __name__ == "__main__":
    main()
