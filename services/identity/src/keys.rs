//! The Ed25519 keys identity signs access tokens with. The current key
//! signs; previous keys are still published in the JWKS so tokens signed
//! before a rotation stay valid until they expire.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::JwkSet;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{source_name}: not an Ed25519 PKCS#8 PEM key")]
    Invalid { source_name: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct KeyRing {
    current_kid: String,
    encoding: EncodingKey,
    published: Vec<(String, VerifyingKey)>,
}

/// RFC 7638 thumbprint of an Ed25519 public key: a stable key id.
fn thumbprint(key: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.to_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Parse a PEM that holds either a private key or a public key.
fn public_from_pem(pem: &str, source_name: &str) -> Result<VerifyingKey, KeyError> {
    if let Ok(sk) = SigningKey::from_pkcs8_pem(pem) {
        return Ok(sk.verifying_key());
    }
    VerifyingKey::from_public_key_pem(pem).map_err(|_| KeyError::Invalid {
        source_name: source_name.into(),
    })
}

pub fn generate_pem() -> String {
    let seed: [u8; 32] = rand::random();
    let key = SigningKey::from_bytes(&seed);
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|p| p.to_string())
        .unwrap_or_default()
}

impl KeyRing {
    /// `current` is a PKCS#8 PEM private key; `previous` PEMs may be
    /// private or public keys.
    pub fn from_pem(current: &str, previous: &[(String, String)]) -> Result<Self, KeyError> {
        let signing = SigningKey::from_pkcs8_pem(current).map_err(|_| KeyError::Invalid {
            source_name: "current signing key".into(),
        })?;
        let encoding =
            EncodingKey::from_ed_pem(current.as_bytes()).map_err(|_| KeyError::Invalid {
                source_name: "current signing key".into(),
            })?;
        let verifying = signing.verifying_key();
        let current_kid = thumbprint(&verifying);
        let mut published = vec![(current_kid.clone(), verifying)];
        for (name, pem) in previous {
            let key = public_from_pem(pem, name)?;
            let kid = thumbprint(&key);
            if !published.iter().any(|(k, _)| *k == kid) {
                published.push((kid, key));
            }
        }
        Ok(Self {
            current_kid,
            encoding,
            published,
        })
    }

    pub fn from_files(current: &Path, previous: &[PathBuf]) -> Result<Self, KeyError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| KeyError::Read {
                path: p.to_path_buf(),
                source,
            })
        };
        let current_pem = read(current)?;
        let previous: Vec<(String, String)> = previous
            .iter()
            .map(|p| Ok((p.display().to_string(), read(p)?)))
            .collect::<Result<_, KeyError>>()?;
        Self::from_pem(&current_pem, &previous)
    }

    /// Embedded mode: `dir/signing.pem` is made once and kept; every
    /// `dir/previous/*.pem` is still published.
    pub fn load_or_generate(dir: &Path) -> Result<Self, KeyError> {
        let current = dir.join("signing.pem");
        if !current.exists() {
            write_private(&current, &generate_pem())?;
        }
        Self::from_files(&current, &previous_files(dir)?)
    }

    /// Embedded mode: retire the current key to `previous/` and make a new
    /// one. Tokens signed with the old key stay valid until they expire.
    pub fn rotate(dir: &Path) -> Result<Self, KeyError> {
        let current = dir.join("signing.pem");
        if current.exists() {
            let previous_dir = dir.join("previous");
            std::fs::create_dir_all(&previous_dir).map_err(|source| KeyError::Write {
                path: previous_dir.clone(),
                source,
            })?;
            let retired = previous_dir.join(format!("{}.pem", kit::clock::now_millis()));
            std::fs::rename(&current, &retired).map_err(|source| KeyError::Write {
                path: retired,
                source,
            })?;
        }
        Self::load_or_generate(dir)
    }

    pub fn current_kid(&self) -> &str {
        &self.current_kid
    }

    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }

    pub fn jwks(&self) -> JwkSet {
        let keys: Vec<serde_json::Value> = self
            .published
            .iter()
            .map(|(kid, key)| {
                serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(key.to_bytes()),
                    "kid": kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "keys": keys }))
            .unwrap_or(JwkSet { keys: vec![] })
    }
}

fn previous_files(dir: &Path) -> Result<Vec<PathBuf>, KeyError> {
    let previous_dir = dir.join("previous");
    if !previous_dir.exists() {
        return Ok(vec![]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&previous_dir)
        .map_err(|source| KeyError::Read {
            path: previous_dir.clone(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .collect();
    files.sort();
    Ok(files)
}

fn write_private(path: &Path, pem: &str) -> Result<(), KeyError> {
    let err = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    std::fs::write(path, pem).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_old_key_published() {
        let dir = tempfile::tempdir().unwrap();
        let first = KeyRing::load_or_generate(dir.path()).unwrap();
        let again = KeyRing::load_or_generate(dir.path()).unwrap();
        assert_eq!(
            first.current_kid(),
            again.current_kid(),
            "key is kept across restarts"
        );
        let rotated = KeyRing::rotate(dir.path()).unwrap();
        assert_ne!(rotated.current_kid(), first.current_kid());
        let kids: Vec<_> = rotated
            .jwks()
            .keys
            .iter()
            .filter_map(|k| k.common.key_id.clone())
            .collect();
        assert!(kids.contains(&first.current_kid().to_string()));
        assert!(kids.contains(&rotated.current_kid().to_string()));
    }

    #[test]
    fn rejects_garbage_pem() {
        assert!(KeyRing::from_pem("not a key", &[]).is_err());
    }
}
