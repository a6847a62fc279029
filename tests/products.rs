//! Products and scatters on the compressed form against plain scalar
//! references, with block starts given, missing, or wrong.

use vitrust::matmul;
use vitrust::with_threads;
use vitrust::{group_rows, rmatmul};
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
        // Into a new vector: a wrong `starts` makes a second pass over the
        // output the first one filled.
        let fresh = e.scatter_vec(&index, &values, given.as_deref()).unwrap();
        for i in 0..n {
            assert_eq!(dense[i], if mask[i] { w[i] } else { 0.0 }, "weight {i}");
            assert_eq!(
                fresh[i].to_bits(),
                dense[i].to_bits(),
                "new vector, weight {i}"
            );
        }
    }
    assert_eq!(e.mask_vec(&index).unwrap(), mask);
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

/// Narrow values (bfloat16, float8, float16) widened as they are read give
/// the same bits as the product of the values widened to float32 first (the
/// path checked against the scalar references above), on both sides.
#[test]
fn narrow_values_multiply_as_their_widened_float32() {
    use half::{bf16, f16};
    use vitrust::Widen;
    use vitrust::{F8E4M3, F8E5M2};

    fn check<V: Widen<f32>>(case: &Case, narrow: &[V], rows: usize, batch: usize, seed: &mut u64) {
        let cols = case.mask.len() / rows;
        let wide: Vec<f32> = narrow.iter().map(|&v| v.widen()).collect();
        for left in [false, true] {
            let (inner, out_len) = if left { (rows, cols) } else { (cols, rows) };
            let x: Vec<f32> = (0..inner * batch)
                .map(|_| (lcg(seed) - 0.5) as f32)
                .collect();
            let (mut want, mut got) = (vec![0f32; out_len * batch], vec![1f32; out_len * batch]);
            let (e, idx, s) = (&case.e, &case.index, Some(&case.starts[..]));
            if left {
                rmatmul(e, idx, &wide, s, rows, &x, batch, &mut want).unwrap();
                rmatmul(e, idx, narrow, s, rows, &x, batch, &mut got).unwrap();
            } else {
                matmul(e, idx, &wide, s, rows, &x, batch, &mut want).unwrap();
                matmul(e, idx, narrow, s, rows, &x, batch, &mut got).unwrap();
            }
            assert!(got
                .iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()));
        }
    }

    let mut seed = 5u64;
    let (rows, cols, batch) = (60, 333, 19);
    let case = Case::new(rows * cols, 8, 100, &mut seed);
    let bits: Vec<u16> = (0..case.values.len())
        .map(|_| (lcg(&mut seed) * 65536.0) as u16)
        .collect();
    // Finite patterns only: the products refuse nothing, but NaN != NaN.
    let bf: Vec<bf16> = bits.iter().map(|&b| bf16::from_bits(b & 0xbfff)).collect();
    let h: Vec<f16> = bits.iter().map(|&b| f16::from_bits(b & 0xbbff)).collect();
    let e4: Vec<F8E4M3> = bits.iter().map(|&b| F8E4M3(b as u8 & 0xf7)).collect();
    let e5: Vec<F8E5M2> = bits.iter().map(|&b| F8E5M2(b as u8 & 0xbf)).collect();
    check(&case, &bf, rows, batch, &mut seed);
    check(&case, &h, rows, batch, &mut seed);
    check(&case, &e4, rows, batch, &mut seed);
    check(&case, &e5, rows, batch, &mut seed);
}

