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

        /// How a customer or merchant user is named wherever one is shown: "First Last", trimmed.
        pub fn person_name(first_name: &str, last_name: &str) -> String {
            format!("{first_name} {last_name}").trim().to_owned()
        }
    }
}

pub mod agentdirectory {
    //! `assist.agentdirectory.v1`: agent profiles and assist capabilities, the console's members and
    //! their presence.
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

pub mod routing {
    //! `assist.routing.v1`: conversations, messages, the queue and the assignment engine.
    pub mod v1 {
        #![allow(clippy::all)]
        tonic::include_proto!("assist.routing.v1");

        /// The longest conversation subject, in characters (routing enforces it; pages and the
        /// gateway's API check it first).
        pub const SUBJECT_MAX: usize = 200;
        /// The longest message body, in characters.
        pub const BODY_MAX: usize = 4_000;
    }
}
