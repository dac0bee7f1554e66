//! A VFS over SQLite's default one that writes a transaction's WAL frames with one system call.
//!
//! SQLite writes each WAL frame with two `pwrite`s, its 24-byte header and then its page, so a
//! sale made ~13 `pwrite`s between the journal's commit and the cache's. On the development VMs
//! a `pwrite` costs a few µs whatever its size; contiguous frames written in one `pwrite` and
//! then `fdatasync`ed took tens of µs less than the same bytes in two `pwrite`s a frame
//! (`docs/benchmarks.md`).
//!
//! The VFS `storebox-coalesce` is the default VFS for every file but a WAL; a WAL opened
//! through it keeps writes that follow each other in a buffer and hands them to the file in one
//! write:
//!
//! - once the page of the frame that commits a transaction is written (its header's "database
//!   size after commit" field is not zero; the page follows the header): a transaction's frames
//!   are then in the file before SQLite syncs it and before it publishes them to readers in the
//!   WAL index, in every `synchronous` mode (SQLite does neither through the WAL's own handle,
//!   so nothing else would tell);
//! - when a write does not follow the buffered ones, or would take the buffer past 64 KiB (a big
//!   transaction);
//! - before anything else is asked of the file (read, sync, size, truncate, close, a file
//!   control): the file is then exactly what SQLite wrote to it.
//!
//! Not buffered at all: a write over bytes written before (SQLite rewrites a frame of the
//! transaction it is writing, and after the commit frame the checksums of the frames from the
//! first rewritten one on: those are its transaction's last writes), and every write on a
//! device without `SQLITE_IOCAP_POWERSAFE_OVERWRITE`, where SQLite pads a commit to a sector
//! and splits a write around a sync.
//!
//! A write that fails when the buffer is handed over fails the call that handed it over, and
//! every write and read after those bytes until SQLite writes there again (its next
//! transaction, once the failed one has rolled back): so a transaction with a lost frame never
//! commits. What a crash loses from the buffer is a transaction that had not committed. Only
//! the journal's and the cache's writer connections open their files through this VFS; readers
//! and the checkpoint threads use the default one.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The VFS's name, for `Connection::open_with_flags_and_vfs`.
pub(crate) const NAME: &CStr = c"storebox-coalesce";

/// The most the buffer holds. The default VFS writes at most 128 KiB − 1 in one call (it masks
/// a larger size, and reports a write of 128 KiB as a full disk); a write that would take the
/// buffer past this sends the buffer first.
const CAP: usize = 64 << 10;

/// Size of a WAL frame header.
const FRAME_HEADER: usize = 24;

#[cfg(test)]
thread_local! {
    /// Writes handed to WAL files by this thread's connections.
    static WAL_WRITES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts a write handed to the file (tests only).
fn counted() {
    #[cfg(test)]
    WAL_WRITES.with(|n| n.set(n.get() + 1));
}

/// Registers the VFS (once) and returns its name; an error says why SQLite refused it.
pub(crate) fn vfs() -> Result<&'static CStr, String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: sqlite3_vfs_find(NULL) initializes SQLite and returns the default VFS,
            // which SQLite keeps for the life of the process; it is copied under SQLite's main
            // mutex (the one VFS registration takes). The struct registered is leaked, so it
            // lives as long.
            unsafe {
                let real = ffi::sqlite3_vfs_find(std::ptr::null());
                if real.is_null() {
                    return Err("SQLite has no default VFS".into());
                }
                let mutex = ffi::sqlite3_mutex_alloc(ffi::SQLITE_MUTEX_STATIC_MAIN);
                ffi::sqlite3_mutex_enter(mutex);
                let mut ours = *real;
                ffi::sqlite3_mutex_leave(mutex);
                let Some(real_size) = usize::try_from(ours.szOsFile).ok() else {
                    return Err("the default VFS has a negative file size".into());
                };
                ours.szOsFile = c_int::try_from(HEAD + real_size)
                    .map_err(|_| "the default VFS's file is too large".to_string())?;
                ours.zName = NAME.as_ptr();
                ours.pNext = std::ptr::null_mut();
                ours.xOpen = Some(x_open);
                let _ = REAL.set(Vfs(real));
                let ours = Box::leak(Box::new(ours));
                match ffi::sqlite3_vfs_register(ours, 0) {
                    ffi::SQLITE_OK => Ok(()),
                    rc => Err(format!("sqlite3_vfs_register failed with code {rc}")),
                }
            }
        })
        .clone()
        .map(|()| NAME)
}

