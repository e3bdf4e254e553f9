//! A reader for Java `.properties` text, the syntax of Kafka's `server.properties` and
//! client config files.
//!
//! Supported: `key=value`, `key: value` and `key value`; `#` and `!` comment lines; a
//! trailing odd backslash continues the line (leading white space of the next line is
//! dropped); the escapes `\t \n \r \f \\ \uXXXX`, and any other escaped character stands
//! for itself; white space around the key is trimmed.

/// A line that cannot be read, with its 1-based line number.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct PropertiesError {
    /// The line where the logical entry starts.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Parses properties text into `(key, value)` pairs in file order.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, PropertiesError> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((idx, first)) = lines.next() {
        let trimmed = first.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        // Join continuation lines into one logical line.
        let mut logical = String::from(trimmed);
        while ends_with_odd_backslash(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_entry(&logical);
        let err = |reason: String| PropertiesError { line: idx + 1, reason };
        let key = unescape(key).map_err(err)?;
        let value = unescape(value).map_err(err)?;
        out.push((key, value));
    }
    Ok(out)
}

fn ends_with_odd_backslash(s: &str) -> bool {
    s.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Splits a logical line at the first unescaped `=`, `:` or white space.
fn split_entry(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' => return (&line[..i], line[i + 1..].trim_start()),
            b' ' | b'\t' | b'\x0c' => {
                // White space ends the key; one `=` or `:` may follow it.
                let rest = line[i..].trim_start();
                let rest = rest.strip_prefix('=').or_else(|| rest.strip_prefix(':')).unwrap_or(rest);
                return (&line[..i], rest.trim_start());
            }
            _ => i += 1,
        }
    }
    (line, "")
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .ok_or_else(|| format!("malformed \\uXXXX escape: \\u{hex}"))?;
                out.push(char::from_u32(code).ok_or_else(|| format!("\\u{hex} is not a character"))?);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    /// SPEC §6.1: the syntax of Kafka's server.properties.
    #[test]
    fn separators_comments_and_trimming() {
        let text = "# comment\n! also\n\n  a=1\nb : 2\nc 3\nd\ne = \nf=x=y\n";
        assert_eq!(pairs(text), vec![p("a", "1"), p("b", "2"), p("c", "3"), p("d", ""), p("e", ""), p("f", "x=y")]);
    }

    #[test]
    fn continuation_lines_join() {
        let text = "listeners=PLAINTEXT://a:1,\\\n    SASL_PLAINTEXT://b:2\nx=\\\\\ny=z\n";
        assert_eq!(
            pairs(text),
            vec![p("listeners", "PLAINTEXT://a:1,SASL_PLAINTEXT://b:2"), p("x", "\\"), p("y", "z")]
        );
    }

    #[test]
    fn escapes() {
        let text = "k\\=ey=v\\u00e9\\tx\\:\\q\n";
        assert_eq!(pairs(text), vec![p("k=ey", "vé\tx:q")]);
        assert_eq!(parse("a=\\u12").unwrap_err().line, 1);
        assert!(parse("a=\\uZZZZ").is_err());
    }
}
