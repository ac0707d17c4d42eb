//! How deep a statement may nest, checked before it is parsed.
//!
//! sqlparser reads a chain of binary operators (`1 + 1 + ... + 1`, `a = 1 OR a = 2 OR ...`) in a loop, but
//! builds it as a left-nested tree, one level per operator; everything after it (binding, planning,
//! evaluation, printing a plan, even dropping the tree) walks that tree recursively. A long enough chain
//! would overflow a session thread's stack, and a stack overflow aborts the whole process, not just the
//! session. PostgreSQL has the same recursion and stops it with `max_stack_depth` (54001 "stack depth limit
//! exceeded"); tandem stops it before building the tree:
//!
//! - [`check`] tokenizes a long statement (the tokenizer is a loop) and bounds its nesting from above:
//!   every token that can add a level (an operator, a keyword) counts one in its comma-separated list
//!   item, every open bracket counts one, and the bound is the largest sum over the brackets open at any
//!   point. A statement over [`MAX_NESTING`] gets 54001. Statements shorter than that many bytes cannot
//!   exceed it and are not tokenized twice.
//! - Nesting that sqlparser reaches by recursing (brackets, CASE, prefix operators) is capped by its own
//!   recursion limit, set to [`MAX_PARSER_RECURSION`]; exceeding it also gets 54001.
//! - Session threads run on a stack of [`SESSION_STACK_BYTES`], sized for the deepest statement those
//!   limits let through with a wide margin (the test `deep_statements_fail_cleanly` runs statements at
//!   the limits).

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{Error, Result, SqlState};

/// The largest nesting bound a statement may have.
pub const MAX_NESTING: usize = 10_000;

/// sqlparser's recursion limit (brackets, CASE and prefix operators nested in one another).
pub const MAX_PARSER_RECURSION: usize = 200;

/// The stack of a thread that runs sessions.
pub const SESSION_STACK_BYTES: usize = 256 << 20;

/// The error PostgreSQL gives for a statement nested too deeply.
pub fn too_deep() -> Error {
    Error::new(SqlState::STATEMENT_TOO_COMPLEX, "stack depth limit exceeded").with_hint(format!(
        "The statement nests expressions too deeply (tandem allows {MAX_NESTING} operators in one chain and \
         {MAX_PARSER_RECURSION} nested brackets); split it, or use IN (...) lists and UNION ALL."
    ))
}

/// Refuses a statement whose nesting bound exceeds [`MAX_NESTING`].
pub fn check(sql: &str) -> Result<()> {
    if sql.len() <= MAX_NESTING {
        return Ok(());
    }
    // A statement the tokenizer rejects is left to the parser, which says why.
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else { return Ok(()) };
    if nesting_bound(&tokens) > MAX_NESTING {
        return Err(too_deep());
    }
    Ok(())
}

/// An upper bound of how deeply the tree of these tokens nests.
fn nesting_bound(tokens: &[Token]) -> usize {
    // Per open bracket (the statement itself at the bottom): the tokens counted in its current list item.
    let mut open: Vec<usize> = vec![0];
    let (mut sum, mut bound) = (0usize, 0usize);
    for t in tokens {
        match t {
            Token::LParen | Token::LBracket | Token::LBrace => {
                open.push(0);
                sum += 1;
            }
            Token::RParen | Token::RBracket | Token::RBrace => {
                if open.len() > 1 {
                    sum -= open.pop().unwrap_or(0) + 1;
                }
            }
            Token::Comma => {
                let top = open.last_mut().expect("never empty");
                sum -= *top;
                *top = 0;
            }
            Token::SemiColon => {
                open = vec![0];
                sum = 0;
            }
            t if adds_no_level(t) => {}
            _ => {
                *open.last_mut().expect("never empty") += 1;
                sum += 1;
            }
        }
        bound = bound.max(sum);
    }
    bound
}

/// Tokens that never make the tree deeper: white space, literals, names, and the keywords that only
/// separate a CASE's branches (which sqlparser keeps in a list).
fn adds_no_level(t: &Token) -> bool {
    match t {
        Token::Whitespace(_) | Token::Period | Token::EOF => true,
        Token::Word(w) => {
            w.quote_style.is_some()
                || matches!(
                    w.keyword,
                    Keyword::NoKeyword | Keyword::WHEN | Keyword::THEN | Keyword::ELSE | Keyword::END
                )
        }
        Token::Number(..)
        | Token::SingleQuotedString(_)
        | Token::DoubleQuotedString(_)
        | Token::DollarQuotedString(_)
        | Token::EscapedStringLiteral(_)
        | Token::UnicodeStringLiteral(_)
        | Token::HexStringLiteral(_)
        | Token::NationalStringLiteral(_)
        | Token::SingleQuotedByteStringLiteral(_)
        | Token::Placeholder(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(sql: &str) -> usize {
        nesting_bound(&Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().unwrap())
    }

    #[test]
    fn chains_count_within_one_list_item() {
        assert_eq!(bound("select 1"), 1);
        assert_eq!(bound("select 1 + 1 + 1"), 3);
        // List items are siblings, not nested.
        assert_eq!(bound("select 1 + 1, 2 + 2, 3 + 3"), 2);
        assert_eq!(bound("insert into t values (1, 'a+b+c'), (-2, $1)"), 4);
        // Brackets nest; what follows a closed bracket is back at its level.
        assert_eq!(bound("select ((1 + 1) + 1)"), 4);
        assert_eq!(bound("select f(1 + 1) + 1; select 1"), 3);
        // CASE branches are a list.
        assert_eq!(bound("select case when a then 1 when b then 2 else 3 end"), 2);
    }

    #[test]
    fn long_chains_are_refused_before_parsing() {
        let chain = |n: usize, op: &str| format!("select {}", vec!["1"; n].join(op));
        assert!(check(&chain(4_000, " + ")).is_ok());
        let err = check(&chain(12_000, "+")).unwrap_err();
        assert_eq!(err.code, SqlState::STATEMENT_TOO_COMPLEX);
        // The same number of terms as list items is fine.
        assert!(check(&chain(50_000, ", ")).is_ok());
        // Operators inside strings are not operators.
        assert!(check(&format!("select '{}'", "+".repeat(50_000))).is_ok());
    }
}
