//! Kafka-style random ids: 16 random bytes as 22 characters of unpadded URL-safe base64.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A new random id as Kafka's `Uuid.randomUuid().toString()` makes them (T-TOKEN-3):
/// a version-4 UUID that is neither all-zero nor `…01`, whose text does not start with `-`.
pub fn random_kafka_id() -> std::io::Result<String> {
    loop {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let value = u128::from_be_bytes(bytes);
        if value <= 1 {
            continue;
        }
        let id = URL_SAFE_NO_PAD.encode(bytes);
        if !id.starts_with('-') {
            return Ok(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_22_url_safe_characters() {
        for _ in 0..200 {
            let id = random_kafka_id().unwrap();
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with('-'));
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            let raw = URL_SAFE_NO_PAD.decode(&id).unwrap();
            assert_eq!(raw[6] >> 4, 4, "version-4 UUID");
        }
    }
}
