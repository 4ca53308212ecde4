use which::which;

/// The crate has an undeclared dependency on the `bpf-linker` binary: rebuild when it changes.
fn main() {
    let bpf_linker =
        which("bpf-linker").expect("bpf-linker not found on PATH: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
