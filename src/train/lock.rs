//! One writer per run folder: `rca-gpu train` holds an exclusive OS lock on the folder's
//! `.lock` file for the whole run, so a second `train` or `--resume` on the same folder
//! refuses at once instead of interleaving its checkpoints with the first one's. The
//! holder writes its PID into `.lock.pid` (a file of its own: on Windows a locked file
//! cannot be read by others), which the refusal names.
//!
//! The OS releases the lock when the holder exits, however it exits, so a stale `.lock`
//! from a killed process does not block. Readers (`eval`, `infer`) take no lock: every
//! file a run writes is replaced atomically, so they read either the old file or the new.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The lock file inside a run folder.
pub const LOCK_FILE: &str = ".lock";
/// The holder's PID, beside it.
pub const PID_FILE: &str = ".lock.pid";

/// The exclusive lock on a run folder, held until dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    pid_path: PathBuf,
}

impl RunLock {
    /// Take the lock of the run folder `dir` (which must exist), or fail at once, naming
    /// the process that holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the run lock {}", path.display()))?;
        let pid_path = dir.join(PID_FILE);
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&pid_path)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok())
                    .map_or_else(|| "another process".to_string(), |p| format!("PID {p}"));
                bail!(
                    "{} is in use: {holder} is training into it (it holds {}). One run folder \
                     has one writer: wait for that run to finish or stop it, or train into \
                     another --out",
                    dir.display(),
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        crate::atomic::write(&pid_path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write {}", pid_path.display()))?;
        Ok(Self {
            _file: file,
            pid_path,
        })
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // The lock itself goes with the file handle; the PID would only mislead.
        let _ = std::fs::remove_file(&self.pid_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_folder_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        let e = RunLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains(&format!("PID {}", std::process::id())) && e.contains("is in use"),
            "{e}"
        );
        drop(first);
        assert!(!dir.path().join(PID_FILE).exists());
        RunLock::acquire(dir.path()).expect("free again once the holder let go");
    }

    #[test]
    fn a_stale_lock_file_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        // What a killed run leaves: the files, but no lock (the OS dropped it).
        std::fs::write(dir.path().join(LOCK_FILE), "").unwrap();
        std::fs::write(dir.path().join(PID_FILE), "999999\n").unwrap();
        let _lock = RunLock::acquire(dir.path()).unwrap();
        let pid = std::fs::read_to_string(dir.path().join(PID_FILE)).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }
}