/// The default VFS, as found at registration.
struct Vfs(*mut ffi::sqlite3_vfs);
// SAFETY: the pointer is to SQLite's static default VFS, which SQLite itself shares between
// threads; it is only read.
unsafe impl Send for Vfs {}
// SAFETY: as above.
unsafe impl Sync for Vfs {}
static REAL: OnceLock<Vfs> = OnceLock::new();

/// A WAL file opened through this VFS: SQLite's handle (whose methods are ours), the default
/// VFS's file it wraps (in the same allocation, after this struct) and the buffer.
#[repr(C)]
struct WalFile {
    base: ffi::sqlite3_file,
    real: *mut ffi::sqlite3_file,
    pending: *mut Pending,
}

/// Where the wrapped file starts in the allocation SQLite makes for ours.
const HEAD: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

struct Pending {
    /// Appends are buffered (the device is powersafe-overwrite).
    coalesce: bool,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    at: i64,
    /// Where the commit frame's page goes, once its header has been written: the
    /// transaction's last write, after which the buffer goes out.
    commit_page: Option<i64>,
    /// The end of what has been written or buffered since the WAL header was last written.
    high: i64,
    /// Where buffered bytes that could not be written began.
    failed_at: Option<i64>,
}

impl Pending {
    /// Hands the buffer to `real`; the buffer is empty afterwards, whatever the outcome, and a
    /// failure is remembered.
    ///
    /// # Safety
    /// `real` must be an open file of the default VFS.
    unsafe fn flush(&mut self, real: *mut ffi::sqlite3_file) -> c_int {
        if self.buf.is_empty() {
            return ffi::SQLITE_OK;
        }
        let rc = match c_int::try_from(self.buf.len()) {
            Ok(n) => {
                counted();
                // SAFETY: `real` is open (the contract); the buffer holds `n` bytes.
                match unsafe { methods(real) }.xWrite {
                    Some(write) => unsafe { write(real, self.buf.as_ptr().cast(), n, self.at) },
                    None => ffi::SQLITE_IOERR_WRITE,
                }
            }
            Err(_) => ffi::SQLITE_IOERR_WRITE,
        };
        if rc != ffi::SQLITE_OK {
            self.failed_at = Some(self.failed_at.map_or(self.at, |f| f.min(self.at)));
        }
        self.buf.clear();
        rc
    }

