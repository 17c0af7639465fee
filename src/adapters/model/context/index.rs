//! The ranking's index of one tree: for each term, the files that hold it and how often,
//! for their contents and for their paths. A cycle looks up only the gap's terms, so
//! ranking costs what the gap matches, not what the repository holds. Kept in prbot's
//! cache folder under the base commit, in one file mapped as it is (no parsing), with
//! each file's blob, size and kind, so a warm cycle needs no other list of the base.

use super::{kind_left_out, tokens, LeftOut};
use rustc_hash::FxHashMap;

const MAGIC: &[u8; 8] = b"PRBOTIX3";
/// Header fields after the magic: docs, contents terms, path terms, postings, string bytes.
const HEADER: usize = 8 + 5 * 4;
/// Per file: path offset, path length, contents length, path length in words, kind (and
/// [`LINK`]), blob id offset, blob id length, size in bytes (at most `u32::MAX`).
const DOC: usize = 8;
/// The kind's bit that marks a symbolic link: listed, never ranked.
const LINK: u32 = 1 << 8;
/// Per term: string offset, string length, first posting, postings.
const TERM: usize = 4;

/// One field of a file, as the ranking counts it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Field {
    Contents,
    Path,
}

/// One file to index: its path, its contents' term counts as
/// [`super::content_counts`] writes them (`-` for a file ranked by its path alone), and
/// where the base holds it, for a tree read from the object store.
pub struct Entry<'a> {
    pub path: &'a str,
    pub counts: &'a str,
    pub object: Option<Object<'a>>,
}

impl<'a> From<(&'a str, &'a str)> for Entry<'a> {
    fn from((path, counts): (&'a str, &'a str)) -> Self {
        Entry { path, counts, object: None }
    }
}

/// A file's object in the base: its blob, its size and whether it is a symbolic link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Object<'a> {
    pub blob: &'a str,
    pub size: u64,
    pub link: bool,
}

/// A read-only view of an index's bytes.
pub struct Index {
    data: Data,
    docs: usize,
    terms: [usize; 2],
    postings: usize,
}

