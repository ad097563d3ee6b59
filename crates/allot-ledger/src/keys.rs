//! Offline license files: per-tenant Ed25519 signing keys, their public JWK form (RFC 8037), and
//! JWS compact serialisation with `alg: EdDSA` (RFC 7515). The private half of a key never leaves
//! this crate: the store keeps it sealed (ChaCha20-Poly1305 under the operator's key when one is
//! configured), and only [`crate::Ledger`] opens it to sign.
//!
//! The compact form is three base64url parts and one signature; writing it here keeps the
//! dependency to `ed25519-dalek` (the JOSE crates pull in RSA and ECDSA backends we don't use).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::Digest;
use time::OffsetDateTime;

use crate::error::LedgerError;
use crate::model::TenantId;

/// A public signing key as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicSigningKey {
    /// The RFC 7638 thumbprint of the public JWK.
    pub kid: String,
    /// The 32-byte public key, base64url (the JWK `x`).
    pub x: String,
    /// Per-tenant sequence: the highest signs new files, the others still verify old ones.
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// A public key as a JSON Web Key (RFC 8037 `OKP` / `Ed25519`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: String,
    /// Always `Ed25519`.
    pub crv: String,
    /// The public key, base64url without padding.
    pub x: String,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// A JWK Set (RFC 7517 section 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

impl From<&PublicSigningKey> for Jwk {
    fn from(key: &PublicSigningKey) -> Self {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: key.x.clone(),
            kid: key.kid.clone(),
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
        }
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key: SHA-256 over the required members in
/// lexicographic order, base64url.
pub fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
}

/// A freshly made key: its public half, and its private half already sealed for the store.
pub(crate) struct NewKey {
    pub kid: String,
    pub x: String,
    pub sealed: String,
}

/// Seals and opens private keys. Without a configured key the store holds them in the clear
/// (marked `plain:`); with one, as `chacha20poly1305:` nonce and ciphertext, bound to the tenant
/// and key id so a sealed key cannot be moved to another row.
#[derive(Clone, Default)]
pub struct KeyVault {
    cipher: Option<ChaCha20Poly1305>,
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVault")
            .field("encrypting", &self.cipher.is_some())
            .finish()
    }
}

const PLAIN: &str = "plain:";
const SEALED: &str = "chacha20poly1305:";

fn invalid(reason: impl Into<String>) -> LedgerError {
    LedgerError::Invalid {
        field: "license_key_encryption_key",
        reason: reason.into(),
    }
}

impl KeyVault {
    /// A vault that keeps private keys unencrypted.
    pub fn plain() -> Self {
        KeyVault { cipher: None }
    }

