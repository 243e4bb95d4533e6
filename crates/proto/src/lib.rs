//! The wire contract of Lägesbild, generated from the `.proto` files in `proto/`.
//!
//! This crate holds generated code and the conversions between the two wire
//! forms of released values (`columns`); behaviour lives in the crates that use it.
//! The protos are compiled at build time by protox, so no system `protoc` is needed.

/// Version 1 of the Lägesbild protocol (`lagesbild.v1`).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("lagesbild.v1");
}

/// The encoded `FileDescriptorSet` of every Lägesbild proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/lagesbild_descriptor.bin"));

pub mod columns;
