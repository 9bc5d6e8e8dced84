//! Signing keys of token issuers (identity, impersonation): Ed25519 key pairs, their private halves
//! encrypted at rest under a key-encryption key, their table, the ring a replica signs with, EdDSA JWT
//! signing and the public JWKS.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use std::sync::{Arc, RwLock};

use crate::auth::{Claims, PublicKey};
use crate::db::{Database, WriteTransaction};
use crate::{Error, Result};

/// A 32-byte XChaCha20-Poly1305 key: encrypts signing keys at rest, and the gateway's cookies.
#[derive(Clone)]
pub struct KeyEncryptionKey([u8; 32]);

impl KeyEncryptionKey {
    /// From base64 (standard alphabet) of exactly 32 bytes.
    pub fn from_base64(value: &str) -> Option<Self> {
        let bytes = STANDARD.decode(value.trim()).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// A fresh random key, as base64.
    pub fn generate_base64() -> Result<String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| Error::internal(anyhow::anyhow!("rng: {e}")))?;
        Ok(STANDARD.encode(bytes))
    }

    /// A key for another purpose derived from this one (HMAC-SHA256 keyed with it over `label`):
    /// whoever lacks this key cannot compute it, and different labels give unrelated keys.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC takes a key of any length");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Encrypts and authenticates `plaintext`, binding it to `kid` (associated data: it opens only
    /// under the same `kid`): base64 of nonce || ciphertext.
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<String> {
        let cipher = XChaCha20Poly1305::new(&self.0.into());
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| Error::internal(anyhow::anyhow!("rng: {e}")))?;
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| Error::internal(anyhow::anyhow!("sealing {kid} failed")))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// The plaintext `seal` sealed under `kid`; an error for another key, another `kid` or any change.
    pub fn open(&self, kid: &str, sealed: &str) -> Result<Vec<u8>> {
        let wrong = || {
            Error::internal(anyhow::anyhow!(
                "{kid} cannot be decrypted: wrong key or damaged data"
            ))
        };
        let bytes = STANDARD.decode(sealed).map_err(|_| wrong())?;
        if bytes.len() < 24 {
            return Err(wrong());
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        XChaCha20Poly1305::new(&self.0.into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: kid.as_bytes(),
                },
            )
            .map_err(|_| wrong())
    }
}

/// A signing key as stored: its private half sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub sealed_private_key: String,
    /// base64url of the 32-byte public key (the JWK `x`).
    pub public_key: String,
    pub created_at_us: i64,
    pub retired_at_us: Option<i64>,
    /// After this time the public key leaves the JWKS; `None` while the key is active.
    pub publish_until_us: Option<i64>,
}

/// A key that can sign.
pub struct ActiveKey {
    pub kid: String,
    encoding: EncodingKey,
    header: Header,
}

impl ActiveKey {
    /// Signs claims into a compact JWS.
    pub fn sign(&self, claims: &Claims) -> Result<String> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding).map_err(Error::internal)
    }
}

/// A new key pair, sealed for storage, and the same key ready to sign.
pub fn generate(kek: &KeyEncryptionKey, now_us: i64) -> Result<(StoredKey, ActiveKey)> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| Error::internal(anyhow::anyhow!("rng: {e}")))?;
    let signing = SigningKey::from_bytes(&seed);
    let kid = uuid::Uuid::now_v7().to_string();
    let stored = StoredKey {
        sealed_private_key: kek.seal(&kid, &seed)?,
        public_key: URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()),
        kid: kid.clone(),
        created_at_us: now_us,
        retired_at_us: None,
        publish_until_us: None,
    };
    let active = active_from_seed(kid, &seed)?;
    Ok((stored, active))
}

/// Opens a stored key for signing.
pub fn open(kek: &KeyEncryptionKey, stored: &StoredKey) -> Result<ActiveKey> {
    let seed = kek.open(&stored.kid, &stored.sealed_private_key)?;
    let seed: [u8; 32] = seed
        .try_into()
        .map_err(|_| Error::internal(anyhow::anyhow!("signing key {} is malformed", stored.kid)))?;
    active_from_seed(stored.kid.clone(), &seed)
}