impl Index {
    /// Builds the index of `files`. A symbolic link is kept with its object, for the
    /// file list and for reading, but holds no terms: it is never ranked.
    pub fn build<'a, E: Into<Entry<'a>>>(files: impl Iterator<Item = E>) -> Index {
        let mut files: Vec<Entry> = files.map(Into::into).collect();
        files.sort_unstable_by(|a, b| a.path.cmp(b.path));
        files.dedup_by(|a, b| a.path == b.path);
        let mut strings: Vec<u8> = Vec::new();
        let mut doc_table: Vec<u32> = Vec::with_capacity(files.len() * DOC);
        // Each term's postings, `doc, count` flattened, in the order of the files.
        let mut contents: FxHashMap<&str, Vec<u32>> = FxHashMap::default();
        let mut paths: FxHashMap<String, Vec<u32>> = FxHashMap::default();
        let mut folders: FxHashMap<&str, Vec<String>> = FxHashMap::default();
        for (doc, entry) in files.iter().enumerate() {
            let (doc, path) = (doc as u32, entry.path);
            let link = entry.object.is_some_and(|o| o.link);
            let (mut len, mut path_words) = (0, 0);
            // A link holds no terms: it is listed and read as a link, never ranked.
            if !link {
                if let Some((total, pairs)) = entry.counts.split_once(' ') {
                    len = total.parse().unwrap_or(0);
                    for (term, n) in pairs.split(' ').filter_map(|p| p.rsplit_once(':')) {
                        contents.entry(term).or_default().extend([doc, n.parse().unwrap_or(0)]);
                    }
                }
                let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
                let mut words: Vec<&str> = folders
                    .entry(folder)
                    .or_insert_with(|| tokens(folder))
                    .iter()
                    .map(String::as_str)
                    .collect();
                let named = tokens(name);
                words.extend(named.iter().map(String::as_str));
                words.sort_unstable();
                for run in words.chunk_by(|a, b| a == b) {
                    let entry = [doc, run.len() as u32];
                    match paths.get_mut(run[0]) {
                        Some(list) => list.extend(entry),
                        None => {
                            paths.insert(run[0].to_string(), entry.to_vec());
                        }
                    }
                }
                path_words = words.len() as u32;
            }
            let (blob, size) = entry.object.map_or(("", 0), |o| (o.blob, o.size));
            let flags = kind_code(path) | if link { LINK } else { 0 };
            doc_table.extend([strings.len() as u32, path.len() as u32, len, path_words, flags]);
            strings.extend_from_slice(path.as_bytes());
            doc_table.extend([strings.len() as u32, blob.len() as u32, size.min(u32::MAX as u64) as u32]);
            strings.extend_from_slice(blob.as_bytes());
        }
        let mut term_tables: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
        let mut postings: Vec<u32> = Vec::new();
        let mut fields: [Vec<(&str, &[u32])>; 2] = [
            contents.iter().map(|(t, l)| (*t, l.as_slice())).collect(),
            paths.iter().map(|(t, l)| (t.as_str(), l.as_slice())).collect(),
        ];
        for (field, terms) in fields.iter_mut().enumerate() {
            terms.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (term, list) in terms.iter() {
                term_tables[field].extend([
                    strings.len() as u32,
                    term.len() as u32,
                    (postings.len() / 2) as u32,
                    (list.len() / 2) as u32,
                ]);
                strings.extend_from_slice(term.as_bytes());
                postings.extend_from_slice(list);
            }
        }
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        let counts = [
            files.len(),
            term_tables[0].len() / TERM,
            term_tables[1].len() / TERM,
            postings.len() / 2,
            strings.len(),
        ];
        for n in counts {
            bytes.extend_from_slice(&(n as u32).to_le_bytes());
        }
        for table in [&doc_table, &term_tables[0], &term_tables[1], &postings] {
            for n in table.iter() {
                bytes.extend_from_slice(&n.to_le_bytes());
            }
        }
        bytes.extend_from_slice(&strings);
        Index::from_bytes(bytes).expect("a freshly built index is whole")
    }

    /// Takes an index's bytes; `None` unless its sections fit the bytes there are.
    pub fn from_bytes(bytes: Vec<u8>) -> Option<Index> {
        Index::from_data(Data::Owned(bytes))
    }

