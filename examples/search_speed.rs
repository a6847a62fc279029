//! The search kernel's speed on one thread, best of many passes (criterion's
//! figures are means, which a shared machine's slow moments pull up):
//!
//!     cargo run --release --example search_speed [flip_flops] [passes]

use std::time::Instant;
use vitrust::{Layout, Score, Scores, Searcher, VdConfig, Weights};

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().expect("a number"));
    let k = args.next().unwrap_or(10) as u32;
    let passes = args.next().unwrap_or(100);
    let cfg = VdConfig::from_seed(k, 1, 5, 5, 3, 0).expect("a valid config");
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let w: Vec<f32> = (0..4 * 1024 * 5)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
        })
        .collect();
    let layout = Layout::new(&cfg, w.len(), 1024).expect("a valid layout");
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a pool");
    one.install(|| {
        let scores = Scores::new(Weights::F32(&w), Score::Abs);
        let s = Searcher::new(&cfg, layout, scores, 1 << 30).expect("a searcher");
        let mut index = vec![0u64; layout.index_len()];
        let best = (0..passes)
            .map(|_| {
                let t = Instant::now();
                s.run(0.8, &mut index).expect("a search");
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        let state_steps = ((4 * 1024usize) << k) as f64;
        println!(
            "flip_flops {k}: {:.4} ns per state-step, one thread, best of {passes}",
            best * 1e9 / state_steps
        );
    });
}
