//! The unit filter language of `hvlab run -E` and `hvlab list -E`, in the spirit of
//! nextest's filtersets: `scenario(glob)`, `tag(name)`, `template(name)`, `all()`,
//! combined with `and`/`&`, `or`/`|`, `not`/`!` and parentheses. A filter is evaluated
//! per unit cell (a scenario on a template), so `template(x)` narrows a scenario's matrix.

use std::fmt;

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    /// Scenario name matches the glob (`*` any run, `?` one character).
    Scenario(String),
    Tag(String),
    Template(String),
    Not(Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
}

/// What a filter is evaluated against: one scenario on one template.
#[derive(Debug, Clone, Copy)]
pub struct Cell<'a> {
    pub scenario: &'a str,
    pub tags: &'a [String],
    pub template: &'a str,
}

impl Filter {
    /// Parses `expr`; an error names the 1-based column where it went wrong.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        let mut p = Parser { src: expr, pos: 0 };
        let f = p.or()?;
        p.skip_ws();
        if p.pos < expr.len() {
            return Err(p.error("expected `and`, `or` or the end of the filter"));
        }
        Ok(f)
    }

    pub fn matches(&self, c: &Cell<'_>) -> bool {
        match self {
            Filter::All => true,
            Filter::Scenario(g) => glob_match(g, c.scenario),
            Filter::Tag(t) => c.tags.iter().any(|x| x == t),
            Filter::Template(t) => glob_match(t, c.template),
            Filter::Not(f) => !f.matches(c),
            Filter::And(a, b) => a.matches(c) && b.matches(c),
            Filter::Or(a, b) => a.matches(c) || b.matches(c),
        }
    }

    /// Every `tag(...)` name in the filter (checked against the known tags).
    pub fn tags(&self) -> Vec<&str> {
        match self {
            Filter::Tag(t) => vec![t.as_str()],
            Filter::Not(f) => f.tags(),
            Filter::And(a, b) | Filter::Or(a, b) => {
                let mut v = a.tags();
                v.extend(b.tags());
                v
            }
            _ => vec![],
        }
    }
}

impl fmt::Display for Filter {
    /// Canonical text that parses back to the same filter (fully parenthesised).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::All => f.write_str("all()"),
            Filter::Scenario(g) => write!(f, "scenario({g})"),
            Filter::Tag(t) => write!(f, "tag({t})"),
            Filter::Template(t) => write!(f, "template({t})"),
            Filter::Not(x) => write!(f, "not ({x})"),
            Filter::And(a, b) => write!(f, "({a} and {b})"),
            Filter::Or(a, b) => write!(f, "({a} or {b})"),
        }
    }
}

/// A filter that does not parse: what was expected, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at column {column}: {message}\n  {expr}\n  {caret}")]
pub struct FilterError {
    pub expr: String,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
    caret: String,
}

