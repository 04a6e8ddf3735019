//! RFC 4648 base32 with the lowercase alphabet `a-z2-7` and no padding, for share text.
//!
//! Symbols are mapped with arithmetic instead of branches or table lookups, so the time taken
//! does not depend on the share bytes. Decoding accepts either case and skips ASCII whitespace
//! and `-`, which admins may use to group characters.

use zeroize::Zeroize;

/// Reason a base32 string failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DecodeError {
    /// A character outside the alphabet and the separators, at this byte offset of the input.
    InvalidCharacter { offset: usize },
    /// The number of base32 symbols differs from the number needed for the output.
    WrongLength { found: usize, expected: usize },
    /// The unused low bits of the last symbol are not zero, so the text is not the canonical
    /// encoding of any byte string.
    NonCanonical,
}

/// Returns the number of symbols that encode `byte_len` bytes.
pub(super) const fn encoded_len(byte_len: usize) -> usize {
    (byte_len * 8).div_ceil(5)
}

/// Appends the encoding of `bytes` to `out`, with a `-` after every `group_len` symbols except
/// the last. `group_len` 0 means no grouping.
pub(super) fn encode_into(bytes: &[u8], group_len: usize, out: &mut String) {
    let mut bits: u16 = 0;
    let mut bit_count = 0u32;
    let mut written = 0usize;
    let mut push = |symbol: u8, out: &mut String| {
        if group_len != 0 && written != 0 && written.is_multiple_of(group_len) {
            out.push('-');
        }
        out.push(char::from(encode_symbol(symbol)));
        written += 1;
    };

    for &byte in bytes {
        bits = (bits << 8) | u16::from(byte);
        bit_count += 8;
        while bit_count >= 5 {
            bit_count -= 5;
            push(((bits >> bit_count) & 0x1f) as u8, out);
        }
        bits &= (1 << bit_count) - 1;
    }
    if bit_count > 0 {
        push(((bits << (5 - bit_count)) & 0x1f) as u8, out);
    }
    // The accumulator held share bits.
    bits.zeroize();
}

/// Decodes `text` into `out`, which must be filled exactly.
///
/// On error `out` may contain part of the decoded bytes, which the caller must clear.
pub(super) fn decode_into(text: &str, out: &mut [u8]) -> Result<(), DecodeError> {
    let expected = encoded_len(out.len());
    let mut bits: u16 = 0;
    let mut bit_count = 0u32;
    let mut symbols = 0usize;
    let mut written = 0usize;

    for (offset, character) in text.bytes().enumerate() {
        if character == b'-' || character.is_ascii_whitespace() {
            continue;
        }
        let (value, valid) = decode_symbol(character);
        if valid == 0 {
            bits.zeroize();
            return Err(DecodeError::InvalidCharacter { offset });
        }
        symbols += 1;
        if symbols > expected {
            // Keep counting, so that the error reports the full length.
            continue;
        }
        bits = (bits << 5) | u16::from(value);
        bit_count += 5;
        if bit_count >= 8 {
            bit_count -= 8;
            if let Some(slot) = out.get_mut(written) {
                *slot = (bits >> bit_count) as u8;
            }
            written += 1;
            bits &= (1 << bit_count) - 1;
        }
    }

    // Whatever is left in the accumulator is padding, which the encoder sets to zero.
    let padding = bits;
    bits.zeroize();
    if symbols != expected {
        return Err(DecodeError::WrongLength {
            found: symbols,
            expected,
        });
    }
    if padding != 0 {
        return Err(DecodeError::NonCanonical);
    }
    Ok(())
}

/// Maps a 5-bit value to its symbol: 0-25 to `a`-`z`, 26-31 to `2`-`7`.
fn encode_symbol(value: u8) -> u8 {
    let value = value & 0x1f;
    // 0xff when value >= 26: 25 - value wraps around and sets the high bit.
    let digit_mask = ((25u8.wrapping_sub(value)) >> 7).wrapping_neg();
    // The digits start 73 places before where the letters would continue ('a' + 26 - '2').
    b'a'.wrapping_add(value).wrapping_sub(digit_mask & 73)
}

