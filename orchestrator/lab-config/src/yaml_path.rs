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
    fn survives_garbage() {
        assert_eq!(path_at("a: [\n", 1, 4, Prefer::Inner), "a");
        assert_eq!(path_at("", 1, 1, Prefer::Inner), "");
    }
}
