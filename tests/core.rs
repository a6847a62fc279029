//! Core tests against the shared conformance vectors and against a scalar,
//! step-by-step reference VD with brute-force search over every input.

use serde_json::Value;
use vitrust::with_threads;
use vitrust::Level;
use vitrust::{prune_to_rate, Expander, Layout, Score, Scores, Searcher, VdConfig, Weights};

const MAX_BYTES: usize = vitrust::DEFAULT_MAX_SEARCH_BYTES;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/vd_v1.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn u(v: &Value, key: &str) -> u32 {
    v[key].as_u64().unwrap() as u32
}

fn config(v: &Value) -> VdConfig {
    let taps = v["taps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap() as u32)
        .collect();
    VdConfig::new(
        u(v, "k"),
        u(v, "n_in"),
        u(v, "n_out"),
        u(v, "nc"),
        u(v, "K"),
        taps,
    )
    .unwrap()
}

/// A searcher over `weights` with the default memory limit.
fn searcher<'a>(
    cfg: &VdConfig,
    layout: Layout,
    weights: Weights<'a>,
    score: Score,
) -> Searcher<'a> {
    Searcher::new(cfg, layout, Scores::new(weights, score), MAX_BYTES).unwrap()
}

fn pack(bits: &[bool]) -> Vec<u64> {
    let mut words = vec![0u64; bits.len().div_ceil(64)];
    for (i, &b) in bits.iter().enumerate() {
        words[i / 64] |= u64::from(b) << (i % 64);
    }
    words
}

fn bools(s: &str) -> Vec<bool> {
    s.bytes().map(|c| c == b'1').collect()
}

/// The core's plain step loop (`vitrust::vd::step`), the reference the fast
/// decoders are tested against, on unpacked bits.
fn reference_expand(cfg: &VdConfig, bits: &[bool], steps: usize) -> Vec<bool> {
    let valid = steps * cfg.n_out() as usize;
    let mask = vitrust::reference_bits(cfg, &pack(bits), steps, valid);
    (0..valid)
        .map(|i| (mask[i / 64] >> (i % 64)) & 1 == 1)
        .collect()
}

#[test]
fn expand_matches_the_conformance_vectors() {
    for v in vectors()["expand"].as_array().unwrap() {
        let cfg = config(v);
        let steps = v["steps"].as_u64().unwrap() as usize;
        let want = bools(v["mask"].as_str().unwrap());
        let bits = bools(v["bits"].as_str().unwrap());
        assert_eq!(reference_expand(&cfg, &bits, steps), want);
        let layout = Layout::new(&cfg, want.len(), steps).unwrap();
        let mut got = vec![false; want.len()];
        Expander::new(&cfg, layout)
            .mask(&pack(&bits), &mut got)
            .unwrap();
        assert_eq!(got, want, "config {v:?}");
    }
}

fn metric(mask: &[bool], scores: &[f64], lam: f64) -> f64 {
    mask.iter()
        .zip(scores)
        .filter(|(m, _)| **m)
        .map(|(_, s)| s - lam)
        .sum()
}

#[test]
fn search_matches_the_conformance_vectors() {
    for v in vectors()["search"].as_array().unwrap() {
        let cfg = config(v);
        let steps = v["steps"].as_u64().unwrap() as usize;
        let scores: Vec<f64> = v["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        let lam = v["lam"].as_f64().unwrap();
        let want = v["metric"].as_f64().unwrap();
        // float32 metrics: a looser bound would accept strictly worse masks.
        let tol = 1e-5 * scores.iter().map(|s| (s - lam).abs()).sum::<f64>();
        assert!((metric(&bools(v["mask"].as_str().unwrap()), &scores, lam) - want).abs() <= tol);

        let layout = Layout::new(&cfg, scores.len(), steps).unwrap();
        // float32 metrics within their tolerance, integer ones (the default
        // where they apply) within the looser one the objective allows.
        for (float, tol) in [(true, tol), (false, 1e-3 * tol / 1e-5)] {
            let mut s = searcher(&cfg, layout, Weights::F64(&scores), Score::Raw);
            if float {
                s = s.with_float_metrics();
            }
            let mut index = vec![0u64; layout.index_len()];
            let res = s.run(lam, &mut index).unwrap();
            let mut mask = vec![false; scores.len()];
            Expander::new(&cfg, layout).mask(&index, &mut mask).unwrap();
            let got = metric(&mask, &scores, lam);
            assert!(
                got <= want + tol && got >= want - tol,
                "got {got}, want {want} for {v:?}"
            );
            assert!((res[0].metric - got).abs() <= 1e-6 * tol.max(1.0));
            assert_eq!(res[0].kept, mask.iter().filter(|m| **m).count());
        }
    }
}

/// A small deterministic generator for test data.
fn lcg(seed: &mut u64) -> f64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (*seed >> 11) as f64 / (1u64 << 53) as f64
}

