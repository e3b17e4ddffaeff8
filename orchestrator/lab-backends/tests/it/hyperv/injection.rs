//! Hostile values arrive as literals: a tokenizer for PowerShell single-quoted strings (the
//! oracle, written from the language specification, §2.3.5.2: a quote character is any of
//! `'` U+2018 U+2019 U+201A U+201B, and two in a row stand for one) reads each parameter
//! back out of the rendered script and must find exactly the original value, followed by
//! the end of its table line.

use lab_backends::hyperv::script::{PsDirect, PsValue, Script};
use lab_backends::hyperv::scripts::{guest as gs, host as hs};
use proptest::prelude::*;

fn is_quote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
}

/// Reads a single-quoted literal at the start of `s`; returns its value and the rest.
fn read_literal(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    let (_, first) = chars.next()?;
    if !is_quote(first) {
        return None;
    }
    let mut value = String::new();
    let mut it = chars.peekable();
    while let Some((i, c)) = it.next() {
        if is_quote(c) {
            match it.peek() {
                Some(&(_, n)) if is_quote(n) => {
                    value.push(n);
                    it.next();
                }
                _ => return Some((value, &s[i + c.len_utf8()..])),
            }
        } else {
            value.push(c);
        }
    }
    None
}

/// The literal assigned to `name` in the script's parameter tables.
fn param_literal(script: &str, name: &str) -> Vec<(String, String)> {
    let key = format!("  '{name}' = ");
    let mut found = Vec::new();
    let mut rest = script;
    while let Some(at) = rest.find(&key) {
        let after = &rest[at + key.len()..];
        let (value, tail) = read_literal(after).expect("a literal follows the key");
        found.push((value, tail.chars().take(1).collect()));
        rest = tail;
    }
    found
}

const HOSTILE: &[&str] = &[
    "it's",
    "$(Remove-Item C:\\ -Recurse)",
    "`$env:PATH`",
    "a; Stop-Computer -Force",
    "line1\nline2\r\n'; Invoke-Expression 'x",
    "\u{2019}) ; calc ; (\u{2018}",
    "é漢字🙂",
    "@{x=1}",
    "'@\n$(x)\n'@",
    "",
];

/// Checks `names` in the script as sent to a host and, for guest scripts, as wrapped for
/// PowerShell Direct.
fn check(script: &Script, names: &[(&str, &str)]) {
    let guest = script.op.starts_with("guest.");
    for via in [false, true].into_iter().filter(|v| !v || guest) {
        let s = if via {
            script.clone().through(PsDirect {
                vm: "vm".into(),
                user: "u".into(),
                password: PsValue::Str("p".into()),
            })
        } else {
            script.clone()
        };
        let text = s.render();
        for (name, want) in names {
            let got = param_literal(&text, name);
            assert_eq!(got.len(), 1, "{name} appears once in\n{text}");
            assert_eq!(got[0].0, *want, "value of {name}");
            assert_eq!(got[0].1, "\n", "{name}'s literal ends its line");
        }
    }
}

#[test]
fn hostile_names_paths_and_passwords_stay_literal() {
    for h in HOSTILE {
        check(&hs::state(h), &[("Name", h)]);
        check(&hs::checkpoint(h, h), &[("Name", h), ("Checkpoint", h)]);
        check(
            &hs::copy_from_guest(h, h, PsValue::Str(h.to_string()), h, h),
            &[
                ("Name", h),
                ("User", h),
                ("Password", h),
                ("Source", h),
                ("Destination", h),
            ],
        );
        check(&gs::stat(h), &[("Path", h)]);
        // The PowerShell Direct wrapper's own values.
        let text = gs::boot_id()
            .through(PsDirect {
                vm: h.to_string(),
                user: h.to_string(),
                password: PsValue::Str(h.to_string()),
            })
            .render();
        for name in ["VmName", "User", "Password"] {
            let got = param_literal(&text, name);
            assert_eq!(got, vec![(h.to_string(), "\n".to_string())], "{name}");
        }
    }
}

#[test]
fn lists_are_literals_too() {
    let text = gs::extract("a", "b", &["f'0".into()], &["C:\\$(x)\\'y".into()]).render();
    assert!(text.contains("  'Entries' = @('f''0')\n"), "{text}");
    assert!(
        text.contains("  'Destinations' = @('C:\\$(x)\\''y')\n"),
        "{text}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_string_round_trips_through_the_oracle(value in any::<String>()) {
        let script = hs::checkpoint(&value, "deployed");
        let text = script.render();
        let got = param_literal(&text, "Name");
        prop_assert_eq!(got, vec![(value.clone(), "\n".to_string())]);
    }

    #[test]
    fn quote_heavy_strings_round_trip(value in "['\u{2018}\u{2019}\u{201A}\u{201B}$`;\n\"a ]{0,24}") {
        let text = gs::stat(&value).render();
        let got = param_literal(&text, "Path");
        prop_assert_eq!(got, vec![(value.clone(), "\n".to_string())]);
    }
}
