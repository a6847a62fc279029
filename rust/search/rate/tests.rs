use super::*;

/// Bisects `excess` from no points; returns the evaluations made.
fn run(excess: impl Fn(f64) -> f64, tol: f64) -> Vec<(f64, f64)> {
    let mut seen = Vec::new();
    bisect(
        |x| {
            let e = excess(x);
            seen.push((x, e));
            e
        },
        &[],
        1.0,
        tol,
        MAX_PASSES,
    );
    seen
}

fn closest(seen: &[(f64, f64)]) -> f64 {
    seen.iter().fold(f64::INFINITY, |m, p| m.min(p.1.abs()))
}

/// The tightest `(lo, hi)` the points bracket the root with, within `[0, 1]`
/// (`lo` the largest point above the target, `hi` the smallest below).
fn bracket(seen: &[(f64, f64)]) -> (f64, f64) {
    seen.iter().fold((0.0f64, 1.0f64), |(lo, hi), p| {
        if p.1 > 0.0 {
            (lo.max(p.0), hi)
        } else {
            (lo, hi.min(p.0))
        }
    })
}

#[test]
fn bisection_finds_a_narrow_window_between_plateaus() {
    // Flat almost everywhere (secant steps learn nothing), with the target
    // crossed only on (0.7301, 0.7302); a staircase inside it.
    let f = |x: f64| {
        if x < 0.7301 {
            0.3
        } else if x > 0.7302 {
            -0.3
        } else {
            0.3 - 0.6 * ((x - 0.7301) / 1e-4 * 64.0).floor() / 64.0
        }
    };
    let seen = run(f, 1e-3);
    assert!(closest(&seen) <= 1e-2, "{seen:?}");
    assert!(seen.len() <= 40, "{} evaluations", seen.len());
    assert!(seen.iter().all(|p| (0.0..=1.0).contains(&p.0)));
}

#[test]
fn bisection_reports_an_unreachable_target_at_a_jump() {
    // A jump straddles the target (ties): the closest side is returned
    // once the bracket has closed, within the evaluation budget.
    let f = |x: f64| if x < 0.25 { 0.4 } else { -0.1 };
    let seen = run(f, 1e-3);
    assert_eq!(closest(&seen), 0.1);
    assert!(seen.len() <= MAX_PASSES);
    let (lo, hi) = bracket(&seen);
    assert!(
        lo < 0.25 && 0.25 <= hi && hi - lo <= 2.0 * MIN_WIDTH * hi,
        "{lo} {hi}"
    );
}

#[test]
fn bisection_settles_for_the_promise_after_its_patience() {
    // A jump from within the promised 0.2 points (but not the aim) to far
    // below: once PATIENCE passes are spent, the near side is accepted
    // instead of bisecting the jump closed (about 20 more passes).
    let f = |x: f64| if x < 0.25 { 0.0018 } else { -0.1 };
    let seen = run(f, FULL_TOLERANCE);
    assert_eq!(closest(&seen), 0.0018);
    assert!(seen.len() <= PATIENCE, "{} evaluations", seen.len());
    // Beyond the promise, the jump is still bisected closed.
    let seen = run(|x| if x < 0.25 { 0.0021 } else { -0.1 }, FULL_TOLERANCE);
    let (lo, hi) = bracket(&seen);
    assert!(hi - lo <= 2.0 * MIN_WIDTH * hi, "{lo} {hi}");
    // Within the aim, it stops as soon as it gets there.
    let seen = run(|x| 0.3 - 0.6 * x, FULL_TOLERANCE);
    assert!(closest(&seen) <= FULL_TOLERANCE);
}

#[test]
fn bisection_stops_at_an_end_beyond_which_the_target_lies() {
    // Even lam = top keeps too many: one evaluation, at top.
    let seen = run(|x| 0.2 - 0.1 * x, 1e-3);
    assert_eq!(seen, vec![(1.0, 0.1)]);
    // Even lam = 0 keeps too few.
    let seen = run(|x| -0.2 - 0.1 * x, 1e-3);
    assert_eq!(seen.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1.0, 0.0]);
}

