//! Finds the YAML path (`steps[2].run.args`) of the node at a line and column, so that parse
//! errors (which only carry a position) can say where in the document structure they are.

use serde_saphyr::granit_parser::{Event, Parser};

enum Frame {
    Map {
        key: Option<String>,
        expecting_key: bool,
    },
    Seq {
        index: usize,
    },
}

/// Which node wins when a collection and its first child start at the same position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefer {
    /// The outermost node (for "missing field": the mapping lacks it).
    Outer,
    /// The innermost node (for "unknown field": the key itself).
    Inner,
}

fn render(stack: &[Frame], own_key: Option<&str>) -> String {
    let mut out = String::new();
    for frame in stack {
        match frame {
            Frame::Map {
                key: Some(k),
                expecting_key: false,
            } => push_key(&mut out, k),
            Frame::Map { .. } => {}
            Frame::Seq { index } => out.push_str(&format!("[{index}]")),
        }
    }
    if let Some(k) = own_key {
        push_key(&mut out, k);
    }
    out
}

fn push_key(out: &mut String, k: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(k);
}

/// The path of the last node that starts at or before (`line`, `column`) (1-based).
/// Returns `""` (the document root) when nothing better is known, e.g. for unparsable text.
pub(crate) fn path_at(text: &str, line: u32, column: u32, prefer: Prefer) -> String {
    let target = (line as usize, column as usize);
    let mut stack: Vec<Frame> = Vec::new();
    let mut best = String::new();
    let mut best_pos = (0usize, 0usize);
    // Bounded: the budget-checked deserializer has already accepted or rejected this text;
    // stop at the first scan error or once past the target.
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { break };
        let pos = (span.start.line(), span.start.col() + 1);
        if pos > target {
            break;
        }
        let is_node = matches!(
            event,
            Event::Scalar(..)
                | Event::SequenceStart(..)
                | Event::MappingStart(..)
                | Event::Alias(..)
        );
        if is_node {
            // Is this node a mapping key?
            let as_key = match (&event, stack.last()) {
                (
                    Event::Scalar(v, ..),
                    Some(Frame::Map {
                        expecting_key: true,
                        ..
                    }),
                ) => Some(v.to_string()),
                _ => None,
            };
            let path = render(&stack, as_key.as_deref());
            let take = match prefer {
                Prefer::Inner => pos >= best_pos,
                Prefer::Outer => pos > best_pos,
            };
            if take {
                // "Outer" wants the mapping a key belongs to, not the key.
                best = if prefer == Prefer::Outer && as_key.is_some() {
                    render(&stack, None)
                } else {
                    path
                };
                best_pos = pos;
            }
        }
        match event {
            Event::Scalar(v, ..) => advance(&mut stack, Some(v.to_string())),
            Event::Alias(..) => advance(&mut stack, None),
            Event::SequenceStart(..) => stack.push(Frame::Seq { index: 0 }),
            Event::MappingStart(..) => stack.push(Frame::Map {
                key: None,
                expecting_key: true,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                stack.pop();
                advance(&mut stack, None);
            }
            _ => {}
        }
    }
    best
}

/// A node ended: move the enclosing collection to its next slot.
fn advance(stack: &mut [Frame], scalar: Option<String>) {
    match stack.last_mut() {
        Some(Frame::Map { key, expecting_key }) => {
            if *expecting_key {
                *key = Some(scalar.unwrap_or_else(|| "?".to_owned()));
                *expecting_key = false;
            } else {
                *expecting_key = true;
            }
        }
        Some(Frame::Seq { index }) => {
            // Called once when a child node is complete; but a child collection's start
            // pushed a frame, so this only runs for completed children.
            *index += 1;
        }
        None => {}
    }
}

/// The text with the mapping entry whose key starts at (`line`, `column`) (1-based) blanked
/// out: every character of the key, its value and a flow-style `,` after it becomes a space
/// (line breaks stay), so later positions are unchanged and parsing can go on to the next
/// problem. `None` when no key starts there.
pub(crate) fn blank_entry(text: &str, line: u32, column: u32) -> Option<String> {
    let target = (line as usize, column as usize);
    let mut stack: Vec<bool> = Vec::new(); // per open mapping: expecting a key
    let mut start: Option<(usize, usize)> = None; // (char index, depth of the value)
    let mut end: Option<usize> = None;
    for item in Parser::new_from_str(text) {
        let Ok((event, span)) = item else { return None };
        if let Some((_, depth)) = start {
            match event {
                Event::MappingStart(..) | Event::SequenceStart(..) => stack.push(false),
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    if stack.len() == depth {
                        end = Some(span.end.index());
                        break;
                    }
                }
                Event::Scalar(..) | Event::Alias(..) if stack.len() == depth => {
                    end = Some(span.end.index());
                    break;
                }
                _ => {}
            }
            continue;
        }
        let pos = (span.start.line(), span.start.col() + 1);
        let is_key = matches!(event, Event::Scalar(..)) && stack.last() == Some(&true);
        if is_key && pos == target {
            start = Some((span.start.index(), stack.len()));
            continue;
        }
        match event {
            Event::MappingStart(..) => stack.push(true),
            Event::SequenceStart(..) => stack.push(false),
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
                flip(&mut stack);
            }
            Event::Scalar(..) | Event::Alias(..) => flip(&mut stack),
            _ => {}
        }
    }
    let (from, _) = start?;
    let to = end?;
    let mut chars: Vec<char> = text.chars().collect();
    let mut to = to.min(chars.len());
    // In a flow mapping (`{a: 1, bad: 2, c: 3}`) the entry's comma goes too.
    let mut k = to;
    while k < chars.len() && chars[k] == ' ' {
        k += 1;
    }
    if k < chars.len() && chars[k] == ',' {
        to = k + 1;
    }
    for c in &mut chars[from..to] {
        if *c != '\n' && *c != '\r' {
            *c = ' ';
        }
    }
    Some(chars.into_iter().collect())
}

/// A node ended inside a mapping: a key is followed by a value and a value by a key.
fn flip(stack: &mut [bool]) {
    if let Some(top) = stack.last_mut() {
        *top = !*top;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: a\nsteps:\n  - sleep: 1s\n  - run:\n      tool: x\n      bogus: 1\n";

    #[test]
    fn finds_nested_keys_and_indices() {
        assert_eq!(path_at(DOC, 6, 7, Prefer::Inner), "steps[1].run.bogus");
        assert_eq!(path_at(DOC, 3, 14, Prefer::Inner), "steps[0].sleep");
        assert_eq!(path_at(DOC, 1, 1, Prefer::Inner), "name");
        assert_eq!(path_at(DOC, 1, 1, Prefer::Outer), "");
        assert_eq!(path_at(DOC, 5, 7, Prefer::Outer), "steps[1].run");
    }

    #[test]
    fn blanks_one_entry_and_keeps_positions() {
        let doc = "a: 1\nbad:\n  x: [1, 2]\nc: {d: 1, e: 2}\n";
        let out = blank_entry(doc, 2, 1).expect("key at 2:1");
        assert_eq!(out, "a: 1\n    \n           \nc: {d: 1, e: 2}\n");
        let out = blank_entry(doc, 4, 5).expect("flow key at 4:5");
        assert_eq!(out, "a: 1\nbad:\n  x: [1, 2]\nc: {      e: 2}\n");
        assert_eq!(blank_entry(doc, 1, 4), None, "a value is not a key");
    }

    #[test]
    fn survives_garbage() {
        assert_eq!(path_at("a: [\n", 1, 4, Prefer::Inner), "a");
        assert_eq!(path_at("", 1, 1, Prefer::Inner), "");
    }
}
