//! Fallible allocation for buffers whose size comes from the input: a failed
//! (or impossible) allocation is an [`Error::memory`] naming what and how
//! large, never an abort of the process; and the byte views that need
//! `unsafe` (every bit pattern valid), kept here beside `Zeroable`.

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
    // SAFETY: allocated by the global allocator with the layout of `[T; n]`,
    // and all-zero bytes are `n` valid values of `T` (`Zeroable`).
    Ok(unsafe { Vec::from_raw_parts(ptr, n, n) })
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

#[cfg(test)]
mod tests {
    use super::*;

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
