//! Key encoding of the sled backend.
