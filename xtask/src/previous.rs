//! The `lbd` of an earlier layout, for the upgrade test (`tests/tests/e2e_upgrade.rs`): built
//! once from a fixed commit of this repository's history into `target/previous/`, and handed
//! to the tests as `LB_PREVIOUS_LBD` (or, when it cannot be built, the reason as
//! `LB_PREVIOUS_LBD_MISSING`).
//!
//! The commit is the last one whose maps a restart migrates (`LB_FLOWS_V1`, the LRU flow
//! table without connection states): an upgrade from it must keep every connection. Move it
//! forward when a layout changes again.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The last commit before connection tracking (issue 6's final state).
pub const PREVIOUS_COMMIT: &str = "63613e344b458b625a6e52a2c1cdaa861c91744e";

/// The previous `lbd` for the tests, or why there is none: a clone without that commit in its
/// history (a shallow one) cannot build it, and the upgrade test then says so and skips,
/// rather than failing every other test with it.
pub fn for_tests(root: &Path) -> anyhow::Result<Result<PathBuf, String>> {
    if !has_commit(root)? {
        let reason = format!(
            "commit {PREVIOUS_COMMIT} (the layout the upgrade test starts from) is not in \
             this clone's history; fetch it (`git fetch --unshallow`) to run the upgrade test"
        );
        eprintln!("xtask: {reason}");
        return Ok(Err(reason));
    }
    build(root).map(Ok)
}

fn has_commit(root: &Path) -> anyhow::Result<bool> {
    Ok(std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["cat-file", "-e", &format!("{PREVIOUS_COMMIT}^{{commit}}")])
        .stderr(std::process::Stdio::null())
        .status()
        .context("running git")?
        .success())
}

/// Builds the previous `lbd` if it is not built yet; returns its path.
fn build(root: &Path) -> anyhow::Result<PathBuf> {
    let dir = root.join("target").join("previous");
    let source = dir.join(&PREVIOUS_COMMIT[..12]);
    let binary = dir.join("target").join("debug").join("lbd");
    if binary.is_file() && source.is_dir() {
        return Ok(binary);
    }
    if source.exists() {
        std::fs::remove_dir_all(&source)
            .with_context(|| format!("removing {}", source.display()))?;
    }
    std::fs::create_dir_all(&source).with_context(|| format!("creating {}", source.display()))?;
    // `git archive`, not a worktree: a plain copy of the files, with no link back to this
    // repository's metadata.
    let archive = format!(
        "git -C '{}' archive --format=tar {PREVIOUS_COMMIT} | tar -x -C '{}'",
        root.display(),
        source.display()
    );
    crate::status(std::process::Command::new("sh").args(["-c", &archive]))?;
    eprintln!(
        "xtask: building the lbd of {} for the upgrade test (once)",
        &PREVIOUS_COMMIT[..12]
    );
    crate::status(
        crate::cargo()
            .current_dir(&source)
            .env("CARGO_TARGET_DIR", dir.join("target"))
            // Only the binary is needed: no debug info keeps the disk it takes small.
            .env("CARGO_PROFILE_DEV_DEBUG", "false")
            .args(["build", "--quiet", "--bin", "lbd"]),
    )?;
    Ok(binary)
}
