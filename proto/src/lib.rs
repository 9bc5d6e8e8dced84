//! Generated protobuf messages and gRPC clients and servers of every Agent Assist service.

/// Encoded `FileDescriptorSet` of every package here, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("assist_descriptor");

pub mod common {
    //! `assist.common.v1`: paging and published keys, shared by every service.
    pub mod v1 {
        #![allow(clippy::all)]
        tonic::include_proto!("assist.common.v1");
    }
}

pub mod identity {
    //! `assist.identity.v1`: principals, credentials, tokens, keys, one-time tokens, search.
    pub mod v1 {
        #![allow(clippy::all)]
        tonic::include_proto!("assist.identity.v1");
    }
}

pub mod agentdirectory {
    //! `assist.agentdirectory.v1`: agent profiles and assist capabilities.
    pub mod v1 {
        #![allow(clippy::all)]
        tonic::include_proto!("assist.agentdirectory.v1");
    }
}

pub mod impersonation {
    //! `assist.impersonation.v1`: assist sessions, impersonation tokens, revocations and audit.
    pub mod v1 {
        #![allow(clippy::all)]
        tonic::include_proto!("assist.impersonation.v1");
    }
}
