//! SASL/PLAIN message parsing (RFC 4616, T-PLAIN-1).

/// A PLAIN message that cannot be used, with Kafka's messages (SPEC §3.7).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    /// Not exactly three NUL-separated fields; the count is 1, 2 or 4 (four or more).
    #[error("Invalid SASL/PLAIN response: expected 3 tokens, got {0}")]
    FieldCount(usize),
    /// The user name is empty.
    #[error("Authentication failed: username not specified")]
    NoUsername,
    /// The password is empty.
    #[error("Authentication failed: password not specified")]
    NoPassword,
}

/// The fields of a PLAIN message.
pub struct PlainMessage {
    /// The authorization id; empty when not given.
    pub authzid: String,
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for PlainMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainMessage").field("username", &self.username).finish_non_exhaustive()
    }
}

/// Parses `[authzid] NUL authcid NUL passwd`, checking the field count, then the user
/// name, then the password.
pub fn parse_plain(msg: &[u8]) -> Result<PlainMessage, PlainError> {
    let text = String::from_utf8_lossy(msg);
    let fields: Vec<&str> = text.split('\0').collect();
    if fields.len() != 3 {
        return Err(PlainError::FieldCount(fields.len().min(4)));
    }
    if fields[1].is_empty() {
        return Err(PlainError::NoUsername);
    }
    if fields[2].is_empty() {
        return Err(PlainError::NoPassword);
    }
    Ok(PlainMessage { authzid: fields[0].to_owned(), username: fields[1].to_owned(), password: fields[2].to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-PLAIN-1: field count, then user name, then password.
    #[test]
    fn t_plain_1_message_checks() {
        let m = parse_plain(b"\0alice\0pw").unwrap();
        assert_eq!((m.authzid.as_str(), m.username.as_str(), m.password.as_str()), ("", "alice", "pw"));
        assert_eq!(parse_plain(b"admin\0alice\0pw").unwrap().authzid, "admin");
        assert_eq!(parse_plain(b"alice").unwrap_err(), PlainError::FieldCount(1));
        assert_eq!(parse_plain(b"alice\0pw").unwrap_err(), PlainError::FieldCount(2));
        assert_eq!(parse_plain(b"a\0b\0c\0d\0e").unwrap_err(), PlainError::FieldCount(4));
        assert_eq!(parse_plain(b"\0\0pw").unwrap_err(), PlainError::NoUsername);
        assert_eq!(parse_plain(b"\0\0").unwrap_err(), PlainError::NoUsername);
        assert_eq!(parse_plain(b"\0alice\0").unwrap_err(), PlainError::NoPassword);
        assert_eq!(PlainError::FieldCount(2).to_string(), "Invalid SASL/PLAIN response: expected 3 tokens, got 2");
        assert!(!format!("{m:?}").contains("pw"));
    }
}
