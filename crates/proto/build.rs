//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and writes the
//! descriptor set that server reflection serves.

use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "lagesbild/v1/node.proto",
    "lagesbild/v1/reports.proto",
    "lagesbild/v1/aggregate.proto",
    "lagesbild/v1/policy.proto",
    "lagesbild/v1/picture.proto",
    "lagesbild/v1/audit.proto",
    "lagesbild/v1/events.proto",
    "lagesbild/v1/session.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let descriptors = protox::compile(PROTOS, [&root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("lagesbild_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
