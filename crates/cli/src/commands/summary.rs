//! `densenet summary`: the per-stage table of a model, like Table 1 of the paper.

use crate::commands::parse_size;
use crate::console::out;
use crate::error::{fail, CliResult};
use densenet::config::{DenseNetConfig, Stem};

/// Arguments of `densenet summary`.
#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    densenet summary --model densenet121                 ImageNet DenseNet-121 at 224x224\n  \
    densenet summary --model densenet_bc100_k12          CIFAR DenseNet-BC (L=100, k=12) at 32x32\n  \
    densenet summary --model bc:k=12,blocks=16-16-16 --size 64x64")]
pub struct SummaryArgs {
    /// A preset (densenet121, densenet169, densenet201, densenet161, densenet264,
    /// densenet40_k12, densenet100_k12, densenet100_k24, densenet_bc100_k12,
    /// densenet_bc250_k24, densenet_bc190_k40) or a spec such as bc:k=12,blocks=16-16-16.
    #[arg(long)]
    pub model: String,
    /// Input size HxW (or one number for a square). Default: 224x224 for ImageNet models,
    /// 32x32 for CIFAR ones.
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(usize, usize)>,
}

/// Prints the table.
pub fn run(args: SummaryArgs) -> CliResult<()> {
    let cfg: DenseNetConfig = args
        .model
        .parse()
        .map_err(|e| fail!("--model {}: {e}", args.model))?;
    let (h, w) = args.size.unwrap_or(match cfg.stem {
        Stem::ImageNet => (224, 224),
        Stem::Cifar => (32, 32),
    });
    let summary = cfg.summary(h, w)?;
    out!("model {}  ({})", args.model, cfg.spec());
    out!("input {}x{}x{}", cfg.in_channels, h, w);
    out!();
    out!(
        "{:<14} {:>16} {:>7} {:>14} {:>16} {:>14}",
        "stage",
        "output (CxHxW)",
        "layers",
        "parameters",
        "multiply-adds",
        "activations"
    );
    let rule = "-".repeat(14 + 16 + 7 + 14 + 16 + 14 + 5);
    out!("{rule}");
    for row in &summary.rows {
        let (c, oh, ow) = row.output;
        out!(
            "{:<14} {:>16} {:>7} {:>14} {:>16} {:>14}",
            row.stage,
            format!("{c}x{oh}x{ow}"),
            row.layers,
            group(row.params),
            group(row.macs),
            bytes(row.activation_bytes)
        );
    }
    out!("{rule}");
    let layers: usize = summary.rows.iter().map(|r| r.layers).sum();
    out!(
        "{:<14} {:>16} {:>7} {:>14} {:>16} {:>14}",
        "total",
        "",
        layers,
        group(summary.total_params),
        group(summary.total_macs),
        bytes(summary.total_activation_bytes)
    );
    out!();
    out!(
        "{} parameters ({:.2} M), {:.3} G multiply-adds per image, {} of activations kept for \
         training per image (memory-efficient plan)",
        group(summary.total_params),
        summary.total_params as f64 / 1e6,
        summary.total_macs as f64 / 1e9,
        bytes(summary.total_activation_bytes)
    );
    Ok(())
}

/// `7978856` as `7,978,856`.
pub fn group(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Bytes in KiB/MiB/GiB with one decimal.
pub fn bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.1} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b} B")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_group_by_thousands() {
        assert_eq!(super::group(7_978_856), "7,978,856");
        assert_eq!(super::group(999), "999");
        assert_eq!(super::group(1000), "1,000");
        assert_eq!(super::bytes(2048), "2.0 KiB");
    }
}
