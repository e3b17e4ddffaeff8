//! A real PowerShell grammar (tree-sitter-powershell) over every generated script: the
//! catalogue of constructors, parsing with the grammar's two known gaps handled explicitly,
//! and PowerShell's single-quote rules as an independent tokenizer.

use lab_backends::hyperv::script::{PsDirect, PsValue, Script};
use lab_backends::hyperv::scripts::{files, guest as gs, host as hs};
use tree_sitter::{Node, Parser, Tree};

/// Every script constructor, with `v` in every text argument.
pub fn catalogue(v: &str) -> Vec<Script> {
    let s = || v.to_owned();
    let new_vm = |secure_boot, switch: Option<String>| hs::NewVm {
        name: s(),
        vm_root: s(),
        base_vhdx: s(),
        generation: 2,
        memory_bytes: 4 << 30,
        vcpus: 4,
        secure_boot,
        checkpoint_type: "Standard",
        switch,
        notes: s(),
    };
    vec![
        hs::create(&new_vm(false, Some(s()))),
        hs::create(&new_vm(true, None)),
        hs::start(v),
        hs::stop(v, false),
        hs::stop(v, true),
        hs::state(v),
        hs::heartbeat(v),
        hs::addresses(v),
        hs::checkpoint(v, v),
        hs::restore(v, v),
        hs::remove(v, v),
        hs::inject_nmi(v),
        hs::list_owned(),
        hs::set_notes(v, v),
        hs::ping(),
        hs::health(v, Some(v), vec![s(), s()], vec![s()]),
        hs::health(v, None, vec![], vec![]),
        hs::copy_to_guest(v, v, v),
        hs::copy_from_guest(v, v, PsValue::Str(s()), v, v),
        hs::copy_from_guest(v, v, PsValue::Unread(s()), v, v),
        hs::debugger_analyze(v, v, Some(v), 300_000),
        hs::debugger_analyze(v, v, None, 1000),
        files::hash(v),
        files::make_parent(v),
        files::put_chunk(v, 262144, "AAEC"),
        files::get_chunk(v, 0, 262144),
        files::remove(v),
        gs::process("guest.exec", v, &[s(), "-r".into(), s()], 1_800_000),
        gs::boot_id(),
        gs::stat(v),
        gs::list_dir(v),
        gs::remove(v),
        gs::set_crash_control(2, true, true, true),
        gs::events(1234),
        gs::pool_tag(v),
        gs::extract(v, v, &[s(), s()], &[s(), s()]),
        gs::compress(v, v),
        // How the guest layer sends every script but the boot id read.
        gs::process("guest.exec", v, &[s()], 1000).with_boot_id(),
        gs::remove(v).with_boot_id(),
    ]
}

/// Through PowerShell Direct, with `v` as the VM, user and password.
pub fn direct(v: &str) -> PsDirect {
    PsDirect {
        vm: v.to_owned(),
        user: v.to_owned(),
        password: PsValue::Str(v.to_owned()),
    }
}

/// Values that break out of a badly quoted literal: every character PowerShell treats as a
/// quote (ASCII and U+2018..U+201E), subexpressions, the escape character, here-string
/// markers at line starts, comments.
pub const HOSTILE: &[&str] = &[
    "'",
    "\"",
    "\u{2018}",
    "\u{2019}",
    "\u{201A}",
    "\u{201B}",
    "\u{201C}",
    "\u{201D}",
    "\u{201E}",
    "it's",
    "a\u{2019}; Remove-Item C:\\ -Recurse; \u{2018}",
    "''",
    "$(whoami)",
    "\"$(whoami)\"",
    "`",
    "a`'b",
    "`\n",
    "@'\nx\n'@",
    "\n'@\n",
    "x\n'@",
    "@\"\n$(whoami)\n\"@",
    "line one\nline two\r\n",
    "#",
    "<#",
    "#>",
    "<# x",
    "}; whoami; @{",
    "\u{2019}\u{2019}'\u{201C}$(whoami)\u{201D}",
    "",
];

/// PowerShell's single-quote characters (`IsSingleQuote` in its tokenizer).
pub fn is_single_quote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
}

/// A single-quoted literal as PowerShell reads it: opened and closed by any single-quote
/// character, a pair of them inside is one (the second). `Err` names where PowerShell would
/// end the string early. Independent of the grammar, which only knows ASCII `'`.
pub fn unquote(lit: &str) -> Result<String, String> {
    let chars: Vec<char> = lit.chars().collect();
    if chars.len() < 2 || !is_single_quote(chars[0]) || !is_single_quote(chars[chars.len() - 1]) {
        return Err(format!("not a single-quoted literal: {lit:?}"));
    }
    let body = &chars[1..chars.len() - 1];
    let mut out = String::new();
    let mut i = 0;
    while i < body.len() {
        if is_single_quote(body[i]) {
            if i + 1 < body.len() && is_single_quote(body[i + 1]) {
                out.push(body[i + 1]);
                i += 2;
                continue;
            }
            return Err(format!(
                "PowerShell ends {lit:?} at character {} ({:?})",
                i + 1,
                body[i]
            ));
        }
        out.push(body[i]);
        i += 1;
    }
    Ok(out)
}

/// Parses `text`. The grammar rejects a numeric multiplier after `/` (`/ 1MB`), which
/// PowerShell accepts: the original must fail exactly there (an ERROR on the multiplier),
/// and the tree returned is of the text with `1MB` written as `1048576`, which must parse.
pub fn parse(text: &str) -> (Tree, String) {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .expect("load the PowerShell grammar");
    // Spans are offsets in `text` (the multiplier), so the original's errors can be located.
    let mut rewritten = String::with_capacity(text.len());
    let mut spans = Vec::new();
    let mut rest = 0;
    while let Some(at) = text[rest..].find("/ 1").map(|i| rest + i) {
        let after = at + 3;
        let mult = ["KB", "MB", "GB"]
            .iter()
            .position(|m| text[after..].starts_with(m));
        rewritten.push_str(&text[rest..after]);
        match mult {
            Some(k) => {
                spans.push(after..after + 2);
                // `/ 1` is already written: append the rest of 1024^(k+1)'s digits.
                rewritten.push_str(&format!("{}", 1u64 << (10 * (k + 1)))[1..]);
                rest = after + 2;
            }
            None => rest = after,
        }
    }
    rewritten.push_str(&text[rest..]);
    if !spans.is_empty() {
        let original = parser.parse(text, None).expect("parse");
        let errors = problems(original.root_node(), text);
        assert!(
            !errors.is_empty(),
            "the grammar now accepts `/ 1MB`: drop the rewrite"
        );
        for (range, what) in &errors {
            assert!(
                spans
                    .iter()
                    .any(|s| s.start <= range.start && range.end <= s.end),
                "grammar error {what} at {range:?} is not the known `/ 1MB` gap"
            );
        }
    }
    let tree = parser.parse(&rewritten, None).expect("parse");
    (tree, rewritten)
}

/// ERROR and MISSING nodes, with where they are.
pub fn problems(root: Node, text: &str) -> Vec<(std::ops::Range<usize>, String)> {
    let mut out = Vec::new();
    walk(root, &mut |n| {
        if n.is_error() || n.is_missing() {
            out.push((
                n.byte_range(),
                format!("{} {:?}", n.kind(), &text[n.byte_range()]),
            ));
        }
    });
    out
}

/// Visits every node, depth first.
pub fn walk<'t>(node: Node<'t>, f: &mut impl FnMut(Node<'t>)) {
    f(node);
    let mut c = node.walk();
    for child in node.children(&mut c) {
        walk(child, f);
    }
}
