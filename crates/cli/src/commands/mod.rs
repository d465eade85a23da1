//! One module per subcommand: its clap arguments (with examples in the help) and its `run`.

pub mod bench;
pub mod eval;
pub mod heatmap;
pub mod infer;
pub mod memory;
pub mod summary;
pub mod train;

use crate::error::{fail, CliResult};

/// Parses `HxW` (or a single number for a square) into `(height, width)`.
pub fn parse_size(text: &str) -> Result<(usize, usize), String> {
    let parse = |s: &str| {
        s.trim()
            .parse::<usize>()
            .ok()
            .filter(|&v| (1..=16384).contains(&v))
    };
    let (h, w) = match text.split_once(['x', 'X']) {
        Some((h, w)) => (parse(h), parse(w)),
        None => (parse(text), parse(text)),
    };
    match (h, w) {
        (Some(h), Some(w)) => Ok((h, w)),
        _ => Err(format!(
            "'{text}' is not a size such as 224x224 or 32 (1..=16384)"
        )),
    }
}

/// Sets the number of worker threads (0 = one per core) for the whole process.
pub fn set_threads(threads: usize) -> CliResult<()> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| fail!("cannot start {threads} worker threads: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse() {
        assert_eq!(super::parse_size("224x200"), Ok((224, 200)));
        assert_eq!(super::parse_size("32"), Ok((32, 32)));
        for bad in ["", "0x5", "axb", "3x", "99999"] {
            assert!(super::parse_size(bad).is_err(), "{bad}");
        }
    }
}
