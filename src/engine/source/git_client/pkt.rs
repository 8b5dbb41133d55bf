//! Git's pkt-line framing: a four-hex-digit length (itself included), then
//! the data; `0000` ends a message (flush), `0001` separates its sections
//! (delim), `0002` ends a stateless response (response-end).

use std::io::Read;

/// The largest pkt-line git sends or takes (65520 bytes with its length).
const MAX: usize = 65520;

/// One pkt-line.
#[derive(Debug, PartialEq, Eq)]
pub enum Pkt {
    Flush,
    Delim,
    ResponseEnd,
    Data(Vec<u8>),
}

impl Pkt {
    /// The data as text without its trailing newline (lossy: refs and
    /// commands are ASCII).
    pub fn text(&self) -> Option<String> {
        match self {
            Pkt::Data(d) => {
                let d = d.strip_suffix(b"\n").unwrap_or(d);
                Some(String::from_utf8_lossy(d).into_owned())
            }
            _ => None,
        }
    }
}

/// Reads one pkt-line; `None` at the end of the stream.
pub fn read<R: Read + ?Sized>(r: &mut R) -> Result<Option<Pkt>, String> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err("the server's answer ends inside a pkt-line".to_string()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the server's answer: {e}")),
        }
    }
    let text = std::str::from_utf8(&len).ok();
    let n = text
        .and_then(|t| usize::from_str_radix(t, 16).ok())
        .ok_or_else(|| "the server's answer is not in pkt-lines".to_string())?;
    Ok(Some(match n {
        0 => Pkt::Flush,
        1 => Pkt::Delim,
        2 => Pkt::ResponseEnd,
        3 => return Err("the server sent a pkt-line of length 3".to_string()),
        n if n > MAX => return Err(format!("the server sent a pkt-line of {n} bytes")),
        n => {
            let mut data = vec![0; n - 4];
            r.read_exact(&mut data)
                .map_err(|e| format!("reading the server's answer: {e}"))?;
            Pkt::Data(data)
        }
    }))
}

/// Appends `line` as one pkt-line.
pub fn data(out: &mut Vec<u8>, line: &[u8]) {
    // callers write commands and object ids, far below the limit
    debug_assert!(line.len() + 4 <= MAX);
    out.extend_from_slice(format!("{:04x}", line.len() + 4).as_bytes());
    out.extend_from_slice(line);
}

/// Appends a text line (its newline added).
pub fn line(out: &mut Vec<u8>, text: &str) {
    data(out, format!("{text}\n").as_bytes());
}

pub fn flush(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0000");
}

pub fn delim(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0001");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing() {
        let mut out = Vec::new();
        line(&mut out, "command=ls-refs");
        delim(&mut out);
        flush(&mut out);
        assert_eq!(out, b"0014command=ls-refs\n00010000");
        let mut r = &out[..];
        assert_eq!(
            read(&mut r).unwrap().unwrap().text().unwrap(),
            "command=ls-refs"
        );
        assert_eq!(read(&mut r).unwrap(), Some(Pkt::Delim));
        assert_eq!(read(&mut r).unwrap(), Some(Pkt::Flush));
        assert_eq!(read(&mut r).unwrap(), None);
        assert!(read(&mut &b"00"[..]).is_err());
        assert!(read(&mut &b"zzzz"[..]).is_err());
        assert!(read(&mut &b"0003"[..]).is_err());
    }
}
