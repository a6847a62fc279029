//! Format version 2: per-block thresholds and order F through save, load,
//! the mapped file and the streamed writer; the version a file gets; v2
//! fields in a version 1 file refused; the kept count's work bounded per
//! threshold.

use super::tests::pinned_sparse;
use super::*;
use crate::Expander;

/// `pinned_sparse`'s tensor with thresholds cycling through `1..=top` and
/// `order`, its values refilled to the count those thresholds keep.
fn v2_sparse(order: Order, top: u8) -> Sparse<'static> {
    let mut s = pinned_sparse([3, 70], 0.5, DType::F32, |v| {
        (v as f32).to_le_bytes().to_vec()
    });
    let layout = s.layout().unwrap();
    let t: Vec<u8> = (0..layout.n_blocks())
        .map(|b| (b % top as usize) as u8 + 1)
        .collect();
    let e = Expander::with_thresholds(&s.config, layout, Some(&t)).unwrap();
    let kept: usize = e.counts(&s.index).unwrap().iter().sum();
    s.values = Values::Raw(Cow::Owned(
        (0..kept as u32).flat_map(|v| v.to_le_bytes()).collect(),
    ));
    s.thresholds = Some(Cow::Owned(t));
    s.order = order;
    s
}

fn version_of(buf: &[u8]) -> u64 {
    let c = header::parse(buf).unwrap();
    let raw = c.raw_metadata(META_KEY).unwrap();
    let text: String = serde_json::from_str(raw.get()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["version"].as_u64().unwrap()
}

fn saved(items: &[(String, Item<'_>)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.safetensors");
    save(&path, items, &HashMap::new()).unwrap();
    read_file(&path).unwrap()
}

#[test]
fn v2_tensors_round_trip_and_set_the_version() {
    let v1 = pinned_sparse([3, 70], 0.5, DType::F32, |v| {
        (v as f32).to_le_bytes().to_vec()
    });
    let mut order_only = v1.clone();
    order_only.order = Order::F;
    let cases = [
        (v1.clone(), 1),
        (order_only, 2),
        (v2_sparse(Order::C, 4), 2),
        (v2_sparse(Order::F, 4), 2),
    ];
    for (s, version) in cases {
        let items = vec![("w".to_string(), Item::Sparse(s))];
        let buf = saved(&items);
        assert_eq!(version_of(&buf), version);
        assert_eq!(load(&buf).unwrap(), items);
    }
}

#[test]
fn thresholds_change_the_kept_count_and_are_checked() {
    let s = v2_sparse(Order::C, 4);
    s.check("w").unwrap();
    for bad in [0u8, 5, 255] {
        let mut t = s.clone();
        t.thresholds.as_mut().unwrap().to_mut()[1] = bad;
        assert!(t.check("w").is_err(), "threshold {bad}");
    }
    let mut short = s.clone();
    short.thresholds.as_mut().unwrap().to_mut().pop();
    assert!(short.check("w").unwrap_err().msg.contains("blocks"));
    let mut none = s.clone();
    none.thresholds = None; // the config's threshold keeps another count
    assert!(none.check("w").unwrap_err().msg.contains("keeps"));
}

#[test]
fn index_bits_count_comparator_bits_per_block() {
    let s = v2_sparse(Order::F, 4);
    let l = s.layout().unwrap();
    let per_block = l.n_blocks() as u64 * u64::from(s.config.comparator_bits());
    assert_eq!(s.index_bits().unwrap(), l.index_bits() + per_block);
}

#[test]
fn mapped_and_streamed_files_carry_v2_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let items = vec![
        ("a".to_string(), Item::Sparse(v2_sparse(Order::F, 3))),
        ("b".to_string(), Item::Sparse(v2_sparse(Order::C, 4))),
    ];
    let path = dir.path().join("s.safetensors");
    let mut w = ShardWriter::create(&path, HashMap::new(), &[]).unwrap();
    for (name, item) in &items {
        let Item::Sparse(s) = item else {
            unreachable!()
        };
        w.add_sparse(name, s).unwrap();
    }
    assert!(w
        .stored_names()
        .contains(&"a.vitrust.thresholds".to_string()));
    w.finish().unwrap();
    let buf = read_file(&path).unwrap();
    assert_eq!(version_of(&buf), 2);
    assert_eq!(load(&buf).unwrap(), items);
    let m = MappedFile::open(&path).unwrap();
    for (name, item) in &items {
        let Entry::Sparse(span) = m.entry(name).unwrap() else {
            panic!("{name} is pruned")
        };
        assert_eq!(&Item::Sparse(m.sparse(span).unwrap()), item);
        assert_eq!(span.spans().count(), 3);
    }
}

#[test]
fn a_version_1_file_with_v2_fields_is_refused() {
    let items = vec![("w".to_string(), Item::Sparse(v2_sparse(Order::C, 4)))];
    let buf = saved(&items);
    // Relabel the file as version 1, its check recomputed: the thresholds
    // sibling is then corrupt, not silently ignored.
    let c = header::parse(&buf).unwrap();
    let raw: String = serde_json::from_str(c.raw_metadata(META_KEY).unwrap().get()).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&raw).unwrap();
    v["version"] = 1.into();
    v.as_object_mut().unwrap().remove("check");
    let check = crc32fast::hash(v.to_string().as_bytes());
    v["check"] = check.into();
    let relabelled = v.to_string();
    let e = reframe(&buf, &relabelled).unwrap_err();
    assert!(e.msg.contains("version 1 file has no"), "{e}");
}

/// `buf` with its vitrust metadata replaced by `meta`, loaded.
pub(super) fn reframe(buf: &[u8], meta: &str) -> Result<usize> {
    let n = u64::from_le_bytes(buf[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&buf[8..8 + n]).unwrap();
    header["__metadata__"][META_KEY] = meta.into();
    let mut text = header.to_string().into_bytes();
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&buf[8 + n..]);
    load(&out).map(|items| items.len())
}

#[test]
fn many_thresholds_do_not_build_a_table_each() {
    // The widest VD (a keep table of 2^20 entries) and 255 thresholds, a few
    // short blocks each: counting steps them directly, no table is built.
    let config = VdConfig::from_seed(16, 4, 1, 8, 1, 1).unwrap();
    let layout = Layout::new(&config, 255 * 3 * 64, 64).unwrap();
    let index: Vec<u64> = (0..layout.index_len() as u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    let t: Vec<u8> = (0..layout.n_blocks())
        .map(|b| (b % 255) as u8 + 1)
        .collect();
    let mut counter = KeptCounter::default();
    let kept = counter.count(&config, &layout, &index, Some(&t)).unwrap();
    let e = Expander::with_thresholds(&config, layout, Some(&t)).unwrap();
    assert_eq!(kept, e.counts(&index).unwrap().iter().sum::<usize>());
    for k in 1..=255 {
        assert!(
            !counter.tabulated(&config.with_threshold(k).unwrap()),
            "a table for {k}"
        );
    }
}
