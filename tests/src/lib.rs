//! Shared pieces of the end-to-end tests: the whole platform in one process (`platform`), calls to its
//! HTTP API (`http_api`) and the routing churn run (`churn`, run small here and at full size by the
//! load generator in `bench/`).

pub mod churn;
pub mod http_api;
pub mod platform;
