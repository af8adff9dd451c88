//! A small SOQL subset: `SELECT f, … | COUNT() FROM Obj [WHERE f op v [AND …]] [ORDER BY f
//! [ASC|DESC]] [LIMIT n]`, with Salesforce's error codes for what it cannot parse. Pure functions
//! over an org's records; pagination and HTTP live in `query.rs`.

use std::cmp::Ordering;

use serde_json::Value;

use super::data::{OrgData, Record, SObject};

/// A parse or validation failure: (errorCode, message).
pub(crate) type SoqlError = (&'static str, String);

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(f64),
    Symbol(String),
}

#[derive(Debug, Clone)]
struct Condition {
    field: &'static str,
    operator: String,
    value: Value,
}

#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub(crate) object: SObject,
    /// None = `COUNT()`.
    pub(crate) fields: Option<Vec<&'static str>>,
    conditions: Vec<Condition>,
    order_by: Option<(&'static str, bool)>,
    limit: Option<usize>,
}

fn malformed(message: &str) -> SoqlError {
    ("MALFORMED_QUERY", message.to_owned())
}

fn tokenize(soql: &str) -> Result<Vec<Token>, SoqlError> {
    let chars: Vec<char> = soql.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    while let Some(&c) = chars.get(index) {
        if c.is_whitespace() {
            index += 1;
        } else if c == '\'' {
            let mut text = String::new();
            index += 1;
            loop {
                match chars.get(index) {
                    None => return Err(malformed("unterminated string literal")),
                    Some('\\') => {
                        if let Some(&escaped) = chars.get(index + 1) {
                            text.push(escaped);
                        }
                        index += 2;
                    }
                    Some('\'') => {
                        index += 1;
                        break;
                    }
                    Some(&other) => {
                        text.push(other);
                        index += 1;
                    }
                }
            }
            tokens.push(Token::Text(text));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(index + 1).is_some_and(char::is_ascii_digit))
        {
            let start = index;
            index += 1;
            while chars
                .get(index)
                .is_some_and(|d| d.is_ascii_digit() || *d == '.')
            {
                index += 1;
            }
            let literal: String = chars.get(start..index).unwrap_or_default().iter().collect();
            let number = literal
                .parse()
                .map_err(|_| malformed(&format!("unexpected token: {literal}")))?;
            tokens.push(Token::Number(number));
        } else if c.is_alphanumeric() || c == '_' {
            let start = index;
            while chars
                .get(index)
                .is_some_and(|w| w.is_alphanumeric() || *w == '_' || *w == '.')
            {
                index += 1;
            }
            tokens.push(Token::Word(
                chars.get(start..index).unwrap_or_default().iter().collect(),
            ));
        } else {
            let two: String = chars
                .get(index..index + 2)
                .unwrap_or_default()
                .iter()
                .collect();
            if ["!=", "<=", ">=", "<>"].contains(&two.as_str()) {
                tokens.push(Token::Symbol(two));
                index += 2;
            } else if ",()=<>*".contains(c) {
                tokens.push(Token::Symbol(c.to_string()));
                index += 1;
            } else {
                return Err(malformed(&format!("unexpected token: '{c}'")));
            }
        }
    }
    Ok(tokens)
}

#[derive(Debug)]
struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn keyword(&mut self, keyword: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(word)) if word.eq_ignore_ascii_case(keyword)) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, keyword: &str) -> Result<(), SoqlError> {
        if self.keyword(keyword) {
            Ok(())
        } else {
            Err(malformed(&format!(
                "expecting '{keyword}', found '{}'",
                describe(self.peek())
            )))
        }
    }

    fn symbol(&mut self, symbol: &str) -> bool {
        if matches!(self.peek(), Some(Token::Symbol(s)) if s == symbol) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> Result<String, SoqlError> {
        match self.next() {
            Some(Token::Word(word)) => Ok(word),
            other => Err(malformed(&format!(
                "unexpected token: '{}'",
                describe(other.as_ref())
            ))),
        }
    }
}

fn describe(token: Option<&Token>) -> String {
    match token {
        None => "EOF".to_owned(),
        Some(Token::Word(word)) => word.clone(),
        Some(Token::Text(text)) => format!("'{text}'"),
        Some(Token::Number(number)) => number.to_string(),
        Some(Token::Symbol(symbol)) => symbol.clone(),
    }
}

fn resolve_field(object: SObject, name: &str) -> Result<&'static str, SoqlError> {
    object.field(name).ok_or_else(|| {
        (
            "INVALID_FIELD",
            format!("No such column '{name}' on entity '{}'.", object.name()),
        )
    })
}

