//! Conformance suite. STUB: being written.
