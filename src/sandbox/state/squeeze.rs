//! The transactions' texts written shorter (issue 21): what a sandbox keeps of a transaction
//! beside its typed record is a small JSON object (`{"externalId":"TX-00000001","notes":"standing
//! order"}`: 53 bytes, 28 squeezed), 29 of them a client at a rehearsal, half of whose bytes
//! are the same few field names and quotes. JSON text carries no control character raw (a
//! string escapes them: serde_json writes `\u0001`), so each of [`TOKENS`] is written as one
//! byte below 0x20 and read back as its text. Nothing else changes: a text without them is
//! kept as it is.

/// The substrings written as one byte: the byte is the index plus one. Longer ones first where
/// one starts another, since the first that matches is taken.
const TOKENS: [&str; 12] = [
    r#"{"externalId":""#,
    r#"","notes":""#,
    r#"{"notes":""#,
    r#"{"bookingDate":""#,
    r#"","externalId":""#,
    r#"","bookingDate":""#,
    r#""adjustmentTransactionKey":"#,
    r#""externalId":""#,
    r#""notes":""#,
    r#"","#,
    r#"":""#,
    r#""}"#,
];

/// `text` with every token written as its byte.
pub(super) fn squeeze(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    'next: while let Some(&b) = rest.first() {
        if b == b'"' || b == b'{' {
            for (i, token) in TOKENS.iter().enumerate() {
                if rest.starts_with(token.as_bytes()) {
                    out.push(i as u8 + 1);
                    rest = &rest[token.len()..];
                    continue 'next;
                }
            }
        }
        out.push(b);
        rest = &rest[1..];
    }
    out
}

/// What [`squeeze`] was given.
pub(super) fn expand(squeezed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(squeezed.len() * 2);
    for &b in squeezed {
        match TOKENS.get(usize::from(b).wrapping_sub(1)) {
            Some(token) if b < 0x20 => out.extend_from_slice(token.as_bytes()),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_text_reads_back_as_it_was_and_shorter() {
        let docs = [
            json!({"externalId": "TX-00000001", "notes": "standing order"}),
            json!({"externalId": "DT-1", "notes": "bonus, \"13th salary\"\u{1}\n"}),
            json!({"notes": "a:\"b\",\"c\":\"d\"}"}),
            json!({"bookingDate": "2025-01-01T00:00:00+01:00", "externalId": "X"}),
            json!({"adjustmentTransactionKey": "8a5b", "amount": "1.5", "{\"externalId\":\"": 1}),
            json!({}),
        ];
        for doc in docs {
            let text = serde_json::to_vec(&doc).unwrap();
            let squeezed = squeeze(&text);
            assert_eq!(expand(&squeezed), text, "{doc}");
            assert!(squeezed.len() <= text.len());
        }
        let text = br#"{"externalId":"TX-00000001","notes":"standing order"}"#;
        // 53 bytes in 28.
        assert_eq!((text.len(), squeeze(text).len()), (53, 28));
    }

    #[test]
    fn every_token_is_a_control_byte() {
        assert!(TOKENS.len() < 0x20);
    }
}
