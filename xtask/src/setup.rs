//! Installs what building and testing need, when it is missing. Idempotent: with everything
//! present it only runs a few version checks.
//!
//! What a fresh machine of our kind lacks (see README): rust-src for the nightly toolchain
//! (to build `core` for the BPF target), LLVM 22 and bpf-linker built against it (the nightly
//! uses LLVM 22), ethtool and nftables (`nft`, used inside test namespaces only) for the
//! test topologies, keepalived (a VRRP peer for the interop tests), BIRD 2 (the router and the
//! balancers' BGP speaker in the scale-out test), cargo-fuzz and a C++
//! compiler for the parser fuzz targets, and wrk, nginx and HAProxy for the connection-rate
//! bench.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use crate::status;

const LLVM_PACKAGE: &str = "llvm-22-dev";
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
const BPF_LINKER_VERSION: &str = "0.13.0";
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn run() -> anyhow::Result<()> {
    nightly_with_rust_src()?;
    bpf_linker()?;
    apt_tool("ethtool", "ethtool")?;
    apt_tool("nft", "nftables")?;
    apt_tool("ip", "iproute2")?;
    // The VRRP interop tests run keepalived as lbd's peer, in a namespace.
    apt_tool("keepalived", "keepalived")?;
    // The scale-out test runs BIRD 2 as the router and as each balancer's BGP speaker.
    apt_tool("bird", "bird2")?;
    fuzz_tools()?;
    Ok(())
}

/// What the parser fuzz targets need: cargo-fuzz, and a C++ compiler for libFuzzer (which
/// libfuzzer-sys builds from source). They build with the nightly toolchain checked above.
fn fuzz_tools() -> anyhow::Result<()> {
    apt_tool("g++", "g++")?;
    if succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    status(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
        ]),
    )?;
    if !succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        bail!("cargo-fuzz was installed but cargo does not find it: add ~/.cargo/bin to PATH");
    }
    Ok(())
}

/// What only `cargo xtask bench` (and `setup`) needs on top: the connection-rate part's load
/// generator (wrk), the reals' server (nginx) and one of lbd's references (HAProxy).
pub fn bench_tools() -> anyhow::Result<()> {
    apt_tool("wrk", "wrk")?;
    apt_tool("nginx", "nginx")?;
    apt_tool("haproxy", "haproxy")?;
    Ok(())
}

fn nightly_with_rust_src() -> anyhow::Result<()> {
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        bail!(
            "the nightly toolchain is missing (it builds the XDP program). Install the one whose \
             LLVM matches {LLVM_PACKAGE}: `rustup toolchain install nightly --component rust-src`"
        );
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if !installed.lines().any(|line| line.starts_with("rust-src")) {
        eprintln!("setup: adding rust-src to the nightly toolchain");
        status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        return Ok(());
    }
    // llvm-config alone is not enough: it comes with llvm-22, the libraries with llvm-22-dev.
    if !package_installed(LLVM_PACKAGE) {
        apt_install(LLVM_PACKAGE)?;
    }
    eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    let path = format!("{LLVM_BIN}:{}", std::env::var("PATH").unwrap_or_default());
    status(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .env("PATH", path)
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", "llvm-22"]),
    )?;
    if !succeeds(Command::new("bpf-linker").arg("--version")) {
        bail!("bpf-linker was installed but is not on PATH: add ~/.cargo/bin to PATH");
    }
    Ok(())
}

fn apt_tool(binary: &str, package: &str) -> anyhow::Result<()> {
    if succeeds(Command::new(binary).arg("-V")) || succeeds(Command::new(binary).arg("--version")) {
        return Ok(());
    }
    // wrk and haproxy have no version flag that exits 0.
    if package_installed(package) {
        return Ok(());
    }
    apt_install(package)
}

fn apt_install(package: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "{package} is missing; install it as root: `apt-get update && apt-get install -y {package}`"
        );
    }
    eprintln!("setup: installing {package}");
    status(Command::new("apt-get").args(["update", "-q"]))?;
    // The packages are programs the tests and the bench run in namespaces of their own; their
    // services (keepalived, BIRD, nginx, HAProxy) must not start on the host as they install.
    let _no_services = NoServiceStarts::hold()?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "-q", package])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Debian's `policy-rc.d` (exit 101: "action forbidden"), which maintainer scripts ask before
/// starting a service; removed on drop, unless it was there before.
struct NoServiceStarts(Option<&'static str>);

impl NoServiceStarts {
    const PATH: &'static str = "/usr/sbin/policy-rc.d";

    fn hold() -> anyhow::Result<Self> {
        if std::path::Path::new(Self::PATH).exists() {
            return Ok(Self(None));
        }
        std::fs::write(Self::PATH, "#!/bin/sh\nexit 101\n")
            .with_context(|| format!("writing {}", Self::PATH))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(Self::PATH, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", Self::PATH))?;
        Ok(Self(Some(Self::PATH)))
    }
}

impl Drop for NoServiceStarts {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn package_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_ok_and(|status| status.trim() == "install ok installed")
}

fn succeeds(command: &mut Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn output(command: &mut Command) -> anyhow::Result<String> {
    let described = format!("{command:?}");
    let output = command
        .output()
        .with_context(|| format!("running {described}"))?;
    if !output.status.success() {
        bail!(
            "{described} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
