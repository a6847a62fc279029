//! The searcher's own rules: its largest score, the share that predicts each
//! block's threshold, the memory it refuses and how blocks choose thresholds.

use super::*;
use crate::{Score, Weights};

fn config() -> VdConfig {
    VdConfig::from_seed(6, 1, 5, 5, 3, 11).unwrap()
}

/// A searcher of `w`'s magnitudes at `cfg`, blocks of 128 steps, a roomy budget.
fn searcher<'a>(cfg: &VdConfig, w: &'a [f32]) -> Searcher<'a> {
    let layout = Layout::new(cfg, w.len(), 128).unwrap();
    Searcher::new(
        cfg,
        layout,
        Scores::new(Weights::F32(w), Score::Abs),
        1 << 30,
    )
    .unwrap()
}

fn scores(n: usize) -> Vec<f32> {
    // Deterministic, uneven magnitudes with both signs.
    (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 250.0 - 2.0) * (1.0 + (i % 13) as f32))
        .collect()
}

#[test]
fn the_largest_score_is_the_largest_magnitude() {
    let w = scores(5000);
    let cfg = config();
    let s = searcher(&cfg, &w);
    let want = w.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
    assert_eq!(s.max_score(), want);
    assert!(want > 20.0);
}

#[test]
fn the_share_above_lam_is_counted_only_for_per_block_thresholds() {
    let w = scores(200_000); // more than one of its counting chunks
    let cfg = config();
    let plain = searcher(&cfg, &w);
    assert_eq!(plain.share_above(1.0), 0.0);
    let per_block = searcher(&cfg, &w)
        .with_thresholds(&cfg, ThresholdSearch::predicted(), 1 << 30)
        .unwrap();
    for lam in [0.0, 1.0, 7.5, 100.0] {
        let want = w.iter().filter(|v| f64::from(v.abs()) > lam).count() as f64 / w.len() as f64;
        assert_eq!(per_block.share_above(lam), want, "lam {lam}");
    }
}

#[test]
fn per_block_thresholds_budget_a_table_for_every_threshold_and_the_configs() {
    let cfg = config();
    let w = scores(4096);
    let trellises = Trellises::new(&cfg);
    let range = crate::vd::block_threshold_range(&cfg);
    assert_eq!(trellises.count(), range.clone().count());
    assert_eq!(trellises.count(), 32);
    let tr = Trellis::new(&cfg);
    let workspaces = rayon::current_num_threads() * tr.workspace_bytes(128);
    let need = tr.table_bytes() * (trellises.count() + 1) + workspaces;
    let with = |max| searcher(&cfg, &w).with_thresholds(&cfg, ThresholdSearch::predicted(), max);
    assert!(with(need).is_ok());
    assert!(with(need - 1).is_err());
    assert!(with(tr.table_bytes() * trellises.count() + workspaces).is_err());
}

#[test]
fn denser_blocks_choose_larger_thresholds() {
    // Blocks alternate between large and small magnitudes: at a lam between
    // them, the large blocks keep more, so their predicted threshold is larger.
    let cfg = config();
    let block = 128 * 5;
    let w: Vec<f32> = (0..16 * block)
        .map(|i| {
            let v = 0.5 + (i * 7919 % 997) as f32 / 997.0;
            if (i / block) % 2 == 0 {
                4.0 * v
            } else {
                v
            }
        })
        .collect();
    let s = searcher(&cfg, &w)
        .with_thresholds(&cfg, ThresholdSearch::predicted(), 1 << 30)
        .unwrap();
    let layout = *s.layout();
    let mut index = vec![0u64; layout.index_len()];
    let results = s.run(1.2, &mut index).unwrap();
    assert_eq!(results.len(), layout.n_blocks());
    for pair in results.chunks(2) {
        assert!(pair[0].threshold > pair[1].threshold, "{results:?}");
    }
    let kept: usize = results.iter().map(|r| r.kept).sum();
    let thresholds: Vec<u8> = results.iter().map(|r| r.threshold as u8).collect();
    let counts = crate::Expander::with_thresholds(&cfg, layout, Some(&thresholds))
        .unwrap()
        .counts(&index)
        .unwrap();
    assert_eq!(counts.iter().sum::<usize>(), kept);
}