#[test]
fn search_is_optimal_against_brute_force() {
    let configs = [
        (1, 1, 2, 1, 1),
        (3, 1, 3, 2, 1),
        (4, 1, 5, 3, 2),
        (4, 2, 4, 2, 1),
        (6, 2, 10, 5, 3),
        (5, 3, 6, 2, 1),
        (2, 2, 3, 1, 1),
    ];
    let mut seed = 42u64;
    for (i, &(k, n_in, n_out, nc, th)) in configs.iter().enumerate() {
        let cfg = VdConfig::from_seed(k, n_in, n_out, nc, th, i as u64).unwrap();
        let steps = (12 / n_in as usize).min(8);
        let n = steps * n_out as usize - 1; // a ragged end too
        let scores: Vec<f64> = (0..n).map(|_| lcg(&mut seed).powi(2) * 3.0).collect();
        for lam in [0.2, 0.9, 2.0] {
            let nbits = steps * n_in as usize;
            let best = (0..1u64 << nbits)
                .map(|word| {
                    let bits: Vec<bool> = (0..nbits).map(|b| word >> b & 1 == 1).collect();
                    metric(&reference_expand(&cfg, &bits, steps)[..n], &scores, lam)
                })
                .fold(f64::NEG_INFINITY, f64::max);
            let layout = Layout::new(&cfg, n, steps).unwrap();
            let s = searcher(&cfg, layout, Weights::F64(&scores), Score::Raw);
            let mut index = vec![0u64; layout.index_len()];
            s.run(lam, &mut index).unwrap();
            let mut mask = vec![false; n];
            Expander::new(&cfg, layout).mask(&index, &mut mask).unwrap();
            let tol = 1e-5 * scores.iter().map(|s| (s - lam).abs()).sum::<f64>();
            let got = metric(&mask, &scores, lam);
            assert!(
                (got - best).abs() <= tol,
                "config {i} lam {lam}: got {got}, optimum {best}"
            );
        }
    }
}

#[test]
fn rate_control_hits_the_target_and_is_thread_independent() {
    let cfg = VdConfig::from_seed(8, 1, 5, 5, 3, 0).unwrap();
    let mut seed = 7u64;
    let w: Vec<f32> = (0..60_000).map(|_| (lcg(&mut seed) - 0.5) as f32).collect();
    let layout = Layout::new(&cfg, w.len(), 256).unwrap();
    let s = searcher(&cfg, layout, Weights::F32(&w), Score::Abs);
    let run = |threads| {
        let mut index = vec![0u64; layout.index_len()];
        let r = with_threads(Some(threads), || prune_to_rate(&s, 0.9, &mut index))
            .unwrap()
            .unwrap();
        (index, r)
    };
    let (i1, r1) = run(1);
    let (i2, r2) = run(2);
    assert_eq!(i1, i2);
    assert_eq!(r1, r2);
    let rate = 1.0 - r1.kept as f64 / w.len() as f64;
    assert!((rate - 0.9).abs() <= 2e-3, "rate {rate}");
    let counts = Expander::new(&cfg, layout).counts(&i1).unwrap();
    assert_eq!(counts.iter().sum::<usize>(), r1.kept);
}

