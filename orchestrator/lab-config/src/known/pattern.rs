//! The signature pattern of a known issue: a glob over a crash title, where `*` matches any
//! run of characters and `?` one character; everything else is literal and compared
//! without regard to ASCII case (Windows module names are case-insensitive).

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    chars: Vec<char>,
}

impl Pattern {
    pub fn new(text: &str) -> Self {
        Pattern {
            text: text.to_owned(),
            chars: text.chars().map(|c| c.to_ascii_lowercase()).collect(),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the whole of `title` matches (greedy `*` with backtracking to the last star:
    /// linear in practice, never exponential).
    pub fn matches(&self, title: &str) -> bool {
        let t: Vec<char> = title.chars().map(|c| c.to_ascii_lowercase()).collect();
        let p = &self.chars;
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == '*')
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::Pattern;

    /// The reference: the same glob as a regex-free recursive definition.
    fn reference(p: &[char], t: &[char]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some('*'), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
            (Some('?'), Some(_)) => reference(&p[1..], &t[1..]),
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b) && reference(&p[1..], &t[1..]),
            _ => false,
        }
    }

    #[test]
    fn examples() {
        let p = Pattern::new("PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ext_*.sys*");
        assert!(
            p.matches("PAGE_FAULT_IN_NONPAGED_AREA (0x50) in sample_ext_free_without_epoch.sys")
        );
        assert!(p.matches("page_fault_in_nonpaged_area (0x50) in SAMPLE_EXT_a.sys!f"));
        assert!(!p.matches("PAGE_FAULT_IN_NONPAGED_AREA (0x50) in ebpfcore.sys"));
        assert!(Pattern::new("*").matches(""));
        assert!(!Pattern::new("?").matches(""));
        assert!(Pattern::new("a*b*c").matches("aXbYbc"));
        assert!(!Pattern::new("a*b*c").matches("aXbYbcd"));
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference(p in "[ab*?]{0,8}", t in "[abAB]{0,10}") {
            let pc: Vec<char> = p.chars().collect();
            let tc: Vec<char> = t.chars().collect();
            prop_assert_eq!(Pattern::new(&p).matches(&t), reference(&pc, &tc));
        }

        #[test]
        fn a_literal_title_matches_itself(t in "[ -)+-~]{0,40}") {
            // No `*` (0x2a) in the title: it is its own exact pattern.
            prop_assert!(Pattern::new(&t).matches(&t));
        }
    }
}
