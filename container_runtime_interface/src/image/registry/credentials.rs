//! Registry credentials, read from a Docker `config.json` (`orchestratord --registry-auth FILE`,
//! what `docker login` writes): `{"auths": {"REGISTRY": {"auth": "base64(user:password)"}}}`,
//! or `"username"` and `"password"` instead of `"auth"`. They answer a registry's `Basic`
//! challenge, and a `Bearer` challenge's token server.

use base64::Engine;
use serde::Deserialize;
use std::collections::HashMap;

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password (or access token).
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    /// Never shows the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The credentials of a Docker `config.json`, by registry (`host[:port]` as in image
/// references; Docker Hub's `https://index.docker.io/v1/` is `docker.io`). Entries without
/// credentials (a credential helper's) are skipped.
pub fn parse_docker_config(text: &str) -> Result<HashMap<String, Credentials>, String> {
    let config: DockerConfig =
        serde_json::from_str(text).map_err(|e| format!("not a Docker config.json: {e}"))?;
    let mut out = HashMap::new();
    for (key, entry) in config.auths {
        let credentials = match (entry.auth, entry.username, entry.password) {
            (Some(auth), _, _) if !auth.is_empty() => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|e| format!("auths.{key}.auth is not base64: {e}"))?;
                let text = String::from_utf8(decoded)
                    .map_err(|_| format!("auths.{key}.auth is not UTF-8 once decoded"))?;
                let (username, password) = text
                    .split_once(':')
                    .ok_or_else(|| format!("auths.{key}.auth is not user:password"))?;
                Credentials {
                    username: username.to_owned(),
                    password: password.to_owned(),
                }
            }
            (_, Some(username), Some(password)) => Credentials { username, password },
            _ => continue,
        };
        out.insert(registry_key(&key), credentials);
    }
    Ok(out)
}

/// `host[:port]` of a `config.json` key (`https://host/v1/`, `host`, `host:port`).
fn registry_key(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        h => h.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_configs_parse() {
        let text = r#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "dXNlcjpwYTpzcw=="},
            "10.0.0.5:5000": {"username": "ci", "password": "s3cret"},
            "ghcr.io": {}
        }, "credsStore": "desktop"}"#;
        let c = parse_docker_config(text).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c["docker.io"].username, "user");
        assert_eq!(c["docker.io"].password, "pa:ss");
        assert_eq!(c["10.0.0.5:5000"].password, "s3cret");
        assert!(!format!("{:?}", c["10.0.0.5:5000"]).contains("s3cret"));
        assert!(parse_docker_config("{").is_err());
        let bad = parse_docker_config(r#"{"auths": {"r": {"auth": "!!"}}}"#).unwrap_err();
        assert!(bad.contains("auths.r.auth"), "{bad}");
    }
}
