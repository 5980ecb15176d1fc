//! placeholder, replaced by the sandbox work.
