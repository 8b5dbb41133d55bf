//! Pulling: manifest negotiation (OCI index and manifest, Docker list and
//! schema 2; schema 1 refused), the platform's manifest chosen from an
//! index, mirrors and registry maps with fallback, the config blob, and
//! layer blobs streamed into the local store with their digest verified.

use super::client::{BUILT_IN_ATTEMPTS, Direction, Endpoint, fail, scope};
use super::{Reference, Registry, RegistryError};
use crate::image::manifest::Index;
use crate::image::manifest::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST, Platform,
};
use crate::image::{BlobStore, Descriptor, Digest, Manifest};
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

const SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const SCHEMA1_PLAIN: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Manifests and configs larger than this are refused (containerd's limit
/// for manifests is 4 MiB; configs get more room).
const MAX_MANIFEST: usize = 4 << 20;
const MAX_CONFIG: usize = 64 << 20;

/// An image found in a registry: the platform's manifest and its config.
#[derive(Debug, Clone)]
pub struct RemoteImage {
    /// Where it was found (a mirror or the registry named), with the tag
    /// or digest that was asked for.
    pub source: Reference,
    /// The digest of the platform's image manifest.
    pub digest: Digest,
    pub manifest: Manifest,
    /// The manifest as the registry sent it (its digest is `digest`).
    pub manifest_bytes: Vec<u8>,
    pub config_bytes: Vec<u8>,
}

/// Whether an index entry's platform serves `want` (variants as
/// containerd compares them: arm64 without a variant is v8).
pub fn platform_matches(want: &Platform, have: &Platform) -> bool {
    let norm = |p: &Platform| -> Option<String> {
        match (p.architecture.as_str(), p.variant.as_deref()) {
            ("arm64", None | Some("v8")) => None,
            (_, v) => v.filter(|v| !v.is_empty()).map(str::to_string),
        }
    };
    want.os == have.os
        && want.architecture == have.architecture
        && (want.variant.is_none() || norm(want) == norm(have))
}

fn media_type_of(header: Option<&str>, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        schema_version: u32,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        layers: Option<serde_json::Value>,
    }
    let header = header
        .map(|h| h.split(';').next().unwrap_or(h).trim().to_string())
        .filter(|h| {
            [
                OCI_INDEX,
                OCI_MANIFEST,
                DOCKER_MANIFEST,
                DOCKER_MANIFEST_LIST,
                SCHEMA1,
                SCHEMA1_PLAIN,
            ]
            .contains(&h.as_str())
        });
    if let Some(h) = header {
        return h;
    }
    match serde_json::from_slice::<Probe>(body) {
        Ok(p) if p.schema_version == 1 => SCHEMA1.to_string(),
        Ok(Probe {
            media_type: Some(m),
            ..
        }) => m,
        Ok(p) if p.manifests.is_some() => OCI_INDEX.to_string(),
        Ok(p) if p.layers.is_some() => OCI_MANIFEST.to_string(),
        _ => String::new(),
    }
}

impl Registry {
    /// The places to try for `r`, in order: `--registry-map` entries and
    /// (for Docker Hub) `--registry-mirror`s, then `r` itself unless
    /// `--skip-default-registry-fallback`.
    pub fn pull_sources(&self, r: &Reference) -> Vec<Reference> {
        let s = &self.settings;
        let hub = |x: &str| matches!(x, "docker.io" | "index.docker.io" | "registry-1.docker.io");
        let same = |a: &str| a == r.registry || (hub(a) && hub(&r.registry));
        let mut mirrors: Vec<&String> = s
            .registry_maps
            .iter()
            .filter(|(from, _)| same(from))
            .flat_map(|(_, to)| to.iter())
            .collect();
        if hub(&r.registry) {
            mirrors.extend(s.mirrors.iter());
        }
        let mut out: Vec<Reference> = mirrors
            .into_iter()
            .map(|m| {
                let m = m
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/');
                let (host, prefix) = m.split_once('/').unwrap_or((m, ""));
                Reference {
                    registry: host.to_string(),
                    repository: if prefix.is_empty() {
                        r.repository.clone()
                    } else {
                        format!("{prefix}/{}", r.repository)
                    },
                    tag: r.tag.clone(),
                    digest: r.digest.clone(),
                }
            })
            .collect();
        if out.is_empty() || !s.skip_default_fallback {
            out.push(r.clone());
        }
        out
    }

