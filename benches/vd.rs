//! `cargo bench`: the search (per state-step, on integer metrics where they
//! apply and on float32 alone) and the expansion (per weight).

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use std::hint::black_box;
use vitrust::{
    prune_to_rate, Decoder, Expander, Layout, Score, Scores, Searcher, VdConfig, Weights,
};

fn weights(n: usize) -> Vec<f32> {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
        })
        .collect()
}

/// A searcher over `w` with blocks of 1024 steps, and an index to write.
fn searcher<'a>(cfg: &VdConfig, w: &'a [f32]) -> (Searcher<'a>, Vec<u64>) {
    let layout = Layout::new(cfg, w.len(), 1024).unwrap();
    let scores = Scores::new(Weights::F32(w), Score::Abs);
    let s = Searcher::new(cfg, layout, scores, 1 << 30).unwrap();
    (s, vec![0u64; layout.index_len()])
}

/// One full search pass at a fixed multiplier; throughput in state-steps.
fn search(c: &mut Criterion) {
    let mut g = c.benchmark_group("search");
    g.sample_size(10);
    for k in [8u32, 10, 12, 14] {
        let cfg = VdConfig::from_seed(k, 1, 5, 5, 3, 0).unwrap();
        let blocks = if k >= 14 { 2 } else { 8 };
        pass(&mut g, &cfg, blocks);
    }
    // n_in = 2 at the same ratio: the same weights per pass and the same
    // work per weight in branches, two table lookups per branch.
    pass(&mut g, &VdConfig::from_seed(10, 2, 10, 5, 3, 0).unwrap(), 8);
    g.finish();
}

/// One config's pass over `blocks` blocks of 5120 weights, on all threads
/// and on one; the name gives `k` and `n_in`.
fn pass(g: &mut BenchmarkGroup<'_, WallTime>, cfg: &VdConfig, blocks: usize) {
    let (k, n_in) = (cfg.flip_flops(), cfg.n_in());
    let name = if n_in == 1 {
        format!("{k}")
    } else {
        format!("{k}, n_in {n_in}")
    };
    let w = weights(blocks * 1024 * 5);
    let (s, mut index) = searcher(cfg, &w);
    // State-steps of the n_in = 1 pass over as many weights, so the
    // throughputs of both compare per weight.
    let state_steps = (w.len() / cfg.n_out() as usize * n_in as usize) << k;
    g.throughput(Throughput::Elements(state_steps as u64));
    g.bench_with_input(
        BenchmarkId::new("state-steps/flip_flops", &name),
        &k,
        |b, _| b.iter(|| black_box(s.run(0.8, &mut index).unwrap())),
    );
    // One thread: ns per state-step per core is 1 / this throughput.
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    g.bench_with_input(
        BenchmarkId::new("1 thread/flip_flops", &name),
        &k,
        |b, _| b.iter(|| one.install(|| black_box(s.run(0.8, &mut index).unwrap()))),
    );
    // The peer of the line above: the same pass on float32 metrics only.
    if n_in == 1 {
        let s = searcher(cfg, &w).0.with_float_metrics();
        g.bench_with_input(
            BenchmarkId::new("1 thread, float32 metrics/flip_flops", &name),
            &k,
            |b, _| b.iter(|| one.install(|| black_box(s.run(0.8, &mut index).unwrap()))),
        );
    }
}

/// `prune` to 90 % on a 1024x1024 matrix, rate control included; throughput in weights.
fn prune(c: &mut Criterion) {
    let mut g = c.benchmark_group("prune");
    g.sample_size(10);
    let cfg = VdConfig::from_seed(10, 1, 5, 5, 3, 0).unwrap();
    let w = weights(1 << 20);
    let (s, mut index) = searcher(&cfg, &w);
    g.throughput(Throughput::Elements(w.len() as u64));
    g.bench_function("rate 0.9, 1024x1024", |b| {
        b.iter(|| black_box(prune_to_rate(&s, 0.9, &mut index).unwrap()))
    });
    g.finish();
}

/// Expansion of a 4096x4096 index to a bool mask; throughput in weights.
fn expand(c: &mut Criterion) {
    let mut g = c.benchmark_group("expand");
    let cfg = VdConfig::from_seed(10, 1, 5, 5, 3, 0).unwrap();
    let n = 4096 * 4096;
    let layout = Layout::new(&cfg, n, 1024).unwrap();
    let index: Vec<u64> = (0..layout.index_len() as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let e = Expander::new(&cfg, layout);
    let mut mask = vec![false; n];
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("mask 4096x4096", |b| {
        b.iter(|| e.mask(&index, &mut mask).unwrap())
    });
    // Into a new vector, as from Python (the output's first touch included).
    g.bench_function("mask_vec 4096x4096", |b| {
        b.iter(|| black_box(e.mask_vec(&index).unwrap()))
    });
    // Decoding alone, one thread, each decoder this CPU runs, over 1 M weights.
    let blocks = (1 << 20) / layout.block_weights();
    g.throughput(Throughput::Elements(
        (blocks * layout.block_weights()) as u64,
    ));
    for decoder in Decoder::all().into_iter().filter(|d| d.available()) {
        let e = Expander::new(&cfg, layout).with_decoder(decoder);
        let mut bits = vec![0u64; e.bits_words()];
        g.bench_function(format!("block_bits {decoder:?}"), |b| {
            b.iter(|| {
                for block in 0..blocks {
                    black_box(e.block_bits(&index, block, &mut bits));
                }
            })
        });
    }
    g.finish();
}

/// `to_dense` (values scattered into a dense float32 array) and `W @ X` with
/// batch 64, from a 4096x4096 index at about 10 % density.
fn dense_and_matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("products");
    g.sample_size(20);
    let cfg = VdConfig::from_seed(10, 1, 5, 5, 3, 0).unwrap();
    let (rows, cols, batch) = (4096, 4096, 64);
    let layout = Layout::new(&cfg, rows * cols, 1024).unwrap();
    let index: Vec<u64> = (0..layout.index_len() as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & i.wrapping_mul(0x2545_F491_4F6C_DD1D))
        .collect();
    let e = Expander::new(&cfg, layout);
    let starts = e.starts(&index).unwrap();
    let nnz = starts[starts.len() - 1];
    let values = weights(nnz);
    let mut dense = vec![0f32; rows * cols];
    g.throughput(Throughput::Elements((rows * cols) as u64));
    g.bench_function("to_dense 4096x4096 f32", |b| {
        b.iter(|| {
            e.scatter(&index, &values, Some(&starts), &mut dense)
                .unwrap()
        })
    });
    // Into a new array, as from Python (the output's first touch included).
    g.bench_function("to_dense_vec 4096x4096 f32", |b| {
        b.iter(|| black_box(e.scatter_vec(&index, &values, Some(&starts)).unwrap()))
    });
    let x = weights(cols * batch);
    let mut y = vec![0f32; rows * batch];
    g.throughput(Throughput::Elements((nnz * batch) as u64));
    g.bench_function("matmul 4096x4096 @ 4096x64 (MAC)", |b| {
        b.iter(|| {
            vitrust::matmul(&e, &index, &values, Some(&starts), rows, &x, batch, &mut y).unwrap()
        })
    });
    let xl = weights(batch * rows);
    let mut yl = vec![0f32; batch * cols];
    g.bench_function("rmatmul 64x4096 @ 4096x4096 (MAC)", |b| {
        b.iter(|| {
            vitrust::rmatmul(
                &e,
                &index,
                &values,
                Some(&starts),
                rows,
                &xl,
                batch,
                &mut yl,
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, search, prune, expand, dense_and_matmul);
criterion_main!(benches);