#[test]
fn bisection_is_the_same_at_any_scale() {
    // Scores near f64::MAX (or tiny ones): the same steps, scaled, as at scale 1.
    let f = |x: f64| 0.3 - 0.6 * x.sqrt();
    let at = |scale: f64| {
        let mut seen = Vec::new();
        bisect(
            |x| {
                let e = f(x / scale);
                seen.push((x / scale, e));
                e
            },
            &[],
            scale,
            1e-4,
            MAX_PASSES,
        );
        seen
    };
    let one = at(1.0);
    assert!(closest(&one) <= 1e-4, "{one:?}");
    assert_eq!(at(2f64.powi(1000)), one);
    assert_eq!(at(2f64.powi(-900)), one); // (its floor, 2^-60 of the top, stays a normal float)
}

#[test]
fn bisection_reaches_towards_zero_geometrically() {
    // Kept counts that change on a log scale near 0 (zeros kept as lam -> 0).
    let f = |x: f64| {
        if x <= 0.0 {
            0.5
        } else {
            -0.01 * (x.log2() + 40.0)
        }
    };
    let seen = run(f, 1e-3);
    assert!(closest(&seen) <= 1e-3, "{seen:?}");
    assert!(seen.len() <= 20, "{} evaluations", seen.len());
}

/// Runs [`solve`], returning its result and the points it evaluated.
fn solve_seen(
    f: impl Fn(f64) -> f64,
    x0: f64,
    slope0: f64,
    tol: f64,
) -> ((f64, f64), Vec<(f64, f64)>) {
    let mut seen = Vec::new();
    let (best, _) = solve(
        |x| {
            let e = f(x);
            seen.push((x, e));
            e
        },
        x0,
        slope0,
        tol,
        12,
    );
    (best, seen)
}

#[test]
fn a_secant_step_with_the_right_slope_lands_on_a_linear_root() {
    // f(x) = 2 (x - 0.3) from x0 = 0.9 with slope 2: the first step is exact.
    let (best, seen) = solve_seen(|x| 2.0 * (x - 0.3), 0.9, 2.0, 1e-9);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        best.1.abs() <= 1e-9 && (best.0 - 0.3).abs() <= 1e-9,
        "{best:?}"
    );
}

#[test]
fn solve_steps_on_while_the_sign_has_not_changed() {
    // Convex and increasing: secant steps from the right approach the root
    // from one side before they bracket it.
    let f = |x: f64| x * x * x - 0.125;
    let (best, seen) = solve_seen(f, 1.0, 8.0, 1e-6);
    assert!(best.1.abs() <= 1e-6, "{seen:?}");
    assert!(seen.len() <= 8, "{seen:?}");
    // The first steps stay above the root.
    assert!(seen[1].1 > 0.0 && seen[2].1 > 0.0, "{seen:?}");
}

#[test]
fn solve_returns_at_once_when_a_step_cannot_move() {
    // Already below the target at x = 1 and increasing: the step to the right
    // is clamped back to 1, which is where it started.
    let (best, seen) = solve_seen(|x| x - 2.0, 1.0, 1.0, 1e-6);
    assert_eq!(seen, vec![(1.0, -1.0)]);
    assert_eq!(best, (1.0, -1.0));
}

/// A layout of `steps` steps of one weight each in blocks of `block_steps`.
fn layout(steps: usize, block_steps: usize) -> Layout {
    let cfg = crate::VdConfig::from_seed(4, 1, 1, 4, 8, 1).unwrap();
    Layout::new(&cfg, steps, block_steps).unwrap()
}

