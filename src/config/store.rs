//! The merged configuration: all files and command-line overrides, before validation.
//!
//! Owns MySQL Router's lookup rules: every lookup in a section falls back to `[DEFAULT]`,
//! values are `{var}`-interpolated from the same section then `[DEFAULT]` (unknown
//! variables stay as written, depth limited), and later files overwrite earlier ones
//! section by section.

use super::ini::RawSection;

/// Interpolation nesting allowed before giving up (MySQL Router's constant).
const MAX_INTERPOLATION_DEPTH: usize = 10;

pub const RECURSION_ERROR: &str = "Max recursion depth for interpolation exceeded.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub key: Option<String>,
    pub options: Vec<(String, String)>,
}

impl Section {
    /// `name` or `name:key`, as used in messages (`[routing:rw]`).
    pub fn full_name(&self) -> String {
        match &self.key {
            Some(k) => format!("{}:{}", self.name, k),
            None => self.name.clone(),
        }
    }

    fn own(&self, option: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(n, _)| n == option)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, option: &str, value: &str) {
        match self.options.iter_mut().find(|(n, _)| n == option) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.options.push((option.to_string(), value.to_string())),
        }
    }
}

/// A value found by [`Store::get`]: the interpolated text and where it was read from
/// (messages name that section, e.g. `[default]` for an inherited value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub value: String,
    pub from: String,
}

#[derive(Debug, Clone, Default)]
pub struct Store {
    /// `[DEFAULT]` as the files and overrides set it.
    pub defaults: Section,
    /// Built-in `[DEFAULT]` values (`program`, `origin`, folders): the last fallback.
    pub builtins: Section,
    /// Other sections in order of first appearance.
    pub sections: Vec<Section>,
}

impl Default for Section {
    fn default() -> Self {
        Section {
            name: "default".into(),
            key: None,
            options: Vec::new(),
        }
    }
}

impl Store {
    /// A store whose `[DEFAULT]` holds the built-in variables.
    pub fn with_builtins(builtins: &[(&str, String)]) -> Store {
        let mut s = Store::default();
        for (k, v) in builtins {
            s.builtins.set(k, v);
        }
        s
    }

    /// Merges one parsed file: same `[name:key]` (key case-insensitive) extends and
    /// overwrites the earlier section.
    pub fn merge(&mut self, file: Vec<RawSection>) {
        for raw in file {
            let target = if raw.is_default() {
                &mut self.defaults
            } else {
                self.section_mut_or_insert(&raw.name, raw.key.as_deref())
            };
            for (n, v) in &raw.options {
                target.set(n, v);
            }
        }
    }

    /// Applies one `--section[:key].option=value` override.
    pub fn set(&mut self, name: &str, key: Option<&str>, option: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        let option = option.to_ascii_lowercase();
        if name == "default" {
            self.defaults.set(&option, value);
        } else {
            self.section_mut_or_insert(&name, key).set(&option, value);
        }
    }