/// Maps a symbol of either case to its 5-bit value, with a mask that is 0xff when the symbol is
/// valid and 0 otherwise.
fn decode_symbol(character: u8) -> (u8, u8) {
    // Setting bit 0x20 folds `A`-`Z` onto `a`-`z`. Other bytes that fold onto letters, such as
    // `@` onto a backtick, stay outside the letter range.
    let folded = character | 0x20;
    let letter_mask = range_mask(folded, b'a', b'z');
    let digit_mask = range_mask(character, b'2', b'7');
    let value = (letter_mask & folded.wrapping_sub(b'a'))
        | (digit_mask & character.wrapping_sub(b'2').wrapping_add(26));
    (value, letter_mask | digit_mask)
}

/// Returns 0xff when `low <= value <= high`, else 0, without branching on `value`.
fn range_mask(value: u8, low: u8, high: u8) -> u8 {
    let above_low = i16::from(value) - i16::from(low);
    let below_high = i16::from(high) - i16::from(value);
    // The sign bit of either difference is set exactly when `value` is out of range.
    let out_of_range = ((above_low | below_high) >> 15) as u8;
    !out_of_range
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        encode_into(bytes, 0, &mut out);
        out
    }

    fn decode(text: &str, len: usize) -> Result<Vec<u8>, DecodeError> {
        let mut out = vec![0u8; len];
        decode_into(text, &mut out).map(|()| out)
    }

    #[test]
    fn encode_matches_rfc_4648_vectors() {
        // RFC 4648 section 10, lowercased and without padding.
        let vectors: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "my"),
            (b"fo", "mzxq"),
            (b"foo", "mzxw6"),
            (b"foob", "mzxw6yq"),
            (b"fooba", "mzxw6ytb"),
            (b"foobar", "mzxw6ytboi"),
        ];

        for (bytes, text) in vectors {
            assert_eq!(encode(bytes), text);
            assert_eq!(decode(text, bytes.len()).unwrap(), bytes);
            assert_eq!(encoded_len(bytes.len()), text.len());
        }
    }

    #[test]
    fn symbols_round_trip_for_every_value() {
        for value in 0u8..32 {
            let symbol = encode_symbol(value);
            let expected = b"abcdefghijklmnopqrstuvwxyz234567"[usize::from(value)];

            assert_eq!(symbol, expected);
            assert_eq!(decode_symbol(symbol), (value, 0xff));
            assert_eq!(decode_symbol(symbol.to_ascii_uppercase()), (value, 0xff));
        }
    }

    #[test]
    fn decode_symbol_rejects_every_other_byte() {
        for byte in 0u8..=255 {
            let valid = byte.is_ascii_alphabetic() || (b'2'..=b'7').contains(&byte);

            let (_, mask) = decode_symbol(byte);

            assert_eq!(mask == 0xff, valid, "byte {byte:#04x}");
            assert!(mask == 0 || mask == 0xff, "byte {byte:#04x}");
        }
    }

    #[test]
    fn encode_groups_symbols_with_dashes() {
        let mut out = String::new();

        encode_into(b"foobar", 3, &mut out);

        assert_eq!(out, "mzx-w6y-tbo-i");
    }

    #[test]
    fn decode_skips_separators_and_ignores_case() {
        let decoded = decode(" MZX-w6y tBo\n-I ", 6).unwrap();

        assert_eq!(decoded, b"foobar");
    }

    #[test]
    fn decode_rejects_invalid_character_with_offset() {
        assert_eq!(
            decode("mzx0w6ytboi", 6),
            Err(DecodeError::InvalidCharacter { offset: 3 })
        );
        assert_eq!(
            decode("mzxw6ytbo=", 6),
            Err(DecodeError::InvalidCharacter { offset: 9 })
        );
        assert_eq!(
            decode("mzxw6ytboé", 6),
            Err(DecodeError::InvalidCharacter { offset: 9 })
        );
    }

    #[test]
    fn decode_rejects_wrong_length() {
        assert_eq!(
            decode("mzxw6ytbo", 6),
            Err(DecodeError::WrongLength {
                found: 9,
                expected: 10
            })
        );
        assert_eq!(
            decode("mzxw6ytboiaa", 6),
            Err(DecodeError::WrongLength {
                found: 12,
                expected: 10
            })
        );
    }

    #[test]
    fn decode_rejects_nonzero_padding_bits() {
        // "foobar" ends in "i" (01000), and "j" (01001) also sets the last padding bit.
        assert_eq!(decode("mzxw6ytboj", 6), Err(DecodeError::NonCanonical));
    }
}
