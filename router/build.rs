//! The git revision for `paddock_build_info{revision}`: `PADDOCK_GIT_REVISION` if set (a
//! build from a tarball or a package can name it), else `git rev-parse --short HEAD` in the
//! source tree, else `unknown`. Never fails the build: no git, or no repository, is
//! `unknown`. Rebuilt when HEAD moves: rerun on `.git/HEAD` and on the ref it points to
//! (and `packed-refs`), found through git itself, so worktrees work too.

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(dir).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn rerun_if_exists(path: &Path) {
    // A path that does not exist would make Cargo run this script on every build.
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PADDOCK_GIT_REVISION");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let from_env = std::env::var("PADDOCK_GIT_REVISION").ok().filter(|s| !s.trim().is_empty());
    let revision = match from_env {
        Some(r) => r.trim().to_string(),
        None => {
            if let Some(git_dir) = git(&dir, &["rev-parse", "--absolute-git-dir"]) {
                let git_dir = PathBuf::from(git_dir);
                let head = git_dir.join("HEAD");
                rerun_if_exists(&head);
                let common = git(&dir, &["rev-parse", "--git-common-dir"])
                    .map(|c| dir.join(c))
                    .unwrap_or_else(|| git_dir.clone());
                let target = std::fs::read_to_string(&head)
                    .ok()
                    .and_then(|h| h.trim().strip_prefix("ref: ").map(|r| r.trim().to_string()));
                if let Some(r) = target {
                    rerun_if_exists(&git_dir.join(&r));
                    rerun_if_exists(&common.join(&r));
                }
                rerun_if_exists(&common.join("packed-refs"));
            }
            git(&dir, &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".to_string())
        }
    };
    // Only characters that need no escaping in a label value or an environment variable.
    let clean: String =
        revision.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.+".contains(*c)).collect();
    let clean = if clean.is_empty() { "unknown".to_string() } else { clean };
    println!("cargo:rustc-env=PADDOCK_GIT_REVISION={clean}");
}
