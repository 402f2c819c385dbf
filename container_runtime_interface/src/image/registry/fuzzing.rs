//! Entry points for the fuzz targets of `fuzz/` (feature `fuzzing`): thin wrappers over the
//! crate-private functions they exercise, so that nothing else has to be made public.

use super::super::UnpackError;
use std::path::Path;

/// Applies the layer tar in `bytes` on the directory `root` (see `unpack::apply_layer`).
pub fn apply_layer(root: &Path, bytes: &[u8]) -> Result<(), UnpackError> {
    super::unpack::apply_layer(root, bytes)
}

/// Applies the layer blob at `blob` (gzip, zstd or plain tar) on `root`, as a pull does.
pub fn apply_layer_blob(root: &Path, blob: &Path) -> Result<(), UnpackError> {
    super::unpack::apply_layer_blob(root, blob)
}

/// Most bytes of headers the unpacker reads before one entry.
pub const MAX_HEADER_BYTES: u64 = super::unpack::MAX_HEADER_BYTES;
