//! The JSON documents of the distribution API, as `oci-spec`'s image types: image indexes
//! (manifest lists), image manifests and image configurations.
//!
//! Docker's schema 2 documents have the same shape as OCI's; only their media types differ, and
//! `oci-spec` keeps those as [`MediaType::Other`] (its `ToDockerV2S2` names them), so one set of
//! types reads both.

use super::super::{ImageConfig, ImageError};
use oci_spec::image::{
    Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, ToDockerV2S2,
};
use serde::Deserialize;

/// Docker image layer (v2 schema 2), gzip-compressed.
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign (non-distributable) layer, gzip-compressed.
const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
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
    /// zstd.
    Zstd,
}

/// The compression of a layer of `media_type`; an error when it cannot be unpacked.
pub(super) fn layer_compression(media_type: &MediaType) -> Result<Compression, ImageError> {
    match media_type {
        MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => Ok(Compression::Tar),
        MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => {
            Ok(Compression::Gzip)
        }
        MediaType::Other(m) if m == DOCKER_LAYER || m == DOCKER_FOREIGN_LAYER => {
            Ok(Compression::Gzip)
        }
        MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => {
            Ok(Compression::Zstd)
        }
        m => Err(ImageError::UnsupportedLayer {
            media_type: m.to_string(),
        }),
    }
}

/// `os/architecture[/variant]` of an index entry's platform.
pub(super) fn platform_name(p: &oci_spec::image::Platform) -> String {
    let mut name = format!("{}/{}", p.os(), p.architecture());
    if let Some(v) = p.variant().as_deref().filter(|v| !v.is_empty()) {
        name.push('/');
        name.push_str(v);
    }
    name
}

/// Just enough of any manifest document to tell its kind.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// What a manifest document is.
/// (Both boxed: oci-spec's documents are several hundred bytes each.)
#[derive(Debug)]
pub(super) enum Kind {
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// Whether `media_type` names an index: OCI's, or Docker's manifest list.
fn is_index_type(media_type: &MediaType) -> Option<bool> {
    let docker = |m: MediaType| m.to_docker_v2s2().map(str::to_owned).unwrap_or_default();
    match media_type {
        MediaType::ImageIndex => Some(true),
        MediaType::ImageManifest => Some(false),
        MediaType::Other(m) if *m == docker(MediaType::ImageIndex) => Some(true),
        MediaType::Other(m) if *m == docker(MediaType::ImageManifest) => Some(false),
        _ => None,
    }
}

/// Parses a manifest document, telling an index from an image manifest by its media type (the
/// document's own, else the response's `Content-Type`), else by its fields.
pub(super) fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Kind, ImageError> {
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| ImageError::ParseManifest {
        what: "the manifest is not valid JSON".into(),
        source: Some(Box::new(e.into())),
    })?;
    let media_type = probe
        .media_type
        .clone()
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    let is_index = match is_index_type(&MediaType::from(media_type.as_str())) {
        Some(is_index) => is_index,
        None if media_type.contains("manifest.v1") || probe.schema_version == Some(1) => {
            return Err(ImageError::parse(format!(
                "manifest media type {media_type} (Docker schema 1) is not supported; \
                 push the image again with a current client"
            )))
        }
        None if probe.manifests.is_some() => true,
        None if probe.config.is_some() => false,
        None => {
            return Err(ImageError::parse(format!(
                "manifest media type {media_type:?} is not supported"
            )))
        }
    };
    if is_index {
        ImageIndex::from_reader(bytes)
            .map(|i| Kind::Index(Box::new(i)))
            .map_err(|e| ImageError::ParseManifest {
                what: "the image index is malformed".into(),
                source: Some(Box::new(e)),
            })
    } else {
        ImageManifest::from_reader(bytes)
            .map(|m| Kind::Manifest(Box::new(m)))
            .map_err(|e| ImageError::ParseManifest {
                what: "the image manifest is malformed".into(),
                source: Some(Box::new(e)),
            })
    }
}

/// The config and layer descriptors of a manifest, config first.
pub(super) fn blobs(m: &ImageManifest) -> impl Iterator<Item = &Descriptor> {
    std::iter::once(m.config()).chain(m.layers())
}

/// The [`ImageConfig`] an image configuration blob describes (an empty working dir or user
/// means none).
pub(super) fn parse_config(bytes: &[u8]) -> Result<ImageConfig, ImageError> {
    let parsed = ImageConfiguration::from_reader(bytes)
        .map_err(|source| ImageError::ParseConfig { source })?;
    let Some(c) = parsed.config() else {
        return Ok(ImageConfig::default());
    };
    Ok(ImageConfig {
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        env: c.env().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
        user: c.user().clone().filter(|u| !u.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

    #[test]
    fn tells_index_from_manifest() {
        let m = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{D}","size":1}},"layers":[]}}"#
        );
        let m = m.as_bytes();
        assert!(matches!(
            parse(m, Some(OCI_MANIFEST)),
            Ok(Kind::Manifest(_))
        ));
        assert!(matches!(parse(m, None), Ok(Kind::Manifest(_))));
        let i = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}}]}}"#
        );
        let Ok(Kind::Index(index)) = parse(i.as_bytes(), Some(DOCKER_LIST)) else {
            panic!("not an index")
        };
        assert_eq!(
            platform_name(index.manifests()[0].platform().as_ref().unwrap()),
            "linux/arm/v7"
        );
        let v1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(parse(v1, None)
            .unwrap_err()
            .to_string()
            .contains("schema 1"));
    }

    #[test]
    fn docker_schema2_media_types_are_understood() {
        let docker_manifest = MediaType::ImageManifest.to_docker_v2s2().unwrap();
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{docker_manifest}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{D}","size":1}},"layers":[{{"mediaType":"{DOCKER_LAYER}","digest":"{D}","size":1}}]}}"#
        );
        // The document's own media type wins over a misleading Content-Type.
        let Ok(Kind::Manifest(m)) = parse(m.as_bytes(), Some(DOCKER_LIST)) else {
            panic!("not a manifest")
        };
        assert_eq!(
            layer_compression(m.layers()[0].media_type()).unwrap(),
            Compression::Gzip
        );
        assert_eq!(blobs(&m).count(), 2);
        let list = format!(r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[]}}"#);
        assert!(matches!(parse(list.as_bytes(), None), Ok(Kind::Index(_))));
        // A descriptor without a digest is malformed, and says so with the parser's reason.
        let bad = br#"{"schemaVersion":2,"config":{"mediaType":"x","size":1},"layers":[]}"#;
        let e = parse(bad, Some(OCI_MANIFEST)).unwrap_err();
        assert!(!e.is_transient());
        assert!(
            e.to_string()
                .starts_with("the image manifest is malformed: "),
            "{e}"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn config_maps_to_image_config() {
        let c = parse_config(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},
                "config":{"Entrypoint":["/bin/sh"],"Cmd":["-c","x"],"Env":["A=1"],"WorkingDir":""}}"#,
        )
        .unwrap();
        assert_eq!(c.entrypoint, ["/bin/sh"]);
        assert_eq!(c.cmd, ["-c", "x"]);
        assert_eq!(c.env, ["A=1"]);
        assert_eq!(c.working_dir, None);
        assert_eq!(
            layer_compression(&MediaType::ImageLayerZstd).unwrap(),
            Compression::Zstd
        );
        assert!(layer_compression(&MediaType::Other("application/x-lz4".into())).is_err());
        assert!(parse_config(b"{").is_err());
    }
}
