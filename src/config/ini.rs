//! Reader for MySQL Router's INI dialect: one file's text into raw sections.
//!
//! MySQL Router reads a file line by line: a line is trimmed; empty lines and lines
//! starting with `#` or `;` are skipped; `[name]` / `[name:key]` (the whole trimmed line)
//! starts a section; anything else is split at its first `=` or `:` into an option and a
//! value, both trimmed and otherwise kept byte for byte (quotes, backslashes and a `# x`
//! after the value are part of it). A duplicate section or option is an error, and so is
//! every malformed line, each with MySQL Router's message.
//!
//! Why not rust-ini (0.21): even with `ParseOption { enabled_quote: false, enabled_escape:
//! false }` it reads some lines differently, and the difference is lost by the time it
//! returns, so no check on its result can restore MySQL Router's behaviour:
//! `bind_port = 6446\` followed by another line is joined into one value (MySQL Router
//! keeps `6446\` and reports it), `[ routing:x ]` comes back as `routing:x` (MySQL Router
//! rejects the space), and `[a]x` followed by `y=1` becomes an option named `x\ny` in `[a]`.
//! The test `rust_ini_reads_mysql_routers_dialect_differently` below shows each input,
//! MySQL Router's outcome and rust-ini's. Its duplicates (kept in order, `section_all` /
//! `get_all`) and whole-line comments would have served.
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
    // MySQL Router checks the key before the name: `[a-b:c-d]` names the key.
    if let Some(k) = key {
        check_part(line, k, "section key")?;
    }
    check_part(line, name, "section name")?;
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
        // The key is checked first (as MySQL Router 9.7.4 does).
        assert_eq!(
            err("[:]\n"),
            "section key in config-section '[:]' may not be empty."
        );
        assert_eq!(
            err("[a-b:c-d]\n"),
            "config-section '[a-b:c-d]' contains invalid character '-' in section key 'c-d'. Only alpha-numeric characters and _ are valid."
        );
        assert_eq!(
            err("[ routing:x ]\n"),
            "config-section '[ routing:x ]' contains invalid character ' ' in section key 'x '. Only alpha-numeric characters and _ are valid."
        );
        assert_eq!(
            err("[a-b]\n"),
            "config-section '[a-b]' contains invalid character '-' in section name 'a-b'. Only alpha-numeric characters and _ are valid."
        );
    }

    /// Why this module does not use rust-ini: inputs that rust-ini (with quote and escape
    /// handling off) reads differently from MySQL Router, in a way its result no longer
    /// shows. MySQL Router's outcomes were checked against its 9.7.4 binary.
    #[test]
    fn rust_ini_reads_mysql_routers_dialect_differently() {
        /// Sections in order (the general section only when it has options).
        type Sections = Vec<(Option<String>, Vec<(String, String)>)>;
        fn rust_ini(text: &str) -> Result<Sections, String> {
            let opt = ini::ParseOption {
                enabled_quote: false,
                enabled_escape: false,
                ..Default::default()
            };
            let doc = ini::Ini::load_from_str_opt(text, opt).map_err(|e| e.to_string())?;
            Ok(doc
                .iter()
                .filter(|(name, props)| name.is_some() || !props.is_empty())
                .map(|(name, props)| {
                    let opts = props.iter().map(|(k, v)| (k.into(), v.into())).collect();
                    (name.map(str::to_string), opts)
                })
                .collect())
        }

        // 1. A value ending in a backslash. MySQL Router keeps `6446\` (and then reports
        //    "option bind_port in [routing:x] needs value between 1 and 65535 inclusive,
        //    was '6446\'"); rust-ini drops the backslash and swallows the next line.
        let text = "[routing:x]\nbind_port = 6446\\\ndestinations = 127.0.0.1:3306\n";
        let ours = parse(text).unwrap(); // ok: test code
        assert_eq!(
            ours[0].options,
            vec![
                ("bind_port".to_string(), "6446\\".to_string()),
                ("destinations".to_string(), "127.0.0.1:3306".to_string()),
            ]
        );
        assert_eq!(
            rust_ini(text).unwrap(), // ok: test code
            vec![(
                Some("routing:x".to_string()),
                vec![(
                    "bind_port".to_string(),
                    "6446destinations = 127.0.0.1:3306".to_string()
                )]
            )]
        );

        // 2. Spaces inside the brackets. MySQL Router rejects the header; rust-ini trims
        //    it to `[routing:x]`, indistinguishable from the valid header.
        let text = "[ routing:x ]\nbind_port = 6446\n";
        assert!(err(text).contains("invalid character ' ' in section key 'x '"));
        assert_eq!(rust_ini(text), rust_ini("[routing:x]\nbind_port = 6446\n"));

        // 3. Text after the header. MySQL Router rejects the line; rust-ini takes `[a]` as
        //    the header and reads on across the line end: an option named "x\ny".
        assert_eq!(err("[a]x\ny=1\n"), "Malformed section header: '[a]x'");
        assert_eq!(
            rust_ini("[a]x\ny=1\n").unwrap(), // ok: test code
            vec![(
                Some("a".to_string()),
                vec![("x\ny".to_string(), "1".to_string())]
            )]
        );
    }
}
