use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// Set to 1 by `cargo xtask fuzz` for the parser fuzz targets (lb-userspace/fuzz), which never
/// load the program: the nested nightly BPF build would add minutes to their cold build, so
/// they embed empty objects instead. Never set it for lbd or the tests.
const SKIP_EBPF_BUILD: &str = "LB_SKIP_EBPF_BUILD";

/// Builds the XDP program (`lb-ebpf`) for the BPF target with the nightly toolchain and
/// bpf-linker; the object lands in OUT_DIR, where `dataplane::ebpf` embeds it.
fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed={SKIP_EBPF_BUILD}");
    if std::env::var_os(SKIP_EBPF_BUILD).is_some_and(|value| value == "1") {
        return empty_objects();
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|package| package.name.as_str() == "lb-ebpf")
        .ok_or_else(|| anyhow!("lb-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::default())
}

/// The objects lib.rs embeds, empty.
fn empty_objects() -> anyhow::Result<()> {
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR")?);
    for name in ["lb", "baselines"] {
        std::fs::write(out_dir.join(name), []).with_context(|| format!("writing {name}"))?;
    }
    println!(
        "cargo:warning={SKIP_EBPF_BUILD}=1: the XDP program is not built, its objects are empty"
    );
    Ok(())
}
