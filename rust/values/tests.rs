use super::*;

fn draws(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            // Heavy-ish tails: a few large values among many small ones.
            u * u * u * 8.0
        })
        .collect()
}

fn same(x: f32) -> f32 {
    x
}

#[test]
fn names_round_trip_and_bad_ones_are_refused() {
    for name in ["raw", "int8", "int4", "codebook1", "codebook5", "codebook8"] {
        assert_eq!(Encoding::parse(name, 128).unwrap().name(), name);
    }
    for bad in ["int3", "codebook0", "codebook9", "codebook", "float", ""] {
        assert!(Encoding::parse(bad, 128).is_err(), "{bad}");
    }
    assert!(Encoding::parse("int8", 0).is_err());
    assert!(Encoding::parse("int8", MAX_GROUP + 1).is_err());
}

#[test]
fn packed_codes_read_back_for_every_width() {
    for bits in 1..=8u32 {
        let n = 1001;
        let want: Vec<u32> = (0..n)
            .map(|j| (j as u32 * 2654435761) >> (32 - bits))
            .collect();
        let packed = pack(want.iter().copied(), n, bits).unwrap();
        assert_eq!(packed.len(), (n * bits as usize).div_ceil(8));
        for (j, &c) in want.iter().enumerate() {
            assert_eq!(code(&packed, bits, j), c, "bits {bits}, code {j}");
        }
    }
}

/// The integer encodings against a plain per-value reference: each code is
/// the rounded quotient by its group's scale, each decoded value within half
/// a scale step of the original.
#[test]
fn integers_match_the_reference() {
    let v = draws(1000, 3);
    for (bits, group) in [(8, 128), (4, 128), (8, 7), (4, 1), (8, 5000)] {
        let enc = encode(Encoding::Int { bits, group }, &v, &[], same).unwrap();
        enc.check(v.len()).unwrap();
        let q = ((1 << (bits - 1)) - 1) as f32;
        let mut out = vec![0.0f32; v.len()];
        enc.decode(0, &mut out);
        for (j, (&x, &y)) in v.iter().zip(&out).enumerate() {
            let g = &v[j / group * group..((j / group + 1) * group).min(v.len())];
            let scale = g.iter().fold(0.0f32, |m, x| m.max(x.abs())) / q;
            assert_eq!(enc.table[j / group], scale);
            assert_eq!(
                y,
                (x / scale).round() * scale,
                "bits {bits} group {group} value {j}"
            );
            assert!((x - y).abs() <= scale / 2.0 * (1.0 + 1e-6));
        }
    }
}

#[test]
fn a_zero_group_decodes_to_zeros_and_rounded_scales_stay_in_range() {
    let mut v = draws(300, 5);
    v[..128].fill(0.0);
    // A coarse rounding of the scales (to multiples of 1/16): codes clamp.
    let enc = encode(
        Encoding::Int {
            bits: 4,
            group: 128,
        },
        &v,
        &[],
        |x| (x * 16.0).floor() / 16.0,
    )
    .unwrap();
    let mut out = vec![1.0f32; v.len()];
    enc.decode(0, &mut out);
    assert!(out[..128].iter().all(|&y| y == 0.0));
    for (j, &y) in out.iter().enumerate() {
        assert!(y.abs() <= 7.0 * enc.table[j / 128]);
    }
}

/// Any range decodes alone to what the whole decode gives there (blocks
/// decode in parallel from their own starts).
#[test]
fn ranges_decode_alone() {
    let v = draws(2000, 9);
    let w: Vec<f32> = v.iter().map(|x| x.abs()).collect();
    for name in ["int8", "int4", "codebook3", "codebook7", "codebook1"] {
        let enc = encode(Encoding::parse(name, 100).unwrap(), &v, &w, same).unwrap();
        let mut all = vec![0.0f32; v.len()];
        enc.decode(0, &mut all);
        for (from, len) in [(0, 1), (1, 7), (99, 3), (1001, 999), (1999, 1), (37, 0)] {
            let mut part = vec![0.0f32; len];
            enc.decode(from, &mut part);
            assert_eq!(part, all[from..from + len], "{name} {from}+{len}");
        }
    }
}

/// The nearest centroid of `x` (the lower on ties).
fn nearest(c: &[f64], x: f64) -> usize {
    (0..c.len()).fold(0, |b, i| {
        if (x - c[i]).abs() < (x - c[b]).abs() {
            i
        } else {
            b
        }
    })
}

