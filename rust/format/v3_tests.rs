//! Format version 3: encoded values through save, load, the mapped file and
//! the streamed writer; the version a file gets; damaged or mislabelled
//! encoded tensors refused.

use super::tests::pinned_sparse;
use super::v2_tests::reframe;
use super::*;
use crate::{encode, Encoding};

/// `pinned_sparse`'s float32 tensor with its values encoded as `name`
/// (rounded to `dtype`'s table type).
fn encoded(name: &str, dtype: DType) -> Sparse<'static> {
    let mut s = pinned_sparse([3, 70], 0.5, DType::F32, |v| {
        ((v as f32 * 0.37).sin()).to_le_bytes().to_vec()
    });
    let Values::Raw(raw) = &s.values else {
        unreachable!()
    };
    let v: Vec<f32> = raw
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let w: Vec<f32> = v.iter().map(|x| x.abs()).collect();
    let t = dtype.table_dtype().unwrap();
    let e = encode(Encoding::parse(name, 16).unwrap(), &v, &w, |x| {
        t.round_f32(x)
    })
    .unwrap();
    s.dtype = dtype;
    s.values = Values::Encoded(e);
    s
}

fn saved(items: &[(String, Item<'_>)]) -> Result<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.safetensors");
    save(&path, items, &HashMap::new())?;
    read_file(&path)
}

fn one(s: Sparse<'static>) -> Vec<(String, Item<'static>)> {
    vec![("w".to_string(), Item::Sparse(s))]
}

/// The file's vitrust metadata as JSON.
fn meta_of(buf: &[u8]) -> serde_json::Value {
    let c = header::parse(buf).unwrap();
    let raw: String = serde_json::from_str(c.raw_metadata(META_KEY).unwrap().get()).unwrap();
    serde_json::from_str(&raw).unwrap()
}

/// `buf` with its metadata edited by `edit` (the check recomputed), loaded.
fn relabelled(buf: &[u8], edit: impl Fn(&mut serde_json::Value)) -> Result<usize> {
    let mut v = meta_of(buf);
    edit(&mut v);
    v.as_object_mut().unwrap().remove("check");
    v["check"] = crc32fast::hash(v.to_string().as_bytes()).into();
    reframe(buf, &v.to_string())
}

#[test]
fn encoded_tensors_round_trip_and_make_version_3() {
    for dtype in [DType::F32, DType::F16, DType::BF16, DType::F64] {
        for name in ["int8", "int4", "codebook1", "codebook4", "codebook8"] {
            let items = one(encoded(name, dtype));
            let buf = saved(&items).unwrap();
            let m = meta_of(&buf);
            assert_eq!(m["version"], 3, "{name}");
            assert_eq!(m["sparse"]["w"]["values"], name);
            assert_eq!(
                m["sparse"]["w"]["group"].as_u64().is_some(),
                name.starts_with("int")
            );
            assert_eq!(load(&buf).unwrap(), items, "{name} {dtype:?}");
            let stored = m["tensors"].as_object().unwrap();
            assert!(stored.contains_key("w.vitrust.codes"));
            assert!(!stored.contains_key("w.vitrust.values"));
            let table = if name.starts_with("int") {
                "scales"
            } else {
                "codebook"
            };
            let t = &stored[&format!("w.vitrust.{table}")];
            assert_eq!(t["dtype"], dtype.table_dtype().unwrap().name());
        }
    }
}

#[test]
fn mapped_and_streamed_files_carry_encoded_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let items = vec![
        ("a".to_string(), Item::Sparse(encoded("int4", DType::BF16))),
        (
            "b".to_string(),
            Item::Sparse(encoded("codebook3", DType::F32)),
        ),
        (
            "c".to_string(),
            Item::Sparse(pinned_sparse([3, 70], 0.5, DType::F32, |v| {
                (v as f32).to_le_bytes().to_vec()
            })),
        ),
    ];
    let path = dir.path().join("s.safetensors");
    let mut w = ShardWriter::create(&path, HashMap::new(), &[]).unwrap();
    for (name, item) in &items {
        let Item::Sparse(s) = item else {
            unreachable!()
        };
        w.add_sparse(name, s).unwrap();
    }
    w.finish().unwrap();
    let buf = read_file(&path).unwrap();
    assert_eq!(meta_of(&buf)["version"], 3);
    assert_eq!(load(&buf).unwrap(), items);
    let m = MappedFile::open(&path).unwrap();
    for (name, item) in &items {
        let Entry::Sparse(span) = m.entry(name).unwrap() else {
            panic!("{name} is pruned")
        };
        assert_eq!(&Item::Sparse(m.sparse(span).unwrap()), item);
        assert_eq!(span.spans().count(), if name == "c" { 2 } else { 3 });
    }
}

#[test]
fn bad_encoded_tensors_are_refused_on_save() {
    // Codes too short for the values.
    let mut s = encoded("int8", DType::F32);
    if let Values::Encoded(e) = &mut s.values {
        e.codes.to_mut().pop();
    }
    assert!(saved(&one(s)).unwrap_err().msg.contains("code bytes"));
    // A table entry bfloat16 cannot hold.
    let mut s = encoded("codebook2", DType::BF16);
    if let Values::Encoded(e) = &mut s.values {
        e.table[0] = 1.0 + f32::EPSILON;
    }
    assert!(saved(&one(s))
        .unwrap_err()
        .msg
        .contains("is not a BF16 value"));
    // 8-bit floats are not encoded.
    let mut s = encoded("codebook2", DType::F32);
    s.dtype = DType::F8E4M3;
    assert!(saved(&one(s))
        .unwrap_err()
        .msg
        .contains("cannot be encoded"));
    // A float16 scale whose codes overflow float16 (127 * 1024 > 65504).
    let mut s = encoded("int8", DType::F16);
    if let Values::Encoded(e) = &mut s.values {
        e.table[0] = 1024.0;
    }
    assert!(saved(&one(s)).unwrap_err().msg.contains("overflow F16"));
    // Raw is not an encoding.
    let mut s = encoded("codebook2", DType::F32);
    if let Values::Encoded(e) = &mut s.values {
        e.encoding = Encoding::Raw;
    }
    assert!(saved(&one(s)).is_err());
}

#[test]
fn mislabelled_encoded_files_are_refused() {
    let buf = saved(&one(encoded("int8", DType::F32))).unwrap();
    assert_eq!(relabelled(&buf, |_| {}).unwrap(), 1);
    type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
    let cases: [(&str, Edit<'_>); 7] = [
        ("version 2 file has no \"values\"", &|v| {
            v["version"] = 2.into()
        }),
        ("\"group\" field is missing", &|v| {
            v["sparse"]["w"].as_object_mut().unwrap().remove("group");
        }),
        ("has no \"group\"", &|v| {
            v["sparse"]["w"]["values"] = "codebook8".into()
        }),
        ("group = 0", &|v| v["sparse"]["w"]["group"] = 0.into()),
        ("expected raw, int8", &|v| {
            v["sparse"]["w"]["values"] = "int7".into()
        }),
        ("code bytes", &|v| v["sparse"]["w"]["group"] = 5.into()),
        ("vitrust.values is missing", &|v| {
            v["sparse"]["w"]["values"] = "raw".into();
            v["sparse"]["w"].as_object_mut().unwrap().remove("group");
        }),
    ];
    for (want, edit) in cases {
        let e = relabelled(&buf, edit).unwrap_err();
        assert!(e.msg.contains(want), "{want}: {e}");
    }
}

#[test]
fn value_bytes_decode_in_the_values_dtype() {
    for dtype in [DType::F32, DType::BF16, DType::F16, DType::F64] {
        let s = encoded("int4", dtype);
        let Values::Encoded(e) = &s.values else {
            unreachable!()
        };
        let mut wide = vec![0.0f32; e.len];
        e.decode(0, &mut wide);
        let bytes = s.value_bytes().unwrap();
        assert_eq!(bytes.len(), e.len * dtype.size());
        let back: Vec<f32> = match dtype {
            DType::F64 => bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            d => d.bytes_f32(&bytes).unwrap(),
        };
        let want: Vec<f32> = wide
            .iter()
            .map(|&x| dtype.table_dtype().unwrap().round_f32(x))
            .collect();
        assert_eq!(back, want, "{dtype:?}");
    }
}
