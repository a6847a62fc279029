//! The search: at a given multiplier, and at the one that prunes a rate.

use super::*;

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

/// Searches every block at multiplier `lam`: `(index, nnz, metric)`.
#[pyfunction]
#[pyo3(signature = (config, weights, score, lam, block_steps, threads=None, max_bytes=crate::DEFAULT_MAX_SEARCH_BYTES, simd=None))]
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
) -> PyResult<(Bound<'py, PyArray1<u64>>, usize, f64)> {
    let level = simd_level(simd)?;
    if !lam.is_finite() {
        return Err(PyValueError::new_err(format!(
            "lam = {lam}: must be finite"
        )));
    }
    let arr = Floats::extract(weights, "weights")?;
    let w = arr.weights()?;
    let (kind, cfg) = (score_kind(score)?, &config.0);
    let (index, nnz, metric) = detached(py, threads, || {
        let layout = Layout::new(cfg, w.len(), block_steps)?;
        let s = Searcher::new(cfg, layout, Scores::new(w, kind), max_bytes)?.with_level(level)?;
        let mut index = zeros::<u64>(layout.index_len(), "the index")?;
        let res = s.run(lam, &mut index)?;
        Ok((
            index,
            res.iter().map(|b| b.kept).sum(),
            res.iter().map(|b| b.metric).sum(),
        ))
    })?;
    Ok((index.into_pyarray(py), nnz, metric))
}

/// Searches at the multiplier that prunes `rate`: `(index, nnz, lam, passes)`.
#[pyfunction]
#[pyo3(signature = (config, weights, score, rate, block_steps, threads=None, max_bytes=crate::DEFAULT_MAX_SEARCH_BYTES))]
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
) -> PyResult<(Bound<'py, PyArray1<u64>>, usize, f64, f64)> {
    if !(0.0..1.0).contains(&rate) {
        return Err(PyValueError::new_err(format!(
            "rate = {rate}: must be in [0, 1)"
        )));
    }
    let arr = Floats::extract(weights, "weights")?;
    let w = arr.weights()?;
    let (kind, cfg) = (score_kind(score)?, &config.0);
    let (index, r) = detached(py, threads, || {
        let layout = Layout::new(cfg, w.len(), block_steps)?;
        let s = Searcher::new(cfg, layout, Scores::new(w, kind), max_bytes)?;
        let mut index = zeros::<u64>(layout.index_len(), "the index")?;
        let r = prune_to_rate(&s, rate, &mut index)?;
        Ok((index, r))
    })?;
    Ok((index.into_pyarray(py), r.kept, r.lam, r.passes))
}
