//! Products and scatters on the compressed form against plain scalar
//! references, with block starts given, missing, or wrong.

use vitrust::matmul::matmul;
use vitrust::pool::with_threads;
use vitrust::rmatmul::{group_rows, rmatmul};
use vitrust::{Expander, Layout, VdConfig};

fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

fn random_index(layout: &Layout, seed: &mut u64) -> Vec<u64> {
    (0..layout.index_len())
        .map(|_| (lcg(seed) * u64::MAX as f64) as u64)
        .collect()
}

/// A random index over `n` weights with its mask, random kept values and starts.
struct Case {
    e: Expander,
    index: Vec<u64>,
    mask: Vec<bool>,
    values: Vec<f32>,
    starts: Vec<usize>,
}

impl Case {
    fn new(n: usize, k: u32, block_steps: usize, seed: &mut u64) -> Self {
        let cfg = VdConfig::from_seed(k, 1, 5, 3, 2, k as u64).unwrap();
        let layout = Layout::new(&cfg, n, block_steps).unwrap();
        let index = random_index(&layout, seed);
        let e = Expander::new(&cfg, layout);
        let mut mask = vec![false; n];
        e.mask(&index, &mut mask).unwrap();
        let w: Vec<f32> = (0..n).map(|_| (lcg(seed) - 0.5) as f32).collect();
        let (values, starts) = e.gather(&index, &w).unwrap();
        Case {
            e,
            index,
            mask,
            values,
            starts,
        }
    }
}

/// Starts that are well formed (same total) but wrong for every block but the last.
fn skewed(starts: &[usize]) -> Vec<usize> {
    let n = starts.len() - 1;
    (0..=n)
        .map(|b| if b == n { starts[n] } else { 0 })
        .collect()
}

/// `W @ X` one scalar at a time, in the documented order: a row's entries in
/// C order, alternating between two partial sums that are added at the end.
fn reference(mask: &[bool], values: &[f32], rows: usize, x: &[f32], batch: usize) -> Vec<f32> {
    let cols = mask.len() / rows;
    let mut y = vec![0f32; rows * batch];
    let mut k = 0;
    for r in 0..rows {
        let entries: Vec<(usize, f32)> = (0..cols)
            .filter(|&c| mask[r * cols + c])
            .map(|c| {
                k += 1;
                (c, values[k - 1])
            })
            .collect();
        for j in 0..batch {
            let (mut even, mut odd) = (0f32, 0f32);
            for (e, &(c, v)) in entries.iter().enumerate() {
                if e % 2 == 0 {
                    even += v * x[c * batch + j];
                } else {
                    odd += v * x[c * batch + j];
                }
            }
            y[r * batch + j] = even + odd;
        }
    }
    y
}

#[test]
fn matmul_matches_the_scalar_reference_bit_for_bit() {
    let mut seed = 3u64;
    // Shapes that give one task, many tasks, tasks cutting blocks, and every tile width.
    for (rows, cols, batch, k, block_steps) in [
        (7, 13, 1, 6, 5),
        (40, 70, 81, 8, 17),
        (300, 517, 17, 10, 1024),
        (2, 70_000, 3, 7, 300),
        (1000, 96, 64, 9, 64),
    ] {
        let Case {
            e,
            index,
            mask,
            values,
            starts,
        } = Case::new(rows * cols, k, block_steps, &mut seed);
        let x: Vec<f32> = (0..cols * batch)
            .map(|_| (lcg(&mut seed) - 0.5) as f32)
            .collect();
        let want = reference(&mask, &values, rows, &x, batch);
        for (given, threads) in [
            (Some(starts.clone()), 2),
            (None, 1),
            (Some(skewed(&starts)), 2),
        ] {
            let mut y = vec![f32::NAN; rows * batch];
            with_threads(Some(threads), || {
                matmul(
                    &e,
                    &index,
                    &values,
                    given.as_deref(),
                    rows,
                    &x,
                    batch,
                    &mut y,
                )
            })
            .unwrap()
            .unwrap();
            let same = y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{rows}x{cols} @ {cols}x{batch}, starts {given:?}");
        }
        let mut y = vec![0f32; rows * batch];
        let short = &values[..values.len().saturating_sub(1)];
        if !values.is_empty() {
            assert!(matmul(&e, &index, short, None, rows, &x, batch, &mut y).is_err());
        }
        assert!(matmul(&e, &index, &values, None, rows, &x[1..], batch, &mut y).is_err());
    }
}