/// A brute-force Lloyd iteration (every value against every centroid) from
/// the same linear start, empty clusters relocated by the same rule.
fn lloyd_reference(v: &[f32], w: &[f32], k: usize) -> Vec<f64> {
    let lo = v.iter().fold(f32::INFINITY, |m, &x| m.min(x)) as f64;
    let hi = v.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let mut c: Vec<f64> = (0..k)
        .map(|i| lo + (hi - lo) * i as f64 / (k - 1) as f64)
        .collect();
    for _ in 0..300 {
        let (mut sw, mut swv) = (vec![0.0; k], vec![0.0; k]);
        for (&x, &wt) in v.iter().zip(w) {
            let x = x as f64;
            let best = nearest(&c, x);
            sw[best] += wt as f64;
            swv[best] += wt as f64 * x;
        }
        let mut next: Vec<f64> = (0..k)
            .map(|i| if sw[i] > 0.0 { swv[i] / sw[i] } else { c[i] })
            .collect();
        // Each empty cluster takes the upper half (above the mean) of the
        // cluster of largest weighted squared error, found by brute force;
        // `groups` lists the clusters' members in cluster order.
        let mut groups: Vec<(usize, Vec<(f64, f64)>)> = (0..k)
            .filter(|&i| sw[i] > 0.0)
            .map(|i| {
                let members = v
                    .iter()
                    .zip(w)
                    .map(|(&x, &wt)| (x as f64, wt as f64))
                    .filter(|&(x, _)| nearest(&c, x) == i)
                    .collect();
                (i, members)
            })
            .collect();
        let mean = |m: &[(f64, f64)]| {
            m.iter().map(|(x, w)| w * x).sum::<f64>() / m.iter().map(|(_, w)| w).sum::<f64>()
        };
        let error = |m: &[(f64, f64)]| {
            let mu = mean(m);
            m.iter().map(|(x, w)| w * (x - mu) * (x - mu)).sum::<f64>()
        };
        for e in (0..k).filter(|&i| sw[i] == 0.0) {
            let j = (0..groups.len()).fold(0, |b, j| {
                if error(&groups[j].1) > error(&groups[b].1) {
                    j
                } else {
                    b
                }
            });
            let (i, members) = groups[j].clone();
            let mu = mean(&members);
            let (lo, hi): (Vec<_>, Vec<_>) = members.into_iter().partition(|&(x, _)| x <= mu);
            if lo.is_empty() || hi.is_empty() {
                break;
            }
            next[i] = mean(&lo);
            next[e] = mean(&hi);
            groups.splice(j..=j, [(i, lo), (e, hi)]);
        }
        let mut sorted = next.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted
            .iter()
            .zip(&c)
            .all(|(a, b)| (a - b).abs() <= 1e-12 * (1.0 + b.abs()))
        {
            return sorted;
        }
        c = sorted;
    }
    c
}

#[test]
fn kmeans_matches_brute_force_lloyd() {
    for (n, k, seed) in [
        (500, 2, 1),
        (800, 8, 2),
        (1000, 16, 3),
        (300, 32, 4),
        (600, 16, 5),
    ] {
        let mut v = draws(n, seed);
        if seed == 5 {
            // Outliers stretch the range: a linear start leaves clusters empty.
            v[0] = 40.0;
            v[1] = -25.0;
        }
        let w: Vec<f32> = v.iter().map(|x| x.abs()).collect();
        let got = kmeans(&v, &w, k);
        let want = lloyd_reference(&v, &w, k);
        // Every centroid is some value's nearest: none is left empty.
        let c: Vec<f64> = got.iter().map(|&x| f64::from(x)).collect();
        let mut used = vec![false; k];
        v.iter()
            .for_each(|&x| used[nearest(&c, f64::from(x))] = true);
        assert!(used.iter().all(|&u| u), "n {n} k {k}: {got:?}");
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (f64::from(*a) - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "n {n} k {k}: {got:?} vs {want:?}"
            );
        }
    }
}

#[test]
fn codebook_codes_name_the_nearest_centroid() {
    let v = draws(1500, 11);
    let w: Vec<f32> = v.iter().map(|x| x.abs()).collect();
    for bits in [1, 2, 4, 6] {
        let enc = encode(Encoding::Codebook { bits }, &v, &w, same).unwrap();
        enc.check(v.len()).unwrap();
        assert!(enc.table.windows(2).all(|p| p[0] <= p[1]));
        let mut out = vec![0.0f32; v.len()];
        enc.decode(0, &mut out);
        for (&x, &y) in v.iter().zip(&out) {
            let nearest = enc
                .table
                .iter()
                .fold(f32::INFINITY, |m, &c| m.min((x - c).abs()));
            assert_eq!((x - y).abs(), nearest);
        }
    }
}

