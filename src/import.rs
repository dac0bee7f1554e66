//! `storebox members import`: members from a CSV file (UTF-8 or GBK), through the ledger like
//! every other write, in chunks of one transaction each. Headers are recognised in Chinese or
//! English (or mapped by hand); phones are normalised; a phone known before the import merges
//! into that member, a phone or card number an earlier row of the file gave is refused as a
//! duplicate; a line with bytes invalid in the file's encoding is refused; every refused row is
//! reported with its line number and reason.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use chrono::NaiveDate;

use crate::config::Config;
use crate::domain::member::{Consent, Gender};
use crate::ledger::execute_import::normalize_row;
use crate::ledger::requests::{ImportRow, PreparedMember, RegisterMember};
use crate::ledger::{Actor, Command, ImportReport, Outcome};

mod decode;

use decode::bad_bytes_reason;
pub use decode::{BadBytes, Decoded, Encoding, decode, mostly_utf8};

/// The member fields a column can fill.
const FIELDS: [(&str, &[&str]); 7] = [
    ("name", &["name", "姓名", "名字", "会员姓名", "客户姓名"]),
    (
        "phone",
        &[
            "phone",
            "mobile",
            "tel",
            "手机",
            "手机号",
            "手机号码",
            "电话",
            "联系电话",
        ],
    ),
    (
        "birthday",
        &["birthday", "birth_date", "dob", "生日", "出生日期"],
    ),
    ("gender", &["gender", "sex", "性别"]),
    (
        "card_no",
        &["card_no", "card", "card_number", "卡号", "会员卡号"],
    ),
    ("tags", &["tags", "标签"]),
    ("consent", &["consent", "marketing", "营销同意", "接收营销"]),
];

fn parse_birthday(s: &str) -> Result<Option<NaiveDate>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    for f in ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d", "%Y年%m月%d日"] {
        if let Ok(d) = NaiveDate::parse_from_str(s, f) {
            return Ok(Some(d));
        }
    }
    Err(format!("birthday: {s:?} is not a date (YYYY-MM-DD)"))
}

fn parse_gender(s: &str) -> Result<Gender, String> {
    match s.trim().to_lowercase().as_str() {
        "" | "unknown" | "未知" => Ok(Gender::default()),
        "男" | "m" | "male" => Ok(Gender::Male),
        "女" | "f" | "female" => Ok(Gender::Female),
        other => Err(format!("gender: {other:?} is not 男/女/male/female")),
    }
}

fn parse_consent(s: &str) -> Result<bool, String> {
    match s.trim().to_lowercase().as_str() {
        "" | "否" | "no" | "n" | "0" | "false" => Ok(false),
        "是" | "yes" | "y" | "1" | "true" => Ok(true),
        other => Err(format!("consent: {other:?} is not yes/no")),
    }
}

/// Rows and the rows refused while reading them.
pub type Parsed = (Vec<(u64, RegisterMember)>, Vec<(u64, String)>);

/// The data rows of a CSV text whose header has been mapped (`map`: field → header, for
/// headers not recognised), each a registration or a refusal with its line number; read a
/// chunk at a time (a million rows parsed at once would hold several hundred MiB).
pub struct Rows<'t> {
    reader: csv::Reader<&'t [u8]>,
    columns: Vec<(&'static str, usize)>,
    /// The lines with invalid bytes not yet passed, and the encoding, for the refusals.
    bad: &'t [BadBytes],
    encoding: &'static str,
}

