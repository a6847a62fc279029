//! A shared codebook: weighted k-means over the kept values, initialised
//! linearly between their extremes as Deep Compression does (linear
//! initialisation keeps centroids on the rare large values that density-
//! based initialisations starve, and large values matter most).
//!
//! In one dimension every cluster of a k-means iteration is an interval of
//! the sorted values, so each iteration costs `k` binary searches and
//! prefix-sum lookups, not a pass over the values.

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
    // Prefix sums of w and w v over the sorted values.
    let (mut sw, mut swv) = (vec![0.0f64], vec![0.0f64]);
    for &j in &order {
        let w = f64::from(weights[j].max(0.0));
        sw.push(sw.last().unwrap() + w);
        swv.push(swv.last().unwrap() + w * f64::from(values[j]));
    }
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
        for (ci, &end) in c.iter_mut().zip(&ends) {
            let w = sw[end] - sw[start];
            if w > 0.0 {
                let mean = (swv[end] - swv[start]) / w;
                moved |= mean != *ci;
                *ci = mean;
            }
            start = end;
        }
        // An empty cluster keeps its centroid, which its neighbours may pass.
        c.sort_by(f64::total_cmp);
        if !moved {
            break;
        }
    }
    c.into_iter().map(|x| x as f32).collect()
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