#[test]
fn sampling_starts_where_the_sample_is_an_eighth_of_the_tensor() {
    let len = 64;
    // At least MIN_PIECES whole blocks: eight times that is the least tensor
    // that is sampled (a last, partial block is never drawn).
    assert_eq!(sample_pieces(&layout(8 * MIN_PIECES * len - 1, len)), None);
    assert_eq!(sample_pieces(&layout(3 * MIN_PIECES * len, len)), None);
    for steps in [8 * MIN_PIECES * len, 100_000, 1 << 20] {
        let pieces = sample_pieces(&layout(steps, len)).expect("sampled");
        let full = steps / len;
        let m = (full / SAMPLE_SHARE).max(MIN_PIECES);
        assert_eq!(pieces.len(), m);
        // Whole blocks, one in each m-th of the full blocks, in order.
        for (i, p) in pieces.iter().enumerate() {
            assert_eq!(p.1, len);
            assert_eq!(p.0 % len, 0, "{p:?}");
            let b = p.0 / len;
            assert!(i * full / m <= b && b < (i + 1) * full / m, "{i} {p:?}");
        }
        // Not evenly spaced: the gaps between draws differ.
        let gaps: Vec<_> = pieces.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(gaps.iter().any(|&g| g != gaps[0]), "{gaps:?}");
    }
}

#[test]
fn the_first_sample_is_a_few_blocks_of_a_tensor_of_twice_as_many() {
    let len = 64;
    assert_eq!(first_pieces(&layout(2 * FIRST_PIECES * len - 1, len)), None);
    for steps in [2 * FIRST_PIECES * len, 5_000, 1 << 20] {
        let pieces = first_pieces(&layout(steps, len)).expect("sampled");
        let full = steps / len;
        assert_eq!(pieces.len(), FIRST_PIECES);
        for (i, p) in pieces.iter().enumerate() {
            let b = p.0 / len;
            assert_eq!((p.0 % len, p.1), (0, len), "{p:?}");
            assert!(
                i * full / FIRST_PIECES <= b && b < (i + 1) * full / FIRST_PIECES,
                "{i} {p:?}"
            );
        }
    }
    // Drawn apart from the larger sample's blocks.
    let l = layout(1 << 20, len);
    assert_ne!(
        first_pieces(&l).unwrap(),
        sample_pieces(&l).unwrap()[..FIRST_PIECES]
    );
}

#[test]
fn a_slope_is_handed_on_only_from_points_spread_apart() {
    // An exact line: its slope, whatever the order of the points.
    let line = [(0.10, -0.05), (0.30, 0.05), (0.20, 0.0)];
    assert!((spread_slope(&line).unwrap() - 0.5).abs() < 1e-12);
    // Noise on a narrow step (a secant of 10) is not handed on.
    assert_eq!(spread_slope(&[(0.2000, 0.0), (0.2005, 0.005)]), None);
    // Nor a flat, falling or single-point fit.
    assert_eq!(spread_slope(&[(0.1, 0.01), (0.3, 0.01)]), None);
    assert_eq!(spread_slope(&[(0.1, 0.01), (0.3, -0.01)]), None);
    assert_eq!(spread_slope(&[(0.1, 0.01)]), None);
}

#[test]
fn bisection_closes_a_bracket_relative_to_its_upper_end() {
    // A jump at 0.75 of the top, at two scales: the bracket is closed at the
    // same relative width, with the same steps.
    let at = |scale: f64| {
        let mut seen = Vec::new();
        bisect(
            |x| {
                let e = if x < 0.75 * scale { 0.4 } else { -0.1 };
                seen.push((x / scale, e));
                e
            },
            &[],
            scale,
            1e-3,
            MAX_PASSES,
        );
        seen
    };
    let one = at(1.0);
    let (lo, hi) = bracket(&one);
    assert!(
        hi - lo <= MIN_WIDTH * hi && hi - lo > 0.25 * MIN_WIDTH * hi,
        "{lo} {hi}"
    );
    assert!(one.len() < MAX_PASSES, "{}", one.len());
    assert_eq!(at(2f64.powi(40)), one);
    assert_eq!(at(2f64.powi(-40)), one);
}