impl<'t> Rows<'t> {
    /// Reads and maps the header line; fails with the reason if a needed column is missing or
    /// the header has invalid bytes.
    pub fn open(file: &'t Decoded, map: &[(String, String)]) -> Result<Rows<'t>, String> {
        let mut reader = reader(&file.text);
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| format!("the header line cannot be read: {e}"))?
            .iter()
            .map(|h| h.trim().to_lowercase())
            .collect();
        let header_end = reader.position().byte();
        if let Some(bad) = file.bad.first().filter(|b| b.at < header_end) {
            return Err(format!(
                "the header line is {}",
                bad_bytes_reason(bad, file.encoding)
            ));
        }
        let mut columns: Vec<(&'static str, usize)> = Vec::new();
        for (field, names) in FIELDS {
            let given = map
                .iter()
                .find(|(f, _)| f == field)
                .map(|(_, h)| h.to_lowercase());
            let found = header.iter().position(|h| match &given {
                Some(g) => h == g,
                None => names.contains(&h.as_str()),
            });
            if let Some(i) = found {
                columns.push((field, i));
            } else if given.is_some() {
                return Err(format!(
                    "no column {:?} for {field}",
                    given.unwrap_or_default()
                ));
            }
        }
        for need in ["name", "phone"] {
            if !columns.iter().any(|(f, _)| *f == need) {
                return Err(format!(
                    "no {need} column: the header has {header:?}; name it as in the README or pass --map {need}=<header>"
                ));
            }
        }
        Ok(Rows {
            reader,
            columns,
            bad: &file.bad,
            encoding: file.encoding,
        })
    }

    /// The first invalid bytes from `start` up to where the reader is (the record just read),
    /// passing those before it.
    fn bad_bytes(&mut self, start: u64) -> Option<BadBytes> {
        let end = self.position();
        let mut found = None;
        while let Some((first, rest)) = self.bad.split_first() {
            if first.at >= end {
                break;
            }
            if first.at >= start && found.is_none() {
                found = Some(*first);
            }
            self.bad = rest;
        }
        found
    }

    /// How far into the text the rows read so far reach, in bytes.
    pub fn position(&self) -> u64 {
        self.reader.position().byte()
    }

    /// Up to `n` more rows, as registrations, and the rows among them refused while reading.
    pub fn next_chunk(&mut self, n: usize) -> Parsed {
        let mut rows = Vec::new();
        let mut bad = Vec::new();
        let mut rec = csv::StringRecord::new();
        while rows.len() + bad.len() < n {
            match self.reader.read_record(&mut rec) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    bad.push((line, format!("unreadable CSV: {e}")));
                    if e.is_io_error() {
                        break;
                    }
                    continue;
                }
            }
            let (line, start) = rec.position().map_or((0, 0), |p| (p.line(), p.byte()));
            if let Some(spot) = self.bad_bytes(start) {
                bad.push((line, bad_bytes_reason(&spot, self.encoding)));
                continue;
            }
            if rec.iter().all(str::is_empty) {
                continue;
            }
            match self.row(&rec) {
                Ok(m) => rows.push((line, m)),
                Err(reason) => bad.push((line, reason)),
            }
        }
        (rows, bad)
    }

    fn row(&self, rec: &csv::StringRecord) -> Result<RegisterMember, String> {
        let get = |field: &str| {
            self.columns
                .iter()
                .find(|(f, _)| *f == field)
                .and_then(|(_, i)| rec.get(*i))
                .unwrap_or("")
        };
        Ok(RegisterMember {
            name: get("name").to_string(),
            phone: get("phone").to_string(),
            gender: parse_gender(get("gender"))?,
            birthday: parse_birthday(get("birthday"))?,
            card_no: Some(get("card_no").to_string()).filter(|c| !c.is_empty()),
            tags: get("tags")
                .split([';', '|', '、', '；', ','])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            consent: Consent {
                marketing: parse_consent(get("consent"))?,
            },
        })
    }
}

fn reader(text: &str) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes())
}

/// Prepares rows for the ledger: each row that normalises gets its new member computed ahead
/// (the ledger uses it when the phone turns out to be new). A row that does not normalise goes
/// as it is; the ledger refuses it with the reason.
fn prepare_rows(
    codec: &crate::pii::PiiCodec,
    rows: Vec<(u64, RegisterMember)>,
    today: NaiveDate,
) -> Vec<ImportRow> {
    rows.into_iter()
        .map(|(line, req)| {
            let prepared = normalize_row(&req, today).ok().and_then(|(profile, tags)| {
                let id = crate::ids::new_v7().to_string();
                let sealed = codec.preseal(&id, &profile, &tags).ok()?;
                Some(Box::new(PreparedMember {
                    keys: crate::cache::MemberKeys::of(codec, &profile),
                    id,
                    profile,
                    tags,
                    sealed,
                }))
            });
            ImportRow {
                line,
                req,
                prepared,
            }
        })
        .collect()
}

/// The phones and card numbers of the rows sent to the ledger so far in this import, with their
/// lines: a later row with one of them repeats an earlier row and is refused (merging into a
/// member is for members known before the import). Kept for the whole import, across chunks;
/// an import run again is a new import, whose rows find the members the first one left.
/// The values are held as their index keys (keyed hashes, 16 bytes, as the cache's unique
/// indexes hold them): about 50 MB for a million phones, as much again for their cards.
#[derive(Default)]
struct Seen {
    phones: HashMap<[u8; 16], u64>,
    cards: HashMap<[u8; 16], u64>,
    /// The keys the rows of the chunk being imported noted, by line, until the ledger's report
    /// says which it refused ([`Seen::unnote_refused`]).
    chunk: HashMap<u64, ([u8; 16], Option<[u8; 16]>)>,
}

impl Seen {
    /// An index key as a map key (index keys are 16 bytes; a longer one would be cut, a shorter
    /// one padded, still one map key per value).
    fn key(k: &[u8]) -> [u8; 16] {
        let mut key = [0; 16];
        let n = k.len().min(16);
        key[..n].copy_from_slice(&k[..n]);
        key
    }

