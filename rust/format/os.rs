//! The system calls the format needs that std does not wrap: a read-only
//! memory map and dropping its pages, the existence check of a process, and
//! naming an anonymous (`O_TMPFILE`) file. The crate's only `unsafe` outside
//! `arch` and `alloc` besides the binding's array views; each call is
//! wrapped here in a safe function.

use memmap2::Mmap;
use std::fs::File;
use std::ops::Range;

/// A read-only map of `file`. The file must not be truncated while it is
/// mapped (as with any memory-mapped reader); readers are told so.
pub(super) fn map(file: &File) -> std::io::Result<Mmap> {
    // SAFETY: the mapping is read-only; see above for truncation.
    unsafe { Mmap::map(file) }
}

/// Drops `range` of `map` from this process's memory; touched again, the
/// pages are read back from the file, unchanged.
pub(super) fn drop_pages(map: &Mmap, range: &Range<usize>) {
    #[cfg(unix)]
    // SAFETY: the mapping is a read-only view of a file; dropped pages are
    // read back from the file, unchanged, if touched again.
    let _ = unsafe {
        map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len())
    };
    #[cfg(not(unix))]
    let _ = (map, range);
}

/// False only when no process `pid` runs on this machine.
pub(super) fn alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return true;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// The process's umask, read back without changing it for long (it is
/// process-wide).
#[cfg(all(test, unix))]
pub(super) fn umask() -> u32 {
    // SAFETY: umask only swaps the process's file-mode mask.
    unsafe {
        let u = libc::umask(0o022);
        libc::umask(u);
        u as u32
    }
}

#[cfg(target_os = "linux")]
pub(super) mod linux {
    use std::ffi::CString;
    use std::fs::File;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    use std::path::Path;

    /// An unnamed file in `dir`, or `None` where the kernel or the filesystem
    /// has no `O_TMPFILE` (or `/proc` is missing, without which it cannot be
    /// named later by an unprivileged process).
    pub fn anonymous(dir: &Path) -> Option<File> {
        if !Path::new("/proc/self/fd").is_dir() {
            return None;
        }
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o666)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
            .ok()
    }

    /// Gives the anonymous `file` the name `path` (fails if it exists).
    pub fn link(file: &File, path: &Path) -> std::io::Result<()> {
        let proc = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
        let to = CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: both are NUL-terminated paths that outlive the call.
        let r = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                proc.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}