/// Two- and one-byte values (bfloat16 and float8 bit patterns) go through
/// gather and scatter unchanged.
#[test]
fn narrow_values_gather_and_scatter_as_bit_patterns() {
    let mut seed = 17u64;
    let cfg = VdConfig::from_seed(9, 1, 5, 3, 2, 4).unwrap();
    let n = 7 * 5120 + 29;
    let layout = Layout::new(&cfg, n, 1024).unwrap();
    let index = random_index(&layout, &mut seed);
    let e = Expander::new(&cfg, layout);
    let mut mask = vec![false; n];
    e.mask(&index, &mut mask).unwrap();
    let w16: Vec<u16> = (0..n).map(|i| (i as u16).wrapping_mul(40503) | 1).collect();
    let w8: Vec<u8> = w16.iter().map(|&x| x as u8 | 1).collect();
    let (v16, starts) = e.gather(&index, &w16).unwrap();
    let (v8, _) = e.gather(&index, &w8).unwrap();
    let kept: Vec<usize> = (0..n).filter(|&i| mask[i]).collect();
    assert!(kept.iter().zip(&v16).all(|(&i, &v)| w16[i] == v));
    assert!(kept.iter().zip(&v8).all(|(&i, &v)| w8[i] == v));
    for given in [Some(starts.clone()), None, Some(skewed(&starts))] {
        let (mut d16, mut d8) = (vec![7u16; n], vec![7u8; n]);
        e.scatter(&index, &v16, given.as_deref(), &mut d16).unwrap();
        e.scatter(&index, &v8, given.as_deref(), &mut d8).unwrap();
        for i in 0..n {
            assert_eq!(d16[i], if mask[i] { w16[i] } else { 0 }, "weight {i}");
            assert_eq!(d8[i], if mask[i] { w8[i] } else { 0 }, "weight {i}");
        }
    }
}

/// The signature `W @ X` and `X @ W` share, at float32.
type ProductFn = fn(
    &Expander,
    &[u64],
    &[f32],
    Option<&[usize]>,
    usize,
    &[f32],
    usize,
    &mut [f32],
) -> vitrust::Result<()>;

/// A scalar reference: `(mask, values, rows, x, batch)` to the product.
type ReferenceFn = fn(&[bool], &[f32], usize, &[f32], usize) -> Vec<f32>;

/// One product under test: the function, its scalar reference, and the
/// lengths of its operand and output for `(rows, cols, batch)`.
struct Product {
    name: &'static str,
    run: ProductFn,
    reference: ReferenceFn,
    seed: u64,
    shapes: &'static [(usize, usize, usize, u32, usize)],
    lengths: fn(usize, usize, usize) -> (usize, usize),
}

#[test]
fn products_match_the_scalar_reference_bit_for_bit() {
    let products = [
        Product {
            name: "W @ X",
            run: matmul::<f32, f32, [f32]>,
            reference,
            seed: 3,
            // One task, many tasks, tasks cutting blocks, and every tile width.
            shapes: &[
                (7, 13, 1, 6, 5),
                (40, 70, 81, 8, 17),
                (300, 517, 17, 10, 1024),
                (2, 70_000, 3, 7, 300),
                (1000, 96, 64, 9, 64),
            ],
            lengths: |rows, cols, batch| (cols * batch, rows * batch),
        },
        Product {
            name: "X @ W",
            run: rmatmul::<f32, f32, [f32]>,
            reference: reference_r,
            seed: 17,
            shapes: &[
                (9, 13, 1, 6, 5),
                (40, 70, 19, 8, 17),
                (300, 517, 3, 10, 1024),
                (3, 30_000, 2, 7, 300),
            ],
            lengths: |rows, cols, batch| (batch * rows, batch * cols),
        },
    ];
    for p in products {
        let mut seed = p.seed;
        for &(rows, cols, batch, k, block_steps) in p.shapes {
            let Case {
                e,
                index,
                mask,
                values,
                starts,
            } = Case::new(rows * cols, k, block_steps, &mut seed);
            let (x_len, y_len) = (p.lengths)(rows, cols, batch);
            let x: Vec<f32> = (0..x_len).map(|_| (lcg(&mut seed) - 0.5) as f32).collect();
            let want = (p.reference)(&mask, &values, rows, &x, batch);
            for (given, threads) in [
                (Some(starts.clone()), 2),
                (None, 1),
                (Some(skewed(&starts)), 2),
            ] {
                let mut y = vec![f32::NAN; y_len];
                let given = given.as_deref();
                with_threads(Some(threads), || {
                    (p.run)(&e, &index, &values, given, rows, &x, batch, &mut y)
                })
                .unwrap()
                .unwrap();
                let same = y.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{}: {rows}x{cols}, batch {batch}, starts {given:?}",
                    p.name
                );
            }
            let mut y = vec![0f32; y_len];
            let short = &values[..values.len().saturating_sub(1)];
            if !values.is_empty() {
                assert!((p.run)(&e, &index, short, None, rows, &x, batch, &mut y).is_err());
            }
            assert!((p.run)(&e, &index, &values, None, rows, &x[1..], batch, &mut y).is_err());
            assert!((p.run)(&e, &index, &values, None, rows + 1, &x, batch, &mut y).is_err());
        }
    }
}

