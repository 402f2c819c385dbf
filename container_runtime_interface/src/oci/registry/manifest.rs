//! The JSON documents of the distribution API: image indexes (manifest lists), image manifests and
//! image configurations, with their media types.

use super::super::image::ImageConfig;
use serde::Deserialize;

/// OCI image index.
pub(super) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub(super) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (v2 schema 2).
pub(super) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (v2 schema 2).
pub(super) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The `Accept` header of manifest requests.
pub(super) const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Compression {
    /// A plain tar (also accepted: a gzip stream, recognized by its magic bytes).
    Tar,
    /// gzip.
    Gzip,
}

/// The compression of a layer of `media_type`; `Err` says why it is not supported.
pub(super) fn layer_compression(media_type: &str) -> Result<Compression, String> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Ok(Compression::Tar),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
        m if m.ends_with("+zstd") || m.ends_with(".zstd") => Err(format!(
            "layer media type {m} (zstd) is not supported: only gzip and uncompressed layers are"
        )),
        m => Err(format!(
            "layer media type {m:?} is not supported: only gzip and uncompressed tar layers are"
        )),
    }
}

/// A content descriptor.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<PlatformSpec>,
}

/// The platform of an index entry.
#[derive(Clone, Debug, Deserialize)]
pub(super) struct PlatformSpec {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Just enough of any manifest to tell its kind.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Probe {
    #[serde(default)]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<serde_json::Value>,
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}

/// An image index / manifest list.
#[derive(Debug, Deserialize)]
pub(super) struct Index {
    pub manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Deserialize)]
pub(super) struct Manifest {
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The image configuration blob (only what runs the process).
#[derive(Debug, Default, Deserialize)]
pub(super) struct ConfigBlob {
    #[serde(default)]
    pub config: Option<RunConfig>,
}

/// `config` of the image configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RunConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
}

impl ConfigBlob {
    /// The [`ImageConfig`] it describes (an empty working dir means `/`).
    pub fn into_image_config(self) -> ImageConfig {
        let c = self.config.unwrap_or_default();
        ImageConfig {
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            working_dir: c.working_dir.filter(|w| !w.is_empty()),
            user: c.user.filter(|u| !u.is_empty()),
        }
    }
}

/// What a manifest document is.
#[derive(Debug)]
pub(super) enum Kind {
    Index(Index),
    Manifest(Manifest),
}

/// Parses a manifest document, telling an index from an image manifest by its media type (the
/// document's own, else the response's `Content-Type`), else by its fields.
pub(super) fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Kind, String> {
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
    let media_type = probe
        .media_type
        .clone()
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let is_index = match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        m if m.contains("manifest.v1") || probe.schema_version == Some(1) => {
            return Err(format!(
                "manifest media type {m} (Docker schema 1) is not supported; \
                 push the image again with a current client"
            ))
        }
        _ if probe.manifests.is_some() => true,
        _ if probe.config.is_some() => false,
        m => return Err(format!("manifest media type {m:?} is not supported")),
    };
    if is_index {
        serde_json::from_slice(bytes)
            .map(Kind::Index)
            .map_err(|e| format!("the image index is malformed: {e}"))
    } else {
        serde_json::from_slice(bytes)
            .map(Kind::Manifest)
            .map_err(|e| format!("the image manifest is malformed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_index_from_manifest() {
        let m = br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:a","size":1},"layers":[]}"#;
        assert!(matches!(
            parse(m, Some(OCI_MANIFEST)),
            Ok(Kind::Manifest(_))
        ));
        assert!(matches!(parse(m, None), Ok(Kind::Manifest(_))));
        let i = br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:a","size":1,"platform":{"os":"linux","architecture":"arm","variant":"v7"}}]}"#;
        let Ok(Kind::Index(index)) = parse(i, Some(DOCKER_LIST)) else {
            panic!("not an index")
        };
        assert_eq!(
            index.manifests[0].platform.as_ref().unwrap().to_string(),
            "linux/arm/v7"
        );
        let v1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(parse(v1, None).unwrap_err().contains("schema 1"));
    }

    #[test]
    fn config_maps_to_image_config() {
        let c: ConfigBlob = serde_json::from_str(
            r#"{"config":{"Entrypoint":["/bin/sh"],"Cmd":["-c","x"],"Env":["A=1"],"WorkingDir":""}}"#,
        )
        .unwrap();
        let c = c.into_image_config();
        assert_eq!(c.entrypoint, ["/bin/sh"]);
        assert_eq!(c.cmd, ["-c", "x"]);
        assert_eq!(c.env, ["A=1"]);
        assert_eq!(c.working_dir, None);
        assert!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+zstd")
                .unwrap_err()
                .contains("zstd")
        );
    }
}