    /// Whether bytes at `offset..end` would touch what could not be written.
    fn touches_lost(&self, end: i64) -> bool {
        self.failed_at.is_some_and(|f| end > f)
    }
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(Vfs(real_vfs)) = REAL.get() else {
        return ffi::SQLITE_CANTOPEN;
    };
    let real_vfs = *real_vfs;
    // SAFETY: SQLite hands over an allocation of our szOsFile bytes (HEAD + the default VFS's
    // size); the default VFS opens its file in it, at its start for any file but a WAL, or
    // after our header for a WAL.
    unsafe {
        let Some(open) = (*real_vfs).xOpen else {
            return ffi::SQLITE_CANTOPEN;
        };
        if flags & ffi::SQLITE_OPEN_WAL == 0 {
            return open(real_vfs, name, file, flags, out_flags);
        }
        let wal = file.cast::<WalFile>();
        (*wal).base.pMethods = std::ptr::null();
        let real = file.cast::<u8>().add(HEAD).cast::<ffi::sqlite3_file>();
        let rc = open(real_vfs, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        // SQLite pads commits when the database's handle lacks powersafe overwrite: a `psow=0`
        // in its URI, which the WAL's name carries (the WAL's own handle is opened without it).
        let device = methods(real).xDeviceCharacteristics.map_or(0, |f| f(real));
        let psow = device & ffi::SQLITE_IOCAP_POWERSAFE_OVERWRITE != 0
            && (name.is_null() || ffi::sqlite3_uri_boolean(name, c"psow".as_ptr(), 1) != 0);
        (*wal).real = real;
        (*wal).pending = Box::into_raw(Box::new(Pending {
            coalesce: psow,
            buf: Vec::new(),
            at: 0,
            commit_page: None,
            high: 0,
            failed_at: None,
        }));
        (*wal).base.pMethods = &METHODS;
        ffi::SQLITE_OK
    }
}

/// The wrapped file and the buffer of a file opened by [`x_open`] as a WAL. Each method takes
/// them once.
///
/// # Safety
/// `file` must be a WAL file opened by [`x_open`] and not yet closed, and no other reference
/// to its buffer may be live.
unsafe fn parts<'a>(file: *mut ffi::sqlite3_file) -> (*mut ffi::sqlite3_file, &'a mut Pending) {
    // SAFETY: per the contract, `file` is a WalFile whose `pending` is a live Box; SQLite calls
    // a file's methods from one thread at a time.
    unsafe {
        let wal = file.cast::<WalFile>();
        ((*wal).real, &mut *(*wal).pending)
    }
}

/// The wrapped file's methods.
///
/// # Safety
/// `real` must be an open file of the default VFS.
unsafe fn methods<'a>(real: *mut ffi::sqlite3_file) -> &'a ffi::sqlite3_io_methods {
    // SAFETY: an open file's pMethods points to its VFS's static method table.
    unsafe { &*(*real).pMethods }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    let Ok(len) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let end = offset.saturating_add(i64::from(amount));
    // SAFETY: SQLite calls this on a file opened by x_open, with `amount` readable bytes.
    unsafe {
        let (real, p) = parts(file);
        // The WAL header at offset 0 starts the file anew (created, or restarted after a
        // checkpoint): frames follow it from offset 32.
        if offset == 0 {
            p.high = 0;
        }
        // After a lost write only SQLite's next transaction, written from before the loss on,
        // goes through.
        if let Some(f) = p.failed_at {
            if offset > f {
                return ffi::SQLITE_IOERR_WRITE;
            }
            p.failed_at = None;
        }
        if !p.coalesce || offset < p.high {
            let rc = p.flush(real);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            p.high = p.high.max(end);
            counted();
            return match methods(real).xWrite {
                Some(write) => write(real, data, amount, offset),
                None => ffi::SQLITE_IOERR_WRITE,
            };
        }
        let buffered_end = p.at.saturating_add(p.buf.len() as i64);
        if !p.buf.is_empty() && (offset != buffered_end || p.buf.len() + len > CAP) {
            let rc = p.flush(real);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if p.buf.is_empty() {
            p.at = offset;
        }
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len);
        p.buf.extend_from_slice(bytes);
        p.high = p.high.max(end);
        // A frame header: bytes 4..8 are the database's size after the commit, for the frame
        // that commits a transaction, and zero for every other frame.
        if len == FRAME_HEADER && bytes[4..8] != [0; 4] {
            p.commit_page = Some(end);
        }
        if p.commit_page == Some(offset) {
            p.commit_page = None;
            return p.flush(real);
        }
        if p.buf.len() >= CAP {
            return p.flush(real);
        }
        ffi::SQLITE_OK
    }
}