    /// A vault sealing with a 32-byte key given in base64 (standard or URL-safe alphabet), e.g.
    /// the output of `openssl rand -base64 32`.
    pub fn from_base64(text: &str) -> Result<Self, LedgerError> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| invalid("expected 32 bytes in base64"))?;
        if bytes.len() != 32 {
            return Err(invalid(format!(
                "expected 32 bytes in base64, got {}",
                bytes.len()
            )));
        }
        let cipher =
            ChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| invalid("bad key length"))?;
        Ok(KeyVault {
            cipher: Some(cipher),
        })
    }

    pub fn encrypts(&self) -> bool {
        self.cipher.is_some()
    }

    fn aad(tenant: TenantId, kid: &str) -> Vec<u8> {
        format!("allot-signing-key:{tenant}:{kid}").into_bytes()
    }

    pub(crate) fn generate(&self, tenant: TenantId) -> Result<NewKey, LedgerError> {
        let seed: [u8; 32] = rand::random();
        let signing = SigningKey::from_bytes(&seed);
        let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().to_bytes());
        let kid = thumbprint(&x);
        let sealed = self.seal(tenant, &kid, &signing)?;
        Ok(NewKey { kid, x, sealed })
    }

    fn seal(
        &self,
        tenant: TenantId,
        kid: &str,
        signing: &SigningKey,
    ) -> Result<String, LedgerError> {
        self.seal_bytes(&Self::aad(tenant, kid), &signing.to_bytes())
    }

    /// Seals `secret` bound to `aad` (which must be given again to open it): `plain:` base64url
    /// without a configured key, else `chacha20poly1305:` nonce and ciphertext.
    pub(crate) fn seal_bytes(&self, aad: &[u8], secret: &[u8]) -> Result<String, LedgerError> {
        match &self.cipher {
            None => Ok(format!("{PLAIN}{}", URL_SAFE_NO_PAD.encode(secret))),
            Some(cipher) => {
                let nonce_bytes: [u8; 12] = rand::random();
                let nonce = Nonce::from(nonce_bytes);
                let ct = cipher
                    .encrypt(&nonce, Payload { msg: secret, aad })
                    .map_err(|_| LedgerError::Store("sealing a secret failed".into()))?;
                let mut out = nonce_bytes.to_vec();
                out.extend_from_slice(&ct);
                Ok(format!("{SEALED}{}", URL_SAFE_NO_PAD.encode(out)))
            }
        }
    }

    /// Opens what [`KeyVault::seal_bytes`] sealed with the same `aad`; `what` names it in errors.
    pub(crate) fn open_bytes(
        &self,
        aad: &[u8],
        sealed: &str,
        what: &str,
    ) -> Result<Vec<u8>, LedgerError> {
        let corrupt = || LedgerError::Store(format!("{what} cannot be opened"));
        if let Some(plain) = sealed.strip_prefix(PLAIN) {
            URL_SAFE_NO_PAD.decode(plain).map_err(|_| corrupt())
        } else if let Some(data) = sealed.strip_prefix(SEALED) {
            let Some(cipher) = &self.cipher else {
                return Err(LedgerError::Store(format!(
                    "{what} is encrypted and no license key encryption key is configured"
                )));
            };
            let data = URL_SAFE_NO_PAD.decode(data).map_err(|_| corrupt())?;
            if data.len() < 12 {
                return Err(corrupt());
            }
            let (nonce, ct) = data.split_at(12);
            let nonce = Nonce::try_from(nonce).map_err(|_| corrupt())?;
            cipher
                .decrypt(&nonce, Payload { msg: ct, aad })
                .map_err(|_| {
                    LedgerError::Store(format!(
                        "{what} does not open with the configured license key encryption key"
                    ))
                })
        } else {
            Err(corrupt())
        }
    }

    /// A key for keyed hashes the server makes (HMAC), derived from the configured key so it
    /// is never the sealing key itself; `None` without a configured key.
    pub(crate) fn derive(&self, label: &str) -> Option<Vec<u8>> {
        // Sealing a fixed label under a fixed nonce is deterministic for one key and reveals
        // nothing of it (ChaCha20-Poly1305 is a PRF keyed by it).
        let cipher = self.cipher.as_ref()?;
        let nonce = Nonce::from([0u8; 12]);
        let out = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &[0u8; 32],
                    aad: label.as_bytes(),
                },
            )
            .ok()?;
        Some(sha2::Sha256::digest(&out).to_vec())
    }

    pub(crate) fn open(
        &self,
        tenant: TenantId,
        kid: &str,
        sealed: &str,
    ) -> Result<SigningKey, LedgerError> {
        let what = format!("signing key {kid}");
        let seed = self.open_bytes(&Self::aad(tenant, kid), sealed, &what)?;
        let seed: [u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| LedgerError::Store(format!("{what} cannot be opened")))?;
        Ok(SigningKey::from_bytes(&seed))
    }
}

/// Signs `claims` as a JWS compact serialisation with header `{"alg":"EdDSA","typ":"JWT","kid"}`.
pub(crate) fn sign_compact(
    key: &SigningKey,
    kid: &str,
    claims: &serde_json::Value,
) -> Result<String, LedgerError> {
    let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": kid });
    let encode = |v: &serde_json::Value| {
        serde_json::to_vec(v)
            .map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
            .map_err(|e| LedgerError::Store(format!("encoding license claims: {e}")))
    };
    let signing_input = format!("{}.{}", encode(&header)?, encode(claims)?);
    let signature = key.sign(signing_input.as_bytes());
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    ))
}

/// Why a license file did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("not a JWS compact serialisation: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not EdDSA")]
    Algorithm(String),
    #[error("no key with kid {0:?} in the key set")]
    UnknownKey(String),
    #[error("the signature does not verify")]
    BadSignature,
    #[error("expired at {0}")]
    Expired(i64),
    #[error("not valid before {0}")]
    NotYetValid(i64),
}

