//! API tokens: who may call the API, with which [`Role`].
//!
//! The daemon reads a token file (`orchestratord --tokens FILE`) that holds, per token, a name, a
//! role and the SHA-256 of the token, never the token itself: a leaked file grants nothing.
//! `orchestrator-cli token create` makes a token and appends its entry. The file is YAML:
//!
//! ```yaml
//! tokens:
//!   - name: alice
//!     role: admin
//!     sha256: 5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8
//! ```

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Reads only: `GET`s, placement previews, and the MCP tools that only read.
    ReadOnly,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "read-only" => Ok(Role::ReadOnly),
            other => Err(format!(
                "unknown role {other:?}: expected admin or read-only"
            )),
        }
    }
}

/// One entry of the token file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds the token: named in the audit log and in events.
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// SHA-256 of the token, 64 lowercase hex digits ([`hash_token`]).
    pub sha256: String,
}

/// The token file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    /// Every token the API accepts.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
}

impl TokenFile {
    /// Every problem of the file, each with its field path: names must be non-empty and unique
    /// (they identify callers), hashes 64 lowercase hex digits and unique.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut names = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        for (i, entry) in self.tokens.iter().enumerate() {
            if entry.name.trim().is_empty() {
                problems.push(format!("tokens[{i}].name: must not be empty"));
            } else if !names.insert(entry.name.as_str()) {
                problems.push(format!("tokens[{i}].name: {:?} is used twice", entry.name));
            }
            let hex = entry.sha256.len() == 64
                && entry
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            if !hex {
                problems.push(format!(
                    "tokens[{i}].sha256: must be 64 lowercase hex digits (the SHA-256 of the token)"
                ));
            } else if !hashes.insert(entry.sha256.as_str()) {
                problems.push(format!(
                    "tokens[{i}].sha256: the same token is listed twice"
                ));
            }
        }
        problems
    }
}

/// The SHA-256 of `token` in lowercase hex: what the token file stores.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write;
        // Writing into a String cannot fail.
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Prefix of the tokens [`generate_token`] makes, so that scanners and people recognise them.
pub const TOKEN_PREFIX: &str = "orc_";

/// A new random token: [`TOKEN_PREFIX`] and 32 bytes from the OS's secure generator, in hex.
pub fn generate_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let mut token = String::from(TOKEN_PREFIX);
    for byte in bytes {
        use std::fmt::Write;
        let _ = write!(token, "{byte:02x}");
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_hex() {
        // echo -n password | sha256sum
        assert_eq!(
            hash_token("password"),
            "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
        );
    }

    #[test]
    fn tokens_are_random_and_prefixed() {
        let (a, b) = (generate_token().unwrap(), generate_token().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
    }

    #[test]
    fn roles_parse_and_print_alike() {
        for role in [Role::Admin, Role::ReadOnly] {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn problems_name_the_field() {
        let entry = |name: &str, sha: &str| TokenEntry {
            name: name.into(),
            role: Role::Admin,
            sha256: sha.into(),
        };
        let good = hash_token("t");
        let file = TokenFile {
            tokens: vec![
                entry("alice", &good),
                entry("alice", &hash_token("u")),
                entry("", "xyz"),
                entry("bob", &good),
                entry("carol", &good.to_uppercase()),
            ],
        };
        assert_eq!(
            file.problems(),
            vec![
                "tokens[1].name: \"alice\" is used twice".to_owned(),
                "tokens[2].name: must not be empty".to_owned(),
                "tokens[2].sha256: must be 64 lowercase hex digits (the SHA-256 of the token)"
                    .to_owned(),
                "tokens[3].sha256: the same token is listed twice".to_owned(),
                "tokens[4].sha256: must be 64 lowercase hex digits (the SHA-256 of the token)"
                    .to_owned(),
            ]
        );
    }
}
