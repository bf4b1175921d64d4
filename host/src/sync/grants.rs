//! Which directory a connection may grant its plugin (V1, P8): one that
//! exists, resolved to an absolute path when the connection is added (so a
//! later command run elsewhere means the same place), not a system
//! directory, and sharing nothing with what the host owns or with another
//! tenant's grant.

use std::path::{Path, PathBuf};

/// Directories a plugin is never granted, nor anything inside them.
const SYSTEM_TREES: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/run", "/sbin", "/sys",
    "/usr",
];

/// Directories never granted whole (their subdirectories may be).
const SYSTEM_ROOTS: &[&str] = &[
    "/", "/home", "/media", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var", "/var/lib",
    "/var/tmp", "/dev/shm",
];

/// Inside a system tree, but an ordinary place for data (tmpfs).
const DATA_UNDER_SYSTEM: &[&str] = &["/dev/shm"];

/// `dir` as an absolute, canonical path, if it may be granted at all.
pub fn resolve(dir: &str) -> Result<PathBuf, String> {
    crate::model::check_text(dir, false)?;
    let abs = std::fs::canonicalize(dir).map_err(|e| format!("{dir}: {e}"))?;
    if !abs.is_dir() {
        return Err(format!("{} is not a directory", abs.display()));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    if SYSTEM_ROOTS.iter().any(|r| abs == Path::new(r)) || home.as_deref() == Some(abs.as_path()) {
        return Err(format!(
            "{} is too wide a grant; give the connection a directory of its own",
            abs.display()
        ));
    }
    if SYSTEM_TREES.iter().any(|r| abs.starts_with(r))
        && !DATA_UNDER_SYSTEM.iter().any(|d| abs.starts_with(d))
    {
        return Err(format!(
            "{} is a system directory; give the connection a directory of its own",
            abs.display()
        ));
    }
    Ok(abs)
}

/// A path as canonical as it can be made: canonical when it exists, else
/// its existing parent's canonical form joined with the rest.
pub fn canonical_or_absolute(p: &Path) -> PathBuf {
    if let Ok(c) = std::fs::canonicalize(p) {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => canonical_or_absolute(parent).join(name),
        _ => abs,
    }
}

/// Whether one of the two paths is, or contains, the other.
pub fn overlap(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_system_and_too_wide_directories_are_refused() {
        for d in [
            "/",
            "/etc",
            "/usr/lib",
            "/proc/self",
            "/tmp",
            "/var",
            "/dev",
            "/dev/shm",
        ] {
            assert!(resolve(d).is_err(), "{d} was accepted");
        }
        // tmpfs is an ordinary place for data.
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        assert!(resolve(shm.path().to_str().unwrap()).is_ok());
        assert!(
            resolve("/nonexistent/x")
                .unwrap_err()
                .contains("/nonexistent/x")
        );
        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve(t.path().to_str().unwrap()).unwrap(),
            t.path().canonicalize().unwrap()
        );
        assert!(overlap(Path::new("/a/b"), Path::new("/a")));
        assert!(overlap(Path::new("/a"), Path::new("/a/b/c")));
        assert!(!overlap(Path::new("/a/bc"), Path::new("/a/b")));
    }
}