    /// Finds the image `r` names for `platform`: its manifest and config.
    pub async fn resolve(
        &self,
        r: &Reference,
        platform: &Platform,
    ) -> Result<RemoteImage, RegistryError> {
        let sources = self.pull_sources(r);
        let count = sources.len();
        let mut last = None;
        for (n, source) in sources.into_iter().enumerate() {
            match self.resolve_at(&source, platform).await {
                Ok(image) => return Ok(image),
                Err(e) if n + 1 < count => {
                    log::warn!("{e}; trying the next source");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::invalid(&r.to_string(), "nowhere to pull from")))
    }

    /// A manifest by tag or digest as the registry sent it, nothing
    /// followed or fetched besides (the layer cache's lookups): its bytes,
    /// media type and digest.
    pub async fn manifest_at(
        &self,
        r: &Reference,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let ep = self.endpoint(&r.registry, Direction::Pull).await?;
        let wanted = r
            .digest
            .clone()
            .unwrap_or_else(|| r.tag_or_latest().to_string());
        self.manifest(&ep, r, &wanted, &r.to_string()).await
    }

    async fn resolve_at(
        &self,
        source: &Reference,
        platform: &Platform,
    ) -> Result<RemoteImage, RegistryError> {
        let ep = self.endpoint(&source.registry, Direction::Pull).await?;
        let name = source.to_string();
        let wanted = source
            .digest
            .clone()
            .unwrap_or_else(|| source.tag_or_latest().to_string());
        let (bytes, media_type, digest) = self.manifest(&ep, source, &wanted, &name).await?;
        let (bytes, digest) = match media_type.as_str() {
            OCI_INDEX | DOCKER_MANIFEST_LIST => {
                let index: Index = serde_json::from_slice(&bytes).map_err(|e| {
                    RegistryError::invalid(&name, format!("malformed image index: {e}"))
                })?;
                let chosen = index
                    .manifests
                    .iter()
                    .find(|d| {
                        d.platform
                            .as_ref()
                            .is_some_and(|p| platform_matches(platform, p))
                    })
                    .ok_or_else(|| {
                        let have: Vec<String> = index
                            .manifests
                            .iter()
                            .filter_map(|d| d.platform.as_ref())
                            .map(|p| match &p.variant {
                                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                                None => format!("{}/{}", p.os, p.architecture),
                            })
                            .collect();
                        RegistryError::invalid(
                            &name,
                            format!(
                                "no image for platform {} in the index (it has: {})",
                                show(platform),
                                have.join(", ")
                            ),
                        )
                    })?;
                let (bytes, media_type, digest) = self
                    .manifest(&ep, source, chosen.digest.as_str(), &name)
                    .await?;
                if media_type != OCI_MANIFEST && media_type != DOCKER_MANIFEST {
                    return Err(RegistryError::invalid(
                        &name,
                        format!("the index points at a {media_type:?}, not an image manifest"),
                    ));
                }
                (bytes, digest)
            }
            OCI_MANIFEST | DOCKER_MANIFEST => (bytes, digest),
            SCHEMA1 | SCHEMA1_PLAIN => {
                return Err(RegistryError::invalid(
                    &name,
                    "the image has a Docker schema 1 manifest, which smelt does not read; \
                     push it again with a current docker, or convert it with skopeo copy",
                ));
            }
            other => {
                return Err(RegistryError::invalid(
                    &name,
                    format!("unknown manifest media type {other:?}"),
                ));
            }
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| RegistryError::invalid(&name, format!("malformed manifest: {e}")))?;
        let what = format!("config {} of {name}", manifest.config.digest);
        let attempts = BUILT_IN_ATTEMPTS + self.settings.download_retries;
        let config_bytes = self
            .retrying(attempts, &what, || {
                self.small_blob(&ep, source, &manifest.config, &what)
            })
            .await?;
        Ok(RemoteImage {
            source: source.clone(),
            digest,
            manifest,
            manifest_bytes: bytes,
            config_bytes,
        })
    }

    /// GETs a manifest by tag or digest: its bytes, media type and digest
    /// (checked against the digest asked for).
    async fn manifest(
        &self,
        ep: &Endpoint,
        r: &Reference,
        wanted: &str,
        name: &str,
    ) -> Result<(Vec<u8>, String, Digest), RegistryError> {
        let what = format!("getting the manifest of {name}");
        let url = format!("{}/v2/{}/manifests/{wanted}", ep.base, r.repository);
        let scopes = [scope(&r.repository, false)];
        let accept = [
            OCI_INDEX,
            OCI_MANIFEST,
            DOCKER_MANIFEST_LIST,
            DOCKER_MANIFEST,
            SCHEMA1,
        ]
        .join(", ");
        let attempts = BUILT_IN_ATTEMPTS + self.settings.download_retries;
        self.retrying(attempts, &what, || async {
            let response = self
                .send(ep, &scopes, &what, |http| {
                    Ok(http.get(&url).header(reqwest::header::ACCEPT, &accept))
                })
                .await?;
            if !response.status().is_success() {
                return Err(fail(response, &what).await);
            }
            let header = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string);
            let bytes = read_capped(response, MAX_MANIFEST, &what).await?;
            let digest = Digest::sha256(&bytes);
            if wanted.contains(':') && digest.as_str() != wanted {
                return Err(RegistryError::Digest {
                    what: what.clone(),
                    expected: wanted.to_string(),
                    actual: digest.to_string(),
                });
            }
            Ok((
                bytes.clone(),
                media_type_of(header.as_deref(), &bytes),
                digest,
            ))
        })
        .await
    }

