//! Client-controlled strings as they may appear in the log (T-REVEAL-2, T-LOG-2).
//!
//! A user name, mechanism name, client id or principal name is whatever a client sent. Written
//! raw, a `\n` forges a log line and an ESC drives the terminal of whoever reads the log.

use std::fmt;

/// The longest client-controlled string the log shows, in characters (T-LOG-2).
pub const MAX_SHOWN_CHARS: usize = 64;

/// A client-controlled string for the log: control characters escaped (`\n`, `\x1b`,
/// `\u{85}`), backslashes doubled so an escape cannot be faked, cut to
/// [`MAX_SHOWN_CHARS`] characters with `…` marking the cut, and quoted (with `"` escaped)
/// when it holds a space, `=` or `"`, so it cannot pose as further `key=value` fields.
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        let quoted = self.0.chars().take(MAX_SHOWN_CHARS).any(|c| matches!(c, ' ' | '=' | '"'));
        if quoted {
            f.write_char('"')?;
        }
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX_SHOWN_CHARS {
                f.write_char('…')?;
                break;
            }
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' if quoted => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if (c as u32) < 0x80 && c.is_control() => write!(f, "\\x{:02x}", c as u32)?,
                // C1 controls, bidi overrides and other invisible format characters.
                c if c.is_control() || is_format(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        if quoted {
            f.write_char('"')?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Unicode format characters that change how a line reads: bidi controls, zero-width
/// characters, the line and paragraph separators.
fn is_format(c: char) -> bool {
    matches!(c as u32, 0x200b..=0x200f | 0x2028..=0x202e | 0x2060..=0x2069 | 0xfeff)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// T-REVEAL-2: line breaks and escapes become visible text; long names are cut.
    #[test]
    fn t_reveal_2_control_characters_are_escaped_and_long_strings_cut() {
        let shown = Untrusted("alice\nINFO forged line\x1b[31m\\n\u{202e}").to_string();
        assert_eq!(shown, "\"alice\\nINFO forged line\\x1b[31m\\\\n\\u{202e}\"");
        assert!(!shown.chars().any(|c| c.is_control()));
        let long = "é".repeat(300);
        let shown = Untrusted(&long).to_string();
        assert_eq!(shown.chars().count(), MAX_SHOWN_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(Untrusted("plain-name_1").to_string(), "plain-name_1");
        assert_eq!(Untrusted("x peer=10.0.0.1 owner=\"a\"").to_string(), "\"x peer=10.0.0.1 owner=\\\"a\\\"\"");
    }
}
