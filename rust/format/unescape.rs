//! Reading JSON out of a JSON string token: vitrust's metadata is a string
//! inside the safetensors header, read as a stream of its decoded bytes
//! rather than decoded into a copy first.

use std::io::Read;

/// The decoded content of a JSON string token (`"..."`, escapes and all,
/// already validated by the header's parser), as a byte stream.
pub struct Unescape<'a> {
    s: &'a [u8],
    pending: [u8; 4],
    pending_len: usize,
}

impl<'a> Unescape<'a> {
    pub fn new(token: &'a str) -> Self {
        let s = token.as_bytes();
        Self {
            s: &s[1..s.len() - 1],
            pending: [0; 4],
            pending_len: 0,
        }
    }

    fn hex4(&mut self) -> std::io::Result<u32> {
        let bad = || std::io::Error::other("bad \\u escape");
        let h = self.s.get(..4).ok_or_else(bad)?;
        let v = u32::from_str_radix(std::str::from_utf8(h).map_err(|_| bad())?, 16)
            .map_err(|_| bad())?;
        self.s = &self.s[4..];
        Ok(v)
    }

    /// Decodes one escape (after its backslash) into `pending`.
    fn escape(&mut self) -> std::io::Result<()> {
        let c = self.s[0];
        self.s = &self.s[1..];
        let ch = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                let code = if (0xD800..0xDC00).contains(&hi) && self.s.starts_with(b"\\u") {
                    self.s = &self.s[2..];
                    let lo = self.hex4()?;
                    0x10000 + ((hi - 0xD800) << 10) + (lo.wrapping_sub(0xDC00) & 0x3FF)
                } else {
                    hi
                };
                // A lone surrogate (which serde_json also accepts) becomes U+FFFD.
                char::from_u32(code).unwrap_or('\u{FFFD}')
            }
            _ => return Err(std::io::Error::other("bad escape")),
        };
        self.pending_len = ch.encode_utf8(&mut self.pending).len();
        Ok(())
    }
}

impl Read for Unescape<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            if self.pending_len > 0 {
                let k = self.pending_len.min(buf.len() - n);
                buf[n..n + k].copy_from_slice(&self.pending[..k]);
                self.pending.copy_within(k..self.pending_len, 0);
                self.pending_len -= k;
                n += k;
                continue;
            }
            let Some(&b) = self.s.first() else { break };
            if b == b'\\' {
                self.s = &self.s[1..];
                self.escape()?;
                continue;
            }
            // Scan no further than fits: a scan to the end per call is quadratic.
            let room = self.s.len().min(buf.len() - n);
            let k = self.s[..room]
                .iter()
                .position(|&b| b == b'\\')
                .unwrap_or(room);
            buf[n..n + k].copy_from_slice(&self.s[..k]);
            self.s = &self.s[k..];
            n += k;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescaping_matches_serde_json() {
        for s in [
            "",
            "plain",
            "a\"b\\c/d\n\t\r\u{8}\u{c}",
            "é ü 漢字 🦀",
            "{\"k\": [1, 2]}",
        ] {
            let token = serde_json::to_string(s).unwrap();
            for cap in [1, 3, 64] {
                let mut r = std::io::BufReader::with_capacity(cap, Unescape::new(&token));
                let mut out = String::new();
                r.read_to_string(&mut out).unwrap();
                assert_eq!(out, s, "{token}");
            }
        }
        let token = r#""\u00e9\ud83e\udd80\u0041""#;
        let mut out = String::new();
        Unescape::new(token).read_to_string(&mut out).unwrap();
        assert_eq!(out, serde_json::from_str::<String>(token).unwrap());
    }
}
