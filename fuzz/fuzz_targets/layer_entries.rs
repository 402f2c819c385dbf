//! The layer unpacker on well-formed tars built from arbitrary entries (`arbitrary`), so that
//! the fuzzer spends its time on what the unpacker does with entries rather than on tar
//! checksums: paths with `..`, absolute paths, whiteouts and opaque markers, symbolic links
//! (relative, absolute, climbing, chained), hard links, device nodes and FIFOs, GNU sparse
//! files, odd entry types, and names long enough to need GNU long-name or PAX headers. Up to
//! three layers are applied on the same root, as a pull does, so that whiteouts and links
//! meet lower layers' content.
//!
//! Checks: no panic, and nothing created, linked or written outside the root (see
//! `common/jail.rs`).
#![no_main]

#[path = "common/jail.rs"]
mod jail;

use arbitrary::Arbitrary;
use container_runtime_interface::fuzzing::apply_layer;
use libfuzzer_sys::fuzz_target;

/// Names the paths are made of: short ones collide, which is what whiteouts and links need;
/// the last ones lead to the jail's `outside` directory by an absolute path.
const NAMES: [&str; 12] = [
    "a",
    "b",
    "c",
    "etc",
    "bin",
    "usr",
    "dev",
    "x",
    "tmp",
    "orchestrator-fuzz",
    "outside",
    "canary",
];

#[derive(Arbitrary, Debug)]
enum Part {
    Name(u8),
    Dot,
    DotDot,
    Empty,
    Whiteout(u8),
    Opaque,
    /// A long component (up to 300 bytes; past 255 the kernel refuses it).
    Long(u16),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct PathSpec {
    absolute: bool,
    parts: Vec<Part>,
    trailing_slash: bool,
}

impl PathSpec {
    fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.absolute {
            out.push(b'/');
        }
        for (i, part) in self.parts.iter().take(12).enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            match part {
                Part::Name(n) => out.extend(NAMES[usize::from(*n) % NAMES.len()].as_bytes()),
                Part::Dot => out.push(b'.'),
                Part::DotDot => out.extend(b".."),
                Part::Empty => {}
                Part::Whiteout(n) => {
                    out.extend(b".wh.");
                    out.extend(NAMES[usize::from(*n) % NAMES.len()].as_bytes());
                }
                Part::Opaque => out.extend(b".wh..wh..opq"),
                Part::Long(n) => out.extend(std::iter::repeat_n(b'l', usize::from(*n) % 300 + 1)),
                Part::Raw(bytes) => out.extend(bytes.iter().take(64).filter(|&&b| b != 0)),
            }
        }
        if self.trailing_slash {
            out.push(b'/');
        }
        out
    }
}

#[derive(Arbitrary, Debug)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(PathSpec),
    HardLink(PathSpec),
    Char(u16, u16),
    Block(u16, u16),
    Fifo,
    /// A GNU sparse file: up to four chunks of data at offsets, in a file of `real` bytes.
    Sparse {
        chunks: Vec<(u16, Vec<u8>)>,
        real: u32,
    },
    /// Any other type byte (`7`, `g`, `x`, `L`, `K`, ...), with this content.
    Other(u8, Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Style {
    Gnu,
    Ustar,
    Pax,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    path: PathSpec,
    kind: Kind,
    style: Style,
    mode: u16,
    uid: u32,
    gid: u32,
    mtime: u32,
}

#[derive(Arbitrary, Debug)]
struct Input {
    layers: Vec<Vec<Entry>>,
    /// Whether each layer ends with the two zero blocks (some builders omit them).
    end_blocks: bool,
}

/// Writes `value` in octal, zero-padded and NUL-terminated, into a numeric header field.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    let text = &text.as_bytes()[text.len().saturating_sub(digits)..];
    field[..digits].copy_from_slice(text);
    field[digits] = 0;
}

