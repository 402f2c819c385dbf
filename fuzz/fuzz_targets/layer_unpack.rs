//! The layer unpacker on raw bytes, through the path a pull uses: the input is written as a
//! layer blob (plain tar, gzip or zstd, told by its first bytes) and applied on an empty root.
//!
//! Checks: no panic, no allocation past libFuzzer's `-malloc_limit_mb`, and nothing created,
//! linked or written outside the root (see `common/jail.rs`) whatever the tar holds: `..`,
//! absolute paths, symbolic links leading out, hard links to host files, device files, huge
//! headers.
#![no_main]

#[path = "common/jail.rs"]
mod jail;

use container_runtime_interface::fuzzing::apply_layer_blob;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let jail = jail::jail();
    jail.reset();
    std::fs::write(&jail.blob, data).unwrap();
    let _ = apply_layer_blob(&jail.root, &jail.blob);
    jail.check();
});
