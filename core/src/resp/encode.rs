//! Encoding commands into the caller's buffer.
//!
//! A command is written by a closure over a [`Sink`]; [`encode_into`] runs it once to count
//! and once to write, so a short buffer is reported with the size it needs and left untouched
//! (the shape of rustls' unbuffered API). Nothing here allocates.

/// The caller's buffer cannot hold the bytes to send; nothing was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferTooSmall {
    /// The buffer size that would be enough.
    pub required: usize,
}

impl core::fmt::Display for BufferTooSmall {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "buffer too small: {} bytes required", self.required)
    }
}

impl core::error::Error for BufferTooSmall {}

/// Where encoded bytes go. Implemented by a byte counter and a slice writer.
pub trait Sink {
    /// Appends `bytes`.
    fn put(&mut self, bytes: &[u8]);

    /// A RESP array header: `*<n>\r\n`.
    fn array(&mut self, n: usize) {
        self.put(b"*");
        self.put_decimal(n as u64);
        self.put(b"\r\n");
    }

    /// One bulk string: `$<len>\r\n<bytes>\r\n`.
    fn bulk(&mut self, bytes: &[u8]) {
        self.bulk_parts(&[bytes]);
    }

    /// One bulk string made of the concatenation of `parts` (a key built from prefix, name and
    /// suffix without a temporary buffer).
    fn bulk_parts(&mut self, parts: &[&[u8]]) {
        let len = parts
            .iter()
            .fold(0usize, |acc, p| acc.saturating_add(p.len()));
        self.put(b"$");
        self.put_decimal(len as u64);
        self.put(b"\r\n");
        for part in parts {
            self.put(part);
        }
        self.put(b"\r\n");
    }

    /// One bulk string holding `n` in decimal.
    fn bulk_u64(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let text = decimal(n, &mut digits);
        self.bulk(text);
    }

    /// `n` in decimal, unframed.
    fn put_decimal(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let text = decimal(n, &mut digits);
        self.put(text);
    }

    /// A whole command: an array of bulk strings.
    fn command(&mut self, args: &[&[u8]]) {
        self.array(args.len());
        for arg in args {
            self.bulk(arg);
        }
    }
}

/// Writes `n` in decimal into the end of `buf` and returns the digits.
#[must_use]
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut start = buf.len();
    loop {
        start -= 1;
        // `n % 10` is a single digit, so the cast and the index (start >= 0 while u64 has
        // at most 20 digits) cannot fail.
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[start..]
}

/// Counts bytes without writing them.
#[derive(Debug, Default)]
pub struct Counter(pub usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 = self.0.saturating_add(bytes.len());
    }
}

/// Writes into a slice known (by a [`Counter`] pass) to be large enough.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Sink for SliceWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.at.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.at..end) {
            dst.copy_from_slice(bytes);
        }
        self.at = end;
    }
}

/// Runs `write` against `buf`: returns the bytes written, or how many are needed (and leaves
/// `buf` untouched) when it is too small.
pub fn encode_into(buf: &mut [u8], write: impl Fn(&mut dyn Sink)) -> Result<usize, BufferTooSmall> {
    let mut counter = Counter(0);
    write(&mut counter);
    if counter.0 > buf.len() {
        return Err(BufferTooSmall {
            required: counter.0,
        });
    }
    let mut writer = SliceWriter { buf, at: 0 };
    write(&mut writer);
    Ok(writer.at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_command_as_an_array_of_bulk_strings() {
        let mut buf = [0u8; 64];
        let n = encode_into(&mut buf, |s| {
            s.array(3);
            s.bulk(b"GET");
            s.bulk_parts(&[b"p:{", b"a\r\nb", b"}"]);
            s.bulk_u64(1500);
        })
        .unwrap();
        assert_eq!(
            &buf[..n],
            b"*3\r\n$3\r\nGET\r\n$8\r\np:{a\r\nb}\r\n$4\r\n1500\r\n"
        );
    }

    #[test]
    fn short_buffer_is_untouched_and_says_what_it_needs() {
        let mut buf = [7u8; 10];
        let err = encode_into(&mut buf, |s| s.command(&[b"PING"])).unwrap_err();
        assert_eq!(err, BufferTooSmall { required: 14 });
        assert_eq!(buf, [7u8; 10]);
    }

    #[test]
    fn decimal_covers_the_extremes() {
        let mut d = [0u8; 20];
        assert_eq!(decimal(0, &mut d), b"0");
        assert_eq!(decimal(u64::MAX, &mut d), b"18446744073709551615");
    }
}
