//! What a shared session must carry from one server connection to another, and what
//! pins it to its connection — decided from the client's commands and the server's
//! responses. Pure, unit-tested; `session::share` does the I/O.
//!
//! The classifier is deliberately conservative: **when in doubt, pin**. A command it
//! does not recognise pins the session for the rest of its life (until the client's
//! own COM_RESET_CONNECTION), which costs sharing, never correctness.
//!
//! Restored on another connection (after its COM_RESET_CONNECTION):
//! * the schema: from the login, COM_INIT_DB and `USE db` (recorded on OK);
//! * the character set of the login (collation id, set by number);
//! * session variables set by `SET [SESSION|LOCAL|@@SESSION.|@@LOCAL.|@@]name = literal`
//!   and `SET NAMES` / `SET CHARACTER SET` (recorded on OK, replayed in order, the
//!   last value of each);
//! * `FOUND_ROWS()` / `ROW_COUNT()` of the client's last statement: after a result set
//!   of N rows a generated SELECT of N rows is read and discarded (N ≤ 1,000,000);
//!   after an OK without affected rows a SET leaves `ROW_COUNT()` at 0.
//!
//! Kept on the connection — no unlinking — while the last response left what another
//! connection cannot answer for ([`Hold`]): an ERR (`SHOW ERRORS`, `@@error_count`),
//! warnings (`SHOW WARNINGS`), affected rows (`ROW_COUNT()`), a result set larger than
//! the restore bound. The next response decides again.
//!
//! Pinned for the session's life ([`Pin`]): detected from the statement —
//! user variables (any `@name` outside `@@`), `CREATE TEMPORARY`/`DROP TEMPORARY`
//! (the word TEMPORARY), `GET_LOCK`/`RELEASE_LOCK`/`RELEASE_ALL_LOCKS`/`IS_USED_LOCK`,
//! `LOCK TABLES`/`LOCK INSTANCE`/`... LOCK IN SHARE MODE` (the word LOCK), `FLUSH`,
//! `BACKUP`, SQL `PREPARE`/`EXECUTE`/`DEALLOCATE`, `HANDLER`, `CALL`, `XA`,
//! `SQL_CALC_FOUND_ROWS`, `LAST_INSERT_ID`, sequences (`NEXTVAL`, `LASTVAL`,
//! `SETVAL`, `NEXT VALUE`, `PREVIOUS VALUE`), `RELEASE`, `SET TRANSACTION`,
//! `SET GLOBAL`/`PERSIST`, `SET ROLE`/`PASSWORD`/`STATEMENT`, a SET whose value is not a
//! literal, `DROP DATABASE`, executable comments (`/*!`), multi-statements, a
//! statement whose first word is not in the known list, a command larger than one
//! packet, query attributes with parameters; and from the command — every prepared
//! statement command (`COM_STMT_*`), COM_CHANGE_USER, COM_SET_OPTION, unknown
//! commands (COM_CHANGE_USER for good, even after a reset: the connection may be
//! another account's now); and from the response — an OK reporting a last insert id
//! (`LAST_INSERT_ID()` keeps answering on the same connection). An open transaction
//! (`IN_TRANS`), autocommit off and an unfinished response are checked on the status
//! flags by the caller, per response.

use crate::protocol::caps::{flag, status, Caps};
use crate::protocol::exchange::ResponseShape;
use crate::protocol::frame::lenenc_int;
use crate::protocol::response::Outcome;
use crate::protocol::session_track::ok_fields;

/// Why a session stays on its server connection for good.
pub type Pin = &'static str;
/// Why a session stays on its server connection until the next response.
pub type Hold = &'static str;

