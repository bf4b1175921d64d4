//! Attacks on the resources a call may use: memory the host allocates for
//! the plugin, the granted directory's files and bytes, links, and file
//! operations that take long. Each answers what it managed, so that a test
//! sees the attack was really made, and how it was stopped.

use ledgerbridge_sdk::bindings::wasi::http::types::Fields;
use ledgerbridge_sdk::*;
use std::io::Write as _;

fn found(id: String) -> Result<Option<Entry>, ConnectorError> {
    Ok(Some(Entry {
        id,
        version: None,
        state: EntryState::Open,
        total: None,
    }))
}

fn number(ctx: &Context, name: &str, default: usize) -> usize {
    ctx.setting(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn refused(mode: &str, message: String) -> Result<Option<Entry>, ConnectorError> {
    Err(ConnectorError::validation(mode, message))
}

unsafe extern "C" {
    /// wasi-libc's `symlink`, which calls `wasi:filesystem` `symlink-at`
    /// (`std::os::wasi::fs::symlink_path` is not stable).
    #[link_name = "symlink"]
    fn libc_symlink(target: *const std::ffi::c_char, path: *const std::ffi::c_char) -> i32;
}

fn symlink(target: &std::ffi::CStr, path: &std::ffi::CStr) -> std::io::Result<()> {
    // SAFETY: both are NUL-terminated strings that outlive the call.
    match unsafe { libc_symlink(target.as_ptr(), path.as_ptr()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// The attack `mode` makes, or `None` when it is not one of these.
pub fn attack(ctx: &Context, mode: &str) -> Option<Result<Option<Entry>, ConnectorError>> {
    Some(match mode {
        // Header fields held by the host: `count` of `kib` KiB each, all kept.
        "header-fields" => {
            let (count, kib) = (number(ctx, "count", 15_000), number(ctx, "kib", 120));
            let value = vec![b'h'; kib << 10];
            let mut held = Vec::new();
            for i in 0..count {
                match Fields::from_list(&[(format!("x-hoard-{i}"), value.clone())]) {
                    Ok(f) => held.push(f),
                    Err(e) => {
                        return Some(refused(
                            "header-fields",
                            format!("after {} fields: {e:?}", held.len()),
                        ));
                    }
                }
            }
            found(format!("held {} fields", held.len()))
        }
        // Files in the granted directory, one after the other, until `count`
        // or a refusal.
        "many-files" => {
            let count = number(ctx, "count", 1_000_000);
            let _ = std::fs::create_dir("/data/many");
            for i in 0..count {
                if let Err(e) = std::fs::write(format!("/data/many/{i}"), b"x") {
                    return Some(refused("many-files", format!("after {i} files: {e}")));
                }
            }
            found(format!("created {count} files"))
        }
        // Bytes into one file, 64 KiB at a time, until `kib` or a refusal.
        "many-bytes" => {
            let kib = number(ctx, "kib", 4 << 20);
            let chunk = vec![b'b'; 64 << 10];
            let mut f = match std::fs::File::create("/data/big.bin") {
                Ok(f) => f,
                Err(e) => return Some(refused("many-bytes", format!("cannot create: {e}"))),
            };
            let mut written = 0;
            while written < kib {
                if let Err(e) = f.write_all(&chunk) {
                    return Some(refused(
                        "many-bytes",
                        format!("after {written} KiB: {e}"),
                    ));
                }
                written += 64;
            }
            found(format!("wrote {written} KiB"))
        }
        // A symbolic link out of the grant, and a hard link inside it.
        "links" => {
            let _ = std::fs::write("/data/target.txt", "t");
            let symlink = symlink(c"/etc/passwd", c"/data/escape");
            let hard = std::fs::hard_link("/data/target.txt", "/data/hard.txt");
            match (symlink, hard) {
                (Err(s), Err(h)) => refused("links", format!("symlink: {s}; hard link: {h}")),
                (s, h) => found(format!("LINKED symlink {s:?} hard link {h:?}")),
            }
        }
        // Lists `/data/big` over and over: a long directory operation.
        "list-dir" => {
            let mut rounds = 0u64;
            loop {
                match std::fs::read_dir("/data/big") {
                    Ok(d) => {
                        let n = d.count();
                        std::hint::black_box(n);
                    }
                    Err(e) => return Some(refused("list-dir", format!("cannot list: {e}"))),
                }
                rounds += 1;
                std::hint::black_box(rounds);
            }
        }
        // Marks that it started, then reads `/data/fifo`, a named pipe nobody
        // writes to yet: the open blocks in the host until a writer comes.
        "read-fifo" => {
            if let Err(e) = std::fs::write("/data/started", "") {
                return Some(refused("read-fifo", format!("cannot mark the start: {e}")));
            }
            match std::fs::read("/data/fifo") {
                Ok(b) => found(format!("read {} bytes from the fifo", b.len())),
                Err(e) => refused("read-fifo", e.to_string()),
            }
        }
        _ => return None,
    })
}
