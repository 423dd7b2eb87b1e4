//! Maps key paths to lines and byte offsets back to key paths, so every error
//! can say where in the file it is.

use std::collections::BTreeMap;
use toml::de::{DeTable, DeValue};

/// Spans of every key in a TOML document, by dotted path.
pub(crate) struct SpanIndex {
    line_starts: Vec<usize>,
    /// path -> (span of the key, span of the value)
    keys: BTreeMap<String, (usize, std::ops::Range<usize>)>,
}

impl SpanIndex {
    pub(crate) fn new(text: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let mut keys = BTreeMap::new();
        // A file that does not parse still gets line numbers from the parser's
        // own error span; the key index is then simply empty.
        if let Ok(root) = DeTable::parse(text) {
            walk_table(root.get_ref(), "", &mut keys);
        }
        SpanIndex { line_starts, keys }
    }

    /// 1-based line containing byte `offset`.
    pub(crate) fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// Line of the key at `path`, if that key is written in the file.
    pub(crate) fn line_of_key(&self, path: &str) -> Option<usize> {
        self.keys.get(path).map(|(start, _)| self.line_of(*start))
    }

    /// Deepest key whose key or value span contains `offset`.
    pub(crate) fn key_at(&self, offset: usize) -> Option<String> {
        self.keys
            .iter()
            .filter(|(_, (key_start, value))| {
                value.contains(&offset) || (*key_start <= offset && offset < value.start)
            })
            .max_by_key(|(path, _)| path.len())
            .map(|(path, _)| path.clone())
    }
}

fn walk_table(
    table: &DeTable<'_>,
    prefix: &str,
    out: &mut BTreeMap<String, (usize, std::ops::Range<usize>)>,
) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        out.insert(path.clone(), (key.span().start, value.span()));
        walk_value(value.get_ref(), &path, out);
    }
}

fn walk_value(
    value: &DeValue<'_>,
    path: &str,
    out: &mut BTreeMap<String, (usize, std::ops::Range<usize>)>,
) {
    match value {
        DeValue::Table(t) => walk_table(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{i}]");
                out.insert(item_path.clone(), (item.span().start, item.span()));
                walk_value(item.get_ref(), &item_path, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "[server]\nhttps_listen = \"0.0.0.0:8443\"\n\n[backend]\nurl = \"x\"\n\n[[imap]]\nhost = \"a\"\n[[imap]]\nhost = \"b\"\n";

    #[test]
    fn finds_lines_of_nested_and_array_keys() {
        let idx = SpanIndex::new(DOC);
        assert_eq!(idx.line_of_key("server.https_listen"), Some(2));
        assert_eq!(idx.line_of_key("backend.url"), Some(5));
        assert_eq!(idx.line_of_key("imap[1].host"), Some(10));
        assert_eq!(idx.line_of_key("backend.missing"), None);
    }

    #[test]
    fn finds_key_at_offset() {
        let idx = SpanIndex::new(DOC);
        let offset = DOC.find("\"x\"").unwrap() + 1;
        assert_eq!(idx.key_at(offset).as_deref(), Some("backend.url"));
    }
}
