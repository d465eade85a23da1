//! The `densenet` command.

fn main() {
    println!("densenet {}", env!("CARGO_PKG_VERSION"));
}