#[test]
fn gather_and_scatter_round_trip() {
    let cfg = VdConfig::from_seed(5, 2, 6, 2, 2, 3).unwrap();
    let n = 1001;
    let layout = Layout::new(&cfg, n, 17).unwrap();
    let mut seed = 1u64;
    let index: Vec<u64> = (0..layout.index_len())
        .map(|_| (lcg(&mut seed) * u64::MAX as f64) as u64)
        .collect();
    let w: Vec<f64> = (0..n).map(|i| i as f64 + 1.0).collect();
    let e = Expander::new(&cfg, layout);
    let mut mask = vec![false; n];
    e.mask(&index, &mut mask).unwrap();
    let (values, starts) = e.gather(&index, &w).unwrap();
    let want: Vec<f64> = w
        .iter()
        .zip(&mask)
        .filter(|(_, m)| **m)
        .map(|(x, _)| *x)
        .collect();
    assert_eq!(values, want);
    let mut dense = vec![-1.0; n];
    e.scatter(&index, &values, Some(&starts), &mut dense)
        .unwrap();
    for i in 0..n {
        assert_eq!(dense[i], if mask[i] { w[i] } else { 0.0 });
    }
    assert!(e.scatter(&index, &values[1..], None, &mut dense).is_err());
    assert!(e.scatter_vec(&index, &values[1..], None).is_err());
    assert!(e.scatter_vec(&index, &values[1..], Some(&starts)).is_err());
    assert_eq!(e.scatter_vec(&index, &values, None).unwrap(), dense);
    assert_eq!(e.mask_vec(&index).unwrap(), mask);
    assert!(e.mask_vec(&index[1..]).is_err());
    assert!(e
        .scatter(&index, &values[1..], Some(&starts), &mut dense)
        .is_err());
    assert!(e.mask(&index[1..], &mut mask).is_err());
}

#[test]
fn every_instruction_set_gives_the_same_bits() {
    let mut seed = 99u64;
    for (k, n_in, n_out, nc, th) in [
        (6, 1, 5, 5, 3),
        (8, 1, 4, 3, 2),
        (10, 1, 5, 5, 3),
        (11, 1, 3, 2, 1),
        (7, 1, 1, 1, 1),
        (10, 2, 10, 5, 3),
        (7, 2, 6, 3, 2),
    ] {
        let cfg = VdConfig::from_seed(k, n_in, n_out, nc, th, k as u64).unwrap();
        let w: Vec<f32> = (0..20_011).map(|_| (lcg(&mut seed) - 0.5) as f32).collect();
        let layout = Layout::new(&cfg, w.len(), 300).unwrap();
        let run = |level: Level| {
            let s = searcher(&cfg, layout, Weights::F32(&w), Score::Abs)
                .with_level(level)
                .unwrap();
            let mut index = vec![0u64; layout.index_len()];
            let res = s.run(0.3, &mut index).unwrap();
            (index, res)
        };
        let reference = run(Level::Portable);
        for level in Level::all().into_iter().filter(|l| l.available()) {
            assert!(
                run(level) == reference,
                "k = {k}, n_in = {n_in}, n_out = {n_out}: {level:?} differs from portable"
            );
        }
    }
}

#[test]
fn scatter_of_four_byte_values_overwrites_everything() {
    let cfg = VdConfig::from_seed(8, 1, 5, 3, 3, 4).unwrap();
    let n = 3 * 5120 + 77;
    let layout = Layout::new(&cfg, n, 1024).unwrap();
    let mut seed = 5u64;
    let index: Vec<u64> = (0..layout.index_len())
        .map(|_| (lcg(&mut seed) * u64::MAX as f64) as u64)
        .collect();
    let w: Vec<f32> = (0..n).map(|i| i as f32 - 0.5).collect();
    let e = Expander::new(&cfg, layout);
    let mut mask = vec![false; n];
    e.mask(&index, &mut mask).unwrap();
    let (values, starts) = e.gather(&index, &w).unwrap();
    let mut dense = vec![f32::NAN; n];
    e.scatter(&index, &values, Some(&starts), &mut dense)
        .unwrap();
    for i in 0..n {
        assert_eq!(
            dense[i].to_bits(),
            if mask[i] { w[i] } else { 0.0 }.to_bits(),
            "weight {i}"
        );
    }
}