/// Defines a method that hands the buffer over first, then (after `check`, which may answer
/// instead, given the buffer's state as `$p`) calls the wrapped file's.
macro_rules! after_flush {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*), $missing:expr $(, |$p:ident| $check:block)?) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            // SAFETY: SQLite calls this on a file opened by x_open.
            unsafe {
                let (real, pending) = parts(file);
                let rc = pending.flush(real);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                $(let $p = &mut *pending; $check)?
                match methods(real).$field {
                    Some(f) => f(real $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

// Nothing is read from what could not be written, and nothing synced over it.
after_flush!(x_read, xRead, (buf: *mut c_void, amount: c_int, offset: i64), ffi::SQLITE_IOERR_READ, |p| {
    if p.touches_lost(offset.saturating_add(i64::from(amount))) {
        return ffi::SQLITE_IOERR_READ;
    }
});
after_flush!(x_sync, xSync, (flags: c_int), ffi::SQLITE_IOERR_FSYNC, |p| {
    if p.failed_at.is_some() {
        return ffi::SQLITE_IOERR_FSYNC;
    }
});
after_flush!(x_truncate, xTruncate, (size: i64), ffi::SQLITE_IOERR_TRUNCATE, |p| {
    p.high = p.high.min(size);
});
// SQLite takes locks and maps the WAL index through the database's handle, not the WAL's:
// these are here for completeness.
after_flush!(x_file_size, xFileSize, (size: *mut i64), ffi::SQLITE_IOERR_FSTAT);
after_flush!(x_lock, xLock, (level: c_int), ffi::SQLITE_OK);
after_flush!(x_unlock, xUnlock, (level: c_int), ffi::SQLITE_OK);
after_flush!(x_check_reserved_lock, xCheckReservedLock, (out: *mut c_int), ffi::SQLITE_OK);
after_flush!(x_file_control, xFileControl, (op: c_int, arg: *mut c_void), ffi::SQLITE_NOTFOUND);
after_flush!(x_shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, out: *mut *mut c_void), ffi::SQLITE_IOERR_SHMMAP);
after_flush!(x_shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int), ffi::SQLITE_IOERR_SHMLOCK);
after_flush!(x_shm_unmap, xShmUnmap, (delete: c_int), ffi::SQLITE_OK);
after_flush!(x_unfetch, xUnfetch, (offset: i64, p: *mut c_void), ffi::SQLITE_OK);

unsafe extern "C" fn x_fetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    amount: c_int,
    out: *mut *mut c_void,
) -> c_int {
    // SAFETY: SQLite calls this on a file opened by x_open; `out` is writable.
    unsafe {
        let (real, p) = parts(file);
        let rc = p.flush(real);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        match methods(real).xFetch {
            Some(f) if methods(real).iVersion >= 3 => f(real, offset, amount, out),
            // No memory map: SQLite reads instead.
            _ => {
                *out = std::ptr::null_mut();
                ffi::SQLITE_OK
            }
        }
    }
}

unsafe extern "C" fn x_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this on a file opened by x_open.
    unsafe {
        let (real, _) = parts(file);
        methods(real).xSectorSize.map_or(4096, |f| f(real))
    }
}

unsafe extern "C" fn x_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this on a file opened by x_open.
    unsafe {
        let (real, _) = parts(file);
        methods(real).xDeviceCharacteristics.map_or(0, |f| f(real))
    }
}

unsafe extern "C" fn x_shm_barrier(file: *mut ffi::sqlite3_file) {
    // SAFETY: SQLite calls this on a file opened by x_open.
    unsafe {
        let (real, p) = parts(file);
        // A failure is remembered: the next write or sync reports it.
        let _ = p.flush(real);
        if let Some(f) = methods(real).xShmBarrier {
            f(real);
        }
    }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: SQLite calls this once, last, on a file opened by x_open; the buffer's Box is
    // freed here and the handle is not used again.
    unsafe {
        let (real, p) = parts(file);
        let flushed = p.flush(real);
        let closed = match methods(real).xClose {
            Some(f) => f(real),
            None => ffi::SQLITE_OK,
        };
        let wal = file.cast::<WalFile>();
        drop(Box::from_raw((*wal).pending));
        (*wal).pending = std::ptr::null_mut();
        (*wal).base.pMethods = std::ptr::null();
        if flushed != ffi::SQLITE_OK {
            flushed
        } else {
            closed
        }
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};

#[cfg(test)]
mod tests;
