//! Training checkpoints: one safetensors file holding the weights under torchvision's names,
//! the optimizer's momentum buffers under `optimizer.momentum.`, the batch-norm
//! `num_batches_tracked` counters as `I64` scalars, and string metadata (format, version,
//! model spec, epoch, RNG state, the training settings needed to resume).
//!
//! The file is a [`densenet::weights::StateDict`], so PyTorch reads it with
//! `safetensors.torch.load_file` (drop the `optimizer.` keys to get a torchvision state dict).
//! Written atomically (temporary file, then rename), so a crash mid-write leaves the previous
//! checkpoint intact.

use crate::error::{fail, CliResult};
use crate::output::write_atomic;
use densenet::weights::{IntTensor, StateDict, Tensor};
use std::collections::BTreeMap;
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
        let mut dict = StateDict::new();
        for (name, (shape, values)) in &self.tensors {
            let t = Tensor::new(shape.clone(), values.clone())
                .map_err(|e| fail!("tensor {name}: {e}"))?;
            dict.insert(name.clone(), t);
        }
        for (name, &v) in &self.counters {
            let t = IntTensor::new(vec![], vec![v]).map_err(|e| fail!("counter {name}: {e}"))?;
            dict.insert_int(name.clone(), t);
        }
        for (k, v) in &self.meta {
            dict.set_metadata(k.clone(), v.clone());
        }
        dict.set_metadata("format", FORMAT);
        dict.set_metadata("format_version", FORMAT_VERSION.to_string());
        dict.to_bytes()
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
        let dict = StateDict::from_bytes(bytes)
            .map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
        let meta = dict.metadata().clone();
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
        let mut out = Checkpoint {
            meta,
            ..Default::default()
        };
        for (name, t) in dict.tensors() {
            out.tensors
                .insert(name.to_string(), (t.shape().to_vec(), t.data().to_vec()));
        }
        for (name, t) in dict.int_tensors() {
            match t.data() {
                [v] => out.counters.insert(name.to_string(), *v),
                _ => return Err(bad(format!("counter {name} is not a single value"))),
            };
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
        let plain = StateDict::new().to_bytes().unwrap();
        assert!(Checkpoint::from_bytes(&plain, p)
            .unwrap_err()
            .0
            .contains("not a densenet-rs checkpoint"));
    }
}