fn pad(out: &mut Vec<u8>) {
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// An extension header (`L`, `K`, `x`) carrying `data` for the entry after it.
fn extension(out: &mut Vec<u8>, gnu: bool, kind: u8, data: &[u8]) {
    let mut h = if gnu {
        tar::Header::new_gnu()
    } else {
        tar::Header::new_ustar()
    };
    let name: &[u8] = if gnu {
        b"././@LongLink"
    } else {
        b"PaxHeaders/x"
    };
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_cksum();
    out.extend(h.as_bytes());
    out.extend(data);
    pad(out);
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // " ", "=", "\n"
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len += 1;
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend(value);
    record.push(b'\n');
    record
}

fn write_entry(out: &mut Vec<u8>, entry: &Entry) {
    let path = entry.path.render();
    let gnu = matches!(entry.style, Style::Gnu);
    let mut h = if gnu {
        tar::Header::new_gnu()
    } else {
        tar::Header::new_ustar()
    };
    let mut data: Vec<u8> = Vec::new();
    let mut link: Vec<u8> = Vec::new();
    let kind = match &entry.kind {
        Kind::File(bytes) => {
            data.extend(bytes);
            tar::EntryType::Regular
        }
        Kind::Dir => tar::EntryType::Directory,
        Kind::Symlink(target) => {
            link = target.render();
            tar::EntryType::Symlink
        }
        Kind::HardLink(target) => {
            link = target.render();
            tar::EntryType::Link
        }
        Kind::Char(major, minor) | Kind::Block(major, minor) => {
            h.set_device_major(u32::from(*major)).unwrap();
            h.set_device_minor(u32::from(*minor)).unwrap();
            if matches!(entry.kind, Kind::Char(..)) {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            }
        }
        Kind::Fifo => tar::EntryType::Fifo,
        Kind::Sparse { chunks, real } => {
            // Only a GNU header has a sparse map.
            h = tar::Header::new_gnu();
            let g = h.as_gnu_mut().unwrap();
            let mut end = 0u64;
            for (slot, (gap, bytes)) in g.sparse.iter_mut().zip(chunks.iter().take(4)) {
                let offset = end + u64::from(*gap);
                octal(&mut slot.offset, offset);
                octal(&mut slot.numbytes, bytes.len() as u64);
                data.extend(bytes);
                end = offset + bytes.len() as u64;
            }
            // A real size past the data, bounded so that runs stay fast (the unpacker writes
            // holes out in full; see jail.rs).
            octal(&mut g.realsize, end + u64::from(*real) % (1 << 20));
            tar::EntryType::GNUSparse
        }
        Kind::Other(kind, bytes) => {
            data.extend(bytes);
            tar::EntryType::new(*kind)
        }
    };
    let sparse = kind == tar::EntryType::GNUSparse;
    let gnu = gnu || sparse;
    if path.len() > 100 || link.len() > 100 {
        match entry.style {
            Style::Gnu => {
                if path.len() > 100 {
                    let mut name = path.clone();
                    name.push(0);
                    extension(out, true, b'L', &name);
                }
                if link.len() > 100 {
                    let mut name = link.clone();
                    name.push(0);
                    extension(out, true, b'K', &name);
                }
            }
            Style::Pax | Style::Ustar => {
                let mut records = Vec::new();
                if path.len() > 100 {
                    records.extend(pax_record("path", &path));
                }
                if link.len() > 100 {
                    records.extend(pax_record("linkpath", &link));
                }
                extension(out, gnu, b'x', &records);
            }
        }
    }
    let name = &path[..path.len().min(100)];
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    let link = &link[..link.len().min(100)];
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_mode(u32::from(entry.mode) & 0o7777);
    h.set_uid(u64::from(entry.uid));
    h.set_gid(u64::from(entry.gid));
    h.set_mtime(u64::from(entry.mtime));
    h.set_size(data.len() as u64);
    h.set_cksum();
    out.extend(h.as_bytes());
    out.extend(&data);
    pad(out);
}

fuzz_target!(|input: Input| {
    let jail = jail::jail();
    jail.reset();
    for entries in input.layers.iter().take(3) {
        let mut tar = Vec::new();
        for entry in entries.iter().take(32) {
            write_entry(&mut tar, entry);
        }
        if input.end_blocks {
            tar.extend([0; 1024]);
        }
        let result = apply_layer(&jail.root, &tar);
        jail.check();
        if result.is_err() {
            break;
        }
    }
});