#[test]
fn rate_control_on_periodic_filters_stays_in_range() {
    // Filters of 64 taps, 16 of them carrying signal, 2^22 weights: a quantile
    // sample with a stride of 64 would see only noise taps and extrapolate
    // lam far past the largest score (issue 10).
    let mut seed = 11u64;
    let w: Vec<f32> = (0..1usize << 22)
        .map(|i| {
            let scale = if (24..40).contains(&(i % 64)) {
                0.3
            } else {
                0.006
            };
            ((lcg(&mut seed) - 0.5) * scale) as f32
        })
        .collect();
    let max = w.iter().fold(0.0f64, |m, x| m.max(f64::from(x.abs())));
    for (rate, (nc, k)) in [(0.9, (7, 13)), (0.5, (5, 16))] {
        let cfg = VdConfig::from_seed(10, 1, 5, nc, k, 0).unwrap();
        let layout = Layout::new(&cfg, w.len(), 1024).unwrap();
        let s = searcher(&cfg, layout, Weights::F32(&w), Score::Abs);
        let mut index = vec![0u64; layout.index_len()];
        let r = prune_to_rate(&s, rate, &mut index).unwrap();
        let got = 1.0 - r.kept as f64 / w.len() as f64;
        assert!(
            (0.0..=max.next_up()).contains(&r.lam),
            "lam {} above {max}",
            r.lam
        );
        assert!((got - rate).abs() <= 2e-3, "rate {got} for {rate}");
        let counts = Expander::new(&cfg, layout).counts(&index).unwrap();
        assert_eq!(counts.iter().sum::<usize>(), r.kept);
    }
}

/// Structured tensors of `n` weights: i.i.d., rows of very different scale,
/// mostly zero, and periodic filters.
fn structured(n: usize, seed: &mut u64) -> Vec<(&'static str, Vec<f32>)> {
    let mut draw = |f: &dyn Fn(usize, f64) -> f64| -> Vec<f32> {
        (0..n).map(|i| f(i, lcg(seed) - 0.5) as f32).collect()
    };
    vec![
        ("iid", draw(&|_, u| u)),
        (
            "row-scaled",
            draw(&|i, u| u * f64::from(1u32 << ((i / 700) % 9))),
        ),
        (
            "mostly zero",
            draw(&|i, u| if i % 10 == 3 { u } else { 0.0 }),
        ),
        (
            "periodic",
            draw(&|i, u| ((i % 9) as f64 - 4.0) * (1.0 + 0.01 * u)),
        ),
    ]
}

#[test]
fn integer_metrics_stay_within_tolerance_and_fall_back_when_out_of_range() {
    let mut seed = 3u64;
    for (k, n_out, nc, th) in [(8, 5, 5, 3), (12, 5, 5, 3), (6, 4, 3, 2)] {
        let cfg = VdConfig::from_seed(k, 1, n_out, nc, th, 2).unwrap();
        let steps = 512;
        let per_block = steps * n_out as usize;
        for (name, mut w) in structured(12 * per_block, &mut seed) {
            // One block holds an outlier no int16 window can take.
            w[5 * per_block + 100] = 1e4;
            let layout = Layout::new(&cfg, w.len(), steps).unwrap();
            let mut sorted: Vec<f32> = w.iter().map(|v| v.abs()).collect();
            sorted.sort_by(f32::total_cmp);
            let lam = f64::from(sorted[w.len() * 7 / 10]);
            let run = |float: bool| {
                let mut s = searcher(&cfg, layout, Weights::F32(&w), Score::Abs);
                if float {
                    s = s.with_float_metrics();
                }
                let mut index = vec![0u64; layout.index_len()];
                let res = s.run(lam, &mut index).unwrap();
                (index, res)
            };
            let ((fi, fr), (ii, ir)) = (run(true), run(false));
            assert!(fr.iter().all(|r| !r.integer));
            for (b, (f, i)) in fr.iter().zip(&ir).enumerate() {
                let g = &w[b * per_block..(b + 1) * per_block];
                let tol = 1e-3
                    * g.iter()
                        .map(|v| (f64::from(v.abs()) - lam).abs())
                        .sum::<f64>();
                let what = format!("k {k} {name} block {b}");
                assert!(
                    i.metric >= f.metric - tol,
                    "{what}: {} {}",
                    i.metric,
                    f.metric
                );
                assert!(
                    i.metric <= f.metric + 1e-2 * tol,
                    "{what}: {} {}",
                    i.metric,
                    f.metric
                );
                if !i.integer {
                    // The float32 search, bit for bit.
                    assert_eq!(i, f, "{what}");
                    let words = layout.words(b);
                    assert_eq!(ii[words.clone()], fi[words], "{what}");
                }
            }
            assert!(!ir[5].integer, "k {k} {name}: the outlier's block");
            let share = ir.iter().filter(|r| r.integer).count() as f64 / ir.len() as f64;
            assert!(share >= 0.8, "k {k} {name}: {share} of blocks on integers");
        }
    }
}
