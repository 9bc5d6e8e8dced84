//! What every Agent Assist service links: configuration, telemetry, the gRPC server and client sides,
//! token verification, database access and the one error type. Free of any one service's rules.

pub mod audit;
pub mod auth;
pub mod client;
pub mod config;
pub mod db;
pub mod error;
pub mod keys;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod sessions;
pub mod settings;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod validate;
pub mod web;

pub use error::{Error, Result};
