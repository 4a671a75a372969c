//! SHA-1 in `const`, for the `EVALSHA` digests of the lock scripts.
//!
//! Redis keys its script cache by the SHA-1 of a script's source. This module computes that
//! digest at compile time (`const DIGEST: [u8; 40] = sha1_hex(SCRIPT.as_bytes());`), so the
//! digest sent with `EVALSHA` can never drift from the script sent with `EVAL`.
//!
//! Invariant: this is for naming scripts only. SHA-1 is broken for collision resistance, so
//! nothing here may ever serve security (tokens, authentication, integrity checks).
//!
//! Everything is `const fn`, so it is written the way `const` evaluation allows: `while`
//! loops, no iterators or trait calls, and no indexing that could panic (array indices are
//! constants; slices are walked with `split_first` and `split_first_chunk`). Const evaluation
//! has a step budget (the deny-by-default `long_running_const_eval` lint): inputs up to 32 KiB
//! are tested to stay within it, far more than any lock script.

/// The initial chaining value (FIPS 180-4, 5.3.1).
const INIT: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// The 16 big-endian words of a block.
const fn words(b: &[u8; 64]) -> [u32; 16] {
    [
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
        u32::from_be_bytes([b[16], b[17], b[18], b[19]]),
        u32::from_be_bytes([b[20], b[21], b[22], b[23]]),
        u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
        u32::from_be_bytes([b[28], b[29], b[30], b[31]]),
        u32::from_be_bytes([b[32], b[33], b[34], b[35]]),
        u32::from_be_bytes([b[36], b[37], b[38], b[39]]),
        u32::from_be_bytes([b[40], b[41], b[42], b[43]]),
        u32::from_be_bytes([b[44], b[45], b[46], b[47]]),
        u32::from_be_bytes([b[48], b[49], b[50], b[51]]),
        u32::from_be_bytes([b[52], b[53], b[54], b[55]]),
        u32::from_be_bytes([b[56], b[57], b[58], b[59]]),
        u32::from_be_bytes([b[60], b[61], b[62], b[63]]),
    ]
}

/// One SHA-1 compression of block `w` into chaining value `h` (FIPS 180-4, 6.1.2).
const fn compress(h: [u32; 5], w: [u32; 16]) -> [u32; 5] {
    let [mut a, mut b, mut c, mut d, mut e] = h;
    // The message schedule as a sliding window of locals: `w0` is W[round], `w15` is
    // W[round + 15]. Locals, not an array, keep `const` evaluation cheap and free of indexing.
    let [
        mut w0,
        mut w1,
        mut w2,
        mut w3,
        mut w4,
        mut w5,
        mut w6,
        mut w7,
        mut w8,
        mut w9,
        mut w10,
        mut w11,
        mut w12,
        mut w13,
        mut w14,
        mut w15,
    ] = w;
    let mut round = 0u8;
    while round < 80 {
        let (f, k) = if round < 20 {
            ((b & c) | (!b & d), 0x5A82_7999)
        } else if round < 40 {
            (b ^ c ^ d, 0x6ED9_EBA1)
        } else if round < 60 {
            ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC)
        } else {
            (b ^ c ^ d, 0xCA62_C1D6)
        };
        let temp = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(w0);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = temp;
        // W[t+16] = rotl1(W[t+13] ^ W[t+8] ^ W[t+2] ^ W[t]).
        let next = (w13 ^ w8 ^ w2 ^ w0).rotate_left(1);
        (w0, w1, w2, w3, w4, w5, w6, w7) = (w1, w2, w3, w4, w5, w6, w7, w8);
        (w8, w9, w10, w11, w12, w13, w14, w15) = (w9, w10, w11, w12, w13, w14, w15, next);
        round = round.wrapping_add(1);
    }
    [
        h[0].wrapping_add(a),
        h[1].wrapping_add(b),
        h[2].wrapping_add(c),
        h[3].wrapping_add(d),
        h[4].wrapping_add(e),
    ]
}

