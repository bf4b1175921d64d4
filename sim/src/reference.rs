//! Where the ERPs' reference files are: `shared/reference/` beside the
//! repository. They are read in place, never copied (their notice asks so).

use std::path::{Path, PathBuf};

/// `$LEDGERBRIDGE_REFERENCE/<rel>`, else `shared/reference/<rel>` found by
/// walking up from this crate and from the current directory.
pub fn file(rel: &Path) -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("LEDGERBRIDGE_REFERENCE") {
        let p = Path::new(&dir).join(rel);
        if p.is_file() {
            return Ok(p);
        }
        anyhow::bail!(
            "LEDGERBRIDGE_REFERENCE is set but {} is not a file",
            p.display()
        );
    }
    let mut tried: Vec<PathBuf> = Vec::new();
    let starts = [
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
        std::env::current_dir().ok(),
    ];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            let p = dir.join("shared").join("reference").join(rel);
            if !tried.contains(&p) {
                tried.push(p);
            }
        }
    }
    match tried.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => anyhow::bail!(
            "{} was not found; looked at {} (set LEDGERBRIDGE_REFERENCE to the folder holding it)",
            rel.display(),
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
