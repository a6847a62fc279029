//! The crate's contact with the allocator and the operating system, the one
//! place besides `arch` where `unsafe` is written (the binding's zero-copy
//! array views are the other). Each operation is wrapped here in a safe
//! function:
//!
//! - fallible allocation for buffers whose size comes from the input: a failed
//!   (or impossible) allocation is an [`Error::memory`] naming what and how
//!   large, never an abort of the process;
//! - the byte views that need `unsafe` (every bit pattern valid), beside
//!   `Zeroable`;
//! - in [`os`], the system calls std does not wrap: a read-only memory map and
//!   dropping its pages, the existence check of a process, and naming an
//!   anonymous (`O_TMPFILE`) file.

use crate::{Error, Result};

/// Types whose all-zero bytes are a valid value (so a zeroed allocation is a
/// vector of zeros).
///
/// # Safety
/// Implement only for types for which every all-zero bit pattern is valid.
pub unsafe trait Zeroable: Copy {}

macro_rules! zeroable {
    // SAFETY: integers and floats (and their wrappers) are valid all zero.
    ($($t:ty),*) => { $(unsafe impl Zeroable for $t {})* };
}
zeroable!(
    bool,
    u8,
    i8,
    u16,
    i16,
    u32,
    i32,
    u64,
    i64,
    usize,
    f32,
    f64,
    half::f16,
    half::bf16,
    crate::float8::F8E4M3,
    crate::float8::F8E5M2
);

/// Types with the layout of a `u8` for which every bit pattern is valid.
///
/// # Safety
/// Implement only for `u8` and its `repr(transparent)` wrappers.
pub unsafe trait ByteLike: Copy {}

// SAFETY: `repr(transparent)` wrappers of `u8` with every value valid.
unsafe impl ByteLike for crate::float8::F8E4M3 {}
// SAFETY: as above.
unsafe impl ByteLike for crate::float8::F8E5M2 {}

/// `bytes` read as `T` (no copy).
pub fn bytes_as<T: ByteLike>(bytes: &[u8]) -> &[T] {
    // SAFETY: `T` has the layout of `u8` and every bit pattern is valid
    // (`ByteLike`), so the slice is the same memory under another name.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr() as *const T, bytes.len()) }
}

/// `bytes` as little-endian `u64` words without a copy, where they are
/// aligned and the CPU is little-endian.
pub fn aligned_words(bytes: &[u8]) -> Option<&[u64]> {
    // SAFETY: every bit pattern is a valid u64.
    let (pre, mid, post) = unsafe { bytes.align_to::<u64>() };
    (cfg!(target_endian = "little") && pre.is_empty() && post.is_empty()).then_some(mid)
}

/// Bytes of `n` elements of `T`, refusing more than an allocation can hold.
pub fn bytes_of<T>(n: usize, what: &str) -> Result<usize> {
    let size = std::mem::size_of::<T>();
    n.checked_mul(size)
        .filter(|&b| b <= isize::MAX as usize)
        .ok_or_else(|| Error::memory(what, n as u128 * size as u128))
}

/// A vector of `n` zeros. Like `vec![0; n]` the pages are zeroed lazily by
/// the OS, so this costs no pass over the memory.
pub fn zeros<T: Zeroable>(n: usize, what: &str) -> Result<Vec<T>> {
    let bytes = bytes_of::<T>(n, what)?;
    if bytes == 0 {
        let mut v = Vec::new();
        v.resize(n, zeroed());
        return Ok(v);
    }
    let layout =
        std::alloc::Layout::array::<T>(n).map_err(|_| Error::memory(what, bytes as u128))?;
    // SAFETY: `layout` has a non-zero size.
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
    if ptr.is_null() {
        return Err(Error::memory(what, bytes as u128));
    }
    os::advise_huge_pages(ptr as *mut u8, bytes);
    // SAFETY: allocated by the global allocator with the layout of `[T; n]`,
    // and all-zero bytes are `n` valid values of `T` (`Zeroable`).
    Ok(unsafe { Vec::from_raw_parts(ptr, n, n) })
}

/// A vector for an output of `n` elements that [`par_fill`] writes whole.
/// From 32 MiB on, glibc's malloc always maps fresh pages, which the OS
/// zeroes as they are first touched: a zeroed vector of `n` then costs no
/// pass of its own. Below, memory freed earlier is reused and calloc would
/// zero it in one thread first; so the vector is empty, with room for `n`,
/// and [`par_fill`] zeroes each chunk in cache just before it is written.
/// (Measured on 4096x4096: a new mask 30 % faster than calloc's; a float32
/// array 35 % slower with the chunks zeroed than calloc's.)
pub fn output<T: Zeroable>(n: usize, what: &str) -> Result<Vec<T>> {
    const FRESH_PAGES: usize = 32 << 20;
    if bytes_of::<T>(n, what)? >= FRESH_PAGES {
        zeros(n, what)
    } else {
        with_capacity(n, what)
    }
}