/// The SHA-1 digest of `data`.
///
/// Usable in `const` context. For script digests only: SHA-1 is not collision resistant.
#[must_use]
pub const fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h = INIT;
    let mut rest = data;
    while let Some((block, tail)) = rest.split_first_chunk::<64>() {
        h = compress(h, words(block));
        rest = tail;
    }
    // Padding: the last partial block (under 64 bytes), 0x80, zeros, then the message length
    // in bits (modulo 2^64) in the last 8 bytes, in a block of its own if it does not fit.
    let mut last = [0u8; 64];
    let mut dst: &mut [u8] = &mut last;
    let mut src = rest;
    loop {
        // Moved out and put back each step, so the borrow ends with the loop.
        let current = dst;
        let Some((slot, dst_tail)) = current.split_first_mut() else {
            break;
        };
        if let Some((&byte, src_tail)) = src.split_first() {
            *slot = byte;
            src = src_tail;
            dst = dst_tail;
        } else {
            // `rest` is under 64 bytes, so there is always room for the marker.
            *slot = 0x80;
            break;
        }
    }
    if rest.len() >= 56 {
        h = compress(h, words(&last));
        last = [0; 64];
    }
    if let Some(length) = last.last_chunk_mut::<8>() {
        *length = (data.len() as u64).wrapping_mul(8).to_be_bytes();
    }
    let [a, b, c, d, e] = compress(h, words(&last));
    let (a, b, c, d, e) = (
        a.to_be_bytes(),
        b.to_be_bytes(),
        c.to_be_bytes(),
        d.to_be_bytes(),
        e.to_be_bytes(),
    );
    [
        a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3], c[0], c[1], c[2], c[3], d[0], d[1], d[2],
        d[3], e[0], e[1], e[2], e[3],
    ]
}

/// The SHA-1 digest of `data` as 40 lowercase hex bytes (what `EVALSHA` takes).
///
/// Usable in `const` context. For script digests only: SHA-1 is not collision resistant.
#[must_use]
pub const fn sha1_hex(data: &[u8]) -> [u8; 40] {
    let digest = sha1(data);
    let mut out = [0u8; 40];
    let mut src: &[u8] = &digest;
    let mut dst: &mut [u8] = &mut out;
    while let (Some((&byte, src_tail)), Some((hi, dst_rest))) =
        (src.split_first(), dst.split_first_mut())
    {
        let Some((lo, dst_tail)) = dst_rest.split_first_mut() else {
            // Unreachable: `out` holds exactly two hex digits per digest byte.
            break;
        };
        *hi = hex_digit(byte.wrapping_shr(4));
        *lo = hex_digit(byte & 0x0f);
        src = src_tail;
        dst = dst_tail;
    }
    out
}

/// The lowercase hex digit for a nibble (`0..16`).
const fn hex_digit(nibble: u8) -> u8 {
    if nibble < 10 {
        b'0'.wrapping_add(nibble)
    } else {
        b'a'.wrapping_add(nibble.wrapping_sub(10))
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    /// Reference digest from the RustCrypto `sha1` crate.
    fn reference(data: &[u8]) -> [u8; 20] {
        use ::sha1::Digest as _;
        ::sha1::Sha1::digest(data).into()
    }

    fn hex(s: &[u8; 40]) -> &str {
        core::str::from_utf8(s).expect("hex digits are ASCII")
    }

    #[test]
    fn standard_vectors() {
        assert_eq!(
            hex(&sha1_hex(b"")),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert_eq!(
            hex(&sha1_hex(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&sha1_hex(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(&sha1_hex(b"The quick brown fox jumps over the lazy dog")),
            "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"
        );
    }

    #[test]
    fn million_a() {
        let data = alloc::vec![b'a'; 1_000_000];
        assert_eq!(
            hex(&sha1_hex(&data)),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn matches_reference_for_lengths_0_to_200() {
        // Every padding case: lengths around 55/56/64 and 119/120/128 put the length field in
        // the same or the next block.
        let data: Vec<u8> = (0..=200u32)
            .map(|i| (i.wrapping_mul(151) ^ 0x5a) as u8)
            .collect();
        for len in 0..=data.len() {
            let input = &data[..len];
            assert_eq!(sha1(input), reference(input), "length {len}");
        }
    }

    #[test]
    fn hex_matches_digest() {
        let digest = sha1(b"hex");
        let text = sha1_hex(b"hex");
        for (i, byte) in digest.iter().enumerate() {
            let pair = alloc::format!("{byte:02x}");
            assert_eq!(&text[2 * i..2 * i + 2], pair.as_bytes());
        }
    }

    #[test]
    fn evaluates_in_const() {
        const SCRIPT: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
        const DIGEST: [u8; 40] = sha1_hex(SCRIPT.as_bytes());
        const RAW: [u8; 20] = sha1(b"abc");
        // 32 KiB, the size the module doc promises, stays within const evaluation's budget.
        const BIG: &[u8] = &[b'x'; 32 * 1024];
        const BIG_DIGEST: [u8; 20] = sha1(BIG);
        assert_eq!(DIGEST, sha1_hex(SCRIPT.as_bytes()));
        assert_eq!(DIGEST, {
            let mut out = [0u8; 40];
            let r = reference(SCRIPT.as_bytes());
            for (i, b) in r.iter().enumerate() {
                out[2 * i..2 * i + 2].copy_from_slice(alloc::format!("{b:02x}").as_bytes());
            }
            out
        });
        assert_eq!(RAW, reference(b"abc"));
        assert_eq!(BIG_DIGEST, reference(BIG));
    }
}
