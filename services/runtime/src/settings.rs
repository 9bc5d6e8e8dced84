//! The settings every service shares, declared once. Each macro makes a `clap::Args` struct whose
//! variables carry the service's prefix (`ASSIST_IDENTITY_LISTEN`, …); a service flattens the ones it
//! uses into its `Config` and calls their `check`, which names the variable of a bad value.

/// How a gRPC service listens, bounds work and stops: `ServerArgs`, checked into
/// [`ServerSettings`](crate::server::ServerSettings).
#[macro_export]
macro_rules! server_settings {
    (prefix = $prefix:literal, listen = $listen:literal) => {
        /// How this service listens, bounds work and stops.
        #[derive(Debug, Clone, clap::Args)]
        pub struct ServerArgs {
            /// gRPC listen address.
            #[arg(long, env = concat!($prefix, "_LISTEN"), default_value = $listen)]
            pub listen: std::net::SocketAddr,
            /// Prometheus `/metrics` listen address; none when unset.
            #[arg(long, env = concat!($prefix, "_METRICS_LISTEN"))]
            pub metrics_listen: Option<std::net::SocketAddr>,
            /// Longest a call may run (and the timeout of this service's own outgoing calls).
            #[arg(long, env = concat!($prefix, "_REQUEST_TIMEOUT_SECS"), default_value_t = 10)]
            pub request_timeout_secs: u64,
            /// Calls served at once; more are shed with UNAVAILABLE.
            #[arg(long, env = concat!($prefix, "_MAX_CONCURRENT_REQUESTS"), default_value_t = 1024)]
            pub max_concurrent_requests: usize,
            /// How long in-flight calls may finish after shutdown begins.
            #[arg(long, env = concat!($prefix, "_SHUTDOWN_GRACE_SECS"), default_value_t = 10)]
            pub shutdown_grace_secs: u64,
        }

        impl ServerArgs {
            pub fn check(
                &self,
            ) -> Result<$crate::server::ServerSettings, $crate::config::ConfigError> {
                Ok($crate::server::ServerSettings {
                    metrics_listen: self.metrics_listen,
                    request_timeout: $crate::config::positive_secs(
                        self.request_timeout_secs,
                        concat!($prefix, "_REQUEST_TIMEOUT_SECS"),
                    )?,
                    max_concurrent_requests: self.max_concurrent_requests.max(1),
                    shutdown_grace: std::time::Duration::from_secs(self.shutdown_grace_secs),
                })
            }
        }
    };
}

/// Where a service keeps its data: `DatabaseArgs`.
#[macro_export]
macro_rules! database_settings {
    (prefix = $prefix:literal) => {
        /// Where this service keeps its data.
        #[derive(Debug, Clone, clap::Args)]
        pub struct DatabaseArgs {
            /// `postgres://…` or `sqlite://path`.
            #[arg(long, env = concat!($prefix, "_DATABASE_URL"))]
            pub database_url: String,
            /// Connections in the pool.
            #[arg(long, env = concat!($prefix, "_DATABASE_POOL_SIZE"), default_value_t = 16)]
            pub database_pool_size: u32,
        }

        impl DatabaseArgs {
            pub fn check(&self) -> Result<(), $crate::config::ConfigError> {
                $crate::config::database_url(
                    &self.database_url,
                    concat!($prefix, "_DATABASE_URL"),
                )?;
                if self.database_pool_size == 0 {
                    return Err($crate::config::ConfigError::new(
                        concat!($prefix, "_DATABASE_POOL_SIZE"),
                        "must be greater than 0",
                    ));
                }
                Ok(())
            }

            /// The database, migrated with `migrations` (retried while it is unreachable).
            pub async fn open<T>(
                &self,
                ready: &$crate::startup::Ready<T>,
                migrations: &$crate::db::Migrations,
            ) -> Result<$crate::db::Database, $crate::startup::StartError> {
                ready
                    .database(
                        &self.database_url,
                        $crate::db::PoolSize(self.database_pool_size),
                        migrations,
                    )
                    .await
            }
        }
    };
}

/// How a service calls identity and verifies identity's tokens: `CallerArgs`. `client_id` gives the
/// service account's default id; without it the id is required.
#[macro_export]
macro_rules! caller_settings {
    (prefix = $prefix:literal $(, client_id = $client_id:literal)?) => {
        /// How this service calls identity, as which service account, and which tokens it accepts.
        #[derive(Debug, Clone, clap::Args)]
        pub struct CallerArgs {
            /// The identity service: its keys verify tokens, and it issues this service's token.
            #[arg(
                long,
                env = concat!($prefix, "_IDENTITY_URL"),
                default_value = "http://127.0.0.1:50051"
            )]
            pub identity_url: String,
            /// The service account this service calls as.
            #[arg(long, env = concat!($prefix, "_CLIENT_ID") $(, default_value = $client_id)?)]
            pub client_id: String,
            #[arg(long, env = concat!($prefix, "_CLIENT_SECRET"), hide_env_values = true)]
            pub client_secret: String,
            /// The `aud` every accepted token carries.
            #[arg(long, env = concat!($prefix, "_AUDIENCE"), default_value = "agent-assist")]
            pub audience: String,
            /// The `iss` of identity's tokens.
            #[arg(
                long,
                env = concat!($prefix, "_IDENTITY_ISSUER"),
                default_value = "assist-identity"
            )]
            pub identity_issuer: String,
        }

        impl CallerArgs {
            pub fn check(&self) -> Result<(), $crate::config::ConfigError> {
                $crate::config::http_url(&self.identity_url, concat!($prefix, "_IDENTITY_URL"))?;
                for (value, variable) in [
                    (&self.client_id, concat!($prefix, "_CLIENT_ID")),
                    (&self.client_secret, concat!($prefix, "_CLIENT_SECRET")),
                    (&self.audience, concat!($prefix, "_AUDIENCE")),
                    (&self.identity_issuer, concat!($prefix, "_IDENTITY_ISSUER")),
                ] {
                    if value.trim().is_empty() {
                        return Err($crate::config::ConfigError::new(
                            variable,
                            "must not be empty",
                        ));
                    }
                }
                Ok(())
            }

            /// This service's token from identity over `identity` (retried while identity is
            /// unreachable).
            pub async fn service_token<T>(
                &self,
                ready: &$crate::startup::Ready<T>,
                identity: $crate::client::Channel,
            ) -> Result<$crate::client::ServiceToken, $crate::startup::StartError> {
                ready
                    .service_token(identity, &self.client_id, &self.client_secret)
                    .await
            }

            /// Identity as a trusted issuer, its keys fetched over `identity`.
            pub fn identity_issuer(
                &self,
                identity: $crate::client::Channel,
            ) -> $crate::auth::TrustedIssuer {
                $crate::auth::TrustedIssuer::identity(&self.identity_issuer, identity)
            }
        }
    };
}
