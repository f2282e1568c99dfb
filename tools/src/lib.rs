//! Library half of the operator tools: the code of `tessera-bench` lives here so its
//! integration tests and the binary share it.
pub mod bench;
