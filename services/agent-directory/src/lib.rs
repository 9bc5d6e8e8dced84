//! The agent-directory service: agent profiles and who may assist whom.
