use super::*;
use crate::Expander;
use std::path::PathBuf;

/// A sparse tensor of `shape` over a pinned config and index: the `i`-th
/// kept weight's value is the bytes `value(i)` of `dtype`.
pub(super) fn pinned_sparse(
    shape: [usize; 2],
    lam: f64,
    dtype: DType,
    value: impl Fn(u32) -> Vec<u8>,
) -> Sparse<'static> {
    let config = VdConfig::from_seed(6, 1, 5, 2, 1, 3).unwrap();
    let layout = Layout::new(&config, shape[0] * shape[1], 16).unwrap();
    let index: Vec<u64> = (0..layout.index_len() as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let kept: usize = Expander::new(&config, layout)
        .counts(&index)
        .unwrap()
        .iter()
        .sum();
    Sparse {
        shape: shape.to_vec(),
        config,
        block_steps: 16,
        lam,
        index: Cow::Owned(index),
        dtype,
        values: Values::Raw(Cow::Owned((0..kept as u32).flat_map(value).collect())),
        thresholds: None,
        order: Order::C,
    }
}

fn sample() -> Vec<(String, Item<'static>)> {
    let sparse = pinned_sparse([3, 70], 0.125, DType::F32, |v| {
        (v as f32).to_le_bytes().to_vec()
    });
    let bias = Plain {
        dtype: DType::I16,
        shape: vec![2, 2],
        data: Cow::Owned(vec![1, 0, 2, 0, 3, 0, 4, 0]),
    };
    vec![
        ("bias".into(), Item::Plain(bias)),
        ("w".into(), Item::Sparse(sparse)),
    ]
}

fn write(items: &[(String, Item<'_>)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    save(&path, items, &HashMap::new()).unwrap();
    (dir, path)
}

#[test]
fn round_trip() {
    let items = sample();
    let (_dir, path) = write(&items);
    let buf = read_file(&path).unwrap();
    assert_eq!(load(&buf).unwrap(), items);
    // Only the target is left in the directory: no temporary files.
    assert_eq!(std::fs::read_dir(_dir.path()).unwrap().count(), 1);
}

#[test]
fn every_single_bit_flip_is_refused_or_harmless() {
    let items = sample();
    let (_dir, path) = write(&items);
    let buf = read_file(&path).unwrap();
    for bit in (0..buf.len() * 8).step_by(3) {
        let mut b = buf.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        if let Ok(got) = load(&b) {
            assert_eq!(got, items, "bit {bit} loaded as different data");
        }
    }
    for len in 0..buf.len() {
        assert!(load(&buf[..len]).is_err(), "truncated to {len}");
    }
}

#[test]
fn bad_items_are_refused_and_the_old_file_survives() {
    let items = sample();
    let (_dir, path) = write(&items);
    let before = std::fs::read(&path).unwrap();
    let mut bad = sample();
    if let Item::Sparse(s) = &mut bad[1].1 {
        if let Values::Raw(v) = &mut s.values {
            v.to_mut().truncate(4);
        }
    }
    let err = save(&path, &bad, &HashMap::new()).unwrap_err();
    assert!(err.msg.contains("values"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let reserved = vec![("x.vitrust.index".to_string(), sample().remove(0).1)];
    assert!(save(&path, &reserved, &HashMap::new()).is_err());
    let meta = HashMap::from([(META_KEY.to_string(), String::new())]);
    assert!(save(&path, &items, &meta).is_err());
    let missing = _dir.path().join("no/such/dir/f.safetensors");
    assert!(save(&missing, &items, &HashMap::new()).is_err());
}

#[test]
fn metadata_is_canonical_and_floats_round_trip() {
    // The metadata check is computed over sorted keys: an ordered map (serde_json's
    // `preserve_order`) would break files written by other builds.
    let v: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": 2}"#).unwrap();
    assert_eq!(v.to_string(), r#"{"a":2,"b":1}"#);
    // λ must come back bit for bit (serde_json's `float_roundtrip`).
    let mut x = 0.1f64;
    for _ in 0..2000 {
        x = x * 1.618_033_988_749_895 + 1e-7;
        let back: f64 = serde_json::from_str(&serde_json::json!(x).to_string()).unwrap();
        assert_eq!(back.to_bits(), x.to_bits());
        x %= 1e6;
    }
}

#[test]
fn direct_count_matches_the_expander() {
    for (k, n_in, n_out, nc, th, n, bs) in [
        (4, 1, 5, 2, 1, 97, 3),
        (12, 2, 6, 3, 5, 500, 7),
        (16, 4, 64, 1, 1, 1000, 2),
        (3, 1, 1, 1, 1, 4000, 64),
    ] {
        let config = VdConfig::from_seed(k, n_in, n_out, nc, th, 9).unwrap();
        let layout = Layout::new(&config, n, bs).unwrap();
        let index: Vec<u64> = (0..layout.index_len() as u64)
            .map(|i| (i + 1).wrapping_mul(0xD1B5_4A32_D192_ED03))
            .collect();
        let want: usize = Expander::new(&config, layout)
            .counts(&index)
            .unwrap()
            .iter()
            .sum();
        assert_eq!(kept_count(&config, &layout, &index, None).unwrap(), want);
    }
}

#[test]
fn many_small_tensors_of_a_wide_config_share_one_table() {
    // 2^(12 + n_in) register values; each tensor has 700 steps, too few to
    // repay a table alone, so the counter tabulates once the steps add up.
    for (n_in, tensors) in [(1u32, 20u64), (2, 26)] {
        let config = VdConfig::from_seed(12, n_in, 64, 8, 37, 3).unwrap();
        let layout = Layout::new(&config, 700 * 64 - 5, 50).unwrap();
        let mut counter = KeptCounter::default();
        for i in 0..tensors {
            let index: Vec<u64> = (0..layout.index_len() as u64)
                .map(|w| (w + 7 * i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .collect();
            let want: usize = Expander::new(&config, layout)
                .counts(&index)
                .unwrap()
                .iter()
                .sum();
            let got = counter.count(&config, &layout, &index, None).unwrap();
            assert_eq!(got, want, "n_in = {n_in}, tensor {i}");
            assert_eq!(
                counter.tabulated(&config),
                700 * (i + 1) >= 1 << (12 + n_in),
                "n_in = {n_in}, tensor {i}"
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn permissions_are_kept_or_usual() {
    use std::os::unix::fs::PermissionsExt;
    let items = sample();
    let (_dir, path) = write(&items);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    save(&path, &items, &HashMap::new()).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn only_regular_files_are_read() {
    let (dir, path) = write(&sample());
    assert!(read_metadata(&path).is_ok());
    for e in [
        read_metadata(dir.path()).unwrap_err(),
        read_file(dir.path()).unwrap_err(),
    ] {
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
