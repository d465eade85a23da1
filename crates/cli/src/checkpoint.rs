//! Training checkpoints: one safetensors file holding the weights under torchvision's names,
//! the optimizer's momentum buffers under `optimizer.momentum.`, the batch-norm
//! `num_batches_tracked` counters as `I64` scalars, and string metadata (format, version,
//! model spec, epoch, RNG state, the training settings needed to resume).
//!
//! Written atomically (temporary file, then rename), so a crash mid-write leaves the previous
//! checkpoint intact.

use crate::error::{fail, CliResult};
use crate::output::write_atomic;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;

/// `format` metadata value of every checkpoint this program writes.
pub const FORMAT: &str = "densenet-rs-checkpoint";
/// `format_version` metadata value this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Name prefix of the optimizer's momentum buffers.
pub const MOMENTUM_PREFIX: &str = "optimizer.momentum.";

/// An in-memory checkpoint.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// `f32` tensors by name: shape and values (row-major).
    pub tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// `i64` scalars by name (batch-norm `num_batches_tracked`).
    pub counters: BTreeMap<String, i64>,
    /// String metadata; `format` and `format_version` are added on save.
    pub meta: BTreeMap<String, String>,
}

impl Checkpoint {
    /// The safetensors bytes.
    pub fn to_bytes(&self) -> CliResult<Vec<u8>> {
        let f32_bytes: Vec<(&String, &Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(name, (shape, values))| {
                (
                    name,
                    shape,
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                )
            })
            .collect();
        let i64_bytes: Vec<(&String, [u8; 8])> = self
            .counters
            .iter()
            .map(|(n, v)| (n, v.to_le_bytes()))
            .collect();
        let mut views = Vec::with_capacity(f32_bytes.len() + i64_bytes.len());
        for (name, shape, bytes) in &f32_bytes {
            let view = TensorView::new(Dtype::F32, shape.to_vec(), bytes)
                .map_err(|e| fail!("tensor {name} cannot be stored: {e}"))?;
            views.push((name.as_str(), view));
        }
        for (name, bytes) in &i64_bytes {
            let view = TensorView::new(Dtype::I64, vec![], bytes)
                .map_err(|e| fail!("counter {name}: {e}"))?;
            views.push((name.as_str(), view));
        }
        let mut meta: HashMap<String, String> = self.meta.clone().into_iter().collect();
        meta.insert("format".into(), FORMAT.into());
        meta.insert("format_version".into(), FORMAT_VERSION.to_string());
        safetensors::serialize(views, Some(meta))
            .map_err(|e| fail!("cannot serialise the checkpoint: {e}"))
    }

    /// Writes the checkpoint to `path` atomically.
    pub fn save(&self, path: &Path) -> CliResult<()> {
        write_atomic(path, &self.to_bytes()?)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`]; every problem names the file.
    pub fn load(path: &Path) -> CliResult<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| fail!("cannot read checkpoint {}: {e}", path.display()))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses checkpoint bytes; `path` only names the file in errors.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> CliResult<Self> {
        let bad = |problem: String| fail!("{}: {problem}", path.display());
        let (_, header) = SafeTensors::read_metadata(bytes)
            .map_err(|e| bad(format!("not a safetensors file ({e})")))?;
        let meta: BTreeMap<String, String> = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        if meta.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(
                "not a densenet-rs checkpoint (no format metadata)".into()
            ));
        }
        let version = meta.get("format_version").cloned().unwrap_or_default();
        if version != FORMAT_VERSION.to_string() {
            return Err(bad(format!(
                "checkpoint format version {version:?}, this build reads {FORMAT_VERSION}"
            )));
        }
        let st =
            SafeTensors::deserialize(bytes).map_err(|e| bad(format!("corrupted tensors ({e})")))?;
        let mut out = Checkpoint {
            meta,
            ..Default::default()
        };
        for (name, view) in st.tensors() {
            match view.dtype() {
                Dtype::F32 => {
                    let values = view
                        .data()
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                    out.tensors.insert(name, (view.shape().to_vec(), values));
                }
                Dtype::I64 if view.shape().is_empty() => {
                    let b: [u8; 8] = view
                        .data()
                        .try_into()
                        .map_err(|_| bad(format!("counter {name} is not 8 bytes")))?;
                    out.counters.insert(name, i64::from_le_bytes(b));
                }
                other => {
                    return Err(bad(format!(
                        "tensor {name} has dtype {other:?}, expected F32 or an I64 scalar"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// The metadata value `key`, or an error naming the missing key.
    pub fn meta_str(&self, key: &str) -> CliResult<&str> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| fail!("checkpoint has no {key:?} entry"))
    }

    /// The metadata value `key` parsed as `T`.
    pub fn meta_parse<T: FromStr>(&self, key: &str) -> CliResult<T> {
        let text = self.meta_str(key)?;
        text.parse()
            .map_err(|_| fail!("checkpoint entry {key:?} = {text:?} is not valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let mut c = Checkpoint::default();
        c.tensors.insert(
            "features.conv0.weight".into(),
            (vec![2, 1, 1, 1], vec![0.5, -1.25]),
        );
        c.tensors.insert(
            format!("{MOMENTUM_PREFIX}features.conv0.weight"),
            (vec![2, 1, 1, 1], vec![1e-8, f32::MAX]),
        );
        c.counters
            .insert("features.norm0.num_batches_tracked".into(), 12345);
        c.meta.insert("epoch".into(), "3".into());
        c
    }

    #[test]
    fn round_trips_bit_exactly_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        let c = sample();
        c.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back.tensors, c.tensors);
        assert_eq!(back.counters, c.counters);
        assert_eq!(back.meta_parse::<usize>("epoch").unwrap(), 3);
        assert_eq!(back.meta_str("format").unwrap(), FORMAT);
        assert!(back.meta_str("nope").unwrap_err().0.contains("nope"));
    }

    #[test]
    fn broken_files_name_the_file() {
        let p = Path::new("run/ck.safetensors");
        let bytes = sample().to_bytes().unwrap();
        for broken in [
            &bytes[..bytes.len() - 3],
            &bytes[..5],
            b"garbage garbage garbage".as_slice(),
        ] {
            let e = Checkpoint::from_bytes(broken, p).unwrap_err().0;
            assert!(e.starts_with("run/ck.safetensors: "), "{e}");
        }
        let plain = safetensors::serialize(Vec::<(&str, TensorView)>::new(), None).unwrap();
        assert!(Checkpoint::from_bytes(&plain, p)
            .unwrap_err()
            .0
            .contains("not a densenet-rs checkpoint"));
    }
}
