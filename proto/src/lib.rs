//! Generated protobuf messages and gRPC clients and servers of every Agent Assist service.

/// Encoded `FileDescriptorSet` of every package here, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("assist_descriptor");

pub mod identity {
    //! `assist.identity.v1`: principals, credentials, tokens, keys, one-time tokens, search.
    pub mod v1 {
        #![allow(clippy::all)]
        tonic::include_proto!("assist.identity.v1");
    }
}
