//! The `densenet` command (work in progress: the subcommands land with the network).
#![allow(dead_code)]

mod checkpoint;
mod error;
mod metrics;
mod output;
mod plot;
mod progress;

fn main() {
    println!("densenet {}", env!("CARGO_PKG_VERSION"));
}
