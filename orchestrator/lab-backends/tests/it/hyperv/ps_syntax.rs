//! Every generated script parsed by a real PowerShell grammar, with ordinary and hostile
//! inputs, directly and through PowerShell Direct: no syntax errors anywhere, each hostile
//! value back as exactly one literal equal to it, here-string closers at column 0.

use lab_backends::hyperv::script::{PsValue, Script};

use super::ps_parse::{HOSTILE, catalogue, direct, parse, problems, unquote, walk};

/// Both ways a script is sent.
fn both(script: Script, v: &str) -> [Script; 2] {
    [script.clone(), script.through(direct(v))]
}

/// The single-quoted literals of a parsed script, unquoted by PowerShell's rules (a literal
/// PowerShell would end early is a failure: the grammar does not know U+2018..U+201B).
fn literals(name: &str, text: &str) -> Vec<String> {
    let (tree, text) = parse(text);
    let errors = problems(tree.root_node(), &text);
    assert!(errors.is_empty(), "{name}: {errors:?}\n{text}");
    let mut out = Vec::new();
    walk(tree.root_node(), &mut |n| match n.kind() {
        "verbatim_string_characters" => {
            let lit = &text[n.byte_range()];
            out.push(unquote(lit).unwrap_or_else(|e| panic!("{name}: {e}\n{text}")));
        }
        "verbatim_here_string_characters" | "expandable_here_string_literal" => {
            let body = &text[n.byte_range()];
            let last = body.lines().last().unwrap_or("");
            // PowerShell only ends a here-string at a closer in column 0.
            assert!(
                (last == "'@" || last == "\"@") && n.end_position().column == 2,
                "{name}: here-string closer not at column 0: {last:?}"
            );
        }
        _ => {}
    });
    out
}

#[test]
fn every_script_parses_with_ordinary_and_hostile_inputs() {
    let mut parsed = 0;
    for v in std::iter::once(r"C:\Windows\Temp\hvlab\a b.bin").chain(HOSTILE.iter().copied()) {
        for script in catalogue(v) {
            for s in both(script, v) {
                literals(s.op, &s.render());
                parsed += 1;
            }
        }
    }
    let per_value = catalogue("x").len() * 2;
    assert_eq!(parsed, per_value * (HOSTILE.len() + 1));
    eprintln!("parsed {parsed} scripts");
}

/// Substitutes `v` for one text input at a time (list items and the PowerShell Direct VM,
/// user and password included): it must come back as exactly one literal.
#[test]
fn each_hostile_value_is_exactly_one_literal() {
    let mut tried = 0;
    for base in catalogue("ordinary") {
        for (i, (name, value)) in base.params.iter().enumerate() {
            let slots = match value {
                PsValue::Str(_) | PsValue::Secret(_) | PsValue::Unread(_) => 1,
                PsValue::List(items) => items.len(),
                PsValue::Int(_) | PsValue::Bool(_) => 0,
            };
            for slot in 0..slots {
                for v in HOSTILE.iter().filter(|v| !v.is_empty()) {
                    let mut s = base.clone();
                    match &mut s.params[i].1 {
                        PsValue::List(items) => items[slot] = v.to_string(),
                        other => *other = PsValue::Str(v.to_string()),
                    }
                    for s in both(s, "ordinary") {
                        let lits = literals(s.op, &s.render());
                        let n = lits.iter().filter(|l| l == v).count();
                        assert_eq!(n, 1, "{} {name}[{slot}] = {v:?}: {n} literals", s.op);
                        tried += 1;
                    }
                }
            }
        }
        for field in 0..3 {
            for v in HOSTILE.iter().filter(|v| !v.is_empty()) {
                let mut d = direct("ordinary");
                match field {
                    0 => d.vm = v.to_string(),
                    1 => d.user = v.to_string(),
                    _ => d.password = PsValue::Str(v.to_string()),
                }
                let s = base.clone().through(d);
                let lits = literals(s.op, &s.render());
                let n = lits.iter().filter(|l| l == v).count();
                assert_eq!(n, 1, "{} direct field {field} = {v:?}: {n} literals", s.op);
                tried += 1;
            }
        }
    }
    eprintln!("tried {tried} hostile substitutions");
    assert!(tried > 1000);
}

/// The checks above would pass vacuously if the catalogue had no here-string.
#[test]
fn here_strings_are_checked() {
    let s = catalogue("x")
        .into_iter()
        .find(|s| s.op == "guest.pool_tag")
        .unwrap();
    for s in both(s, "x") {
        let text = s.render();
        assert!(text.lines().any(|l| l == "'@"), "{text}");
        literals(s.op, &text);
        // An indented closer (the bug fixed on main) must fail here.
        let broken = text.replace("\n'@", "\n  '@");
        let (tree, t) = parse(&broken);
        assert!(
            !problems(tree.root_node(), &t).is_empty(),
            "grammar accepted an indented closer"
        );
    }
}

/// The independent tokenizer agrees with PowerShell on the quotes the grammar ignores.
#[test]
fn unquote_follows_powershell_single_quote_rules() {
    assert_eq!(unquote("'a''b'").unwrap(), "a'b");
    assert_eq!(unquote("'a\u{2018}\u{2018}b'").unwrap(), "a\u{2018}b");
    assert_eq!(unquote("\u{2019}x\u{201B}").unwrap(), "x");
    assert_eq!(unquote("'a\u{201C}b'").unwrap(), "a\u{201C}b");
    assert!(
        unquote("'a\u{2019}b'").is_err(),
        "a lone U+2019 ends the string"
    );
}
