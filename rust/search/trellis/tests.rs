use super::*;

#[test]
fn table_bytes_cover_the_tables_held() {
    // Configs with and without the vector kernels' lane tables, one and
    // several chunks of keep bits.
    for (k, n_in, n_out) in [(6, 1, 5), (10, 1, 4), (8, 2, 10), (8, 2, 12), (4, 1, 20)] {
        let cfg = VdConfig::from_seed(k, n_in, n_out, 5, 3, 1).unwrap();
        let tr = Trellis::new(&cfg);
        let held = tr.table.len() * std::mem::size_of::<u64>()
            + tr.chunks.iter().map(Vec::len).sum::<usize>()
            + tr.lanes
                .as_ref()
                .map_or(0, |l| l.len() * std::mem::size_of::<u32>())
            + tr.lanes16
                .as_ref()
                .map_or(0, |l| l.len() * std::mem::size_of::<u16>());
        assert_eq!(tr.table_bytes(), held, "{cfg:?}");
        assert!(held >= 8 << (k + n_in), "{cfg:?}");
    }
}

/// With small integer gains every sum is exact, so each fast kernel must
/// give the general step's metrics and decisions bit for bit, ties (which
/// integers make common) included.
#[test]
fn fast_steps_match_the_general_step() {
    let mut seed = 7u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as i64
    };
    for (k, n_in, n_out) in [
        (6, 1, 5),
        (9, 1, 3),
        (6, 2, 10),
        (8, 2, 10),
        (10, 2, 7),
        (7, 2, 4),
    ] {
        let cfg = VdConfig::from_seed(k, n_in, n_out, 3, 2, k as u64).unwrap();
        let tr = Trellis::new(&cfg);
        let patterns = tr.lanes.as_ref().expect("a fast-kernel config");
        let s = tr.n_states();
        let old: Vec<f32> = (0..s).map(|_| (next() % 9 - 4) as f32).collect();
        let gains: Vec<f32> = (0..n_out).map(|_| (next() % 5 - 2) as f32).collect();
        let (mut sums, mut bm) = (vec![0.0; 256], vec![0.0; s << n_in]);
        branch_metrics(&tr, &gains, &mut sums, &mut bm);
        let words = n_in as usize * tr.plane_words();
        let (mut want, mut want_dec) = (vec![0.0; s], vec![0u64; words]);
        acs_general(&tr, &old, &bm, &mut want, &mut want_dec);
        let st = acs::Step {
            old: &old,
            patterns,
            gains: &gains,
        };
        for level in crate::Level::all().into_iter().filter(|l| l.available()) {
            let isa = Isa::new(level).unwrap();
            let (mut new, mut dec) = (vec![f32::NAN; s], vec![!0u64; words]);
            arch::acs::step(isa, n_in, &st, &mut new, &mut dec);
            assert_eq!(
                new, want,
                "metrics, k {k} n_in {n_in} n_out {n_out} {level:?}"
            );
            assert_eq!(
                dec, want_dec,
                "decisions, k {k} n_in {n_in} n_out {n_out} {level:?}"
            );
        }
    }
}

/// The int16 step takes the decisions of the float32 step on the same
/// integers and gives its metrics, offset by any base and wrapped: the
/// int16 path never renormalises.
#[test]
fn int16_step_matches_the_float_step_on_wrapped_integers() {
    let mut seed = 11u64;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as i64
    };
    for (k, n_out) in [(6, 5), (7, 1), (9, 3), (12, 5), (10, 4)] {
        let cfg = VdConfig::from_seed(k, 1, n_out, 3, 2, k as u64).unwrap();
        let tr = Trellis::new(&cfg);
        assert!(tr.quantises(), "k {k} n_out {n_out}");
        let s = tr.n_states();
        for (spread, base) in [(9, 0i16), (4000, 32000), (9, -32768), (2000, 12345)] {
            let old: Vec<f32> = (0..s)
                .map(|_| (next() % spread - spread / 2) as f32)
                .collect();
            let gains: Vec<f32> = (0..n_out)
                .map(|_| (next() % spread - spread / 2) as f32)
                .collect();
            let st = acs::Step {
                old: &old,
                patterns: tr.lanes.as_ref().unwrap(),
                gains: &gains,
            };
            let (mut want, mut want_dec) = (vec![0.0; s], vec![0u64; tr.plane_words()]);
            acs::step1_portable(&st, &mut want, &mut want_dec);
            let old16: Vec<i16> = old.iter().map(|&m| base.wrapping_add(m as i16)).collect();
            let gains16: Vec<i16> = gains.iter().map(|&g| g as i16).collect();
            let st16 = acs::Step16 {
                old: &old16,
                patterns: tr.lanes16.as_ref().unwrap(),
                gains: &gains16,
            };
            let levels = crate::Level::all().into_iter().filter(|l| l.available());
            for isa in levels.map(|l| Isa::new(l).unwrap()).filter(|i| i.avx512()) {
                let (mut new, mut dec) = (vec![0i16; s], vec![!0u64; tr.plane_words()]);
                arch::acs::step1_i16(isa, &st16, &mut new, &mut dec);
                let what = format!("k {k} n_out {n_out} spread {spread} base {base}");
                assert_eq!(dec, want_dec, "decisions, {what}");
                let got: Vec<f32> = new
                    .iter()
                    .map(|&m| f32::from(m.wrapping_sub(base)))
                    .collect();
                assert_eq!(got, want, "metrics, {what}");
            }
        }
    }
}
