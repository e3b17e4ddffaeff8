//! Declares the `loom` cfg so `#[cfg(loom)]` passes the `unexpected_cfgs` lint (the crate
//! inherits the workspace lint table, which a crate may not extend with `[lints.rust]`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