fn active_from_seed(kid: String, seed: &[u8; 32]) -> Result<ActiveKey> {
    let der = SigningKey::from_bytes(seed)
        .to_pkcs8_der()
        .map_err(|e| Error::internal(anyhow::anyhow!("pkcs8: {e}")))?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.clone());
    Ok(ActiveKey {
        kid,
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        header,
    })
}

/// The public part, as a verifier needs it.
pub fn public(stored: &StoredKey) -> PublicKey {
    PublicKey {
        kid: stored.kid.clone(),
        x: stored.public_key.clone(),
    }
}

/// The JWKS JSON document (RFC 7517, Ed25519 keys per RFC 8037).
pub fn jwks_json(keys: &[PublicKey]) -> String {
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": k.kid, "x": k.x,
            })
        })
        .collect();
    serde_json::json!({ "keys": keys }).to_string()
}

/// The `signing_keys` table every issuing service has (same columns on both backends).
#[derive(Clone, Copy)]
pub struct KeyTable<'a>(pub &'a Database);

#[derive(sqlx::FromRow)]
struct KeyRow {
    kid: String,
    private_key: String,
    public_key: String,
    created_at: i64,
    retired_at: Option<i64>,
    publish_until: Option<i64>,
}

impl KeyTable<'_> {
    /// Every stored key, newest first.
    pub async fn all(&self) -> Result<Vec<StoredKey>> {
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT kid, private_key, public_key, created_at, retired_at, publish_until \
             FROM signing_keys ORDER BY created_at DESC, kid DESC",
        )
        .fetch_all(&self.0.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| StoredKey {
                kid: row.kid,
                sealed_private_key: row.private_key,
                public_key: row.public_key,
                created_at_us: row.created_at,
                retired_at_us: row.retired_at,
                publish_until_us: row.publish_until,
            })
            .collect())
    }

    /// Retires the active keys (published until `publish_until`) and makes `key` the active one.
    pub async fn rotate(&self, key: &StoredKey, now: i64, publish_until: i64) -> Result<()> {
        let mut tx = self.0.begin_write().await?;
        sqlx::query(
            "UPDATE signing_keys SET retired_at = $1, publish_until = $2 WHERE retired_at IS NULL",
        )
        .bind(now)
        .bind(publish_until)
        .execute(&mut *tx)
        .await?;
        insert_key(&mut tx, key).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores `key` as the active key only if there is none yet (first start, possibly racing replicas).
    pub async fn insert_first(&self, key: &StoredKey) -> Result<bool> {
        let mut tx = self.0.begin_write().await?;
        let active: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys WHERE retired_at IS NULL")
                .fetch_one(&mut *tx)
                .await?;
        if active > 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_key(&mut tx, key).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes retired keys that are no longer published.
    pub async fn delete_unpublished(&self, now: i64) -> Result<u64> {
        let _turn = self.0.write_turn().await;
        Ok(sqlx::query(
            "DELETE FROM signing_keys WHERE publish_until IS NOT NULL AND publish_until < $1",
        )
        .bind(now)
        .execute(&self.0.pool)
        .await?
        .rows_affected())
    }
}

async fn insert_key(tx: &mut WriteTransaction, key: &StoredKey) -> Result<()> {
    sqlx::query(
        "INSERT INTO signing_keys (kid, private_key, public_key, created_at, retired_at, publish_until) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&key.kid)
    .bind(&key.sealed_private_key)
    .bind(&key.public_key)
    .bind(key.created_at_us)
    .bind(key.retired_at_us)
    .bind(key.publish_until_us)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// How often replicas re-read signing keys (another replica may have rotated them).
pub const KEY_RELOAD: std::time::Duration = std::time::Duration::from_secs(10);

/// The keys a replica signs with and publishes, reloaded from its `signing_keys` table.
pub struct KeyRing {
    kek: KeyEncryptionKey,
    current: RwLock<Loaded>,
}

struct Loaded {
    active: Arc<ActiveKey>,
    published: Vec<PublicKey>,
}

impl KeyRing {
    /// Loads the keys, creating the first one when the table has no active key.
    pub async fn load(db: &Database, kek: KeyEncryptionKey) -> Result<Self> {
        let loaded = load(db, &kek).await?;
        Ok(Self {
            kek,
            current: RwLock::new(loaded),
        })
    }

    pub async fn reload(&self, db: &Database) -> Result<()> {
        let loaded = load(db, &self.kek).await?;
        *self.current.write().expect("key ring poisoned") = loaded;
        Ok(())
    }

    pub fn kek(&self) -> &KeyEncryptionKey {
        &self.kek
    }

    /// The key to sign with now.
    pub fn active(&self) -> Arc<ActiveKey> {
        self.current
            .read()
            .expect("key ring poisoned")
            .active
            .clone()
    }

    /// The public keys that verify tokens: the active one and retired ones still published.
    pub fn published(&self) -> Vec<PublicKey> {
        self.current
            .read()
            .expect("key ring poisoned")
            .published
            .clone()
    }
}

async fn load(db: &Database, kek: &KeyEncryptionKey) -> Result<Loaded> {
    let table = KeyTable(db);
    let now = crate::time::now_us();
    let mut stored = table.all().await?;
    if !stored.iter().any(|k| k.retired_at_us.is_none()) {
        let (first, _) = generate(kek, now)?;
        if table.insert_first(&first).await? {
            tracing::info!(kid = %first.kid, "first signing key created");
        }
        stored = table.all().await?;
    }
    let active = stored
        .iter()
        .find(|k| k.retired_at_us.is_none())
        .ok_or_else(|| Error::internal(anyhow::anyhow!("no active signing key")))?;
    let active = Arc::new(open(kek, active)?);
    let published = stored
        .iter()
        .filter(|k| k.publish_until_us.is_none_or(|until| until > now))
        .map(public)
        .collect();
    Ok(Loaded { active, published })
}

/// The published keys as the `assist.common.v1.Jwks` message.
pub fn jwks_message(keys: &[PublicKey]) -> assist_proto::common::v1::Jwks {
    assist_proto::common::v1::Jwks {
        json: jwks_json(keys),
        keys: keys
            .iter()
            .map(|k| assist_proto::common::v1::Jwk {
                kid: k.kid.clone(),
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: k.x.clone(),
                alg: "EdDSA".into(),
                r#use: "sig".into(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Realm;

    #[test]
    fn sealed_keys_open_only_with_their_kek_and_kid() {
        let kek =
            KeyEncryptionKey::from_base64(&KeyEncryptionKey::generate_base64().unwrap()).unwrap();
        let (stored, _) = generate(&kek, 1).unwrap();
        assert!(open(&kek, &stored).is_ok());
        let other =
            KeyEncryptionKey::from_base64(&KeyEncryptionKey::generate_base64().unwrap()).unwrap();
        assert!(open(&other, &stored).is_err());
        let mut moved = stored.clone();
        moved.kid = "another".into();
        assert!(
            open(&kek, &moved).is_err(),
            "a sealed key is bound to its kid"
        );
    }

    #[test]
    fn signed_tokens_carry_the_kid() {
        let kek =
            KeyEncryptionKey::from_base64(&KeyEncryptionKey::generate_base64().unwrap()).unwrap();
        let (stored, active) = generate(&kek, 1).unwrap();
        let claims = Claims {
            iss: "i".into(),
            sub: "s".into(),
            aud: "a".into(),
            exp: 2,
            iat: 1,
            nbf: 1,
            jti: "j".into(),
            realm: Realm::Customer,
            scope: "customer".into(),
            act: None,
            sid: None,
            name: None,
            merchant_name: None,
        };
        let token = active.sign(&claims).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some(stored.kid.as_str()));
        assert_eq!(header.alg, Algorithm::EdDSA);
        assert!(jwks_json(&[public(&stored)]).contains(&stored.public_key));
    }

    #[test]
    fn kek_must_be_32_bytes() {
        assert!(KeyEncryptionKey::from_base64("c2hvcnQ=").is_none());
        assert!(KeyEncryptionKey::from_base64("not base64!").is_none());
    }
}