/// What a command will do to the session, applied when its response is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing to carry.
    None,
    /// Pins the session (whatever the outcome).
    Pin(Pin),
    /// On OK: the default schema is now this.
    Schema(Vec<u8>),
    /// On OK: these session assignments (key, SQL of the assignment).
    Set(Vec<(String, String)>),
    /// COM_RESET_CONNECTION: on OK the session's variables are back to the server's
    /// defaults and its pins are gone; its schema stays (MariaDB and MySQL both keep
    /// the current default database across a reset).
    Reset,
    /// COM_CHANGE_USER: the connection may now be logged in as another account; the
    /// session is never shared again (not even after a reset).
    ChangeUser,
}

/// Result sets up to this many rows have their `FOUND_ROWS()` restored.
pub const MAX_RESTORED_ROWS: u64 = 1_000_000;

/// The session's carried state.
#[derive(Debug, Clone, Default)]
pub struct ShareState {
    /// Default schema (empty: none).
    pub schema: Vec<u8>,
    /// The login's collation id.
    pub charset: u8,
    /// Recorded session assignments, in the order they last happened.
    pub sets: Vec<(String, String)>,
    /// Pinned for good, and why.
    pub pinned: Option<Pin>,
    /// Kept until the next response, and why.
    pub hold: Option<Hold>,
    /// Rows of the last response when it was a result set.
    pub last_rows: Option<u64>,
    /// The client sent COM_CHANGE_USER: its connection is not of the login's account.
    pub user_changed: bool,
}

impl ShareState {
    pub fn new(schema: Vec<u8>, charset: u8) -> Self {
        ShareState {
            schema,
            charset,
            ..ShareState::default()
        }
    }

    /// Applies a command's effect once its response ended (`ok`: not an ERR).
    pub fn apply(&mut self, effect: Effect, ok: bool) {
        match effect {
            Effect::None => {}
            Effect::Pin(why) => self.pinned = self.pinned.or(Some(why)),
            Effect::ChangeUser => self.user_changed = true,
            Effect::Schema(s) if ok => self.schema = s,
            Effect::Set(list) if ok => {
                for (k, sql) in list {
                    let charset = k == "names";
                    self.sets.retain(|(old, _)| {
                        *old != k
                            && !(charset
                                && matches!(
                                    old.as_str(),
                                    "character_set_client"
                                        | "character_set_results"
                                        | "character_set_connection"
                                        | "collation_connection"
                                ))
                    });
                    self.sets.push((k, sql));
                }
            }
            Effect::Reset if ok => {
                // The server keeps the current schema; so does the session.
                self.sets.clear();
                self.pinned = None;
            }
            _ => {}
        }
    }

    /// Why the session cannot leave its connection now, if it cannot.
    pub fn blocked_by(&self) -> Option<&'static str> {
        if self.user_changed {
            return Some("COM_CHANGE_USER");
        }
        self.pinned.or(self.hold)
    }

    /// The statement that restores charset and variables on a reset connection.
    pub fn restore_sql(&self) -> String {
        let c = self.charset;
        let mut sql = format!(
            "SET @@SESSION.character_set_client = {c}, @@SESSION.character_set_results = {c}, @@SESSION.collation_connection = {c}"
        );
        for (_, s) in &self.sets {
            sql.push_str(", ");
            sql.push_str(s);
        }
        sql
    }
}