    /// GETs a blob of `r`: the response, once its status says it is coming.
    async fn get_blob(
        &self,
        ep: &Endpoint,
        r: &Reference,
        digest: &Digest,
        what: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let url = format!("{}/v2/{}/blobs/{digest}", ep.base, r.repository);
        let scopes = [scope(&r.repository, false)];
        let response = self
            .send(ep, &scopes, what, |http| Ok(http.get(&url)))
            .await?;
        if !response.status().is_success() {
            return Err(fail(response, what).await);
        }
        Ok(response)
    }

    /// A small blob (a config) read into memory and verified.
    async fn small_blob(
        &self,
        ep: &Endpoint,
        r: &Reference,
        desc: &Descriptor,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let response = self.get_blob(ep, r, &desc.digest, what).await?;
        let bytes = read_capped(response, MAX_CONFIG, what).await?;
        let actual = Digest::sha256(&bytes);
        if actual != desc.digest {
            return Err(RegistryError::Digest {
                what: what.to_string(),
                expected: desc.digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Downloads the blob `desc` of `source` into `store` (unless it is
    /// there already), streaming and verifying its digest and size.
    pub async fn fetch_blob(
        &self,
        source: &Reference,
        desc: &Descriptor,
        store: &BlobStore,
    ) -> Result<PathBuf, RegistryError> {
        let path = store.path(&desc.digest);
        if path.exists() {
            return Ok(path);
        }
        let ep = self.endpoint(&source.registry, Direction::Pull).await?;
        let what = format!(
            "blob {} of {}/{}",
            desc.digest, source.registry, source.repository
        );
        let attempts = BUILT_IN_ATTEMPTS + self.settings.download_retries;
        let transfer = self.progress.start("downloaded", &desc.digest, desc.size);
        let result = self
            .retrying(attempts, &what, || {
                transfer.restart();
                self.fetch_blob_once(&ep, source, desc, store, &what, &transfer)
            })
            .await;
        match result {
            Ok(path) => {
                transfer.finish(None);
                Ok(path)
            }
            Err(e) => Err(e),
        }
    }

    async fn fetch_blob_once(
        &self,
        ep: &Endpoint,
        source: &Reference,
        desc: &Descriptor,
        store: &BlobStore,
        what: &str,
        transfer: &super::progress::Transfer,
    ) -> Result<PathBuf, RegistryError> {
        let response = self.get_blob(ep, source, &desc.digest, what).await?;
        let tmp = store.temp_file()?;
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(|e| RegistryError::io(what, e))?;
        let mut out =
            tokio::io::BufWriter::with_capacity(256 << 10, tokio::fs::File::from_std(file));
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| RegistryError::transport(what, &e))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            if size > desc.size {
                return Err(RegistryError::Digest {
                    what: what.to_string(),
                    expected: format!("{} ({} bytes)", desc.digest, desc.size),
                    actual: format!("more than {} bytes", desc.size),
                });
            }
            out.write_all(&chunk)
                .await
                .map_err(|e| RegistryError::io(what, e))?;
            transfer.advance(chunk.len() as u64);
        }
        out.flush().await.map_err(|e| RegistryError::io(what, e))?;
        let actual = Digest::from_sha256(hasher);
        if actual != desc.digest || size != desc.size {
            return Err(RegistryError::Digest {
                what: what.to_string(),
                expected: format!("{} ({} bytes)", desc.digest, desc.size),
                actual: format!("{actual} ({size} bytes)"),
            });
        }
        Ok(store.commit(tmp, &desc.digest)?)
    }

    /// Whether the repository `r` holds the blob `digest` (a HEAD).
    pub async fn has_blob(&self, r: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        let ep = self.endpoint(&r.registry, Direction::Pull).await?;
        let what = format!(
            "checking for blob {digest} in {}/{}",
            r.registry, r.repository
        );
        let url = format!("{}/v2/{}/blobs/{digest}", ep.base, r.repository);
        let scopes = [scope(&r.repository, false)];
        let attempts = BUILT_IN_ATTEMPTS + self.settings.download_retries;
        self.retrying(attempts, &what, || async {
            let response = self
                .send(&ep, &scopes, &what, |http| Ok(http.head(&url)))
                .await?;
            match response.status() {
                s if s.is_success() => Ok(true),
                reqwest::StatusCode::NOT_FOUND => Ok(false),
                _ => Err(fail(response, &what).await),
            }
        })
        .await
    }

    /// Downloads several blobs of `source`, a few at a time.
    pub async fn fetch_blobs(
        &self,
        source: &Reference,
        descs: &[Descriptor],
        store: &BlobStore,
    ) -> Result<(), RegistryError> {
        let mut jobs = futures_util::stream::iter(descs)
            .map(|d| self.fetch_blob(source, d, store))
            .buffer_unordered(4);
        while let Some(r) = jobs.next().await {
            r?;
        }
        Ok(())
    }
}

fn show(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

async fn read_capped(
    response: reqwest::Response,
    cap: usize,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| RegistryError::transport(what, &e))?;
        if out.len() + chunk.len() > cap {
            return Err(RegistryError::invalid(
                what,
                format!("larger than {} MiB", cap >> 20),
            ));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: arch.to_string(),
            os: os.to_string(),
            variant: variant.map(str::to_string),
        }
    }

    #[test]
    fn platforms_match_as_containerd_does() {
        let rows = [
            (p("linux", "amd64", None), p("linux", "amd64", None), true),
            (p("linux", "amd64", None), p("linux", "arm64", None), false),
            (
                p("linux", "arm64", None),
                p("linux", "arm64", Some("v8")),
                true,
            ),
            (
                p("linux", "arm64", Some("v8")),
                p("linux", "arm64", None),
                true,
            ),
            (
                p("linux", "arm", Some("v7")),
                p("linux", "arm", Some("v6")),
                false,
            ),
            (
                p("linux", "arm", Some("v7")),
                p("linux", "arm", Some("v7")),
                true,
            ),
            (p("linux", "arm", None), p("linux", "arm", Some("v6")), true),
            (
                p("linux", "amd64", None),
                p("windows", "amd64", None),
                false,
            ),
        ];
        for (want, have, ok) in rows {
            assert_eq!(platform_matches(&want, &have), ok, "{want:?} vs {have:?}");
        }
    }

    #[test]
    fn media_types_from_header_or_body() {
        assert_eq!(
            media_type_of(
                Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
                b"{}"
            ),
            OCI_INDEX
        );
        assert_eq!(
            media_type_of(Some("application/json"), br#"{"schemaVersion":1}"#),
            SCHEMA1
        );
        assert_eq!(
            media_type_of(None, br#"{"schemaVersion":2,"manifests":[]}"#),
            OCI_INDEX
        );
        assert_eq!(
            media_type_of(
                Some("text/plain"),
                br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json"}"#
            ),
            DOCKER_MANIFEST
        );
    }

    #[test]
    fn mirrors_come_first_and_fall_back() {
        let reg = Registry::new(super::super::Settings {
            mirrors: vec!["mirror.example:5000/hub".to_string()],
            registry_maps: vec![(
                "quay.io".to_string(),
                vec!["q1.example".to_string(), "q2.example".to_string()],
            )],
            ..Default::default()
        });
        let hub = Reference::parse("busybox").expect("valid");
        let names: Vec<String> = reg
            .pull_sources(&hub)
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "mirror.example:5000/hub/library/busybox",
                "docker.io/library/busybox"
            ]
        );
        let quay = Reference::parse("quay.io/a/b:1").expect("valid");
        let names: Vec<String> = reg
            .pull_sources(&quay)
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            names,
            ["q1.example/a/b:1", "q2.example/a/b:1", "quay.io/a/b:1"]
        );
    }
}
