//! The metadata's `version`, read on its own before anything else (a newer
//! file is then reported as such, not as unknown fields): any JSON value is
//! accepted here and named in the message if it is not a supported version.

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::fmt;

pub(super) enum Version {
    Num(u64),
    Other(String),
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Version::Num(v) => write!(f, "{v}"),
            Version::Other(s) => f.write_str(s),
        }
    }
}

/// The metadata with only `version` read (any JSON value; the rest skipped).
pub(super) struct VersionOnly(pub(super) Option<Version>);

impl<'de> Deserialize<'de> for VersionOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VersionOnly;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<VersionOnly, A::Error> {
                let mut version = None;
                while let Some(k) = map.next_key::<String>()? {
                    if k == "version" {
                        version = Some(map.next_value::<AnyVersion>()?.0);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(VersionOnly(version))
            }
        }
        d.deserialize_map(V)
    }
}

struct AnyVersion(Version);

impl<'de> Deserialize<'de> for AnyVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyVersion;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a version")
            }
            fn visit_u64<E>(self, v: u64) -> std::result::Result<AnyVersion, E> {
                Ok(AnyVersion(Version::Num(v)))
            }
            fn visit_i64<E>(self, v: i64) -> std::result::Result<AnyVersion, E> {
                Ok(AnyVersion(Version::Other(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> std::result::Result<AnyVersion, E> {
                Ok(AnyVersion(Version::Other(v.to_string())))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<AnyVersion, E> {
                let short: String = v.chars().take(20).collect();
                Ok(AnyVersion(Version::Other(format!("{short:?}"))))
            }
            fn visit_bool<E>(self, v: bool) -> std::result::Result<AnyVersion, E> {
                Ok(AnyVersion(Version::Other(v.to_string())))
            }
            fn visit_unit<E>(self) -> std::result::Result<AnyVersion, E> {
                Ok(AnyVersion(Version::Other("null".into())))
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> std::result::Result<AnyVersion, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(AnyVersion(Version::Other("(a list)".into())))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<AnyVersion, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(AnyVersion(Version::Other("(an object)".into())))
            }
        }
        d.deserialize_any(V)
    }
}
