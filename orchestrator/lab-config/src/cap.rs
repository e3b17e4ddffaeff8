//! Caps free text (generated labels, messages, tool output) at a byte budget with a note of
//! how much was cut, so a hostile input cannot make events, reports or logs grow with it.

use std::borrow::Cow;

/// Generated step labels (`exec <command line>`) are kept this short (bytes).
pub const LABEL_MAX: usize = 120;

/// Failure messages and other free text that goes into events, JUnit and summaries (bytes).
pub const MESSAGE_MAX: usize = 4 * 1024;

/// Bytes reserved for the note (` … [1023.9 KiB cut]`), so a capped text stays within `max`.
const NOTE_RESERVE: usize = 24;

/// `text` unchanged when it fits in `max` bytes; otherwise its head (cut at a UTF-8
/// boundary) followed by ` … [<size> cut]`, together at most `max` bytes (for `max` ≥ 24).
pub fn cap_text(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max.saturating_sub(NOTE_RESERVE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    Cow::Owned(format!("{} … [{} cut]", &text[..end], human_bytes(cut)))
}

/// Caps `text` in place (no copy when it fits).
pub fn cap_in_place(text: &mut String, max: usize) {
    if text.len() > max {
        *text = cap_text(text, max).into_owned();
    }
}

/// `512 B`, `3.5 KiB`, `2.9 MiB`, `1.2 GiB`.
pub fn human_bytes(n: usize) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_borrowed_unchanged() {
        assert!(matches!(
            cap_text("exec cmd /c exit 0", 120),
            Cow::Borrowed(_)
        ));
        let exact = "x".repeat(120);
        assert_eq!(cap_text(&exact, 120), exact.as_str());
    }

    #[test]
    fn long_text_keeps_its_head_and_says_how_much_was_cut() {
        let long = format!("exec powershell -c \"{}\"", "a".repeat(3 * 1024 * 1024));
        let c = cap_text(&long, LABEL_MAX);
        assert!(c.len() <= LABEL_MAX, "{} bytes", c.len());
        assert!(c.starts_with("exec powershell -c \"aaa"), "{c}");
        assert!(c.ends_with(" … [3.0 MiB cut]"), "{c}");
    }

    #[test]
    fn cuts_at_utf8_boundaries() {
        // Every possible cut position inside 2-, 3- and 4-byte characters.
        for ch in ["é", "€", "𝄞"] {
            let s = ch.repeat(200);
            for max in 24..60 {
                let c = cap_text(&s, max);
                assert!(c.len() <= max, "{ch} max {max}: {} bytes", c.len());
                let head = c.split(" … [").next().unwrap();
                assert!(head.chars().all(|x| x.to_string() == ch), "{c}");
                let cut = s.len() - head.len();
                assert!(c.ends_with(&format!("[{} cut]", human_bytes(cut))), "{c}");
            }
        }
    }

    #[test]
    fn tiny_budgets_do_not_panic() {
        for max in 0..30 {
            let c = cap_text("€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€", max);
            assert!(c.contains("cut]"), "{c}");
        }
    }

    #[test]
    fn in_place_leaves_short_text_alone() {
        let mut s = String::from("ok");
        cap_in_place(&mut s, 10);
        assert_eq!(s, "ok");
        let mut s = "x".repeat(50_000);
        cap_in_place(&mut s, MESSAGE_MAX);
        assert!(s.len() <= MESSAGE_MAX && s.ends_with("KiB cut]"), "{s}");
    }

    #[test]
    fn sizes_read_like_a_human_wrote_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 - 100 * 1024), "2.9 MiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