    fn from_data(data: Data) -> Option<Index> {
        let bytes = data.bytes();
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return None;
        }
        let field = |i: usize| u32::from_le_bytes(bytes[8 + 4 * i..12 + 4 * i].try_into().unwrap()) as usize;
        let (docs, contents, paths, postings, strings) = (field(0), field(1), field(2), field(3), field(4));
        let words = docs * DOC + (contents + paths) * TERM + postings * 2;
        (HEADER + 4 * words + strings == bytes.len()).then_some(Index {
            data,
            docs,
            terms: [contents, paths],
            postings,
        })
    }

    /// The index kept at `path` for `key` (a base commit); `None` when there is none, or
    /// it was kept for another key, or it is not whole. It is mapped, not read: a cycle
    /// touches only the pages its terms and files lie on.
    pub fn load(path: &std::path::Path, key: &str) -> Option<Index> {
        let header = format!("prbot-context-index 1 {key}\n");
        let file = std::fs::File::open(path).ok()?;
        // SAFETY: prbot only ever replaces the file by a rename (`write_atomic`), never
        // writes it in place, and the sandbox hides it from the project's commands, so
        // the mapped bytes do not change while the index is in use.
        let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        if !map.starts_with(header.as_bytes()) {
            return None;
        }
        Index::from_data(Data::Mapped(map, header.len()))
    }

    /// Keeps the index at `path` for `key`.
    pub fn save(&self, path: &std::path::Path, key: &str) -> std::io::Result<()> {
        let mut out = format!("prbot-context-index 1 {key}\n").into_bytes();
        out.extend_from_slice(self.data.bytes());
        crate::infra::fsutil::write_atomic(path, &out)
    }

    /// The index's bytes.
    pub(super) fn bytes(&self) -> &[u8] {
        self.data.bytes()
    }

    fn word(&self, at: usize) -> usize {
        let at = HEADER + 4 * at;
        u32::from_le_bytes(self.bytes()[at..at + 4].try_into().unwrap()) as usize
    }

    fn strings_at(&self) -> usize {
        HEADER + 4 * (self.docs * DOC + (self.terms[0] + self.terms[1]) * TERM + self.postings * 2)
    }

    /// The string at `offset`, `len` bytes long; empty if it is not in the strings.
    fn string(&self, offset: usize, len: usize) -> &str {
        let at = self.strings_at() + offset;
        self.bytes().get(at..at + len).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("")
    }

    /// How many files the index holds.
    pub fn len(&self) -> usize {
        self.docs
    }

    pub fn path(&self, doc: usize) -> &str {
        self.string(self.word(doc * DOC), self.word(doc * DOC + 1))
    }

    /// The field's length in words.
    pub(super) fn field_len(&self, doc: usize, field: Field) -> u32 {
        self.word(doc * DOC + if field == Field::Contents { 2 } else { 3 }) as u32
    }

    pub(super) fn kind(&self, doc: usize) -> Option<LeftOut> {
        kind_of(self.word(doc * DOC + 4) as u32 & !LINK)
    }

    /// Whether the file is a symbolic link, which is listed but never ranked.
    pub(super) fn is_link(&self, doc: usize) -> bool {
        self.word(doc * DOC + 4) as u32 & LINK != 0
    }

    /// Where the base holds the file; `None` for an index not built from the base.
    pub fn object(&self, doc: usize) -> Option<Object<'_>> {
        let blob = self.string(self.word(doc * DOC + 5), self.word(doc * DOC + 6));
        let size = self.word(doc * DOC + 7) as u64;
        (!blob.is_empty()).then_some(Object { blob, size, link: self.is_link(doc) })
    }

    /// Every path, in byte order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        (0..self.docs).map(|d| self.path(d))
    }

    /// The file at `path`, if the index holds it.
    pub fn doc(&self, path: &str) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.docs);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.path(mid).cmp(path) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The files that hold `term` in `field`, with how often.
    pub(super) fn postings(&self, field: Field, term: &str) -> impl Iterator<Item = (usize, u32)> + '_ {
        let table = self.docs * DOC + if field == Field::Contents { 0 } else { self.terms[0] * TERM };
        let count = self.terms[field as usize];
        let term_at = |i: usize| self.string(self.word(table + i * TERM), self.word(table + i * TERM + 1));
        let (mut lo, mut hi) = (0, count);
        let mut found = None;
        while lo < hi {
            let mid = (lo + hi) / 2;
            match term_at(mid).cmp(term) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    found = Some(mid);
                    break;
                }
            }
        }
        let (first, n) =
            found.map_or((0, 0), |i| (self.word(table + i * TERM + 2), self.word(table + i * TERM + 3)));
        let first = first.min(self.postings);
        let n = n.min(self.postings - first);
        let base = self.docs * DOC + (self.terms[0] + self.terms[1]) * TERM;
        (first..first + n)
            .map(move |p| (self.word(base + 2 * p), self.word(base + 2 * p + 1) as u32))
            .filter(move |(doc, _)| *doc < self.docs)
    }
}

/// An index's bytes: built in memory, or a kept file mapped past its header.
enum Data {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap, usize),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Owned(bytes) => bytes,
            Data::Mapped(map, header) => &map[*header..],
        }
    }
}

fn kind_code(path: &str) -> u32 {
    match kind_left_out(path) {
        None => 0,
        Some(LeftOut::Lock) => 1,
        Some(LeftOut::License) => 2,
        Some(LeftOut::Ci) => 3,
        Some(LeftOut::Vendored) => 4,
        Some(LeftOut::Generated) => 5,
    }
}

fn kind_of(code: u32) -> Option<LeftOut> {
    match code {
        1 => Some(LeftOut::Lock),
        2 => Some(LeftOut::License),
        3 => Some(LeftOut::Ci),
        4 => Some(LeftOut::Vendored),
        5 => Some(LeftOut::Generated),
        _ => None,
    }
}
