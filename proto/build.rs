//! Compiles the `.proto` files with a vendored `protoc`, so a fresh machine needs nothing installed.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/assist/common/v1/common.proto",
    "proto/assist/identity/v1/identity.proto",
    "proto/assist/agentdirectory/v1/agentdirectory.proto",
    "proto/assist/impersonation/v1/impersonation.proto",
    "proto/assist/routing/v1/routing.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("assist_descriptor.bin"))
        .compile_with_config(config, PROTOS, &["proto"])?;
    Ok(())
}