/// Encoded values, decoded a task or a block at a time inside the products
/// and the scatter, give exactly what the same products give on the fully
/// decoded values, with starts given, missing or wrong.
#[test]
fn encoded_values_decode_inside_products_and_scatter() {
    use vitrust::{encode, Encoding, Source};
    let mut seed = 77u64;
    let (rows, n) = (24, 24 * 300);
    let case = Case::new(n, 8, 64, &mut seed);
    let scores: Vec<f32> = case.values.iter().map(|v| v.abs()).collect();
    let x: Vec<f32> = (0..n / rows * 3)
        .map(|_| (lcg(&mut seed) - 0.5) as f32)
        .collect();
    let xr: Vec<f32> = (0..3 * rows)
        .map(|_| (lcg(&mut seed) - 0.5) as f32)
        .collect();
    for name in ["int8", "int4", "codebook4", "codebook1"] {
        let enc = encode(
            Encoding::parse(name, 50).unwrap(),
            &case.values,
            &scores,
            |v| v,
        )
        .unwrap();
        let mut decoded = vec![0.0f32; case.values.len()];
        enc.decode(0, &mut decoded);
        assert_eq!(Source::<f32>::len(&enc), decoded.len());
        for starts in [Some(case.starts.clone()), None, Some(skewed(&case.starts))] {
            let s = starts.as_deref();
            let dense: Vec<f32> = case.e.scatter_vec(&case.index, &enc, s).unwrap();
            assert_eq!(
                dense,
                case.e.scatter_vec(&case.index, &decoded[..], s).unwrap(),
                "{name}"
            );
            let mut want = vec![0.0f32; rows * 3];
            let mut got = vec![0.0f32; rows * 3];
            matmul(
                &case.e,
                &case.index,
                &decoded[..],
                s,
                rows,
                &x,
                3,
                &mut want,
            )
            .unwrap();
            matmul::<f32, f32, _>(&case.e, &case.index, &enc, s, rows, &x, 3, &mut got).unwrap();
            assert_eq!(got, want, "{name} W @ X");
            let cols = n / rows;
            let (mut want, mut got) = (vec![0.0f32; 3 * cols], vec![0.0f32; 3 * cols]);
            rmatmul(
                &case.e,
                &case.index,
                &decoded[..],
                s,
                rows,
                &xr,
                3,
                &mut want,
            )
            .unwrap();
            rmatmul::<f32, f32, _>(&case.e, &case.index, &enc, s, rows, &xr, 3, &mut got).unwrap();
            assert_eq!(got, want, "{name} X @ W");
        }
        // Kept positions still get the decoded values.
        let dense: Vec<f32> = case.e.scatter_vec(&case.index, &enc, None).unwrap();
        let kept: Vec<f32> = dense
            .iter()
            .zip(&case.mask)
            .filter(|(_, m)| **m)
            .map(|(v, _)| *v)
            .collect();
        assert_eq!(kept, decoded, "{name}");
    }
}
