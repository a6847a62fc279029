//! Atomic file replacement. The data goes to a temporary file in the target's
//! directory, is flushed to disk, and only then takes the target's name, so a
//! failed or killed save never leaves a partial file under that name.
//!
//! On Linux the temporary file is anonymous (`O_TMPFILE`): it has no name
//! while it is written, so a killed process leaves nothing behind, and a
//! target name of any valid length works. It is named (`linkat`) only once
//! complete, and renamed over the target when one exists. Where the OS or
//! the filesystem lacks `O_TMPFILE`, it is a short named file
//! `.vitrust-<pid>-<n>.tmp`; one left by a process that no longer runs is
//! removed by the next save into that directory.
//!
//! A new file gets `0666 & !umask` (as any program's new file); a replaced
//! file keeps its permission bits (not setuid, setgid or sticky).

use crate::sys::os::alive;
#[cfg(target_os = "linux")]
use crate::sys::os::linux;
use crate::{Error, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// Prefix and suffix of the named temporary files.
const TEMP_PREFIX: &str = ".vitrust-";
const TEMP_SUFFIX: &str = ".tmp";

/// Writes `path` atomically with `write`, which gets a buffered writer.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let temp = TempFile::create(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, temp.file());
    write(&mut w)
        .and_then(|()| w.flush())
        .map_err(|e| temp.io("cannot write", e))?;
    drop(w);
    temp.commit()
}

/// A file being written in `path`'s directory that takes the name `path`
/// only on [`commit`](Self::commit); dropped uncommitted, it leaves nothing.
/// It is open for reading and writing, so a writer may seek back.
pub struct TempFile {
    file: File,
    /// The temporary name where the file could not be anonymous.
    named: Option<PathBuf>,
    path: PathBuf,
    /// The permission bits of the file `path` replaces, if it exists.
    replaced: Option<u32>,
}