/// A value of weight 3 counts as three values of weight 1, and scaling all
/// weights changes nothing: the fit minimises the weighted squared error.
#[test]
fn weights_count_as_repetitions() {
    let v = draws(400, 17);
    let w: Vec<f32> = (0..v.len()).map(|j| (1 + j % 3) as f32).collect();
    let mut repeated = Vec::new();
    for (&x, &n) in v.iter().zip(&w) {
        repeated.extend(std::iter::repeat_n(x, n as usize));
    }
    let ones = vec![1.0; repeated.len()];
    let scaled: Vec<f32> = w.iter().map(|x| x * 0.25).collect();
    for k in [2, 5, 16] {
        let got = kmeans(&v, &w, k);
        let want = kmeans(&repeated, &ones, k);
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "k {k}: {got:?} vs {want:?}"
            );
        }
        assert_eq!(kmeans(&v, &scaled, k), got, "k {k}");
    }
}

#[test]
fn bad_values_and_mismatched_tables_are_refused() {
    let v = draws(100, 13);
    assert!(encode(
        Encoding::Int { bits: 8, group: 16 },
        &[1.0, f32::NAN],
        &[],
        same
    )
    .is_err());
    assert!(encode(Encoding::Codebook { bits: 2 }, &v, &v[..10], same).is_err());
    assert!(encode(Encoding::Raw, &v, &v, same).is_err());
    let enc = encode(Encoding::Int { bits: 8, group: 16 }, &v, &[], same).unwrap();
    assert!(enc.check(101).is_err());
    let mut bad = enc.clone();
    bad.table[0] = f32::INFINITY;
    assert!(bad.check(100).is_err());
    let mut short = enc.clone();
    short.codes.to_mut().pop();
    assert!(short.check(100).is_err());
    // No values: empty codes, an empty (int) or zero (codebook) table.
    let none = encode(Encoding::Codebook { bits: 3 }, &[], &[], same).unwrap();
    none.check(0).unwrap();
    assert_eq!(none.table, vec![0.0; 8]);
}

#[test]
fn narrow_types_decode_to_the_rounded_float32_decoding() {
    let v = draws(3000, 11);
    let w: Vec<f32> = v.iter().map(|x| x.abs()).collect();
    let bf = |x: f32| half::bf16::from_f32(x).to_f32();
    for name in ["int8", "int4", "codebook3"] {
        let enc = encode(Encoding::parse(name, 64).unwrap(), &v, &w, bf).unwrap();
        let mut wide = vec![0.0f32; v.len()];
        enc.decode(0, &mut wide);
        let mut narrow = vec![half::bf16::ZERO; v.len()];
        enc.decode(0, &mut narrow);
        let mut f64s = vec![0.0f64; v.len()];
        enc.decode(0, &mut f64s);
        for j in 0..v.len() {
            assert_eq!(narrow[j], half::bf16::from_f32(wide[j]), "{name} {j}");
            assert_eq!(f64s[j], f64::from(wide[j]), "{name} {j}");
        }
    }
}

#[test]
fn a_scale_that_would_overflow_the_dtype_is_refused() {
    // float16's largest is 65504: its scale 65504 / 127 = 515.78 rounds up
    // to 516, and 127 * 516 = 65532 rounds to infinity.
    let f16r = |x: f32| half::f16::from_f32(x).to_f32();
    let r = encode(
        Encoding::parse("int8", 128).unwrap(),
        &[65504.0, 1.0],
        &[],
        f16r,
    );
    assert!(r.unwrap_err().msg.contains("overflows"));
    // One step lower the scale rounds down and the codes decode finite.
    let ok = encode(
        Encoding::parse("int8", 128).unwrap(),
        &[65000.0, 1.0],
        &[],
        f16r,
    )
    .unwrap();
    let mut out = [half::f16::ZERO; 2];
    ok.decode(0, &mut out);
    assert!(out.iter().all(|y| y.is_finite()));
}

#[test]
fn the_code_encoders_never_write_decodes_as_minus_q() {
    // int8 code 0x80 (-128) and int4 code 0x8 (-8) decode as -127 and -7
    // scales, so no code exceeds q * scale.
    for (bits, codes, q) in [(8, vec![0x80u8, 0x81], 127.0), (4, vec![0x98], 7.0)] {
        let e = Encoded {
            encoding: Encoding::Int { bits, group: 2 },
            len: 2,
            codes: codes.into(),
            table: vec![2.0],
        };
        let mut out = [0f32; 2];
        e.decode(0, &mut out);
        assert_eq!(out, [-q * 2.0, -(q * 2.0)]);
    }
}

#[test]
fn raw_is_never_an_encoding_that_checks() {
    let e = Encoded {
        encoding: Encoding::Raw,
        len: 0,
        codes: vec![].into(),
        table: vec![],
    };
    assert!(e.check(0).is_err());
}
