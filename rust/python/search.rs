//! The search: at a given multiplier, and at the one that prunes a rate.

use super::*;
use crate::ThresholdSearch;

pub(super) fn score_kind(score: &str) -> PyResult<Score> {
    match score {
        "abs" => Ok(Score::Abs),
        "square" => Ok(Score::Square),
        "raw" => Ok(Score::Raw),
        _ => Err(PyValueError::new_err(format!(
            "score = {score:?}: expected 'abs', 'square' or 'raw'"
        ))),
    }
}

pub(super) fn simd_level(name: Option<&str>) -> PyResult<crate::Level> {
    match name {
        None => Ok(crate::Level::best()),
        Some(n) => crate::Level::from_name(n).ok_or_else(|| {
            PyValueError::new_err(format!(
                "simd = {n:?}: expected 'portable', 'avx2' or 'avx512'"
            ))
        }),
    }
}

fn finite_lam(lam: f64) -> PyResult<()> {
    if !lam.is_finite() {
        return Err(PyValueError::new_err(format!(
            "lam = {lam}: must be finite"
        )));
    }
    Ok(())
}

/// Whether blocks may run on integer metrics: `"auto"` (where they are
/// exact, the default) or `"float32"` (never).
fn integer_metrics(name: &str) -> PyResult<bool> {
    match name {
        "auto" => Ok(true),
        "float32" => Ok(false),
        _ => Err(PyValueError::new_err(format!(
            "metrics = {name:?}: expected 'auto' or 'float32'"
        ))),
    }
}

/// The search of `config` over weights `w` cut into blocks of `block_steps`,
/// each block choosing its threshold among multiples `factors` of its
/// prediction when given.
fn searcher<'a>(
    config: &crate::VdConfig,
    w: Weights<'a>,
    kind: Score,
    block_steps: usize,
    max_bytes: usize,
    thresholds: Option<ThresholdSearch>,
) -> crate::Result<Searcher<'a>> {
    let layout = Layout::new(config, w.len(), block_steps)?;
    let s = Searcher::new(config, layout, Scores::new(w, kind), max_bytes)?;
    match thresholds {
        Some(how) => s.with_thresholds(config, how, max_bytes),
        None => Ok(s),
    }
}

/// An index array, and per-block thresholds when the search chose them.
type IndexArray<'py> = Bound<'py, PyArray1<u64>>;
type ThresholdArray<'py> = Option<Bound<'py, PyArray1<u8>>>;

/// Per-block thresholds as an array, when the search chose them.
fn thresholds_of<'py>(py: Python<'py>, t: Option<Vec<u8>>) -> ThresholdArray<'py> {
    t.map(|t| t.into_pyarray(py))
}

/// Searches every block at multiplier `lam`: `(index, nnz, metric, thresholds)`,
/// `thresholds` (one per block) only when `factors` asks blocks to choose them.
#[pyfunction]
#[pyo3(signature = (config, weights, score, lam, block_steps, threads=None, max_bytes=crate::DEFAULT_MAX_SEARCH_BYTES, simd=None, factors=None, refine=false, metrics="auto"))]
#[allow(clippy::too_many_arguments)]
pub(super) fn search<'py>(
    py: Python<'py>,
    config: &PyConfig,
    weights: &Bound<'py, PyAny>,
    score: &str,
    lam: f64,
    block_steps: usize,
    threads: Option<usize>,
    max_bytes: usize,
    simd: Option<&str>,
    factors: Option<Vec<f64>>,
    refine: bool,
    metrics: &str,
) -> PyResult<(IndexArray<'py>, usize, f64, ThresholdArray<'py>)> {
    let (level, integer) = (simd_level(simd)?, integer_metrics(metrics)?);
    finite_lam(lam)?;
    let arr = Floats::extract(weights, "weights")?;
    let w = arr.weights()?;
    let (kind, cfg) = (score_kind(score)?, &config.0);
    let (index, res, th) = detached(py, threads, || {
        let how = factors.map(|factors| ThresholdSearch { factors, refine });
        let mut s = searcher(cfg, w, kind, block_steps, max_bytes, how)?.with_level(level)?;
        if !integer {
            s = s.with_float_metrics();
        }
        let mut index = zeros::<u64>(s.layout().index_len(), "the index")?;
        let res = s.run(lam, &mut index)?;
        let th = s
            .chooses_thresholds()
            .then(|| res.iter().map(|b| b.threshold as u8).collect());
        Ok((index, res, th))
    })?;
    let (nnz, metric) = (
        res.iter().map(|b| b.kept).sum(),
        res.iter().map(|b| b.metric).sum(),
    );
    Ok((index.into_pyarray(py), nnz, metric, thresholds_of(py, th)))
}

/// How many of the blocks a search at `lam` ran on integer metrics (the
/// rest fell back to float32; docs/algorithm.md, "Integer metrics"):
/// `(blocks, integer_blocks)`.
#[pyfunction]
#[pyo3(signature = (config, weights, score, lam, block_steps, threads=None))]
pub(super) fn integer_blocks(
    py: Python<'_>,
    config: &PyConfig,
    weights: &Bound<'_, PyAny>,
    score: &str,
    lam: f64,
    block_steps: usize,
    threads: Option<usize>,
) -> PyResult<(usize, usize)> {
    finite_lam(lam)?;
    let arr = Floats::extract(weights, "weights")?;
    let w = arr.weights()?;
    let (kind, cfg) = (score_kind(score)?, &config.0);
    let max = crate::DEFAULT_MAX_SEARCH_BYTES;
    detached(py, threads, || {
        let s = searcher(cfg, w, kind, block_steps, max, None)?;
        let mut index = zeros::<u64>(s.layout().index_len(), "the index")?;
        let res = s.run(lam, &mut index)?;
        Ok((res.len(), res.iter().filter(|b| b.integer).count()))
    })
}

/// Searches at the multiplier that prunes `rate`: `(index, nnz, lam, passes,
/// thresholds)`, as [`search`] for `thresholds`.
#[pyfunction]
#[pyo3(signature = (config, weights, score, rate, block_steps, threads=None, max_bytes=crate::DEFAULT_MAX_SEARCH_BYTES, factors=None, refine=false))]
#[allow(clippy::too_many_arguments)]
pub(super) fn search_rate<'py>(
    py: Python<'py>,
    config: &PyConfig,
    weights: &Bound<'py, PyAny>,
    score: &str,
    rate: f64,
    block_steps: usize,
    threads: Option<usize>,
    max_bytes: usize,
    factors: Option<Vec<f64>>,
    refine: bool,
) -> PyResult<(IndexArray<'py>, usize, f64, f64, ThresholdArray<'py>)> {
    if !(0.0..1.0).contains(&rate) {
        return Err(PyValueError::new_err(format!(
            "rate = {rate}: must be in [0, 1)"
        )));
    }
    let arr = Floats::extract(weights, "weights")?;
    let w = arr.weights()?;
    let (kind, cfg) = (score_kind(score)?, &config.0);
    let (index, r) = detached(py, threads, || {
        let how = factors.map(|factors| ThresholdSearch { factors, refine });
        let s = searcher(cfg, w, kind, block_steps, max_bytes, how)?;
        let mut index = zeros::<u64>(s.layout().index_len(), "the index")?;
        let r = prune_to_rate(&s, rate, &mut index)?;
        Ok((index, r))
    })?;
    let th = thresholds_of(py, r.thresholds);
    Ok((index.into_pyarray(py), r.kept, r.lam, r.passes, th))
}
