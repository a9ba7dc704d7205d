//! Output files that never look complete before they are: a [`StagedFile`] is
//! written as `.NAME.partial` beside its final name, renamed to the final name by
//! [`StagedFile::commit`], renamed to `STEM.incomplete.EXT` by
//! [`StagedFile::keep_incomplete`] (a run that failed part-way keeps what it made,
//! clearly marked), and removed if dropped before either.

use std::path::{Path, PathBuf};

use super::SinkError;

/// A file being written under a temporary name.
#[derive(Debug)]
pub struct StagedFile {
    final_path: PathBuf,
    temp_path: PathBuf,
    done: bool,
}

impl StagedFile {
    /// Creates the parent folders and an empty temporary file, so an unwritable
    /// destination fails now, before any work.
    pub fn create(final_path: &Path) -> Result<Self, SinkError> {
        let io = |source| SinkError::Io {
            path: final_path.to_path_buf(),
            source,
        };
        let name = final_path.file_name().ok_or_else(|| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a file name",
            ))
        })?;
        let dir = final_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if dir.is_file() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is a file", dir.display()),
            )));
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        if final_path.is_dir() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "is a directory",
            )));
        }
        let temp_path = dir.join(format!(".{}.partial", name.to_string_lossy()));
        std::fs::File::create(&temp_path).map_err(io)?;
        Ok(Self {
            final_path: final_path.to_path_buf(),
            temp_path,
            done: false,
        })
    }

    /// Where to write while the file is incomplete.
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// The name the file gets once complete.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Moves the finished file to its final name.
    pub fn commit(mut self) -> Result<PathBuf, SinkError> {
        self.rename_to(self.final_path.clone())
    }

    /// Keeps a file that is valid but incomplete under `STEM.incomplete.EXT`.
    pub fn keep_incomplete(mut self) -> Result<PathBuf, SinkError> {
        let stem = self
            .final_path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let name = match self.final_path.extension() {
            Some(ext) => format!("{stem}.incomplete.{}", ext.to_string_lossy()),
            None => format!("{stem}.incomplete"),
        };
        self.rename_to(self.final_path.with_file_name(name))
    }

    fn rename_to(&mut self, to: PathBuf) -> Result<PathBuf, SinkError> {
        std::fs::rename(&self.temp_path, &to).map_err(|source| SinkError::Io {
            path: to.clone(),
            source,
        })?;
        self.done = true;
        Ok(to)
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.temp_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_renames_and_drop_removes() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/out.jsonl");
        let staged = StagedFile::create(&target).unwrap();
        std::fs::write(staged.temp_path(), b"x").unwrap();
        assert!(!target.exists());
        assert_eq!(staged.commit().unwrap(), target);
        assert_eq!(std::fs::read(&target).unwrap(), b"x");

        let other = dir.path().join("other.mp4");
        let staged = StagedFile::create(&other).unwrap();
        let temp = staged.temp_path().to_path_buf();
        drop(staged);
        assert!(!temp.exists() && !other.exists());
    }

    #[test]
    fn incomplete_files_are_marked() {
        let dir = tempfile::tempdir().unwrap();
        let staged = StagedFile::create(&dir.path().join("out.mp4")).unwrap();
        let kept = staged.keep_incomplete().unwrap();
        assert_eq!(kept, dir.path().join("out.incomplete.mp4"));
        assert!(kept.exists());
    }

    #[test]
    fn unwritable_destination_fails_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        let err = StagedFile::create(&file.join("out.mp4"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("cannot write"), "{err}");
        let err = StagedFile::create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
    }
}