/// After a complete response: what it leaves that another connection could not
/// answer for (held until the next response), and the row count to restore.
pub fn judge(
    state: &mut ShareState,
    is_query: bool,
    outcome: Option<Outcome>,
    shape: ResponseShape,
    caps: Caps,
) {
    if matches!(outcome, Some(Outcome::Err)) {
        state.hold = Some("an error (SHOW ERRORS)");
        state.last_rows = None;
        return;
    }
    if !is_query {
        // COM_PING, COM_INIT_DB, ...: the diagnostics of the last statement stay.
        if state.hold == Some("the login") {
            state.hold = None;
        }
        return;
    }
    state.hold = None;
    state.last_rows = None;
    let (Some(first), Some(last)) = (shape.first, shape.last) else {
        state.hold = Some("a response the router did not see");
        return;
    };
    match first.first_byte() {
        Some(0x00) => {
            let Some(f) = ok_fields(first.head()) else {
                state.hold = Some("an unreadable OK");
                return;
            };
            if f.last_insert_id != 0 {
                state.pinned = state.pinned.or(Some("LAST_INSERT_ID"));
            }
            if f.warnings > 0 {
                state.hold = Some("warnings (SHOW WARNINGS)");
            } else if f.affected_rows > 0 {
                state.hold = Some("affected rows (ROW_COUNT())");
            }
            if f.status & status::MORE_RESULTS_EXISTS != 0 {
                state.hold = Some("more results");
            }
        }
        Some(0xFB) => state.hold = Some("LOCAL INFILE"),
        Some(_) => {
            let f = ok_fields(last.head());
            let cols = lenenc_int(first.head()).map(|(c, _)| c);
            let eof = if caps.has(flag::DEPRECATE_EOF) { 0 } else { 1 };
            let rows = cols.and_then(|c| shape.messages.checked_sub(1 + c + eof + 1));
            match (f, rows) {
                (Some(f), _) if f.warnings > 0 => state.hold = Some("warnings (SHOW WARNINGS)"),
                (Some(f), _) if f.status & status::MORE_RESULTS_EXISTS != 0 => {
                    state.hold = Some("more results")
                }
                (Some(_), Some(r))
                    if r <= MAX_RESTORED_ROWS && !caps.has(flag::OPTIONAL_RESULTSET_METADATA) =>
                {
                    state.last_rows = Some(r)
                }
                _ => state.hold = Some("a result set the router does not restore"),
            }
        }
        None => state.hold = Some("an empty response"),
    }
}

/// A SELECT returning `n` rows (so that `FOUND_ROWS()` = n and `ROW_COUNT()` = -1).
pub fn rows_sql(n: u64) -> String {
    let digits = "(SELECT 0 UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)";
    let mut k = 1;
    let mut cap = 10u64;
    while cap < n {
        cap *= 10;
        k += 1;
    }
    let from: Vec<String> = (0..k).map(|i| format!("{digits} d{i}")).collect();
    format!("SELECT NULL FROM {} LIMIT {n}", from.join(", "))
}

/// Classifies a command's first packet (`payload` complete, `whole`: the command fits
/// in one packet).
pub fn classify(payload: &[u8], whole: bool, caps: u64) -> Effect {
    if !whole {
        return Effect::Pin("a command larger than one packet");
    }
    let Some((&cmd, rest)) = payload.split_first() else {
        return Effect::Pin("an empty command");
    };
    match cmd {
        0x03 => {
            let text = if caps & flag::QUERY_ATTRIBUTES != 0 {
                match query_attrs_skipped(rest) {
                    Some(t) => t,
                    None => return Effect::Pin("query attributes"),
                }
            } else {
                rest
            };
            classify_sql(text)
        }
        0x02 => Effect::Schema(rest.to_vec()),
        0x0e | 0x09 | 0x04 | 0x0c | 0x0d => Effect::None, // ping, statistics, field list, kill, debug
        0x1f => Effect::Reset,
        0x11 => Effect::ChangeUser,
        0x16..=0x1a | 0x1c | 0xfa => Effect::Pin("a prepared statement"),
        0x1b => Effect::Pin("COM_SET_OPTION"),
        _ => Effect::Pin("a command the router does not share"),
    }
}

/// The query text after query attributes with no parameters (else `None`).
fn query_attrs_skipped(b: &[u8]) -> Option<&[u8]> {
    let (count, a) = lenenc_int(b)?;
    let (_sets, c) = lenenc_int(b.get(a..)?)?;
    (count == 0).then(|| b.get(a + c..)).flatten()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// A word, upper-cased.
    Word(String),
    /// A quoted string, as written.
    Str(String),
    /// A backquoted identifier, unquoted.
    Ident(String),
    /// A number, as written.
    Num(String),
    /// `@@`
    SysVar,
    /// Any other punctuation.
    Punct(char),
}