impl TempFile {
    /// Starts the file that will be `path` (stale temporary files of dead
    /// processes in that directory are removed first).
    pub fn create(path: &Path) -> Result<Self> {
        if path.file_name().is_none() {
            return Err(Error::invalid(format!(
                "{}: not a file path",
                path.display()
            )));
        }
        let dir = parent(path);
        remove_stale(dir);
        let replaced = replaced_mode(path);
        let (file, named) = create_temp(dir, replaced.is_some())
            .map_err(|e| Error::io(format!("{}: cannot create: {e}", path.display())))?;
        Ok(Self {
            file,
            named,
            path: path.to_path_buf(),
            replaced,
        })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// An I/O error naming the target.
    pub fn io(&self, what: &str, e: std::io::Error) -> Error {
        Error::io(format!("{}: {what}: {e}", self.path.display()))
    }

    /// Sets the final permissions, flushes the data to disk and gives the
    /// file its name, replacing any file there. On failure nothing is left
    /// and an existing file under that name is untouched.
    pub fn commit(mut self) -> Result<()> {
        let named = self.named.take();
        let result = self.finish(named.as_deref());
        if result.is_err() {
            if let Some(tmp) = &named {
                let _ = std::fs::remove_file(tmp);
            }
            return result;
        }
        // Make the new name itself durable; not every platform can sync a directory.
        let _ = File::open(parent(&self.path)).and_then(|d| d.sync_all());
        Ok(())
    }

    fn finish(&self, named: Option<&Path>) -> Result<()> {
        if let Some(mode) = self.replaced {
            set_mode(&self.file, mode).map_err(|e| self.io("cannot write", e))?;
        }
        crate::cancel::check()?;
        self.file
            .sync_all()
            .map_err(|e| self.io("cannot sync", e))?;
        crate::cancel::check()?;
        commit(&self.file, named, parent(&self.path), &self.path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(tmp) = &self.named {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The permission bits of the file `path` replaces, if it exists.
fn replaced_mode(path: &Path) -> Option<u32> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Some(m.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    Some(u32::from(m.permissions().readonly()))
}

#[cfg(unix)]
fn set_mode(file: &File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(file: &File, readonly: u32) -> std::io::Result<()> {
    let mut p = file.metadata()?.permissions();
    p.set_readonly(readonly == 1);
    file.set_permissions(p)
}

/// A temporary file in `dir`: anonymous where possible (`None`), else named.
fn create_temp(dir: &Path, private: bool) -> std::io::Result<(File, Option<PathBuf>)> {
    #[cfg(target_os = "linux")]
    if let Some(f) = linux::anonymous(dir) {
        return Ok((f, None));
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // A file that replaces another starts private: its final bits are set
        // once written. A new one gets the usual bits from the umask.
        opts.mode(if private { 0o600 } else { 0o666 });
    }
    let _ = private;
    loop {
        let tmp = dir.join(temp_name());
        match opts.open(&tmp) {
            Ok(f) => return Ok((f, Some(tmp))),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `.vitrust-<pid>-<n>.tmp`: short, so any valid target name fits beside it.
pub(super) fn temp_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{TEMP_PREFIX}{}-{n}{TEMP_SUFFIX}", std::process::id())
}

/// The pid in a temporary file's name, if `name` is one.
fn temp_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TEMP_PREFIX)?.strip_suffix(TEMP_SUFFIX)?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Removes temporary files in `dir` left by processes that no longer run.
/// Best effort: a directory that cannot be listed is left as it is.
pub(super) fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_pid) else {
            continue;
        };
        if pid != std::process::id() && !alive(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Gives the finished temporary file the name `path`.
fn commit(file: &File, named: Option<&Path>, dir: &Path, path: &Path) -> Result<()> {
    let io = |what: &str, e: std::io::Error| Error::io(format!("{}: {what}: {e}", path.display()));
    let tmp = match named {
        Some(tmp) => tmp.to_path_buf(),
        None => {
            #[cfg(target_os = "linux")]
            {
                // No file under that name yet: link straight to it, atomically.
                match linux::link(file, path) {
                    Ok(()) => return Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io("cannot create", e)),
                }
                let tmp = dir.join(temp_name());
                linux::link(file, &tmp).map_err(|e| io("cannot create", e))?;
                tmp
            }
            #[cfg(not(target_os = "linux"))]
            unreachable!("anonymous temporary files exist only on Linux")
        }
    };
    let _ = (file, dir);
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("cannot replace", e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised() {
        let name = temp_name();
        assert_eq!(temp_pid(&name), Some(std::process::id()));
        assert!(name.len() < 40);
        for other in [
            ".vitrust-12.tmp",
            ".vitrust-a-1.tmp",
            "vitrust-1-2.tmp",
            ".vitrust-1-2.tmpx",
        ] {
            assert_eq!(temp_pid(other), None, "{other}");
        }
    }

    #[test]
    fn stale_temp_files_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A pid above any pid_max the kernel allows (2^22) runs nowhere.
        let dead = dir.path().join(".vitrust-4194399-0.tmp");
        let live = dir
            .path()
            .join(format!(".vitrust-{}-999.tmp", std::process::id()));
        let other = dir.path().join(".vitrust-x.tmp");
        for p in [&dead, &live, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        write_atomic(&dir.path().join("f"), |w| w.write_all(b"data")).unwrap();
        assert!(!dead.exists());
        assert!(live.exists() && other.exists());
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"data");
    }

    #[test]
    fn a_failed_write_leaves_nothing_and_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"old").unwrap();
        let err = write_atomic(&path, |_| Err(std::io::Error::other("boom"))).unwrap_err();
        assert!(err.msg.contains("boom"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_named_fallback_replaces_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"old").unwrap();
        let tmp = dir.path().join(temp_name());
        let mut file = std::fs::File::create_new(&tmp).unwrap();
        file.write_all(b"new").unwrap();
        let temp = TempFile {
            file,
            named: Some(tmp),
            path: path.clone(),
            replaced: None,
        };
        temp.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_uncommitted_named_file_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join(temp_name());
        let file = std::fs::File::create_new(&tmp).unwrap();
        drop(TempFile {
            file,
            named: Some(tmp),
            path: dir.path().join("f"),
            replaced: None,
        });
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn long_names_fit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n".repeat(255));
        write_atomic(&path, |w| w.write_all(b"a")).unwrap();
        write_atomic(&path, |w| w.write_all(b"b")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"b");
    }

    #[cfg(unix)]
    #[test]
    fn modes_follow_the_umask_and_drop_special_bits() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let umask = crate::sys::os::umask();
        write_atomic(&path, |w| w.write_all(b"a")).unwrap();
        assert_eq!(mode(&path), 0o666 & !umask);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o4750)).unwrap();
        write_atomic(&path, |w| w.write_all(b"b")).unwrap();
        assert_eq!(mode(&path), 0o750);
    }
}
