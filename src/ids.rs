//! Kafka-style random ids: 16 random bytes as 22 characters of unpadded URL-safe base64.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A new random id as Kafka's `Uuid.randomUuid().toString()` makes them (T-TOKEN-3):
/// a version-4 UUID that is neither all-zero nor `…01`, whose text does not start with `-`.
pub fn random_kafka_id() -> String {
    loop {
        // `Uuid::new_v4` draws from the OS CSPRNG (through getrandom) and sets the version
        // and variant bits as Java's `UUID.randomUUID` does.
        let uuid = uuid::Uuid::new_v4();
        if uuid.as_u128() <= 1 {
            continue;
        }
        let id = URL_SAFE_NO_PAD.encode(uuid.as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_22_url_safe_characters() {
        for _ in 0..200 {
            let id = random_kafka_id();
            assert_eq!(id.len(), 22);
            assert!(!id.starts_with('-'));
            assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            let raw = URL_SAFE_NO_PAD.decode(&id).unwrap();
            assert_eq!(raw[6] >> 4, 4, "version-4 UUID");
        }
    }
}
