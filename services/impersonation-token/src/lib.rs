//! The impersonation-token service.