    /// Whether the row on `line` with these keys repeats an earlier row; if it does not, its
    /// phone and card are noted.
    fn repeated(&mut self, line: u64, keys: &crate::cache::MemberKeys) -> Repeat {
        let phone = Self::key(keys.phone());
        let card = keys.card().map(Self::key);
        let earlier = |first: u64, what: &str| {
            if self.chunk.contains_key(&first) {
                // Of this chunk: whether it is imported is not known yet.
                Repeat::OfThisChunk
            } else {
                Repeat::Of(format!("{what}: duplicate of line {first}"))
            }
        };
        if let Some(first) = self.phones.get(&phone) {
            return earlier(*first, "phone");
        }
        if let Some(first) = card.and_then(|c| self.cards.get(&c)) {
            return earlier(*first, "card_no");
        }
        self.phones.insert(phone, line);
        if let Some(c) = card {
            self.cards.insert(c, line);
        }
        self.chunk.insert(line, (phone, card));
        Repeat::No
    }

    /// Forgets the phones and cards of the rows the ledger refused (their card was another
    /// member's, say): nobody was imported with them, so a corrected repeat later in the file
    /// is no duplicate.
    fn unnote_refused(&mut self, refused: &[(u64, String)]) {
        for (line, _) in refused {
            if let Some((phone, card)) = self.chunk.remove(line) {
                if self.phones.get(&phone) == Some(line) {
                    self.phones.remove(&phone);
                }
                if let Some(c) = card
                    && self.cards.get(&c) == Some(line)
                {
                    self.cards.remove(&c);
                }
            }
        }
        self.chunk.clear();
    }

    /// The rows of a chunk that do not repeat an earlier row of the import; the refusals of
    /// those that repeat a row imported before; and those that repeat a row of this chunk,
    /// held back until the ledger has said whether that row was imported (then sifted again).
    /// A row that does not normalise goes on (the ledger refuses it) unnoted.
    fn sift(
        &mut self,
        codec: &crate::pii::PiiCodec,
        today: NaiveDate,
        rows: Vec<ImportRow>,
    ) -> (Vec<ImportRow>, Vec<(u64, String)>, Vec<ImportRow>) {
        let mut fresh = Vec::with_capacity(rows.len());
        let mut repeats = Vec::new();
        let mut held = Vec::new();
        for row in rows {
            let repeat = match &row.prepared {
                Some(p) => self.repeated(row.line, &p.keys),
                // Not prepared (rare: sealing ahead failed): the keys are computed here.
                None => match normalize_row(&row.req, today) {
                    Ok((profile, _)) => {
                        self.repeated(row.line, &crate::cache::MemberKeys::of(codec, &profile))
                    }
                    Err(_) => Repeat::No,
                },
            };
            match repeat {
                Repeat::Of(reason) => repeats.push((row.line, reason)),
                Repeat::OfThisChunk => held.push(row),
                Repeat::No => fresh.push(row),
            }
        }
        (fresh, repeats, held)
    }
}

/// Whether a row repeats an earlier row's phone or card.
enum Repeat {
    No,
    /// Of a row imported (or being imported in an earlier chunk): refused, and why.
    Of(String),
    /// Of a row of the chunk being sifted.
    OfThisChunk,
}

/// How far an import is, after each chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Data rows read so far (refused ones included).
    pub rows: u64,
    /// Bytes of the (decoded) file read so far.
    pub bytes: u64,
    /// Bytes of the whole (decoded) file.
    pub of_bytes: u64,
}

impl Progress {
    /// Percent of the file read, 0 to 100.
    pub fn percent(&self) -> u64 {
        (self.bytes.min(self.of_bytes) * 100)
            .checked_div(self.of_bytes)
            .unwrap_or(100)
    }

    /// Whether the whole file has been read.
    pub fn finished(&self) -> bool {
        self.bytes >= self.of_bytes
    }
}

/// What an import did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Encoding read.
    pub encoding: &'static str,
    /// Data rows read.
    pub rows: u64,
    /// The ledger's figures, refused rows included (sorted by line).
    pub report: ImportReport,
}

/// Rows per chunk (one journal transaction, one progress step) of `storebox members import`:
/// a million rows imported in 123 s with 50,000, 137 s with 20,000, 183 s with 5,000 (each
/// chunk rewrites the index pages its keys fall on, so fewer chunks write fewer pages).
pub const CHUNK: usize = 50_000;