#[test]
fn scatter_with_wrong_starts_still_places_every_value() {
    let mut seed = 11u64;
    let cfg = VdConfig::from_seed(8, 1, 5, 3, 2, 2).unwrap();
    let n = 9 * 5120 + 13;
    let layout = Layout::new(&cfg, n, 1024).unwrap();
    let index = random_index(&layout, &mut seed);
    let e = Expander::new(&cfg, layout);
    let w: Vec<f32> = (0..n).map(|i| i as f32 + 1.0).collect();
    let (values, starts) = e.gather(&index, &w).unwrap();
    let mut mask = vec![false; n];
    e.mask(&index, &mut mask).unwrap();
    let not_sorted: Vec<usize> = starts.iter().rev().copied().collect();
    for given in [
        Some(starts.clone()),
        None,
        Some(skewed(&starts)),
        Some(not_sorted),
        Some(vec![0]),
    ] {
        let mut dense = vec![f32::NAN; n];
        e.scatter(&index, &values, given.as_deref(), &mut dense)
            .unwrap();
        for i in 0..n {
            assert_eq!(dense[i], if mask[i] { w[i] } else { 0.0 }, "weight {i}");
        }
    }
    // Eight-byte values take their own path.
    let wide: Vec<f64> = w.iter().map(|&x| f64::from(x) + 0.25).collect();
    let (wide_values, _) = e.gather(&index, &wide).unwrap();
    for given in [Some(starts.clone()), Some(skewed(&starts))] {
        let mut dense = vec![f64::NAN; n];
        e.scatter(&index, &wide_values, given.as_deref(), &mut dense)
            .unwrap();
        for i in 0..n {
            assert_eq!(dense[i], if mask[i] { wide[i] } else { 0.0 }, "weight {i}");
        }
    }
    let counts = e.counts(&index).unwrap();
    assert_eq!(counts.len() + 1, starts.len());
    assert!(counts
        .iter()
        .zip(starts.windows(2))
        .all(|(c, s)| *c == s[1] - s[0]));
}

/// `X @ W` one scalar at a time, in the documented order: within each group
/// of rows, rows in order from zero; then the groups' sums in group order.
fn reference_r(mask: &[bool], values: &[f32], rows: usize, x: &[f32], batch: usize) -> Vec<f32> {
    let cols = mask.len() / rows;
    let per_group = group_rows(rows, cols, batch, 4);
    let mut value_of = vec![0f32; mask.len()];
    let mut k = 0;
    for (i, &m) in mask.iter().enumerate() {
        if m {
            value_of[i] = values[k];
            k += 1;
        }
    }
    let mut out = vec![0f32; batch * cols];
    for b in 0..batch {
        for c in 0..cols {
            let sums: Vec<f32> = (0..rows)
                .step_by(per_group)
                .map(|first| {
                    (first..(first + per_group).min(rows))
                        .filter(|&r| mask[r * cols + c])
                        .fold(0f32, |s, r| s + value_of[r * cols + c] * x[b * rows + r])
                })
                .collect();
            out[b * cols + c] = sums[1..].iter().fold(sums[0], |s, &p| s + p);
        }
    }
    out
}

#[test]
fn rmatmul_matches_the_scalar_reference_bit_for_bit() {
    let mut seed = 17u64;
    for (rows, cols, batch, k, block_steps) in [
        (9, 13, 1, 6, 5),
        (40, 70, 19, 8, 17),
        (300, 517, 3, 10, 1024),
        (3, 30_000, 2, 7, 300),
    ] {
        let Case {
            e,
            index,
            mask,
            values,
            starts,
        } = Case::new(rows * cols, k, block_steps, &mut seed);
        let x: Vec<f32> = (0..batch * rows)
            .map(|_| (lcg(&mut seed) - 0.5) as f32)
            .collect();
        let want = reference_r(&mask, &values, rows, &x, batch);
        for (given, threads) in [
            (Some(starts.clone()), 2),
            (None, 1),
            (Some(skewed(&starts)), 2),
        ] {
            let mut y = vec![f32::NAN; batch * cols];
            with_threads(Some(threads), || {
                rmatmul(
                    &e,
                    &index,
                    &values,
                    given.as_deref(),
                    rows,
                    &x,
                    batch,
                    &mut y,
                )
            })
            .unwrap()
            .unwrap();
            let same = y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{batch}x{rows} @ {rows}x{cols}, starts {given:?}");
        }
        let mut y = vec![0f32; batch * cols];
        assert!(rmatmul(&e, &index, &values, None, rows, &x[1..], batch, &mut y).is_err());
        assert!(rmatmul(&e, &index, &values, None, rows + 1, &x, batch, &mut y).is_err());
    }
}
