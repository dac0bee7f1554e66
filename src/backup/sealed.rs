//! The backup file's sealed stream: `SBBACKUP`, a format byte, the store key's fingerprint,
//! then frames `[u32 length][sealed chunk]`, each chunk of at most 1 MiB sealed with the backup
//! key and bound to the fingerprint, its position and whether it is the last (see the module
//! notes of [`super`]).

use std::io::{Read, Write};

use anyhow::{Context, bail};

use crate::security::StoreKeys;
use crate::security::seal;

const MAGIC: &[u8; 8] = b"SBBACKUP";
const FORMAT: u8 = 1;
const CHUNK: usize = 1 << 20;
fn aad(fingerprint: &str, index: u64, last: bool) -> Vec<u8> {
    let mut a = b"storebox-backup-v1".to_vec();
    a.extend_from_slice(fingerprint.as_bytes());
    a.extend_from_slice(&index.to_le_bytes());
    a.push(u8::from(last));
    a
}

/// Seals what is written to it in chunks.
pub(super) struct SealWriter<W: Write> {
    out: W,
    key: crate::security::keys::Key,
    fingerprint: String,
    index: u64,
    buf: Vec<u8>,
}

impl<W: Write> SealWriter<W> {
    pub(super) fn new(mut out: W, keys: &StoreKeys) -> std::io::Result<Self> {
        out.write_all(MAGIC)?;
        out.write_all(&[FORMAT])?;
        out.write_all(keys.fingerprint().as_bytes())?;
        Ok(SealWriter {
            out,
            key: keys.backup.clone(),
            fingerprint: keys.fingerprint().to_string(),
            index: 0,
            buf: Vec::with_capacity(CHUNK),
        })
    }

    fn frame(&mut self, last: bool) -> std::io::Result<()> {
        let sealed = seal::seal(
            &self.key,
            &aad(&self.fingerprint, self.index, last),
            &self.buf,
        )
        .map_err(std::io::Error::other)?;
        self.out.write_all(&(sealed.len() as u32).to_le_bytes())?;
        self.out.write_all(&sealed)?;
        self.index += 1;
        self.buf.clear();
        Ok(())
    }

    pub(super) fn finish(mut self) -> std::io::Result<W> {
        self.frame(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.frame(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Opens what [`SealWriter`] wrote.
pub(super) struct OpenReader<R: Read> {
    inner: R,
    key: crate::security::keys::Key,
    fingerprint: String,
    index: u64,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<R: Read> OpenReader<R> {
    pub(super) fn new(mut inner: R, keys: &StoreKeys) -> anyhow::Result<Self> {
        let mut head = [0u8; 8 + 1 + 16];
        inner
            .read_exact(&mut head)
            .context("the file is too short to be a storebox backup")?;
        if &head[..8] != MAGIC {
            bail!("not a storebox backup");
        }
        if head[8] != FORMAT {
            bail!(
                "backup format {} is not understood by this storebox",
                head[8]
            );
        }
        let found = String::from_utf8_lossy(&head[9..]).to_string();
        if found != keys.fingerprint() {
            bail!(
                "the backup was made with store key {found}, but this store's key is {}; \
                 restore with the key the backup was made with",
                keys.fingerprint()
            );
        }
        Ok(OpenReader {
            inner,
            key: keys.backup.clone(),
            fingerprint: found,
            index: 0,
            buf: Vec::new(),
            pos: 0,
            done: false,
        })
    }

    fn next_frame(&mut self) -> std::io::Result<()> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let mut len = [0u8; 4];
        self.inner
            .read_exact(&mut len)
            .map_err(|_| bad("the backup is truncated"))?;
        let len = u32::from_le_bytes(len) as usize;
        if len > CHUNK + seal::OVERHEAD {
            return Err(bad("the backup is damaged (a frame is too long)"));
        }
        let mut sealed = vec![0u8; len];
        self.inner
            .read_exact(&mut sealed)
            .map_err(|_| bad("the backup is truncated"))?;
        for last in [false, true] {
            if let Some(plain) = seal::open(
                &self.key,
                &aad(&self.fingerprint, self.index, last),
                &sealed,
            ) {
                self.index += 1;
                self.buf = plain;
                self.pos = 0;
                self.done = last;
                if last {
                    let mut extra = [0u8; 1];
                    if self.inner.read(&mut extra)? != 0 {
                        return Err(bad("the backup has data after its end"));
                    }
                }
                return Ok(());
            }
        }
        Err(bad(&format!(
            "the backup is damaged or altered (chunk {})",
            self.index
        )))
    }
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            self.next_frame()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_stream_round_trips_and_detects_changes() {
        let keys = StoreKeys::random();
        let data: Vec<u8> = (0..(CHUNK * 2 + 123)).map(|i| (i % 251) as u8).collect();
        let mut w = SealWriter::new(Vec::new(), &keys).unwrap();
        w.write_all(&data).unwrap();
        let file = w.finish().unwrap();

        let mut back = Vec::new();
        OpenReader::new(&file[..], &keys)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);

        // Truncated after a whole frame: no final chunk.
        let first = 25 + 4 + CHUNK + seal::OVERHEAD;
        let mut r = OpenReader::new(&file[..first], &keys).unwrap();
        assert!(r.read_to_end(&mut Vec::new()).is_err());
        // One bit flipped.
        let mut bad = file.clone();
        bad[first + 100] ^= 1;
        let mut r = OpenReader::new(&bad[..], &keys).unwrap();
        assert!(r.read_to_end(&mut Vec::new()).is_err());
        // Another key.
        assert!(OpenReader::new(&file[..], &StoreKeys::random()).is_err());
    }
}
