//! A shared codebook: weighted k-means over the kept values, initialised
//! linearly between their extremes as Deep Compression does (linear
//! initialisation keeps centroids on the rare large values that density-
//! based initialisations starve, and large values matter most).
//!
//! In one dimension every cluster of a k-means iteration is an interval of
//! the sorted values, so each iteration costs `k` binary searches and
//! prefix-sum lookups, not a pass over the values. A cluster left empty is
//! given the upper half of the cluster of largest error (see [`relocate`]).

use super::pack;
use crate::Result;

/// At most this many Lloyd iterations; they stop earlier once no centroid moves.
const MAX_ITERATIONS: usize = 300;

/// `k` centroids (ascending) minimising `sum w_j (v_j - c(v_j))^2`, each
/// value at its nearest centroid. Deterministic: the same inputs give the
/// same centroids.
pub fn kmeans(values: &[f32], weights: &[f32], k: usize) -> Vec<f32> {
    assert!(k >= 1 && weights.len() == values.len());
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let sorted: Vec<f64> = order.iter().map(|&j| f64::from(values[j])).collect();
    // Prefix sums of w, w v and w v^2 over the sorted values.
    let (mut sw, mut swv, mut swvv) = (vec![0.0f64], vec![0.0f64], vec![0.0f64]);
    for &j in &order {
        let (w, v) = (f64::from(weights[j].max(0.0)), f64::from(values[j]));
        sw.push(sw.last().unwrap() + w);
        swv.push(swv.last().unwrap() + w * v);
        swvv.push(swvv.last().unwrap() + w * v * v);
    }
    let sums = Sums { sw, swv, swvv };
    let (lo, hi) = match (sorted.first(), sorted.last()) {
        (Some(&lo), Some(&hi)) => (lo, hi),
        _ => return vec![0.0; k],
    };
    let mut c: Vec<f64> = (0..k)
        .map(|i| {
            if k == 1 {
                (lo + hi) / 2.0
            } else {
                lo + (hi - lo) * i as f64 / (k - 1) as f64
            }
        })
        .collect();
    for _ in 0..MAX_ITERATIONS {
        // Cluster i: the values above the midpoint below it and up to (ties
        // to the lower centroid) the midpoint above it, all from the
        // iteration's starting centroids.
        let ends: Vec<usize> = (0..k)
            .map(|i| match c.get(i + 1) {
                Some(next) => sorted.partition_point(|&v| v <= (c[i] + next) / 2.0),
                None => sorted.len(),
            })
            .collect();
        let mut moved = false;
        let mut start = 0;
        let (mut held, mut empty) = (Vec::with_capacity(k), Vec::new());
        for (i, (ci, &end)) in c.iter_mut().zip(&ends).enumerate() {
            if sums.weight(start, end) > 0.0 {
                let mean = sums.mean(start, end);
                moved |= mean != *ci;
                *ci = mean;
                held.push((start, end, i));
            } else {
                empty.push(i);
            }
            start = end;
        }
        moved |= relocate(&sorted, &sums, &mut c, &mut held, &empty);
        c.sort_by(f64::total_cmp);
        if !moved {
            break;
        }
    }
    c.into_iter().map(|x| x as f32).collect()
}

/// Prefix sums over the sorted values, for an interval's weight, mean and
/// weighted squared error.
struct Sums {
    sw: Vec<f64>,
    swv: Vec<f64>,
    swvv: Vec<f64>,
}

impl Sums {
    fn weight(&self, a: usize, b: usize) -> f64 {
        self.sw[b] - self.sw[a]
    }
    fn mean(&self, a: usize, b: usize) -> f64 {
        (self.swv[b] - self.swv[a]) / self.weight(a, b)
    }
    fn error(&self, a: usize, b: usize) -> f64 {
        let (w, wv) = (self.weight(a, b), self.swv[b] - self.swv[a]);
        if w > 0.0 {
            (self.swvv[b] - self.swvv[a]) - wv * wv / w
        } else {
            0.0
        }
    }
}

/// Gives each empty cluster (in index order) a centroid: the cluster of
/// largest weighted squared error is split at its mean, its own centroid
/// taking the lower part's mean and the empty one the upper part's. A
/// linear start leaves clusters empty in the sparse tails of real layers
/// (a few outliers stretch the range), and without this they stay empty,
/// wasting codes. `held` lists the non-empty clusters as (start, end,
/// index) intervals of the sorted values. Returns whether any moved.
fn relocate(
    sorted: &[f64],
    sums: &Sums,
    c: &mut [f64],
    held: &mut Vec<(usize, usize, usize)>,
    empty: &[usize],
) -> bool {
    let mut moved = false;
    for &e in empty {
        let worst = (0..held.len()).fold(None, |best: Option<usize>, j| {
            let (a, b, _) = held[j];
            match best {
                Some(w) if sums.error(held[w].0, held[w].1) >= sums.error(a, b) => best,
                _ => Some(j),
            }
        });
        let Some(j) = worst else { break };
        let (a, b, i) = held[j];
        let mean = sums.mean(a, b);
        let p = a + sorted[a..b].partition_point(|&v| v <= mean);
        if p == a || p == b || sums.weight(a, p) <= 0.0 || sums.weight(p, b) <= 0.0 {
            break; // the worst cluster cannot be split: no cluster can
        }
        c[i] = sums.mean(a, p);
        c[e] = sums.mean(p, b);
        held.splice(j..=j, [(a, p, i), (p, b, e)]);
        moved = true;
    }
    moved
}

/// The code of each value: its nearest centroid (`centroids` ascending, the
/// lower on ties), packed in `bits` bits.
pub(super) fn assign(values: &[f32], centroids: &[f32], bits: u32) -> Result<Vec<u8>> {
    let mids: Vec<f64> = centroids
        .windows(2)
        .map(|w| (f64::from(w[0]) + f64::from(w[1])) / 2.0)
        .collect();
    let codes = values
        .iter()
        .map(|&v| mids.partition_point(|&m| f64::from(v) > m) as u32);
    pack(codes, values.len(), bits)
}
