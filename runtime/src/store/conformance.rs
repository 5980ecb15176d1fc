//! The conformance suite every [`Store`](super::Store) backend runs.