pub(crate) fn parse(soql: &str) -> Result<Query, SoqlError> {
    let mut parser = Parser {
        tokens: tokenize(soql)?,
        position: 0,
    };
    parser.expect_keyword("SELECT")?;
    let mut names = Vec::new();
    let mut count = false;
    if parser.keyword("COUNT") {
        if !(parser.symbol("(") && parser.symbol(")")) {
            return Err(malformed("only COUNT() is supported"));
        }
        count = true;
    } else {
        loop {
            names.push(parser.word()?);
            if !parser.symbol(",") {
                break;
            }
        }
    }
    parser.expect_keyword("FROM")?;
    let object_name = parser.word()?;
    let object = SObject::parse(&object_name).ok_or_else(|| {
        (
            "INVALID_TYPE",
            format!("sObject type '{object_name}' is not supported."),
        )
    })?;
    let fields = if count {
        None
    } else {
        Some(
            names
                .iter()
                .map(|name| resolve_field(object, name))
                .collect::<Result<Vec<_>, _>>()?,
        )
    };
    let mut conditions = Vec::new();
    if parser.keyword("WHERE") {
        loop {
            let field = resolve_field(object, &parser.word()?)?;
            let operator = match parser.next() {
                Some(Token::Symbol(symbol)) if symbol != "," && symbol != "(" && symbol != ")" => {
                    symbol
                }
                Some(Token::Word(word)) if word.eq_ignore_ascii_case("LIKE") => "LIKE".to_owned(),
                other => {
                    return Err(malformed(&format!(
                        "unexpected token: '{}'",
                        describe(other.as_ref())
                    )));
                }
            };
            let value = match parser.next() {
                Some(Token::Text(text)) => Value::String(text),
                Some(Token::Number(number)) => serde_json::json!(number),
                Some(Token::Word(word)) if word.eq_ignore_ascii_case("null") => Value::Null,
                Some(Token::Word(word)) if word.eq_ignore_ascii_case("true") => Value::Bool(true),
                Some(Token::Word(word)) if word.eq_ignore_ascii_case("false") => Value::Bool(false),
                other => {
                    return Err(malformed(&format!(
                        "unexpected token: '{}'",
                        describe(other.as_ref())
                    )));
                }
            };
            conditions.push(Condition {
                field,
                operator,
                value,
            });
            if !parser.keyword("AND") {
                break;
            }
        }
    }
    let mut order_by = None;
    if parser.keyword("ORDER") {
        parser.expect_keyword("BY")?;
        let field = resolve_field(object, &parser.word()?)?;
        let descending = if parser.keyword("DESC") {
            true
        } else {
            parser.keyword("ASC");
            false
        };
        order_by = Some((field, descending));
    }
    let mut limit = None;
    if parser.keyword("LIMIT") {
        match parser.next() {
            Some(Token::Number(number)) if number >= 0.0 && number.fract() == 0.0 => {
                limit = Some(number as usize);
            }
            other => {
                return Err(malformed(&format!(
                    "unexpected token: '{}'",
                    describe(other.as_ref())
                )));
            }
        }
    }
    if let Some(extra) = parser.peek() {
        return Err(malformed(&format!(
            "unexpected token: '{}'",
            describe(Some(extra))
        )));
    }
    Ok(Query {
        object,
        fields,
        conditions,
        order_by,
        limit,
    })
}

/// Runs a query: the matching records, sorted and limited.
pub(crate) fn run<'a>(query: &Query, data: &'a OrgData) -> Vec<&'a Record> {
    let mut matching: Vec<&Record> = data
        .records
        .iter()
        .filter(|record| record.object == query.object)
        .filter(|record| {
            query
                .conditions
                .iter()
                .all(|condition| holds(condition, record))
        })
        .collect();
    if let Some((field, descending)) = query.order_by {
        matching.sort_by(|a, b| {
            let ordering = compare(a.fields.get(field), b.fields.get(field));
            if descending {
                ordering.reverse()
            } else {
                ordering
            }
        });
    }
    if let Some(limit) = query.limit {
        matching.truncate(limit);
    }
    matching
}

fn holds(condition: &Condition, record: &Record) -> bool {
    let actual = record.fields.get(condition.field).unwrap_or(&Value::Null);
    let ordering = compare(Some(actual), Some(&condition.value));
    match condition.operator.as_str() {
        "=" => ordering == Ordering::Equal,
        "!=" | "<>" => ordering != Ordering::Equal,
        "<" => ordering == Ordering::Less,
        ">" => ordering == Ordering::Greater,
        "<=" => ordering != Ordering::Greater,
        ">=" => ordering != Ordering::Less,
        "LIKE" => match (actual, &condition.value) {
            (Value::String(text), Value::String(pattern)) => like(text, pattern),
            _ => false,
        },
        _ => false,
    }
}

/// SOQL compares text case-insensitively.
fn compare(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    match (a.unwrap_or(&Value::Null), b.unwrap_or(&Value::Null)) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (x, y) => x.to_string().cmp(&y.to_string()),
    }
}

fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.to_lowercase().chars().collect();
    let pattern: Vec<char> = pattern.to_lowercase().chars().collect();
    like_from(&text, &pattern)
}

fn like_from(text: &[char], pattern: &[char]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some(('%', rest)) => {
            (0..=text.len()).any(|skip| like_from(text.get(skip..).unwrap_or_default(), rest))
        }
        Some(('_', rest)) => !text.is_empty() && like_from(text.get(1..).unwrap_or_default(), rest),
        Some((c, rest)) => {
            text.first() == Some(c) && like_from(text.get(1..).unwrap_or_default(), rest)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_query_parses_and_filters() {
        let data = OrgData::seed(10, 0, 0);
        let query = parse(
            "SELECT Id, Name FROM Account WHERE Industry = 'technology' ORDER BY Name DESC LIMIT 1",
        )
        .unwrap();
        let rows = run(&query, &data);
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn garbage_is_a_malformed_query() {
        assert_eq!(
            parse("SELEKT Id FROM Account").unwrap_err().0,
            "MALFORMED_QUERY"
        );
        assert_eq!(
            parse("SELECT Foo FROM Account").unwrap_err().0,
            "INVALID_FIELD"
        );
    }

    #[test]
    fn like_matches_wildcards() {
        assert!(like("Acme Corporation", "acme%"));
        assert!(!like("Globex", "acme%"));
    }
}
