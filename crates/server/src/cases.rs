//! The case directory: case files are loaded from it at start, and cases
//! put or deleted through the API are written back to it (atomically), so
//! that what runs after a restart is what ran before.

use std::path::{Path, PathBuf};

use kordon_core::{validate_case, Case, CaseId};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CaseFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a case file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {report}")]
    Invalid { path: PathBuf, report: String },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "case id `{0}` must be {plain} to be stored as a file",
        plain = kordon_core::CaseId::PLAIN
    )]
    BadId(String),
}

/// Reads and validates one case file; every problem is in the error.
pub fn read_case_file(path: &Path) -> Result<Case, CaseFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| CaseFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let case = Case::from_json(&text).map_err(|source| CaseFileError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let report = validate_case(&case);
    if !report.errors.is_empty() {
        return Err(CaseFileError::Invalid {
            path: path.to_path_buf(),
            report: report
                .errors
                .iter()
                .map(|e| format!("\n  error: {e}"))
                .collect::<String>(),
        });
    }
    Ok(case)
}

/// The case files of `dir`, in file name order.
pub fn case_files(dir: &Path) -> Result<Vec<PathBuf>, CaseFileError> {
    let entries = std::fs::read_dir(dir).map_err(|source| CaseFileError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    Ok(files)
}

pub fn file_of(dir: &Path, id: &CaseId) -> Result<PathBuf, CaseFileError> {
    if !id.is_plain() {
        return Err(CaseFileError::BadId(id.to_string()));
    }
    Ok(dir.join(format!("{}.json", id.as_str().to_lowercase())))
}

/// Writes `case` to its file through a temporary file and a rename, so a
/// crash leaves the old file or the new one, never half of one.
pub fn write_case(dir: &Path, case: &Case) -> Result<PathBuf, CaseFileError> {
    let path = file_of(dir, &case.id)?;
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(case).expect("cases always serialise");
    let write = |p: &Path| std::fs::write(p, format!("{text}\n"));
    write(&tmp)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|source| CaseFileError::Write {
            path: path.clone(),
            source,
        })?;
    Ok(path)
}

/// Removes the case's file. The case may have come from a file of another
/// name; `source` is the file it was loaded from, if known.
pub fn delete_case(dir: &Path, id: &CaseId, source: Option<&Path>) -> Result<(), CaseFileError> {
    let path = match source {
        Some(path) => path.to_path_buf(),
        None => file_of(dir, id)?,
    };
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CaseFileError::Write { path, source }),
    }
}
