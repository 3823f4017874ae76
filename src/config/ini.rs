//! Reader for MySQL Router's INI dialect: one file's text into raw sections.
//!
//! We do not use rust-ini here, on purpose. MySQL Router's dialect differs from what
//! rust-ini implements in ways users notice: comments are whole-line only (`port = 1 # x`
//! keeps `# x` in the value), quotes and backslashes are literal, a duplicate section or
//! option is an error with a specific message, section/option names have a fixed
//! character set, and `[name:key]` headers carry a key. rust-ini unescapes, strips quotes
//! and merges duplicates silently, so we would have to re-check every line ourselves
//! anyway; the dialect is simple enough to state directly in ~150 lines.
//!
//! This module only knows one file's syntax. Merging files, `[DEFAULT]` fallback and
//! `{var}` interpolation live in [`super::store`].

use thiserror::Error;

/// A syntax error in one file. The text is MySQL Router's, without the
/// `Configuration error: ` wrapper that the caller adds.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct IniError(pub String);

/// One section as written in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawSection {
    /// Lower-cased section name (`routing`, `default`, ...).
    pub name: String,
    /// The key after `:` as written (case kept), if any.
    pub key: Option<String>,
    /// Options in file order: lower-cased name, value as written (trimmed).
    pub options: Vec<(String, String)>,
}

impl RawSection {
    pub fn is_default(&self) -> bool {
        self.name == "default"
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn check_part(line: &str, part: &str, what: &str) -> Result<(), IniError> {
    if part.is_empty() {
        return Err(IniError(format!(
            "{what} in config-section '{line}' may not be empty."
        )));
    }
    if let Some(c) = part.chars().find(|c| !is_name_char(*c)) {
        return Err(IniError(format!(
            "config-section '{line}' contains invalid character '{c}' in {what} '{part}'. Only alpha-numeric characters and _ are valid."
        )));
    }
    Ok(())
}

fn parse_header(line: &str) -> Result<(String, Option<String>), IniError> {
    if !line.ends_with(']') || line.len() < 2 {
        return Err(IniError(format!("Malformed section header: '{line}'")));
    }
    let inner = &line[1..line.len() - 1];
    let (name, key) = match inner.split_once(':') {
        Some((n, k)) => (n, Some(k)),
        None => (inner, None),
    };
    check_part(line, name, "section name")?;
    if let Some(k) = key {
        check_part(line, k, "section key")?;
    }
    let name = name.to_ascii_lowercase();
    if name == "default" && key.is_some() {
        return Err(IniError("Key not allowed on DEFAULT section".into()));
    }
    Ok((name, key.map(str::to_string)))
}

/// Splits an option line at the first `=` or `:`.
fn parse_option(line: &str) -> Result<(String, String), IniError> {
    let Some(pos) = line.find(['=', ':']) else {
        return Err(IniError(format!("Malformed option line: '{line}'")));
    };
    let name = line[..pos].trim();
    let value = line[pos + 1..].trim();
    if name.is_empty() || !name.chars().all(is_name_char) {
        return Err(IniError(format!("Invalid option name '{name}'")));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Parses one file's text. Sections come back in file order.
pub fn parse(text: &str) -> Result<Vec<RawSection>, IniError> {
    let mut sections: Vec<RawSection> = Vec::new();
    for raw_line in text.split('\n') {
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            let (name, key) = parse_header(line)?;
            // `[DEFAULT]` may appear more than once; its parts are merged.
            let exists = name != "default"
                && sections.iter().any(|s| {
                    s.name == name
                        && match (&s.key, &key) {
                            // Keys differing only in case are merged later, not an error.
                            (Some(a), Some(b)) => a == b,
                            (None, None) => true,
                            _ => false,
                        }
                });
            if exists {
                let shown = match &key {
                    Some(k) => format!("{name}:{k}"),
                    None => name.clone(),
                };
                return Err(IniError(format!("Section '{shown}' already exists")));
            }
            sections.push(RawSection {
                name,
                key,
                options: Vec::new(),
            });
            continue;
        }
        let (name, value) = parse_option(line)?;
        let Some(section) = sections.last_mut() else {
            return Err(IniError("Option line before start of section".into()));
        };
        let lower = name.to_ascii_lowercase();
        if section.options.iter().any(|(n, _)| *n == lower) {
            return Err(IniError(format!("Option '{name}' already defined")));
        }
        section.options.push((lower, value));
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text).unwrap_err().0
    }

    #[test]
    fn inline_comment_is_part_of_value() {
        let s = parse("[routing:a]\nbind_port = 6446 # rw\n").unwrap(); // ok: test code
        assert_eq!(s[0].options[0], ("bind_port".into(), "6446 # rw".into()));
    }

    #[test]
    fn splits_at_first_separator_and_keeps_quotes() {
        let s = parse("[a]\ndestinations: h:3306\nx = \"q\" \\n\n").unwrap(); // ok: test code
        assert_eq!(s[0].options[0].1, "h:3306");
        assert_eq!(s[0].options[1].1, "\"q\" \\n");
    }

    #[test]
    fn names_are_lowercased_keys_kept() {
        let s = parse("[RouTing:MyKey]\nBIND_Port=1\n").unwrap(); // ok: test code
        assert_eq!(s[0].name, "routing");
        assert_eq!(s[0].key.as_deref(), Some("MyKey"));
        assert_eq!(s[0].options[0].0, "bind_port");
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(err("x=1"), "Option line before start of section");
        assert_eq!(err("[a\n"), "Malformed section header: '[a'");
        assert_eq!(err("[a]\nfoo\n"), "Malformed option line: 'foo'");
        assert_eq!(err("[a]\n[a]\n"), "Section 'a' already exists");
        assert_eq!(err("[a:b]\n[A:b]\n"), "Section 'a:b' already exists");
        assert_eq!(parse("[a:b]\n[a:B]\n").unwrap().len(), 2); // ok: test code
        assert_eq!(err("[a]\nx=1\nX=2\n"), "Option 'X' already defined");
        assert_eq!(err("[DEFAULT:x]\n"), "Key not allowed on DEFAULT section");
        assert_eq!(err("[a]\nfoo-bar=1\n"), "Invalid option name 'foo-bar'");
        assert_eq!(
            err("[]\n"),
            "section name in config-section '[]' may not be empty."
        );
        assert_eq!(
            err("[a:]\n"),
            "section key in config-section '[a:]' may not be empty."
        );
        assert_eq!(
            err("[a-b]\n"),
            "config-section '[a-b]' contains invalid character '-' in section name 'a-b'. Only alpha-numeric characters and _ are valid."
        );
    }
}
