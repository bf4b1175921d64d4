//! Builds connector plugins for `wasm32-wasip2` from a build script.
//!
//! The way Spin builds its test programs: a nested `cargo build` of the
//! plugin workspace, into a target directory of its own (so it never waits on
//! the outer build's lock), with the outer build's environment removed (so
//! host flags do not leak into the guest build). When the target is missing,
//! it is installed with rustup; when that fails, the build stops with one line
//! that says what to run.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every plugin is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Builds `packages` of the cargo workspace at `workspace_dir` in release mode
/// for [`TARGET`] and returns each one's component path, in order.
///
/// Emits `cargo:rerun-if-changed` for `workspace_dir` and every path in
/// `also_watch` (the SDK and the WIT contract, typically).
///
/// # Panics
/// When the target cannot be installed or the build fails; in a build script
/// that is how a failure is reported.
pub fn build(workspace_dir: &Path, packages: &[&str], also_watch: &[&Path]) -> Vec<PathBuf> {
    for dir in std::iter::once(workspace_dir).chain(also_watch.iter().copied()) {
        watch(dir);
    }
    build_into(workspace_dir, packages, &wasm_target_dir())
}

/// Builds `packages` like [`build`], into `target_dir`, from anywhere (a
/// test, say), without printing build-script directives.
///
/// # Panics
/// When the target cannot be installed or the build fails.
pub fn build_into(workspace_dir: &Path, packages: &[&str], target_dir: &Path) -> Vec<PathBuf> {
    ensure_target();
    let target_dir = target_dir.to_path_buf();
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(workspace_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for p in packages {
        cmd.arg("-p").arg(p);
    }
    scrub_env(&mut cmd);
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run cargo to build the plugins: {e}"));
    if !out.status.success() {
        panic!(
            "building the plugins in {} for {TARGET} failed:\n{}",
            workspace_dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    packages
        .iter()
        .map(|p| {
            let path = target_dir
                .join(TARGET)
                .join("release")
                .join(format!("{}.wasm", p.replace('-', "_")));
            assert!(
                path.exists(),
                "the build did not produce {}",
                path.display()
            );
            path
        })
        .collect()
}

/// Where plugin builds go: `<target>/wasm`, beside the outer build's output.
fn wasm_target_dir() -> PathBuf {
    if let Ok(dir) = env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("wasm");
    }
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set in build scripts"));
    out.ancestors()
        .nth(4)
        .map(|t| t.join("wasm"))
        .expect("OUT_DIR is at least four levels deep")
}

fn watch(dir: &Path) {
    // Cargo scans a directory recursively for changes; naming the sources
    // (not target/) keeps a nested build's output from retriggering this one.
    let Ok(entries) = std::fs::read_dir(dir) else {
        println!("cargo:rerun-if-changed={}", dir.display());
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        println!("cargo:rerun-if-changed={}", entry.path().display());
    }
}

/// Installs the wasm32-wasip2 target when the toolchain lacks it.
fn ensure_target() {
    if let Err(m) = install_target() {
        panic!("{m}");
    }
}

/// Installs the wasm32-wasip2 target with rustup when the toolchain lacks
/// it; says what to run when that fails.
pub fn install_target() -> Result<(), String> {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(root) = &sysroot
        && root.join("lib/rustlib").join(TARGET).exists()
    {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", TARGET]);
    scrub_env(&mut add);
    match add.status() {
        Ok(s) if s.success() => Ok(()),
        _ => Err(format!(
            "the {TARGET} target is missing: run `rustup target add {TARGET}`"
        )),
    }
}

/// Removes what an outer cargo set for its own build, so the nested build is
/// an ordinary one for the wasm target. (`CARGO_HOME` and a target directory
/// the user chose stay.)
pub fn scrub_env(cmd: &mut Command) {
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let outer = (key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_TARGET_DIR")
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
            || key == "RUSTDOCFLAGS"
            || key == "TARGET"
            || key == "HOST"
            || key == "OUT_DIR"
            || key == "OPT_LEVEL"
            || key == "PROFILE"
            || key == "DEBUG"
            || key == "NUM_JOBS";
        if outer {
            cmd.env_remove(key.as_ref());
        }
    }
}