#[test]
fn the_sampling_hash_is_splitmix64() {
    assert_eq!(mix(0), 0xE220_A839_7B1D_CDAF);
    for i in [1u64, 7, 1 << 40, u64::MAX] {
        assert_eq!(mix(i), crate::vd::SplitMix64::new(i).next(), "{i}");
    }
}

fn raw_searcher<'a>(scores: &'a [f64], block_steps: usize) -> Searcher<'a> {
    let cfg = crate::VdConfig::from_seed(8, 1, 5, 5, 3, 0).unwrap();
    let layout = Layout::new(&cfg, scores.len(), block_steps).unwrap();
    let scores = crate::Scores::new(crate::Weights::F64(scores), crate::Score::Raw);
    Searcher::new(&cfg, layout, scores, 1 << 30).unwrap()
}

#[test]
fn quantiles_interpolate_the_sorted_scores() {
    // 1 ..= 1000 in a scrambled order: every score is sampled (one stratum each).
    let scores: Vec<f64> = (0..1000).map(|i| (i * 389 % 1000 + 1) as f64).collect();
    let s = raw_searcher(&scores, 64);
    let q = Quantiles::new(&s);
    assert_eq!(q.lam(0.0), top(&s));
    assert_eq!(q.lam(1.0), 0.0);
    assert_eq!(q.lam(0.5), 500.5);
    assert!((q.lam(1.0 - 250.0 / 1001.0) - 250.0).abs() < 1e-9);
    let lams: Vec<f64> = (0..=100).map(|i| q.lam(f64::from(i) / 100.0)).collect();
    assert!(lams.windows(2).all(|w| w[0] >= w[1]), "{lams:?}");
    // Outside [0, 1], the ends.
    assert_eq!(q.lam(-1.0), top(&s));
    assert_eq!(q.lam(2.0), 0.0);
}

