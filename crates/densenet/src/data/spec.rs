//! The `--data` argument: which data set to load.

use super::{digits, load_cifar10, load_cifar100, load_fashion_mnist, load_folder, load_mnist};
use super::{DataError, Splits, DEFAULT_FOLDER_SIZE};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A data set named on the command line.
///
/// Syntax: `digits` | `cifar10:DIR` | `cifar100:DIR` | `mnist:DIR` | `fashion-mnist:DIR` |
/// `folder:DIR` | `folder:DIR,size=S`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSpec {
    /// The bundled 8×8 digits (no files needed).
    Digits,
    /// CIFAR-10, binary version, in this folder.
    Cifar10(PathBuf),
    /// CIFAR-100, binary version, in this folder.
    Cifar100(PathBuf),
    /// MNIST IDX files in this folder.
    Mnist(PathBuf),
    /// Fashion-MNIST IDX files in this folder.
    FashionMnist(PathBuf),
    /// An image folder with one subfolder per class, images brought to `size×size`.
    Folder {
        /// The folder.
        dir: PathBuf,
        /// Side length of the square the images are resized and cropped to.
        size: usize,
    },
}

impl DataSpec {
    /// Reads the data set from disk (or from the library, for the digits).
    pub fn load(&self) -> Result<Splits, DataError> {
        match self {
            DataSpec::Digits => Ok(digits::load_digits()),
            DataSpec::Cifar10(dir) => load_cifar10(dir),
            DataSpec::Cifar100(dir) => load_cifar100(dir),
            DataSpec::Mnist(dir) => load_mnist(dir),
            DataSpec::FashionMnist(dir) => load_fashion_mnist(dir),
            DataSpec::Folder { dir, size } => load_folder(dir, *size),
        }
    }

    /// Whether random crops with horizontal flips suit this data (natural images: yes; digits
    /// and characters, whose mirror image is another symbol or none: no).
    pub fn flips_are_natural(&self) -> bool {
        matches!(
            self,
            DataSpec::Cifar10(_) | DataSpec::Cifar100(_) | DataSpec::Folder { .. }
        )
    }
}

impl FromStr for DataSpec {
    type Err = DataError;

    fn from_str(text: &str) -> Result<Self, DataError> {
        if text == "digits" {
            return Ok(DataSpec::Digits);
        }
        let Some((kind, rest)) = text.split_once(':') else {
            return Err(DataError::Invalid(format!(
                "unknown data set '{text}' (expected digits, cifar10:DIR, cifar100:DIR, mnist:DIR, \
                 fashion-mnist:DIR or folder:DIR[,size=S])"
            )));
        };
        if rest.is_empty() {
            return Err(DataError::Invalid(format!(
                "data set '{text}' needs a folder after '{kind}:'"
            )));
        }
        let dir = PathBuf::from(rest);
        match kind {
            "cifar10" => Ok(DataSpec::Cifar10(dir)),
            "cifar100" => Ok(DataSpec::Cifar100(dir)),
            "mnist" => Ok(DataSpec::Mnist(dir)),
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" => Ok(DataSpec::FashionMnist(dir)),
            "folder" => {
                let (dir, size) = match rest.rsplit_once(",size=") {
                    Some((dir, size)) => {
                        let size = size.parse::<usize>().ok().filter(|s| (1..=4096).contains(s)).ok_or_else(|| {
                            DataError::Invalid(format!("folder image size '{size}' is not a number in 1..=4096"))
                        })?;
                        (PathBuf::from(dir), size)
                    }
                    None => (dir, DEFAULT_FOLDER_SIZE),
                };
                if dir.as_os_str().is_empty() {
                    return Err(DataError::Invalid(format!(
                        "data set '{text}' needs a folder after 'folder:'"
                    )));
                }
                Ok(DataSpec::Folder { dir, size })
            }
            "digits" => Err(DataError::Invalid("the digits are bundled: write just 'digits'".into())),
            other => Err(DataError::Invalid(format!(
                "unknown data set kind '{other}' (expected cifar10, cifar100, mnist, fashion-mnist or folder)"
            ))),
        }
    }
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::Digits => write!(f, "digits"),
            DataSpec::Cifar10(d) => write!(f, "cifar10:{}", d.display()),
            DataSpec::Cifar100(d) => write!(f, "cifar100:{}", d.display()),
            DataSpec::Mnist(d) => write!(f, "mnist:{}", d.display()),
            DataSpec::FashionMnist(d) => write!(f, "fashion-mnist:{}", d.display()),
            // A folder whose name holds ",size=" keeps its size, or it would parse back as one.
            DataSpec::Folder { dir, size }
                if *size == DEFAULT_FOLDER_SIZE && !dir.to_string_lossy().contains(",size=") =>
            {
                write!(f, "folder:{}", dir.display())
            }
            DataSpec::Folder { dir, size } => write!(f, "folder:{},size={size}", dir.display()),
        }
    }
}
