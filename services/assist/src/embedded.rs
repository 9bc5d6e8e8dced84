//! Where the embedded mode keeps its state: a data directory with SQLite files and the generated
//! key-encryption key, unless a database URL and key are given.

use std::path::PathBuf;

use anyhow::Context;
use assist_identity::domain::keys::KeyEncryptionKey;
use assist_identity::service::Identity;
use assist_identity::store::Store;
use assist_runtime::db::{Database, PoolSize};

#[derive(clap::Args, Clone, Debug)]
pub struct Storage {
    /// Data directory of the embedded mode.
    #[arg(long, env = "ASSIST_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,
    /// Database of the identity service; defaults to `sqlite://<data-dir>/identity.db`.
    #[arg(long, env = "ASSIST_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// Key-encryption key (base64 of 32 bytes); defaults to `<data-dir>/identity.kek`, created on first use.
    #[arg(
        long,
        env = "ASSIST_IDENTITY_KEY_ENCRYPTION_KEY",
        hide_env_values = true,
        global = true
    )]
    pub key_encryption_key: Option<String>,
    /// Database of agent-directory; defaults to `sqlite://<data-dir>/agent-directory.db`.
    #[arg(long, env = "ASSIST_AGENT_DIRECTORY_DATABASE_URL", global = true)]
    pub agent_directory_database_url: Option<String>,
    /// Database of impersonation-token; defaults to `sqlite://<data-dir>/impersonation.db`.
    #[arg(long, env = "ASSIST_IMPERSONATION_DATABASE_URL", global = true)]
    pub impersonation_database_url: Option<String>,
    /// Database of conversation routing; defaults to `sqlite://<data-dir>/routing.db`.
    #[arg(long, env = "ASSIST_CONVERSATION_ROUTING_DATABASE_URL", global = true)]
    pub routing_database_url: Option<String>,
    /// Key-encryption key of impersonation-token's signing keys; defaults to
    /// `<data-dir>/impersonation.kek`, created on first use.
    #[arg(
        long,
        env = "ASSIST_IMPERSONATION_KEY_ENCRYPTION_KEY",
        hide_env_values = true,
        global = true
    )]
    pub impersonation_key_encryption_key: Option<String>,
}

impl Storage {
    /// Identity's database.
    pub fn database_url(&self) -> anyhow::Result<String> {
        self.url_or_file(&self.database_url, "identity.db")
    }

    pub fn agent_directory_database_url(&self) -> anyhow::Result<String> {
        self.url_or_file(&self.agent_directory_database_url, "agent-directory.db")
    }

    pub fn impersonation_database_url(&self) -> anyhow::Result<String> {
        self.url_or_file(&self.impersonation_database_url, "impersonation.db")
    }

    pub fn routing_database_url(&self) -> anyhow::Result<String> {
        self.url_or_file(&self.routing_database_url, "routing.db")
    }

    fn url_or_file(&self, given: &Option<String>, file: &str) -> anyhow::Result<String> {
        match given {
            Some(url) => Ok(url.clone()),
            None => {
                std::fs::create_dir_all(&self.data_dir)
                    .with_context(|| format!("creating {}", self.data_dir.display()))?;
                Ok(format!("sqlite://{}", self.data_dir.join(file).display()))
            }
        }
    }

    /// Identity's key-encryption key: given, or read from (or first written to) the data directory
    /// with owner-only permissions.
    pub fn key_encryption_key(&self) -> anyhow::Result<String> {
        self.secret_or_file(&self.key_encryption_key, "identity.kek", || {
            Ok(KeyEncryptionKey::generate_base64()?)
        })
    }

    pub fn impersonation_key_encryption_key(&self) -> anyhow::Result<String> {
        self.secret_or_file(
            &self.impersonation_key_encryption_key,
            "impersonation.kek",
            || Ok(KeyEncryptionKey::generate_base64()?),
        )
    }

    /// The key that seals the gateway's browser cookies: kept in the data directory so sign-ins
    /// survive a restart.
    pub fn gateway_cookie_key(&self) -> anyhow::Result<String> {
        self.secret_or_file(&None, "gateway-cookie.key", || {
            Ok(KeyEncryptionKey::generate_base64()?)
        })
    }

    /// A secret given, or kept in `file` of the data directory (created by `make` on first use).
    fn secret_or_file(
        &self,
        given: &Option<String>,
        file: &str,
        make: impl FnOnce() -> anyhow::Result<String>,
    ) -> anyhow::Result<String> {
        if let Some(value) = given {
            return Ok(value.clone());
        }
        let path = self.data_dir.join(file);
        if let Ok(existing) = std::fs::read_to_string(&path) {
            return Ok(existing.trim().to_owned());
        }
        std::fs::create_dir_all(&self.data_dir)?;
        let value = make()?;
        write_private(&path, &value).with_context(|| format!("writing {}", path.display()))?;
        Ok(value)
    }

    /// The identity use cases over this storage, for operator commands.
    pub async fn identity(&self) -> anyhow::Result<Identity> {
        let db = Database::connect(&self.database_url()?, PoolSize(8)).await?;
        db.migrate(&assist_identity::store::MIGRATIONS).await?;
        let kek = KeyEncryptionKey::from_base64(&self.key_encryption_key()?)
            .context("the key-encryption key must be base64 of 32 bytes")?;
        Ok(Identity::new(Store::new(db), Default::default(), kek).await?)
    }
}

pub fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}

/// `assist migrate`: every service's schema.
pub async fn migrate(storage: &Storage) -> anyhow::Result<()> {
    for (service, url, migrations) in [
        (
            "identity",
            storage.database_url()?,
            &assist_identity::store::MIGRATIONS,
        ),
        (
            "agent-directory",
            storage.agent_directory_database_url()?,
            &assist_agent_directory::store::MIGRATIONS,
        ),
        (
            "impersonation-token",
            storage.impersonation_database_url()?,
            &assist_impersonation_token::store::MIGRATIONS,
        ),
        (
            "conversation-routing",
            storage.routing_database_url()?,
            &assist_conversation_routing::store::MIGRATIONS,
        ),
    ] {
        let db = Database::connect(&url, PoolSize(1)).await?;
        db.migrate(migrations).await?;
        println!("{service} schema is up to date ({})", redact(&url));
    }
    Ok(())
}

/// A database URL without its password, for printing.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
