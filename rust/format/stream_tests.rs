use super::super::tests::pinned_sparse;
use super::super::{load, read_file, save, Item, MappedFile, Plain};
use super::*;
use std::borrow::Cow;

fn items() -> Vec<(String, Item<'static>)> {
    let sparse = pinned_sparse([4, 90], 0.1 + 0.2, DType::BF16, |v| {
        (v as u16).to_le_bytes().to_vec()
    });
    let plain = |dtype, shape: Vec<usize>, data: Vec<u8>| Plain {
        dtype,
        shape,
        data: Cow::Owned(data),
    };
    vec![
        (
            "a \"quoted\" bias".into(),
            Item::Plain(plain(DType::I16, vec![3], vec![1, 0, 2, 0, 3, 0])),
        ),
        (
            "flag".into(),
            Item::Plain(plain(DType::Bool, vec![2], vec![1, 0])),
        ),
        ("w".into(), Item::Sparse(sparse)),
    ]
}

fn plan(items: &[(String, Item<'_>)]) -> Vec<Planned> {
    items
        .iter()
        .map(|(name, item)| match item {
            Item::Plain(p) => Planned {
                name: name.clone(),
                dtype: p.dtype,
                shape: p.shape.clone(),
                taps: 0,
            },
            Item::Sparse(s) => Planned {
                name: name.clone(),
                dtype: s.dtype,
                shape: s.shape.clone(),
                taps: s.config.taps().len(),
            },
        })
        .collect()
}

fn write(path: &Path, items: &[(String, Item<'_>)], plan: &[Planned]) -> Result<()> {
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    let mut w = ShardWriter::create(path, meta, plan)?;
    for (name, item) in items {
        match item {
            Item::Plain(p) => w.add_plain(name, p)?,
            Item::Sparse(s) => w.add_sparse(name, s)?,
        }
    }
    w.finish()
}

#[test]
fn streamed_file_loads_like_a_saved_one_with_and_without_a_plan() {
    let items = items();
    let dir = tempfile::tempdir().unwrap();
    for (i, plan) in [plan(&items), Vec::new()].iter().enumerate() {
        let path = dir.path().join(format!("s{i}.safetensors"));
        write(&path, &items, plan).unwrap();
        let buf = read_file(&path).unwrap();
        assert_eq!(load(&buf).unwrap(), items);
        // The header length leaves the data 8-byte aligned.
        assert_eq!(u64::from_le_bytes(buf[..8].try_into().unwrap()) % 8, 0);
        let m = MappedFile::open(&path).unwrap();
        assert_eq!(m.metadata().get("format").map(String::as_str), Some("pt"));
        assert_eq!(m.entries().len(), 3);
    }
    // Without a plan the header outgrew its room and the data was moved once;
    // either way only the two files are left.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    let saved = dir.path().join("saved.safetensors");
    save(
        &saved,
        &items,
        &HashMap::from([("format".into(), "pt".into())]),
    )
    .unwrap();
    assert_eq!(load(&read_file(&saved).unwrap()).unwrap(), items);
}

#[test]
fn a_failed_or_abandoned_write_leaves_nothing() {
    let items = items();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    let mut w = ShardWriter::create(&path, HashMap::new(), &plan(&items)).unwrap();
    if let Item::Plain(p) = &items[0].1 {
        w.add_plain(&items[0].0, p).unwrap();
        let e = w.add_plain(&items[0].0, p).unwrap_err();
        assert!(
            e.msg.contains("used twice") && e.msg.contains("x.safetensors"),
            "{}",
            e.msg
        );
    }
    let bad = Plain {
        dtype: DType::Bool,
        shape: vec![1],
        data: Cow::Owned(vec![7]),
    };
    assert!(w.add_plain("b", &bad).unwrap_err().msg.contains("BOOL"));
    drop(w);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let reserved = HashMap::from([(META_KEY.to_string(), String::new())]);
    assert!(ShardWriter::create(&path, reserved, &[]).is_err());
}

#[test]
fn mapped_views_are_the_stored_bytes_and_errors_name_the_file() {
    let items = items();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write(&path, &items, &plan(&items)).unwrap();
    let m = MappedFile::open(&path).unwrap();
    for (name, item) in &items {
        match (item, m.entry(name).unwrap()) {
            (Item::Plain(p), super::super::Entry::Plain(s)) => {
                assert_eq!(m.bytes(s), p.data.as_ref());
                m.release(&s.range);
                assert_eq!(m.bytes(s), p.data.as_ref()); // read back after release
            }
            (Item::Sparse(want), super::super::Entry::Sparse(s)) => {
                assert_eq!(&m.sparse(s).unwrap(), want)
            }
            _ => panic!("{name}: wrong kind"),
        }
    }
    let mut buf = std::fs::read(&path).unwrap();
    let n = buf.len();
    buf[n - 1] ^= 1;
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, &buf).unwrap();
    let e = MappedFile::open(&bad).err().unwrap();
    assert!(
        e.msg.starts_with(&bad.display().to_string()) && e.msg.contains("checksum"),
        "{}",
        e.msg
    );
    let e = MappedFile::open(dir.path()).err().unwrap();
    assert!(e.msg.contains("not a regular file"));
}
