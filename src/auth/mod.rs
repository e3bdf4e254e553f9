//! Principals, the authenticated identity of a connection, user credentials and the
//! SASL exchange that establishes them.

pub mod kdf;
pub mod sasl;
pub mod users;

use std::fmt;

/// A Kafka principal, `Type:name`; equality is case-sensitive on both parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal {
    /// The principal type, `User` for every principal ktb authenticates.
    pub kind: String,
    /// The principal name.
    pub name: String,
}

impl Principal {
    /// The principal of a connection on a PLAINTEXT listener (D-10).
    pub fn anonymous() -> Self {
        Self::user("ANONYMOUS")
    }

    /// A principal from its two parts, as the wire carries them.
    pub fn new(kind: &str, name: &str) -> Self {
        Principal { kind: kind.to_owned(), name: name.to_owned() }
    }

    /// `User:<name>`.
    pub fn user(name: &str) -> Self {
        Self::new("User", name)
    }

    /// Parses `Type:name`, splitting at the first `:`; both parts must be non-empty.
    pub fn parse(s: &str) -> Option<Self> {
        let (kind, name) = s.split_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Principal { kind: kind.to_owned(), name: name.to_owned() })
    }
}

impl Principal {
    /// The principal as the log shows it: both parts client-controlled, so escaped and
    /// cut (T-REVEAL-2).
    pub fn logged(&self) -> impl fmt::Display + '_ {
        struct Logged<'a>(&'a Principal);
        impl fmt::Display for Logged<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Quoted as a whole when it needs quoting, so a name cannot end the field.
                let whole = format!("{}:{}", self.0.kind, self.0.name);
                write!(f, "{}", crate::logsafe::Untrusted(&whole))
            }
        }
        Logged(self)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// Who a successful exchange authenticated, and until when a token stays valid.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The principal.
    pub principal: Principal,
    /// The token's expiry, for token logins (bounds the session, T-REAUTH-1).
    pub token_expiry_ms: Option<i64>,
    /// The token's id, for token logins (D-22); `None` for a user's login.
    pub token_id: Option<String>,
}

impl Identity {
    /// True for a delegation-token login.
    pub fn token_authenticated(&self) -> bool {
        self.token_id.is_some()
    }
}

/// Who a connection is, once it may send requests beyond authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The authenticated principal (`User:ANONYMOUS` on PLAINTEXT listeners).
    pub principal: Principal,
    /// True when the connection authenticated at all (false on PLAINTEXT listeners).
    pub authenticated: bool,
    /// The token a token login used, `None` for other sessions; its revocation ends the
    /// session (D-22).
    pub token_id: Option<String>,
}

impl Session {
    /// The session of every connection on a PLAINTEXT listener.
    pub fn plaintext() -> Self {
        Session { principal: Principal::anonymous(), authenticated: false, token_id: None }
    }

    /// True when the connection logged in with a delegation token.
    pub fn token_authenticated(&self) -> bool {
        self.token_id.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_split_at_the_first_colon() {
        let p = Principal::parse("User:CN=a:b").unwrap();
        assert_eq!((p.kind.as_str(), p.name.as_str()), ("User", "CN=a:b"));
        assert_eq!(p.to_string(), "User:CN=a:b");
        assert!(Principal::parse("alice").is_none());
        assert!(Principal::parse(":alice").is_none());
        assert!(Principal::parse("User:").is_none());
        assert_ne!(Principal::user("Alice"), Principal::user("alice"));
        // T-REVEAL-2: logged as one field, quoted as a whole.
        assert_eq!(Principal::user("x by=admin").logged().to_string(), "\"User:x by=admin\"");
        assert_eq!(Principal::user("bob").logged().to_string(), "User:bob");
    }
}
