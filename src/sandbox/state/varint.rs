//! LEB128 varints (7 bits a byte, the lowest first; one byte up to 127): the lengths of the
//! transactions' texts and of the documents' texts, and an encoded schedule's numbers
//! (zigzagged, so that small magnitudes of either sign take one byte).

/// Appends `n`.
pub(super) fn put(bytes: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        bytes.push((n as u8) | 0x80);
        n >>= 7;
    }
    bytes.push(n as u8);
}

/// Reads one from the front of `bytes` and moves past it (what the tenant wrote itself: a
/// varint cut short reads as the bits it has).
pub(super) fn take(bytes: &mut &[u8]) -> u64 {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let Some((&b, rest)) = bytes.split_first() else {
            break;
        };
        *bytes = rest;
        n |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
    }
    n
}

/// `n` with its sign in the lowest bit: 0, -1, 1, -2… as 0, 1, 2, 3…
pub(super) fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

/// What [`zigzag`] was given.
pub(super) fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_back_in_as_few_bytes_as_they_need() {
        for (n, len) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (u64::MAX, 10),
        ] {
            let mut bytes = Vec::new();
            put(&mut bytes, n);
            bytes.push(0xAA);
            assert_eq!(bytes.len(), len + 1, "{n}");
            let mut rest = &bytes[..];
            assert_eq!(take(&mut rest), n);
            assert_eq!(rest, [0xAA]);
        }
        for n in [0, -1, 1, -64, 63, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(n)), n);
        }
        assert_eq!(zigzag(-64), 127);
    }
}