/// Splits SQL into tokens with the byte offset where each starts; `Err(pin)` for
/// what the classifier refuses to read.
fn lex_spans(sql: &str) -> Result<Vec<(Tok, usize)>, Pin> {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let push = |out: &mut Vec<(Tok, usize)>, t: Tok, at: usize| out.push((t, at));
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-')
                && b.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                if matches!(b.get(i + 2), Some(b'!') | Some(b'M') | Some(b'+')) {
                    return Err("an executable comment");
                }
                let end = sql[i + 2..].find("*/").ok_or("an unterminated comment")?;
                i += 2 + end + 2;
            }
            b'\'' | b'"' => {
                let start = i;
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("an unterminated string"),
                        Some(b'\\') => i += 2,
                        Some(&q) if q == c => {
                            if b.get(i + 1) == Some(&c) {
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(_) => i += 1,
                    }
                }
                push(
                    &mut out,
                    Tok::Str(sql.get(start..i).ok_or("a string")?.to_string()),
                    start,
                );
            }
            b'`' => {
                let start = i + 1;
                let end = sql[start..].find('`').ok_or("an unterminated identifier")?;
                if sql[start + end + 1..].starts_with('`') {
                    return Err("an identifier with a backquote");
                }
                push(
                    &mut out,
                    Tok::Ident(sql[start..start + end].to_string()),
                    start - 1,
                );
                i = start + end + 1;
            }
            b'@' => {
                if b.get(i + 1) == Some(&b'@') {
                    push(&mut out, Tok::SysVar, i);
                    i += 2;
                } else {
                    return Err("a user variable");
                }
            }
            b'0'..=b'9' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
                push(&mut out, Tok::Num(sql[start..i].to_string()), start);
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'_'
                        || b[i] == b'$'
                        || b[i] >= 0x80)
                {
                    i += 1;
                }
                push(
                    &mut out,
                    Tok::Word(sql[start..i].to_ascii_uppercase()),
                    start,
                );
            }
            b';' => {
                if sql[i + 1..].trim().is_empty() {
                    i = b.len();
                } else {
                    return Err("a multi-statement");
                }
            }
            _ => {
                push(&mut out, Tok::Punct(c as char), i);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Words that pin wherever they appear outside strings and quoted identifiers.
const PIN_WORDS: &[(&str, Pin)] = &[
    ("TEMPORARY", "a temporary table"),
    ("GET_LOCK", "a user-level lock"),
    ("RELEASE_LOCK", "a user-level lock"),
    ("RELEASE_ALL_LOCKS", "a user-level lock"),
    ("IS_USED_LOCK", "a user-level lock"),
    ("LOCK", "a lock"),
    ("FLUSH", "FLUSH"),
    ("BACKUP", "BACKUP"),
    ("PREPARE", "a prepared statement"),
    ("EXECUTE", "a prepared statement"),
    ("DEALLOCATE", "a prepared statement"),
    ("HANDLER", "HANDLER"),
    ("CALL", "a stored procedure"),
    ("XA", "an XA transaction"),
    ("SQL_CALC_FOUND_ROWS", "SQL_CALC_FOUND_ROWS"),
    ("LAST_INSERT_ID", "LAST_INSERT_ID"),
    ("NEXTVAL", "a sequence"),
    ("LASTVAL", "a sequence"),
    ("SETVAL", "a sequence"),
    ("RELEASE", "RELEASE"),
];

/// First words of statements that change nothing the router must carry (their
/// effects on the session are caught by the pin words and the status flags).
const PLAIN: &[&str] = &[
    "SELECT",
    "WITH",
    "VALUES",
    "TABLE",
    "SHOW",
    "DESC",
    "DESCRIBE",
    "EXPLAIN",
    "DO",
    "INSERT",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "CREATE",
    "ALTER",
    "TRUNCATE",
    "RENAME",
    "BEGIN",
    "START",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT",
    "ANALYZE",
    "OPTIMIZE",
    "CHECK",
    "CHECKSUM",
    "REPAIR",
    "GRANT",
    "REVOKE",
    "KILL",
    "HELP",
    "LOAD",
];

/// Classifies one SQL statement.
pub fn classify_sql(text: &[u8]) -> Effect {
    let Ok(sql) = std::str::from_utf8(text) else {
        return Effect::Pin("a statement that is not UTF-8");
    };
    let spans = match lex_spans(sql) {
        Ok(t) => t,
        Err(why) => return Effect::Pin(why),
    };
    let toks: Vec<Tok> = spans.iter().map(|(t, _)| t.clone()).collect();
    for (i, t) in toks.iter().enumerate() {
        if let Tok::Word(w) = t {
            if let Some((_, why)) = PIN_WORDS.iter().find(|(p, _)| p == w) {
                return Effect::Pin(why);
            }
            let next_is_value = matches!(toks.get(i + 1), Some(Tok::Word(v)) if v == "VALUE");
            if (w == "NEXT" || w == "PREVIOUS") && next_is_value {
                return Effect::Pin("a sequence");
            }
        }
    }
    let Some(Tok::Word(first)) = toks.first() else {
        return match toks.first() {
            None => Effect::None,
            Some(_) => Effect::Pin("a statement the router does not classify"),
        };
    };
    match first.as_str() {
        "USE" => match &toks[1..] {
            [Tok::Word(_)] | [Tok::Ident(_)] => {
                // The schema as the server knows it: the unquoted name.
                let name = match &toks[1] {
                    Tok::Ident(s) => s.clone(),
                    Tok::Word(w) => {
                        let at = spans[1].1;
                        sql.get(at..at + w.len()).unwrap_or(w).to_string()
                    }
                    _ => return Effect::Pin("a USE the router does not read"),
                };
                Effect::Schema(name.into_bytes())
            }
            _ => Effect::Pin("a USE the router does not read"),
        },
        "SET" => classify_set(&toks[1..]),
        "DROP" if matches!(toks.get(1), Some(Tok::Word(w)) if w == "DATABASE" || w == "SCHEMA") => {
            Effect::Pin("DROP DATABASE")
        }
        "DROP" => Effect::None,
        w if PLAIN.contains(&w) => Effect::None,
        _ => Effect::Pin("a statement the router does not classify"),
    }
}

/// `SET` assignments of session variables to literals.
fn classify_set(t: &[Tok]) -> Effect {
    let word = |i: usize| match t.get(i) {
        Some(Tok::Word(w)) => Some(w.as_str()),
        _ => None,
    };
    match word(0) {
        Some("NAMES") | Some("CHARSET") => return set_names(t, 1),
        Some("CHARACTER") if word(1) == Some("SET") => return set_names(t, 2),
        Some("TRANSACTION") => return Effect::Pin("SET TRANSACTION"),
        Some("GLOBAL") | Some("PERSIST") | Some("PERSIST_ONLY") => {
            return Effect::Pin("SET GLOBAL")
        }
        Some("ROLE") | Some("PASSWORD") | Some("STATEMENT") | Some("DEFAULT") => {
            return Effect::Pin("a SET the router does not restore")
        }
        _ => {}
    }
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        // [SESSION | LOCAL] name | @@[SESSION. | LOCAL.]name
        if matches!(word(i), Some("SESSION") | Some("LOCAL")) {
            i += 1;
        } else if t.get(i) == Some(&Tok::SysVar) {
            i += 1;
            if matches!(word(i), Some("SESSION") | Some("LOCAL"))
                && t.get(i + 1) == Some(&Tok::Punct('.'))
            {
                i += 2;
            } else if matches!(
                word(i),
                Some("GLOBAL") | Some("PERSIST") | Some("PERSIST_ONLY")
            ) {
                return Effect::Pin("SET GLOBAL");
            }
        }
        let Some(name) = word(i) else {
            return Effect::Pin("a SET the router does not read");
        };
        if matches!(name, "GLOBAL" | "PERSIST" | "PERSIST_ONLY") {
            return Effect::Pin("SET GLOBAL");
        }
        let name = name.to_ascii_lowercase();
        i += 1;
        match t.get(i) {
            Some(Tok::Punct('=')) => i += 1,
            Some(Tok::Punct(':')) if t.get(i + 1) == Some(&Tok::Punct('=')) => i += 2,
            _ => return Effect::Pin("a SET the router does not read"),
        }
        let neg = t.get(i) == Some(&Tok::Punct('-'));
        if neg {
            i += 1;
        }
        let value = match t.get(i) {
            Some(Tok::Num(n)) => format!("{}{n}", if neg { "-" } else { "" }),
            Some(Tok::Str(s)) if !neg => s.clone(),
            Some(Tok::Word(w)) if !neg => w.clone(),
            Some(Tok::Ident(s)) if !neg => format!("`{s}`"),
            _ => return Effect::Pin("a SET of a value that is not a literal"),
        };
        i += 1;
        out.push((name.clone(), format!("@@SESSION.{name} = {value}")));
        match t.get(i) {
            None => return Effect::Set(out),
            Some(Tok::Punct(',')) => i += 1,
            _ => return Effect::Pin("a SET of a value that is not a literal"),
        }
    }
}

