//! The few spellings SQLite and PostgreSQL do not share, rewritten once per statement.
//!
//! Keel's statements are written in the SQL both backends accept (upserts with
//! `ON CONFLICT … DO UPDATE`, `RETURNING`, `"user"` quoted, `LIMIT … OFFSET …`) with
//! SQLite's numbered parameters. For PostgreSQL two spellings are rewritten here, so
//! a statement has one text in the code:
//!
//! - parameters `?N` (and bare `?`, numbered in order) become `$N`;
//! - `INSERT OR IGNORE INTO …` becomes `INSERT INTO … ON CONFLICT DO NOTHING`.
//!
//! Anything inside a quoted string or identifier is left alone. A statement that needs
//! more than this is written per backend where it lives ([`crate::sql::Db::dialect`]).

use std::borrow::Cow;

/// Which SQL the connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// `sql` as PostgreSQL reads it (borrowed when nothing changes).
pub fn to_postgres(sql: &str) -> Cow<'_, str> {
    let needs_params = sql.contains('?');
    let ignore = find_insert_or_ignore(sql);
    if !needs_params && ignore.is_none() {
        return Cow::Borrowed(sql);
    }
    let mut out = String::with_capacity(sql.len() + 24);
    let mut chars = sql.chars().peekable();
    let mut next_bare = 0u32;
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), _) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                out.push('$');
                let mut digits = false;
                while let Some(d) = chars.next_if(char::is_ascii_digit) {
                    out.push(d);
                    digits = true;
                }
                if !digits {
                    next_bare += 1;
                    out.push_str(&next_bare.to_string());
                }
            }
            (None, _) => out.push(c),
        }
    }
    if ignore.is_some() {
        out = out.replacen("INSERT OR IGNORE INTO", "INSERT INTO", 1);
        let trimmed = out.trim_end().trim_end_matches(';').to_string();
        out = match find_returning(&trimmed) {
            Some(at) => format!(
                "{} ON CONFLICT DO NOTHING {}",
                trimmed[..at].trim_end(),
                &trimmed[at..]
            ),
            None => format!("{trimmed} ON CONFLICT DO NOTHING"),
        };
    }
    Cow::Owned(out)
}

fn find_insert_or_ignore(sql: &str) -> Option<usize> {
    sql.find("INSERT OR IGNORE INTO")
}

fn find_returning(sql: &str) -> Option<usize> {
    sql.rfind(" RETURNING ").map(|at| at + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_and_bare_parameters_become_dollar_parameters() {
        assert_eq!(
            to_postgres("SELECT a FROM t WHERE b = ?1 AND c = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = $12"
        );
        assert_eq!(
            to_postgres("UPDATE t SET a = ? WHERE b = ?"),
            "UPDATE t SET a = $1 WHERE b = $2"
        );
    }

    #[test]
    fn quoted_text_is_left_alone() {
        assert_eq!(
            to_postgres("SELECT '?1', \"wh?\" FROM t WHERE a = ?1 AND b = 'é?'"),
            "SELECT '?1', \"wh?\" FROM t WHERE a = $1 AND b = 'é?'"
        );
    }

    #[test]
    fn insert_or_ignore_becomes_on_conflict_do_nothing() {
        assert_eq!(
            to_postgres("INSERT OR IGNORE INTO d (day_ms) VALUES (?1)"),
            "INSERT INTO d (day_ms) VALUES ($1) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            to_postgres("INSERT OR IGNORE INTO d (a) VALUES (?1) RETURNING a;"),
            "INSERT INTO d (a) VALUES ($1) ON CONFLICT DO NOTHING RETURNING a"
        );
    }

    #[test]
    fn a_statement_with_nothing_to_change_is_borrowed() {
        assert!(matches!(
            to_postgres("SELECT COUNT(*) FROM traces"),
            Cow::Borrowed(_)
        ));
    }
}
