//! A YAML document as a tree whose every node knows its line and column, built from
//! yaml-rust2's event parser, so that each error of the profile DSL can point at the
//! offending key or value. Anchors and aliases are resolved; duplicate keys, tags,
//! non-scalar keys and multi-document streams are refused.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in the source, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn from_marker(m: &Marker) -> Self {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Self {
            line: m.line().max(1),
            column: m.col() + 1,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Value {
    /// A scalar and whether it was plain (unquoted): only plain scalars are numbers,
    /// booleans or null.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Keys in document order.
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Clone, Debug)]
pub struct Key {
    pub pos: Pos,
    pub name: String,
}

impl Node {
    /// What the node is, for "expected X, found Y" errors.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar { text, plain: true } if is_null(text) => "null",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if is_null(text))
    }
}

pub fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// A syntax error of the YAML itself.
#[derive(Debug)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document. An empty document is an empty mapping's worth of nothing:
/// `None`.
pub fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut b, true).map_err(|e| SyntaxError {
        pos: Pos::from_marker(e.marker()),
        message: e.info().to_owned(),
    })?;
    if let Some(e) = b.error {
        return Err(e);
    }
    if b.documents > 1 {
        return Err(SyntaxError {
            pos: b.second_doc,
            message: "a profile is one YAML document; found a second one".into(),
        });
    }
    Ok(b.root)
}

enum Frame {
    Seq(Pos, Vec<Node>, usize),
    /// Entries, the key waiting for its value, anchor id.
    Map(Pos, Vec<(Key, Node)>, Option<Key>, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    second_doc: Pos,
    error: Option<SyntaxError>,
}

impl Builder {
    fn fail(&mut self, pos: Pos, message: String) {
        if self.error.is_none() {
            self.error = Some(SyntaxError { pos, message });
        }
    }

    /// Attaches a finished node to its parent (or makes it the root).
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let mut dup = None;
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(_, items, _)) => items.push(node),
            Some(Frame::Map(_, entries, pending, _)) => match pending.take() {
                Some(key) => entries.push((key, node)),
                None => match node.value {
                    Value::Scalar { text, .. } => {
                        if let Some((first, _)) = entries.iter().find(|(k, _)| k.name == text) {
                            dup = Some((node.pos, text.clone(), first.pos));
                        }
                        *pending = Some(Key {
                            pos: node.pos,
                            name: text,
                        });
                    }
                    _ => {
                        let pos = node.pos;
                        self.fail(pos, "a mapping key must be a plain string".into());
                        // Keep the structure consistent: a dummy key.
                        if let Some(Frame::Map(_, _, pending, _)) = self.stack.last_mut() {
                            *pending = Some(Key {
                                pos,
                                name: String::new(),
                            });
                        }
                    }
                },
            },
        }
        if let Some((pos, name, first)) = dup {
            self.fail(
                pos,
                format!(
                    "duplicate key `{name}` (first at line {}, column {})",
                    first.line, first.column
                ),
            );
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos::from_marker(&mark);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 {
                    self.second_doc = pos;
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                if tag.is_some() {
                    self.fail(
                        pos,
                        "YAML tags (`!tag`) are not supported in profiles".into(),
                    );
                }
                let plain = style == TScalarStyle::Plain;
                self.push(
                    Node {
                        pos,
                        value: Value::Scalar { text, plain },
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, tag) => {
                if tag.is_some() {
                    self.fail(
                        pos,
                        "YAML tags (`!tag`) are not supported in profiles".into(),
                    );
                }
                self.stack.push(Frame::Seq(pos, Vec::new(), anchor));
            }
            Event::MappingStart(anchor, tag) => {
                if tag.is_some() {
                    self.fail(
                        pos,
                        "YAML tags (`!tag`) are not supported in profiles".into(),
                    );
                }
                self.stack.push(Frame::Map(pos, Vec::new(), None, anchor));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(pos, items, anchor)) = self.stack.pop() {
                    self.push(
                        Node {
                            pos,
                            value: Value::Seq(items),
                        },
                        anchor,
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(mut pos, entries, _, anchor)) = self.stack.pop() {
                    // A block mapping's event comes after its first key: start there.
                    if let Some((k, _)) = entries.first() {
                        if (k.pos.line, k.pos.column) < (pos.line, pos.column) {
                            pos = k.pos;
                        }
                    }
                    self.push(
                        Node {
                            pos,
                            value: Value::Map(entries),
                        },
                        anchor,
                    );
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut node) => {
                    node.pos = pos;
                    self.push(node, 0);
                }
                None => self.fail(pos, "alias to an unknown anchor".into()),
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let n = parse("a: 1\nb:\n  - x\n  - 'y'\n").unwrap().unwrap();
        let Value::Map(entries) = &n.value else {
            panic!()
        };
        assert_eq!(entries[0].0.pos, Pos { line: 1, column: 1 });
        assert_eq!(entries[0].1.pos, Pos { line: 1, column: 4 });
        let Value::Seq(items) = &entries[1].1.value else {
            panic!()
        };
        assert_eq!(items[1].pos, Pos { line: 4, column: 5 });
        assert!(matches!(
            &items[1].value,
            Value::Scalar { plain: false, .. }
        ));
    }

    #[test]
    fn duplicate_keys_and_aliases() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, column: 1 });
        assert!(
            e.message.contains("first at line 1, column 1"),
            "{}",
            e.message
        );
        let n = parse("a: &x [1, 2]\nb: *x\n").unwrap().unwrap();
        let Value::Map(entries) = &n.value else {
            panic!()
        };
        assert!(matches!(&entries[1].1.value, Value::Seq(v) if v.len() == 2));
        assert!(parse("").unwrap().is_none());
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
        assert!(parse("a: !!str 1\n").is_err());
        assert!(parse("? [1]\n: 2\n").is_err());
    }
}
