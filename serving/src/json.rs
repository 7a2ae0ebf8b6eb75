//! JSON as the servers read and measure it. Documents are decoded with their UTF-8 checked
//! once as a whole: from a byte slice, serde_json checks each string on its own, which costs
//! more than one pass over the text; from a `&str` it checks nothing again.

use serde::de::DeserializeOwned;

/// `serde_json::from_slice`, faster on valid UTF-8; errors are the ones it gives.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text),
        // serde_json then says where the bad bytes are, as it always has.
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// The length of `value` encoded as JSON, counted without keeping the text: size limits on
/// parts of an object need no copy of them.
pub fn encoded_len<T: serde::Serialize + ?Sized>(value: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Counting cannot fail, and serializing a `Value` does not either.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn decodes_as_serde_json_does_and_fails_as_it_does() {
        let doc = b"{\"a\": [\"\\u00e9\", \"caf\xc3\xa9\"], \"b\": 1}";
        assert_eq!(
            from_slice::<Value>(doc).unwrap(),
            json!({"a": ["é", "café"], "b": 1})
        );
        for bad in [&b"{\"a\": \"\xff\"}"[..], b"{\"a\": 1", b"[1,]"] {
            assert_eq!(
                from_slice::<Value>(bad).unwrap_err().to_string(),
                serde_json::from_slice::<Value>(bad)
                    .unwrap_err()
                    .to_string()
            );
        }
    }

    #[test]
    fn encoded_len_is_the_length_of_the_text() {
        let doc = json!({"a": ["é", "tab\t"], "b": {"c": null, "d": 1.5}});
        assert_eq!(encoded_len(&doc), serde_json::to_vec(&doc).unwrap().len());
        assert_eq!(encoded_len(&json!({})), 2);
    }
}
