//! Image preprocessing for ImageNet-style inference (filled in below).
