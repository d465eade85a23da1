//! A small reader and writer for NumPy's `.npy` format (version 1, 2 and 3 headers), enough to
//! exchange `f32` tensors with other frameworks: `np.save("x.npy", x.astype(np.float32))`.
//!
//! ```text
//! "\x93NUMPY" major minor  header_len (u16 LE in v1, u32 LE in v2/3)  header  data
//! header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 3, 224, 224), }" + spaces + "\n"
//! ```
//!
//! Little-endian `f4` and `f8` (converted to `f32`) are read, C order only; every malformed
//! header is an [`NpyError`] naming the problem, never a panic.

use std::path::Path;

/// What can be wrong with an `.npy` file.
#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a supported `.npy` file.
    #[error("not a valid .npy file: {0}")]
    Format(String),
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// An `f32` array: its shape and its values in C (row-major) order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads an `.npy` file.
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray, NpyError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_npy(&bytes)
}

/// Parses the bytes of an `.npy` file.
pub fn parse_npy(bytes: &[u8]) -> Result<NpyArray, NpyError> {
    let bad = |m: String| NpyError::Format(m);
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("missing the \\x93NUMPY magic".into()));
    }
    let major = bytes[6];
    let (header_len, start): (usize, usize) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(bad("truncated header length".into()));
            }
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (len as usize, 12)
        }
        v => return Err(bad(format!("unsupported format version {v}"))),
    };
    let end = start
        .checked_add(header_len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| bad(format!("header of {header_len} bytes runs past the file")))?;
    let header =
        std::str::from_utf8(&bytes[start..end]).map_err(|_| bad("header is not text".into()))?;
    let descr = dict_value(header, "descr").ok_or_else(|| bad("header lacks 'descr'".into()))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let width = match descr {
        "<f4" | "=f4" | "f4" => 4,
        "<f8" | "=f8" | "f8" => 8,
        other => {
            return Err(bad(format!(
                "dtype {other} is not supported (little-endian float32 or float64 only)"
            )))
        }
    };
    let fortran = dict_value(header, "fortran_order")
        .ok_or_else(|| bad("header lacks 'fortran_order'".into()))?;
    if fortran.trim() != "False" {
        return Err(bad("Fortran-order arrays are not supported".into()));
    }
    let shape_text =
        dict_value(header, "shape").ok_or_else(|| bad("header lacks 'shape'".into()))?;
    let shape = parse_shape(shape_text).ok_or_else(|| bad(format!("bad shape {shape_text}")))?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad("shape overflows".into()))?;
    let body = &bytes[end..];
    if Some(body.len()) != count.checked_mul(width) {
        return Err(bad(format!(
            "shape {shape:?} needs {count} values of {width} bytes but the file holds {} bytes \
             of data",
            body.len()
        )));
    }
    let data = if width == 4 {
        body.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                f64::from_le_bytes(a) as f32
            })
            .collect()
    };
    Ok(NpyArray { shape, data })
}

/// The raw text of the value of `key` in a Python dict literal (up to the next top-level
/// comma or the closing brace).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0i32;
    for (i, ch) in rest.char_indices() {
        match ch {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
        if depth < 0 {
            return None;
        }
    }
    None
}

/// `(1, 3, 224, 224)`, `(5,)` or `()`.
fn parse_shape(text: &str) -> Option<Vec<usize>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

/// The bytes of a version-1 `.npy` file holding `data` (`f32`, C order) with `shape`.
///
/// # Panics
/// If `data.len()` is not the product of `shape`.
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "npy: shape and data disagree"
    );
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Pad so the data starts on a 64-byte boundary, the header ending in a newline.
    let total = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat(total.next_multiple_of(64) - total));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Writes `data` with `shape` as a version-1 `.npy` file.
pub fn write_npy(path: impl AsRef<Path>, shape: &[usize], data: &[f32]) -> Result<(), NpyError> {
    let path = path.as_ref();
    std::fs::write(path, npy_bytes(shape, data)).map_err(|source| NpyError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_numpy_header() {
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bytes = npy_bytes(&[2, 3, 4], &data);
        assert_eq!(
            (10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize) % 64,
            0
        );
        let a = parse_npy(&bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3, 4]);
        assert_eq!(a.data, data);
        let one = parse_npy(&npy_bytes(&[3], &data[..3])).unwrap();
        assert_eq!(one.shape, vec![3]);
    }

    /// `bytes` with the first `from` replaced by `to` (same length, so the layout stays).
    fn patched(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
        let at = bytes
            .windows(from.len())
            .position(|w| w == from.as_bytes())
            .expect("pattern present");
        let mut b = bytes.to_vec();
        b[at..at + to.len()].copy_from_slice(to.as_bytes());
        b
    }

    #[test]
    fn bad_files_are_errors() {
        let good = npy_bytes(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
        assert!(parse_npy(&good).is_ok());
        let mut huge_header = good.clone();
        huge_header[8] = 0xff;
        huge_header[9] = 0xff;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("no magic", b"NUMPY\x01\x00\x00\x00".to_vec()),
            ("truncated data", good[..good.len() - 1].to_vec()),
            ("header past the end", huge_header),
            ("integer dtype", patched(&good, "<f4", "<i8")),
            ("big-endian", patched(&good, "<f4", ">f4")),
            ("bad shape", patched(&good, "(2, 2)", "(2, x)")),
            ("fortran", patched(&good, "False", "True,")),
            ("no shape key", patched(&good, "'shape'", "'shapf'")),
            ("version 9", patched(&good, "NUMPY\x01", "NUMPY\x09")),
        ];
        for (what, c) in &cases {
            assert!(parse_npy(c).is_err(), "{what} was accepted");
        }
    }
}