/// Runs `f(state, i, chunk)` on the chunks of `chunk` elements of `v`'s
/// first `n` elements in parallel (`state` from `init`, once per worker).
/// `v` holds those `n` elements already, or is empty with room for them
/// ([`output`]); then each chunk is zeroed just before `f` gets it, in
/// cache, in place of a pass over the whole output first. Once
/// `stop()` is true the remaining chunks are skipped, and a new `v` is left
/// empty.
pub fn par_fill<T: Zeroable + Send, S>(
    v: &mut Vec<T>,
    n: usize,
    chunk: usize,
    stop: impl Fn() -> bool + Sync + Send,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [T]) + Sync + Send,
) {
    use rayon::prelude::*;
    let chunk = chunk.max(1);
    if v.len() == n {
        return v
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each_init(init, |s, (i, c)| {
                if !stop() {
                    f(s, i, c)
                }
            });
    }
    assert!(
        v.is_empty() && v.capacity() >= n,
        "par_fill: a vector of {n} or an empty one with room"
    );
    write_spare(v, n, chunk, stop, init, |s, i, c| {
        // SAFETY: `c` is `c.len()` elements of spare capacity, and all-zero
        // bytes are valid values of `T` (`Zeroable`).
        let c = unsafe {
            std::ptr::write_bytes(c.as_mut_ptr(), 0, c.len());
            &mut *(c as *mut [std::mem::MaybeUninit<T>] as *mut [T])
        };
        f(s, i, c);
        c
    })
}

/// A new vector of `n` elements written by `f(state, i, chunk)` on its
/// chunks of `chunk` elements in parallel (`state` from `init`, once per
/// worker), handed out uninitialised (with no pass that zeroes them
/// first); `f` returns the chunk initialised, as `MaybeUninit::write`
/// does, which is how the vector knows it is. Once `stop()` is true the
/// remaining chunks are skipped and the vector is left empty. Panics if
/// `f` returns another slice than its chunk.
pub fn par_write<T: Send, S>(
    n: usize,
    chunk: usize,
    what: &str,
    stop: impl Fn() -> bool + Sync + Send,
    init: impl Fn() -> S + Sync + Send,
    f: impl for<'a> Fn(&mut S, usize, &'a mut [std::mem::MaybeUninit<T>]) -> &'a mut [T] + Sync + Send,
) -> Result<Vec<T>> {
    let mut v = with_capacity::<T>(n, what)?;
    write_spare(&mut v, n, chunk, stop, init, f);
    Ok(v)
}

/// The first `n` elements of the empty `v`'s spare capacity, written by
/// `f` chunk by chunk in parallel, as [`par_write`] says; `v` holds them
/// after, unless `stop()` skipped a chunk.
fn write_spare<T: Send, S>(
    v: &mut Vec<T>,
    n: usize,
    chunk: usize,
    stop: impl Fn() -> bool + Sync + Send,
    init: impl Fn() -> S + Sync + Send,
    f: impl for<'a> Fn(&mut S, usize, &'a mut [std::mem::MaybeUninit<T>]) -> &'a mut [T] + Sync + Send,
) {
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    os::advise_huge_pages(v.as_mut_ptr() as *mut u8, n * std::mem::size_of::<T>());
    let skipped = AtomicBool::new(false);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each_init(init, |s, (i, c)| {
            if stop() {
                skipped.store(true, Ordering::Relaxed);
                return;
            }
            let (at, len) = (c.as_ptr() as *const T, c.len());
            let done = f(s, i, c);
            assert!(
                std::ptr::eq(done.as_ptr(), at) && done.len() == len,
                "par_write: the writer returned another slice than its chunk"
            );
        });
    if !skipped.into_inner() {
        // SAFETY: the chunks cover the first `n` elements, none was
        // skipped, and each was returned as a `&mut [T]` of its own memory,
        // so initialised (should `f` unwind instead, this is not reached
        // and the vector stays empty).
        unsafe { v.set_len(n) };
    }
}

fn zeroed<T: Zeroable>() -> T {
    // SAFETY: `Zeroable` promises all-zero bytes are a valid `T`.
    unsafe { std::mem::zeroed() }
}

/// An empty vector with room for `n` elements.
pub fn with_capacity<T>(n: usize, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    reserve(&mut v, n, what)?;
    Ok(v)
}

/// Room for `more` further elements in `v`.
pub fn reserve<T>(v: &mut Vec<T>, more: usize, what: &str) -> Result<()> {
    let total = v.len().saturating_add(more);
    v.try_reserve_exact(more)
        .map_err(|_| Error::memory(what, total as u128 * std::mem::size_of::<T>() as u128))
}

/// `a * b`, or a `ValueError`-kind error naming the sizes when it overflows.
pub fn product(a: usize, b: usize, what: &str) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| Error::invalid(format!("{what}: {a} x {b} overflows the address space")))
}