/// Imports `file` into the store of `config` (the daemon must be stopped: the import takes the
/// data directory). `progress` is called after each chunk; it reports the share of the file
/// read, so the file is parsed once (no counting pass over a million rows first).
pub async fn import(
    config: &Config,
    file: &Path,
    encoding: Encoding,
    map: &[(String, String)],
    chunk: usize,
    progress: impl FnMut(Progress),
) -> anyhow::Result<Summary> {
    let never = tokio_util::sync::CancellationToken::new();
    import_until(config, file, encoding, map, chunk, &never, progress).await
}

/// [`import`], stopped before the next chunk once `stop` is cancelled (SIGTERM, Ctrl-C): the
/// chunks committed stay imported and the store is closed, so their index entries are written
/// (killed instead, the import leaves its bulk marker, and the next start moves the cache aside
/// and rebuilds it from the whole journal, HQ's data lost until HQ sends it again).
pub async fn import_until(
    config: &Config,
    file: &Path,
    encoding: Encoding,
    map: &[(String, String)],
    chunk: usize,
    stop: &tokio_util::sync::CancellationToken,
    mut progress: impl FnMut(Progress),
) -> anyhow::Result<Summary> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let decoded = decode(bytes, encoding);
    let used = decoded.encoding;
    let mut rows =
        Rows::open(&decoded, map).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let of_bytes = decoded.text.len() as u64;
    let store = crate::app::OfflineStore::open(config).await?;
    let actor = Actor {
        staff_no: "import".into(),
        role: crate::domain::access::Role::Admin,
        terminal_id: "storebox".into(),
    };
    let mut report = ImportReport::default();
    let mut rejected = Vec::new();
    let mut done = 0;
    let mut seen = Seen::default();
    // While the ledger writes a chunk, the next one is read and prepared on another thread:
    // normalised, its index keys hashed and its profiles sealed (most of a new member's CPU
    // time). Only two chunks are in memory at a time.
    let codec = store.cache.codec().clone();
    let today = store.ledger.settings.local_date(chrono::Utc::now());
    let mut read = || {
        let (part, bad) = rows.next_chunk(chunk.max(1));
        let codec = codec.clone();
        let n = (part.len() + bad.len()) as u64;
        let at = rows.position();
        (n > 0).then(|| {
            (
                n,
                at,
                bad,
                tokio::task::spawn_blocking(move || prepare_rows(&codec, part, today)),
            )
        })
    };
    // The chunks committed so far stay imported if one fails; the store is closed either way,
    // so the index entries of those chunks are written (see `cache::bulk`).
    let run = async {
        let mut next = read();
        while let Some((n, at, bad, ready)) = next.take() {
            if stop.is_cancelled() {
                anyhow::bail!("stopped by a signal");
            }
            let part = ready.await.context("preparing rows")?;
            next = read();
            rejected.extend(bad);
            // Rows repeating a row of their own chunk wait for the ledger's word on it: a row
            // it refused imported nobody, and its corrected repeat is no duplicate.
            let mut part = part;
            while !part.is_empty() {
                let (fresh, repeats, held) = seen.sift(&codec, today, part);
                rejected.extend(repeats);
                part = held;
                if fresh.is_empty() {
                    // Held rows wait for a row sent in the same pass, so there are none here;
                    // should there be, they are refused rather than sifted for ever.
                    for row in part.drain(..) {
                        rejected.push((row.line, "duplicate of an earlier line".to_string()));
                    }
                    break;
                }
                match store
                    .ledger
                    .execute(actor.clone(), Command::ImportMembers { rows: fresh })
                    .await
                    .context("importing")?
                {
                    Outcome::Imported(r) => {
                        report.added += r.added;
                        report.merged += r.merged;
                        report.unchanged += r.unchanged;
                        seen.unnote_refused(&r.rejected);
                        rejected.extend(r.rejected);
                    }
                    other => anyhow::bail!("unexpected outcome {other:?}"),
                }
            }
            done += n;
            progress(Progress {
                rows: done,
                // The last chunk ends the file, whatever blank lines follow its last row.
                bytes: if next.is_none() { of_bytes } else { at },
                of_bytes,
            });
        }
        Ok(())
    }
    .await;
    let closed = store.close().await;
    // Chunks committed before the failure stay recorded: the error says how many, so that
    // nobody takes the import for undone (running it again imports the rest; the rows
    // recorded come out unchanged).
    let recorded = |e: anyhow::Error| {
        let then = if stop.is_cancelled() {
            "run it again for the rest"
        } else {
            "after fixing this, run it again for the rest"
        };
        e.context(format!(
            "the import stopped after {} rows were recorded ({} added, {} merged); {then}",
            report.added + report.merged + report.unchanged,
            report.added,
            report.merged
        ))
    };
    run.map_err(recorded)?;
    closed.map_err(recorded)?;
    rejected.sort();
    report.rejected = rejected;
    Ok(Summary {
        encoding: used,
        rows: done,
        report,
    })
}

#[cfg(test)]
mod tests;