    fn section_mut_or_insert(&mut self, name: &str, key: Option<&str>) -> &mut Section {
        let pos = self.sections.iter().position(|s| {
            s.name == name
                && match (&s.key, key) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    (None, None) => true,
                    _ => false,
                }
        });
        match pos {
            Some(i) => &mut self.sections[i],
            None => {
                self.sections.push(Section {
                    name: name.to_string(),
                    key: key.map(str::to_string),
                    options: Vec::new(),
                });
                let last = self.sections.len() - 1;
                &mut self.sections[last]
            }
        }
    }

    /// Looks `option` up in `section` then `[DEFAULT]` and interpolates it.
    pub fn get(&self, section: &Section, option: &str) -> Result<Option<Found>, String> {
        let (raw, from) = match section.own(option) {
            Some(v) => (v, section.full_name()),
            None => match self
                .defaults
                .own(option)
                .or_else(|| self.builtins.own(option))
            {
                Some(v) => (v, "default".to_string()),
                None => return Ok(None),
            },
        };
        let value = self.interpolate(section, raw, 0)?;
        Ok(Some(Found { value, from }))
    }

    /// Looks up an option of `[DEFAULT]` itself.
    pub fn get_default(&self, option: &str) -> Result<Option<String>, String> {
        let defaults = &self.defaults;
        Ok(self.get(defaults, option)?.map(|f| f.value))
    }

    fn lookup_raw<'a>(&'a self, section: &'a Section, name: &str) -> Option<&'a str> {
        section
            .own(name)
            .or_else(|| self.defaults.own(name))
            .or_else(|| self.builtins.own(name))
    }

    fn interpolate(&self, section: &Section, value: &str, depth: usize) -> Result<String, String> {
        if depth > MAX_INTERPOLATION_DEPTH {
            return Err(RECURSION_ERROR.to_string());
        }
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}');
            let ident = close.map(|c| &after[..c]);
            match ident {
                Some(id)
                    if !id.is_empty()
                        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    let lower = id.to_ascii_lowercase();
                    match self.lookup_raw(section, &lower) {
                        Some(raw) => out.push_str(&self.interpolate(section, raw, depth + 1)?),
                        None => {
                            out.push('{');
                            out.push_str(id);
                            out.push('}');
                        }
                    }
                    rest = &after[id.len() + 1..];
                }
                _ => {
                    out.push('{');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ini::parse;

    fn store(text: &str) -> Store {
        let mut s = Store::with_builtins(&[("program", "mysqlrouter".into())]);
        s.merge(parse(text).unwrap()); // ok: test code
        s
    }

    fn get(s: &Store, sec: usize, opt: &str) -> Result<Option<String>, String> {
        Ok(s.get(&s.sections[sec], opt)?.map(|f| f.value))
    }

    #[test]
    fn default_fallback_and_origin_section() {
        let s = store("[DEFAULT]\nconnect_timeout=3\n[routing:a]\nx=1\n");
        let f = s.get(&s.sections[0], "connect_timeout").unwrap().unwrap(); // ok: test code
        assert_eq!(f.value, "3");
        assert_eq!(f.from, "default");
        assert_eq!(
            s.get(&s.sections[0], "x").unwrap().unwrap().from, // ok: test code
            "routing:a"
        );
    }

    #[test]
    fn interpolation() {
        let s = store(
            "[DEFAULT]\nhost=db1\nport={p}\np=3306\n[routing:a]\nd={host}:{port},{nope},{ba-d}\nhost=db2\n",
        );
        assert_eq!(get(&s, 0, "d").unwrap().unwrap(), "db2:3306,{nope},{ba-d}"); // ok: test code
        let s = store("[routing:a]\nx={program}/{\n");
        assert_eq!(get(&s, 0, "x").unwrap().unwrap(), "mysqlrouter/{"); // ok: test code
    }

    #[test]
    fn interpolation_depth() {
        let mut text = String::from("[DEFAULT]\n");
        for i in 1..10 {
            text.push_str(&format!("v{i}={{v{}}}\n", i + 1));
        }
        text.push_str("v10=ok\nv11={v12}\nv12={v13}\n[a]\nx={v1}\ny={v11}\nz={z}\n");
        // 10 levels work.
        let s = store(&text);
        assert_eq!(get(&s, 0, "x").unwrap().unwrap(), "ok"); // ok: test code
        assert_eq!(get(&s, 0, "z").unwrap_err(), RECURSION_ERROR);
        // one more level fails
        let s = store(&text.replace("v10=ok", "v10={v11}\nv13=ok"));
        assert_eq!(get(&s, 0, "x").unwrap_err(), RECURSION_ERROR);
    }

    #[test]
    fn merge_overwrites_case_insensitive_keys() {
        let mut s = store("[routing:A]\nx=1\ny=1\n");
        s.merge(parse("[routing:a]\nx=2\n[DEFAULT]\nz=3").unwrap()); // ok: test code
        assert_eq!(s.sections.len(), 1);
        assert_eq!(get(&s, 0, "x").unwrap().unwrap(), "2"); // ok: test code
        assert_eq!(get(&s, 0, "y").unwrap().unwrap(), "1"); // ok: test code
        assert_eq!(get(&s, 0, "z").unwrap().unwrap(), "3"); // ok: test code
    }
}