/// System calls std does not wrap, each behind a safe function.
pub(crate) mod os {
    use memmap2::Mmap;
    use std::fs::File;
    use std::ops::Range;

    /// A read-only map of `file`. The file must not be truncated while it is
    /// mapped (as with any memory-mapped reader); readers are told so.
    pub(crate) fn map(file: &File) -> std::io::Result<Mmap> {
        // SAFETY: the mapping is read-only; see above for truncation.
        unsafe { Mmap::map(file) }
    }

    /// Drops `range` of `map` from this process's memory; touched again, the
    /// pages are read back from the file, unchanged.
    pub(crate) fn drop_pages(map: &Mmap, range: &Range<usize>) {
        #[cfg(unix)]
        // SAFETY: the mapping is a read-only view of a file; dropped pages are
        // read back from the file, unchanged, if touched again.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len())
        };
        #[cfg(not(unix))]
        let _ = (map, range);
    }

    /// Asks for huge pages under `len` bytes from `ptr` where the kernel
    /// gives them only on request (as NumPy asks for its large arrays):
    /// a fresh output written once costs a page fault per 4 KiB page
    /// otherwise, which made `to_dense` several times slower than `np.copy`.
    /// Only the whole 2 MiB pages inside the range are advised, and only
    /// for allocations of 4 MiB or more; failure only loses the speed.
    pub(crate) fn advise_huge_pages(ptr: *mut u8, len: usize) {
        #[cfg(target_os = "linux")]
        {
            const HUGE: usize = 2 << 20;
            if len < 2 * HUGE {
                return;
            }
            let start = (ptr as usize).next_multiple_of(HUGE);
            let end = (ptr as usize + len) / HUGE * HUGE;
            if end > start {
                // SAFETY: [start, end) lies inside one live allocation, and
                // MADV_HUGEPAGE changes how its pages are backed, not their
                // contents.
                let _ = unsafe {
                    libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE)
                };
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (ptr, len);
    }

    /// False only when no process `pid` runs on this machine.
    pub(crate) fn alive(pid: u32) -> bool {
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
    pub(crate) fn umask() -> u32 {
        // SAFETY: umask only swaps the process's file-mode mask.
        unsafe {
            let u = libc::umask(0o022);
            libc::umask(u);
            u as u32
        }
    }

    #[cfg(target_os = "linux")]
    pub(crate) mod linux {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_fill_zeroes_new_chunks_and_keeps_given_elements() {
        for n in [0, 1, 63, 64, 1000, 5 << 20] {
            let mut v = with_capacity::<u32>(n, "x").unwrap();
            // Only every third chunk is written; the rest must read zero.
            par_fill(
                &mut v,
                n,
                64,
                || false,
                || (),
                |_, i, c| {
                    if i % 3 == 0 {
                        c.iter_mut()
                            .enumerate()
                            .for_each(|(j, x)| *x = (64 * i + j) as u32 + 1);
                    }
                },
            );
            assert_eq!(v.len(), n);
            for (k, &x) in v.iter().enumerate() {
                let want = if (k / 64) % 3 == 0 { k as u32 + 1 } else { 0 };
                assert_eq!(x, want, "n = {n}, element {k}");
            }
            // A full vector is handed over as it is.
            par_fill(&mut v, n, 7, || false, || (), |_, i, c| c[0] += i as u32);
            assert!(v.iter().enumerate().all(|(k, &x)| {
                let base = if (k / 64) % 3 == 0 { k as u32 + 1 } else { 0 };
                x == base + if k % 7 == 0 { (k / 7) as u32 } else { 0 }
            }));
            // Stopped, a new vector stays empty; a given one is left as it is.
            let mut fresh = with_capacity::<u32>(n, "x").unwrap();
            par_fill(&mut fresh, n, 64, || true, || (), |_, _, _| unreachable!());
            assert!(fresh.is_empty());
            let before = v.clone();
            par_fill(&mut v, n, 64, || true, || (), |_, _, _| unreachable!());
            assert_eq!(v, before);
        }
    }

    #[test]
    fn zeros_are_zero_and_failures_are_errors() {
        assert_eq!(zeros::<f32>(5, "x").unwrap(), vec![0.0; 5]);
        assert_eq!(zeros::<u64>(0, "x").unwrap(), Vec::<u64>::new());
        assert_eq!(zeros::<bool>(3, "x").unwrap(), vec![false; 3]);
        let e = zeros::<u64>(usize::MAX / 4, "the index").unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Memory);
        assert!(
            e.msg.contains("the index")
                && e.msg.contains(&format!("{}", (usize::MAX / 4) as u128 * 8)),
            "{e}"
        );
        let e = with_capacity::<u8>(isize::MAX as usize, "bytes").unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::Memory);
        let e = product(1 << 40, 1 << 40, "batch x rows").unwrap_err();
        assert!(e.msg.contains("batch x rows") && e.msg.contains(&(1u64 << 40).to_string()));
    }
}
