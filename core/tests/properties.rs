//! Property tests (work in progress).