/// `SET NAMES cs [COLLATE c]` / `SET CHARACTER SET cs`, from token `i`.
fn set_names(t: &[Tok], i: usize) -> Effect {
    let lit = |t: Option<&Tok>| match t {
        Some(Tok::Word(w)) => Some(w.clone()),
        Some(Tok::Str(s)) => Some(s.clone()),
        Some(Tok::Ident(s)) => Some(format!("`{s}`")),
        _ => None,
    };
    let Some(cs) = lit(t.get(i)) else {
        return Effect::Pin("a SET NAMES the router does not read");
    };
    let kind = if i == 1 { "NAMES" } else { "CHARACTER SET" };
    let sql = match t.get(i + 1..) {
        Some([]) => format!("{kind} {cs}"),
        Some([Tok::Word(c), v]) if c == "COLLATE" && kind == "NAMES" => match lit(Some(v)) {
            Some(v) => format!("NAMES {cs} COLLATE {v}"),
            None => return Effect::Pin("a SET NAMES the router does not read"),
        },
        _ => return Effect::Pin("a SET NAMES the router does not read"),
    };
    Effect::Set(vec![("names".into(), sql)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Effect {
        classify_sql(s.as_bytes())
    }

    fn pinned(s: &str) -> bool {
        matches!(q(s), Effect::Pin(_))
    }

    #[test]
    fn plain_statements_carry_nothing() {
        for s in [
            "SELECT 1",
            "select * from t where a = 'GET_LOCK(@x)' -- LOCK\n",
            "INSERT INTO t VALUES (1, \"@v\")",
            "/* LOCK */ UPDATE t SET a = 1",
            "BEGIN",
            "COMMIT",
            "CREATE TABLE x (a INT)",
            "DROP TABLE x",
            "SELECT @@session.sql_mode",
            "SELECT `lock` FROM t;",
            "SELECT 1 ; ",
            "",
        ] {
            assert_eq!(q(s), Effect::None, "{s}");
        }
    }

    #[test]
    fn pin_list() {
        for s in [
            "SET @a = 1",
            "SELECT @a",
            "SELECT 1 INTO @x",
            "CREATE TEMPORARY TABLE t (a INT)",
            "SELECT GET_LOCK('a', 1)",
            "select release_lock('a')",
            "LOCK TABLES t READ",
            "FLUSH TABLES WITH READ LOCK",
            "PREPARE s FROM 'SELECT 1'",
            "EXECUTE s",
            "CALL p()",
            "XA START 'x'",
            "SELECT SQL_CALC_FOUND_ROWS * FROM t LIMIT 1",
            "SELECT LAST_INSERT_ID()",
            "SELECT NEXT VALUE FOR s",
            "SELECT nextval(s)",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET GLOBAL max_connections = 10",
            "SET sql_mode = CONCAT(@@sql_mode, ',ANSI')",
            "SET ROLE r",
            "SELECT 1; SELECT 2",
            "/*!40101 SET NAMES utf8 */",
            "DROP DATABASE d",
            "FOO BAR",
            "HANDLER t OPEN",
            "COMMIT RELEASE",
            "SELECT 'unterminated",
        ] {
            assert!(pinned(s), "{s} should pin");
        }
    }

    #[test]
    fn sets_and_schema_are_recorded() {
        assert_eq!(
            q("SET sql_mode = 'ANSI', @@SESSION.time_zone = '+01:00', SESSION wait_timeout = 100, @@max_join_size=-1, autocommit = OFF"),
            Effect::Set(vec![
                ("sql_mode".into(), "@@SESSION.sql_mode = 'ANSI'".into()),
                ("time_zone".into(), "@@SESSION.time_zone = '+01:00'".into()),
                ("wait_timeout".into(), "@@SESSION.wait_timeout = 100".into()),
                ("max_join_size".into(), "@@SESSION.max_join_size = -1".into()),
                ("autocommit".into(), "@@SESSION.autocommit = OFF".into()),
            ])
        );
        assert_eq!(
            q("SET NAMES utf8mb4 COLLATE utf8mb4_bin"),
            Effect::Set(vec![(
                "names".into(),
                "NAMES UTF8MB4 COLLATE UTF8MB4_BIN".into()
            )])
        );
        assert_eq!(q("USE `my db`"), Effect::Schema(b"my db".to_vec()));
        assert_eq!(q("use shop;"), Effect::Schema(b"shop".to_vec()));
        assert_eq!(
            classify(b"\x02db2", true, 0),
            Effect::Schema(b"db2".to_vec())
        );
    }

    #[test]
    fn commands() {
        assert!(matches!(classify(b"\x16SELECT 1", true, 0), Effect::Pin(_)));
        assert!(matches!(
            classify(b"\x03SELECT 1", false, 0),
            Effect::Pin(_)
        ));
        assert_eq!(classify(b"\x0e", true, 0), Effect::None);
        assert_eq!(classify(b"\x1f", true, 0), Effect::Reset);
        // Query attributes: none, then the text.
        assert_eq!(
            classify(b"\x03\x00\x01SELECT 1", true, flag::QUERY_ATTRIBUTES),
            Effect::None
        );
        assert!(matches!(
            classify(b"\x03\x01\x01\x00\x01", true, flag::QUERY_ATTRIBUTES),
            Effect::Pin(_)
        ));
    }

    #[test]
    fn state_applies_and_restores_in_order() {
        let mut s = ShareState::new(b"db".to_vec(), 45);
        s.apply(q("SET sql_mode = 'ANSI'"), true);
        s.apply(q("SET time_zone = '+01:00'"), true);
        s.apply(q("SET sql_mode = ''"), true);
        s.apply(q("SET wait_timeout = 5"), false); // refused: not recorded
        s.apply(q("USE other"), true);
        assert_eq!(s.schema, b"other");
        assert_eq!(
            s.restore_sql(),
            "SET @@SESSION.character_set_client = 45, @@SESSION.character_set_results = 45, @@SESSION.collation_connection = 45, @@SESSION.time_zone = '+01:00', @@SESSION.sql_mode = ''"
        );
        s.apply(q("SET @x = 1"), true);
        assert_eq!(s.blocked_by(), Some("a user variable"));
        s.apply(Effect::Reset, true);
        // The reset clears variables and pins; the schema stays the current one.
        assert_eq!(
            (s.blocked_by(), s.sets.len(), s.schema.as_slice()),
            (None, 0, &b"other"[..])
        );
    }

    fn shape(first: &[u8], last: &[u8], messages: u64) -> ResponseShape {
        use crate::protocol::frame::Packet;
        ResponseShape {
            first: Some(Packet::from_payload(1, first, true)),
            last: Some(Packet::from_payload(9, last, true)),
            messages,
        }
    }

    #[test]
    fn responses_hold_pin_or_leave_rows_to_restore() {
        let ok = Some(Outcome::Ok {
            status: status::AUTOCOMMIT,
        });
        let deprecate = Caps(flag::PROTOCOL_41 | flag::DEPRECATE_EOF);
        let classic = Caps(flag::PROTOCOL_41);
        let mut s = ShareState::new(Vec::new(), 45);
        s.hold = Some("the login");
        // A COM_PING after the login releases it; it keeps earlier diagnostics.
        judge(&mut s, false, ok, ResponseShape::default(), deprecate);
        assert_eq!(s.blocked_by(), None);
        // OK with 2 affected rows: held; then a plain OK: free again.
        let ok2 = [0x00, 2, 0, 0x02, 0, 0, 0];
        judge(&mut s, true, ok, shape(&ok2, &ok2, 1), deprecate);
        assert_eq!(s.hold, Some("affected rows (ROW_COUNT())"));
        let ok0 = [0x00, 0, 0, 0x02, 0, 0, 0];
        judge(&mut s, true, ok, shape(&ok0, &ok0, 1), deprecate);
        assert_eq!((s.blocked_by(), s.last_rows), (None, None));
        // Warnings on an OK: held.
        let okw = [0x00, 0, 0, 0x02, 0, 1, 0];
        judge(&mut s, true, ok, shape(&okw, &okw, 1), deprecate);
        assert_eq!(s.hold, Some("warnings (SHOW WARNINGS)"));
        // A result set: 1 column, (EOF), 3 rows, EOF — rows counted with and without
        // DEPRECATE_EOF.
        let eof = [0xFE, 0, 0, 0x02, 0];
        judge(
            &mut s,
            true,
            ok,
            shape(&[1], &eof, 1 + 1 + 1 + 3 + 1),
            classic,
        );
        assert_eq!((s.blocked_by(), s.last_rows), (None, Some(3)));
        let ok_eof = [0xFE, 0, 0, 0x02, 0, 0, 0];
        judge(
            &mut s,
            true,
            ok,
            shape(&[2], &ok_eof, 1 + 2 + 5 + 1),
            deprecate,
        );
        assert_eq!(s.last_rows, Some(5));
        // A result set with warnings: held (classic EOF and OK-as-EOF).
        let eofw = [0xFE, 3, 0, 0x02, 0];
        judge(&mut s, true, ok, shape(&[1], &eofw, 4), classic);
        assert_eq!(s.hold, Some("warnings (SHOW WARNINGS)"));
        judge(&mut s, true, ok, shape(&ok0, &ok0, 1), deprecate);
        let ok_eofw = [0xFE, 0, 0, 0x02, 0, 1, 0];
        judge(&mut s, true, ok, shape(&[1], &ok_eofw, 3), deprecate);
        assert_eq!(s.hold, Some("warnings (SHOW WARNINGS)"));
        // An ERR: held; an insert id: pinned for good.
        judge(
            &mut s,
            true,
            Some(Outcome::Err),
            shape(&[0xFF], &[0xFF], 1),
            deprecate,
        );
        assert_eq!(s.hold, Some("an error (SHOW ERRORS)"));
        let oki = [0x00, 1, 7, 0x02, 0, 0, 0];
        judge(&mut s, true, ok, shape(&oki, &oki, 1), deprecate);
        assert_eq!(s.pinned, Some("LAST_INSERT_ID"));
    }

    #[test]
    fn generated_rows() {
        assert!(rows_sql(0).ends_with("LIMIT 0"));
        assert_eq!(rows_sql(10).matches("UNION ALL SELECT 9").count(), 1);
        assert_eq!(rows_sql(11).matches("UNION ALL SELECT 9").count(), 2);
        assert_eq!(rows_sql(1_000_000).matches("UNION ALL SELECT 9").count(), 6);
    }
}