#[test]
fn a_sampled_tensor_reaches_its_rate_in_about_one_full_pass() {
    // Scores with rows of different scale, large enough to be sampled.
    let mut rng = crate::vd::SplitMix64::new(3);
    let scores: Vec<f64> = (0..1 << 20)
        .map(|i| (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * (1.0 + (i / 4096 % 5) as f64))
        .collect();
    let s = raw_searcher(&scores, 256);
    assert!(sample_pieces(s.layout()).is_some());
    let mut index = vec![0u64; s.layout().index_len()];
    let r = prune_to_rate(&s, 0.9, &mut index).unwrap();
    let kept = r.kept as f64 / scores.len() as f64;
    assert!((kept - 0.1).abs() <= FULL_TOLERANCE, "{r:?}");
    // One full pass, the sample's share of a pass per sample search, and two
    // corrections at most (this VD's kept share is steeper in the density
    // than the default's, and the sample's estimate is off by 0.3 point).
    assert!(r.passes > 1.0 && r.passes <= 3.5, "{r:?}");
    assert_ne!(r.passes.fract(), 0.0, "{r:?}");
}

#[test]
fn the_estimate_follows_the_magnitude_share_through_the_sample() {
    // Kept counts an exact line in the blocks' counts above lam: the
    // estimate is that line at the whole tensor's share.
    let above = [10, 40, 20, 70];
    let kept: Vec<usize> = above.iter().map(|a| a / 2 + 5).collect();
    let e = estimate(&kept, &above, 0.3, 100.0);
    assert!((e - (0.5 * 0.3 + 0.05)).abs() < 1e-12, "{e}");
    // Every block alike: nothing to regress on, the sample's mean stands.
    assert_eq!(estimate(&[7, 9], &[30, 30], 0.9, 10.0), 0.8);
}

#[test]
fn solve_stops_after_its_evaluations() {
    // A tolerance never met: every call makes exactly `evals` evaluations,
    // before and after the root is bracketed.
    for evals in [1, 2, 3, 6] {
        let mut n = 0;
        solve(
            |x| {
                n += 1;
                2.0 * (x - 0.3) + (x - 0.3).powi(3)
            },
            0.9,
            1.0,
            -1.0,
            evals,
        );
        assert_eq!(n, evals);
    }
}

#[test]
fn the_prior_runs_through_its_knots_and_rises_with_the_share() {
    for &(d, x, slope) in &PRIOR {
        let (px, ps) = prior(d);
        assert!((px - x).abs() < 1e-12 && (ps - slope).abs() < 1e-12, "{d}");
    }
    let xs: Vec<f64> = (0..=200).map(|i| prior(f64::from(i) / 200.0).0).collect();
    assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
    assert_eq!((prior(-1.0).0, prior(2.0).0), (0.0, 1.0));
}

/// |N(0, 1)| draws (Box-Muller on SplitMix64).
fn half_normal(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = crate::vd::SplitMix64::new(seed);
    let mut u = || ((rng.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (0..n)
        .map(|_| ((-2.0 * u().ln()).sqrt() * (std::f64::consts::TAU * u()).cos()).abs())
        .collect()
}

#[test]
fn a_tensor_too_small_to_sample_starts_near_its_root() {
    // The default VD on a tensor of 12 blocks: every search is a full pass,
    // and the prior's start needs at most a correction or two (from x = d
    // the first two passes alone missed by 4-6 points).
    let scores = half_normal(12 * 5 * 1024, 5);
    for rate in [0.5, 0.7, 0.9, 0.95] {
        let (nc, k) = crate::vd::default_comparator(rate);
        let cfg = crate::VdConfig::from_seed(10, 1, 5, nc, k, 0).unwrap();
        let layout = Layout::new(&cfg, scores.len(), 1024).unwrap();
        let sc = crate::Scores::new(crate::Weights::F64(&scores), crate::Score::Raw);
        let s = Searcher::new(&cfg, layout, sc, 1 << 30).unwrap();
        assert!(first_pieces(&layout).is_none());
        let mut index = vec![0u64; layout.index_len()];
        let r = prune_to_rate(&s, rate, &mut index).unwrap();
        let kept = r.kept as f64 / scores.len() as f64;
        assert!(
            (kept - (1.0 - rate)).abs() <= FULL_TOLERANCE,
            "{rate}: {r:?}"
        );
        assert!(r.passes <= 3.0, "{rate}: {r:?}");
    }
}

#[test]
fn a_pass_that_takes_the_sampled_blocks_is_the_full_pass() {
    // 40 blocks: the eight-block sample runs and is the last stage, so the
    // first full pass takes its blocks as they are; the index returned must
    // be the whole search at the returned lam, bit for bit.
    for (rate, seed) in [(0.5, 1), (0.9, 2), (0.95, 3)] {
        let scores = half_normal(40 * 5 * 1024, seed);
        let (nc, k) = crate::vd::default_comparator(rate);
        let cfg = crate::VdConfig::from_seed(10, 1, 5, nc, k, 0).unwrap();
        let layout = Layout::new(&cfg, scores.len(), 1024).unwrap();
        let sc = crate::Scores::new(crate::Weights::F64(&scores), crate::Score::Raw);
        let s = Searcher::new(&cfg, layout, sc, 1 << 30).unwrap();
        assert!(first_pieces(&layout).is_some() && sample_pieces(&layout).is_none());
        let mut index = vec![0u64; layout.index_len()];
        let r = prune_to_rate(&s, rate, &mut index).unwrap();
        let mut whole = vec![0u64; layout.index_len()];
        let results = s.run(r.lam, &mut whole).unwrap();
        assert_eq!(index, whole, "{rate}");
        assert_eq!(r.kept, results.iter().map(|b| b.kept).sum::<usize>());
    }
}