struct Parser<'a> {
    src: &'a str,
    /// Byte offset.
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: impl Into<String>) -> FilterError {
        let column = self.src[..self.pos].chars().count() + 1;
        FilterError {
            expr: self.src.to_owned(),
            column,
            message: message.into(),
            caret: format!("{}^", " ".repeat(column - 1)),
        }
    }

    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.src.len() - trimmed.len();
    }

    /// Consumes `word` if it comes next as a whole word (or a symbol).
    fn eat(&mut self, word: &str) -> bool {
        self.skip_ws();
        let rest = self.rest();
        if !rest.starts_with(word) {
            return false;
        }
        let after = rest[word.len()..].chars().next();
        let is_word = word.chars().all(|c| c.is_ascii_alphabetic());
        if is_word && after.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '(') {
            return false;
        }
        self.pos += word.len();
        true
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while self.eat("or") || self.eat("|") {
            let right = self.and()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.not()?;
        while self.eat("and") || self.eat("&") {
            let right = self.not()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Filter, FilterError> {
        if self.eat("not") || self.eat("!") {
            return Ok(Filter::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Filter, FilterError> {
        self.skip_ws();
        if self.eat("(") {
            let f = self.or()?;
            if !self.eat(")") {
                return Err(self.error("expected `)` closing the parenthesis"));
            }
            return Ok(f);
        }
        let start = self.pos;
        let name_len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        if name_len == 0 {
            return Err(self.error(if self.rest().is_empty() {
                "expected a predicate (`scenario(glob)`, `tag(name)`, `template(name)`, `all()`) \
                 but the filter ends"
            } else {
                "expected a predicate: `scenario(glob)`, `tag(name)`, `template(name)`, `all()`, \
                 `not`, or `(`"
            }));
        }
        let name = &self.src[start..start + name_len];
        self.pos += name_len;
        if !self.rest().starts_with('(') {
            self.pos = start;
            return Err(self.error(format!(
                "expected `(` after `{name}` (predicates are written like `tag(stress)`)"
            )));
        }
        let make: fn(String) -> Filter = match name {
            "scenario" => Filter::Scenario,
            "tag" => Filter::Tag,
            "template" => Filter::Template,
            "all" => |_| Filter::All,
            _ => {
                self.pos = start;
                return Err(self.error(format!(
                    "unknown predicate `{name}` (known: scenario, tag, template, all)"
                )));
            }
        };
        self.pos += 1;
        let arg_start = self.pos;
        let Some(len) = self.rest().find([')', '(']) else {
            self.pos = self.src.len();
            return Err(self.error(format!("expected `)` closing `{name}(`")));
        };
        if self.rest()[len..].starts_with('(') {
            self.pos += len;
            return Err(self.error("a predicate's argument cannot hold `(`"));
        }
        let arg = self.src[arg_start..arg_start + len].trim().to_owned();
        if arg.is_empty() && name != "all" {
            return Err(self.error(format!("`{name}()` needs a name or glob")));
        }
        if !arg.is_empty() && name == "all" {
            return Err(self.error("`all()` takes no argument"));
        }
        self.pos += len + 1;
        Ok(make(arg))
    }
}

/// Matches `*` (any run of characters) and `?` (one character); everything else literally.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let g: Vec<char> = glob.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative wildcard matching with one backtrack point: linear in practice.
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ti));
            gi += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn cell<'a>(scenario: &'a str, tags: &'a [String], template: &'a str) -> Cell<'a> {
        Cell {
            scenario,
            tags,
            template,
        }
    }

    #[test]
    fn precedence_not_then_and_then_or() {
        let f = Filter::parse("tag(a) or tag(b) and not template(w)").unwrap();
        assert_eq!(f.to_string(), "(tag(a) or (tag(b) and not (template(w))))");
        let tags = vec!["b".to_owned()];
        assert!(f.matches(&cell("s", &tags, "x")));
        assert!(!f.matches(&cell("s", &tags, "w")));
    }

    #[test]
    fn symbols_parentheses_and_globs() {
        let f = Filter::parse("(scenario(fault-*) | tag(smoke)) & !template(*verifier)").unwrap();
        let none: Vec<String> = vec![];
        assert!(f.matches(&cell("fault-leak", &none, "ws2022")));
        assert!(!f.matches(&cell("fault-leak", &none, "ws2022-verifier")));
        assert!(!f.matches(&cell("smoke", &none, "ws2022")));
        assert!(
            Filter::parse("all()")
                .unwrap()
                .matches(&cell("x", &none, "y"))
        );
    }

    #[test]
    fn errors_point_at_the_column() {
        let cases = [
            ("tag(a) andd tag(b)", 8),
            ("tag(a", 6),
            ("tagg(a)", 1),
            ("tag a", 1),
            ("(tag(a)", 8),
            ("tag(a) or", 10),
            ("tag()", 5),
            ("", 1),
            ("scenario(a(b))", 11),
        ];
        for (expr, column) in cases {
            let e = Filter::parse(expr).unwrap_err();
            assert_eq!(e.column, column, "{expr}: {e}");
        }
    }

    #[test]
    fn error_messages() {
        let msgs: Vec<String> = ["tag(a) andd tag(b)", "tagg(a)", "tag(a", "not"]
            .iter()
            .map(|e| Filter::parse(e).unwrap_err().to_string())
            .collect();
        insta::assert_snapshot!(msgs.join("\n\n"));
    }

    #[test]
    fn glob_basics() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*-race", "fault-hot-unload-race"));
        assert!(!glob_match("smoke", "smoke2"));
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_.*-]{0,8}"
    }

    fn filter() -> impl Strategy<Value = Filter> {
        let leaf = prop_oneof![
            Just(Filter::All),
            name().prop_map(Filter::Scenario),
            name().prop_map(Filter::Tag),
            name().prop_map(Filter::Template),
        ];
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|f| Filter::Not(Box::new(f))),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Filter::And(Box::new(a), Box::new(b))),
                (inner.clone(), inner).prop_map(|(a, b)| Filter::Or(Box::new(a), Box::new(b))),
            ]
        })
    }

    proptest! {
        #[test]
        fn display_parses_back_to_the_same_filter(f in filter()) {
            prop_assert_eq!(Filter::parse(&f.to_string()).unwrap(), f);
        }

        #[test]
        fn any_text_parses_or_errors_inside_it(s in "[ -~]{0,40}") {
            if let Err(e) = Filter::parse(&s) {
                prop_assert!(e.column >= 1 && e.column <= s.chars().count() + 1, "{}", e);
            }
        }

        #[test]
        fn not_inverts(f in filter(), scen in name(), tmpl in name()) {
            let tags = vec![scen.clone()];
            let c = cell(&scen, &tags, &tmpl);
            prop_assert_eq!(Filter::Not(Box::new(f.clone())).matches(&c), !f.matches(&c));
        }
    }
}