/// Checks a compact JWS against a JWK Set and the clock; answers its claims. Only Ed25519 keys
/// are considered, and the signature must verify under RFC 8032's strict rules.
pub fn verify_compact(
    token: &str,
    keys: &JwkSet,
    now: OffsetDateTime,
) -> Result<serde_json::Value, VerifyError> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed(
            "expected three dot-separated parts".into(),
        ));
    };
    let part = |text: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| VerifyError::Malformed(format!("{what} is not base64url")))
    };
    let header: serde_json::Value = serde_json::from_slice(&part(h, "header")?)
        .map_err(|_| VerifyError::Malformed("header is not JSON".into()))?;
    let alg = header["alg"].as_str().unwrap_or_default();
    if alg != "EdDSA" {
        return Err(VerifyError::Algorithm(alg.to_owned()));
    }
    let kid = header["kid"].as_str().unwrap_or_default();
    let jwk = keys
        .keys
        .iter()
        .find(|k| k.kid == kid && k.kty == "OKP" && k.crv == "Ed25519")
        .ok_or_else(|| VerifyError::UnknownKey(kid.to_owned()))?;
    let x: [u8; 32] = part(&jwk.x, "the key's x")?
        .as_slice()
        .try_into()
        .map_err(|_| VerifyError::Malformed("the key's x is not 32 bytes".into()))?;
    let public = VerifyingKey::from_bytes(&x).map_err(|_| VerifyError::BadSignature)?;
    let signature: [u8; 64] = part(s, "signature")?
        .as_slice()
        .try_into()
        .map_err(|_| VerifyError::BadSignature)?;
    public
        .verify_strict(
            format!("{h}.{p}").as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .map_err(|_| VerifyError::BadSignature)?;
    let claims: serde_json::Value = serde_json::from_slice(&part(p, "payload")?)
        .map_err(|_| VerifyError::Malformed("payload is not JSON".into()))?;
    let now = now.unix_timestamp();
    if let Some(exp) = claims["exp"].as_i64()
        && now >= exp
    {
        return Err(VerifyError::Expired(exp));
    }
    if let Some(nbf) = claims["nbf"].as_i64()
        && now < nbf
    {
        return Err(VerifyError::NotYetValid(nbf));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of(vault: &KeyVault, tenant: TenantId) -> (NewKey, JwkSet) {
        let key = vault.generate(tenant).unwrap();
        let set = JwkSet {
            keys: vec![Jwk::from(&PublicSigningKey {
                kid: key.kid.clone(),
                x: key.x.clone(),
                seq: 1,
                created_at: OffsetDateTime::UNIX_EPOCH,
            })],
        };
        (key, set)
    }

    #[test]
    fn sealed_keys_open_only_with_their_key_and_row() {
        let vault = KeyVault::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let key = vault.generate(1).unwrap();
        assert!(key.sealed.starts_with(SEALED));
        assert!(vault.open(1, &key.kid, &key.sealed).is_ok());
        // Another tenant's row, or no/another encryption key: refused.
        assert!(vault.open(2, &key.kid, &key.sealed).is_err());
        assert!(KeyVault::plain().open(1, &key.kid, &key.sealed).is_err());
        let other = KeyVault::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(other.open(1, &key.kid, &key.sealed).is_err());
        assert!(KeyVault::from_base64("c2hvcnQ=").is_err());
    }

    #[test]
    fn a_signed_file_verifies_and_a_changed_one_does_not() {
        let vault = KeyVault::plain();
        let (key, set) = set_of(&vault, 1);
        let signing = vault.open(1, &key.kid, &key.sealed).unwrap();
        let now = OffsetDateTime::now_utc();
        let claims = serde_json::json!({"sub": "ann", "exp": now.unix_timestamp() + 60});
        let token = sign_compact(&signing, &key.kid, &claims).unwrap();
        assert_eq!(verify_compact(&token, &set, now).unwrap(), claims);
        let mut bytes = token.clone().into_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        assert!(verify_compact(&String::from_utf8(bytes).unwrap(), &set, now).is_err());
        let (_, other_set) = set_of(&vault, 2);
        assert!(matches!(
            verify_compact(&token, &other_set, now),
            Err(VerifyError::UnknownKey(_))
        ));
        assert!(matches!(
            verify_compact(&token, &set, now + time::Duration::minutes(2)),
            Err(VerifyError::Expired(_))
        ));
    }
}
