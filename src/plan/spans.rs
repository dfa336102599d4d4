//! Where each key of a YAML document is: a map from a value's path (`steps[1].steps[0].body.id`)
//! to its line and column, read with yaml-rust2's event parser (serde gives types, not places).

use std::collections::{HashMap, HashSet};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// A place in the plan file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// Locations of every mapping key and sequence item, by path.
#[derive(Debug, Default)]
pub struct Spans {
    places: HashMap<String, Location>,
    /// Keys written twice in one mapping (the path and the second one's place): serde would
    /// keep one of the two silently.
    pub duplicates: Vec<(String, Location)>,
}

impl Spans {
    /// Indexes `text`; a document that does not parse yields an empty index (serde reports the
    /// syntax error with its own location).
    pub fn index(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return Self::default();
        }
        Self {
            places: builder.places,
            duplicates: builder.duplicates,
        }
    }

    /// The location of `path`, or of its nearest ancestor that has one.
    pub fn locate(&self, path: &str) -> Location {
        let mut path = path;
        loop {
            if let Some(at) = self.places.get(path) {
                return *at;
            }
            match path.rfind(['.', '[']) {
                Some(cut) => path = &path[..cut],
                None => {
                    return self
                        .places
                        .get("")
                        .copied()
                        .unwrap_or(Location { line: 1, column: 1 });
                }
            }
        }
    }
}

enum Frame {
    /// `fresh` until its first key, whose place becomes the mapping's own (yaml-rust2 marks a
    /// block mapping's start after its first key).
    Map {
        path: String,
        key: Option<String>,
        fresh: bool,
        /// This mapping's keys so far.
        seen: HashSet<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    places: HashMap<String, Location>,
    duplicates: Vec<(String, Location)>,
}

fn location(mark: Marker) -> Location {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Location {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Builder {
    /// The path of the node now starting, or None when the node is a mapping key.
    fn node_path(&mut self, event: &Event, mark: Marker) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                self.places.insert(p.clone(), location(mark));
                Some(p)
            }
            Some(Frame::Map {
                path,
                key,
                fresh,
                seen,
            }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    let name = match event {
                        Event::Scalar(s, ..) => s.clone(),
                        _ => String::from("?"),
                    };
                    if std::mem::take(fresh) {
                        self.places.insert(path.clone(), location(mark));
                    }
                    let at = join(path, &name);
                    if !seen.insert(name.clone()) {
                        self.duplicates.push((at.clone(), location(mark)));
                    }
                    self.places.insert(at, location(mark));
                    *key = Some(name);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match &event {
            Event::Scalar(..) | Event::Alias(_) => {
                self.node_path(&event, mark);
            }
            Event::MappingStart(..) => {
                // A map that is a sequence item (or the document) is best located by its first
                // key; a map that is a key's value, by that key.
                let fresh = !matches!(self.stack.last(), Some(Frame::Map { .. }));
                if let Some(path) = self.node_path(&event, mark) {
                    self.places.entry(path.clone()).or_insert(location(mark));
                    self.stack.push(Frame::Map {
                        path,
                        key: None,
                        fresh,
                        seen: HashSet::new(),
                    });
                } else {
                    // A complex key: index nothing under it.
                    self.stack.push(Frame::Map {
                        path: "?".into(),
                        key: None,
                        fresh: false,
                        seen: HashSet::new(),
                    });
                }
            }
            Event::SequenceStart(..) => {
                let path = self.node_path(&event, mark).unwrap_or_else(|| "?".into());
                self.places.entry(path.clone()).or_insert(location(mark));
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_keys_and_items() {
        let text = "version: 1\nsteps:\n  - id: a\n    body:\n      firstName: x\n  - for_each: loans\n    steps:\n      - id: b\n";
        let spans = Spans::index(text);
        assert_eq!(spans.locate("version"), Location { line: 1, column: 1 });
        assert_eq!(spans.locate("steps[0]"), Location { line: 3, column: 5 });
        assert_eq!(
            spans.locate("steps[0].body.firstName"),
            Location { line: 5, column: 7 }
        );
        assert_eq!(
            spans.locate("steps[1].steps[0].id"),
            Location { line: 8, column: 9 }
        );
        assert_eq!(
            spans.locate("steps[1].steps[0].nope"),
            Location { line: 8, column: 9 },
            "falls back to the nearest ancestor"
        );
    }

    #[test]
    fn flow_mappings_are_indexed_too() {
        let spans = Spans::index("sources:\n  clients: { file: a.csv, key: id }\n");
        assert_eq!(
            spans.locate("sources.clients.key"),
            Location {
                line: 2,
                column: 27
            }
        );
    }
}
