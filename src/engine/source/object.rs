//! Tarball contexts in object stores, read through `object_store` and
//! streamed to the unpacker:
//!
//! - `s3://bucket/path` — credentials from the AWS environment
//!   (`AWS_ACCESS_KEY_ID`, …, web identity, ECS, instance metadata) or,
//!   without them, the shared credentials file's profile (`AWS_PROFILE`,
//!   `AWS_SHARED_CREDENTIALS_FILE`); region from `AWS_REGION` /
//!   `AWS_DEFAULT_REGION` or the profile's config; kaniko's `S3_ENDPOINT`
//!   and `S3_FORCE_PATH_STYLE`.
//! - `gs://bucket/path` — application default credentials
//!   (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's file, the metadata
//!   server); `STORAGE_EMULATOR_HOST` points at an emulator, as for
//!   Google's own clients.
//! - `https://<account>.blob.core.windows.net/<container>/<path>` — the
//!   key in `AZURE_STORAGE_ACCESS_KEY` (kaniko's variable) or the other
//!   `AZURE_*` settings; `AZURE_STORAGE_USE_EMULATOR=true` with
//!   `AZURITE_BLOB_STORAGE_URL` points at Azurite.
//!
//! As in kaniko, a path that is empty names `context.tar.gz`.

use super::{ChunkSender, DownloadError, SourceError, env, forward, get_streamed};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::sync::Arc;
use std::time::Duration;

/// kaniko's object name when a bucket URL names none.
const DEFAULT_OBJECT: &str = "context.tar.gz";

/// Which service holds the tarball.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    S3,
    Gcs,
    /// The storage account (the host's first label).
    Azure {
        account: String,
    },
}

/// A context tarball in an object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSource {
    pub store: Store,
    /// The bucket, or the Azure container.
    pub bucket: String,
    pub key: String,
}

impl ObjectSource {
    /// `s3://bucket/key` or `gs://bucket/key`.
    pub fn parse(spec: &str) -> Result<ObjectSource, SourceError> {
        let (scheme, rest) = spec.split_once("://").unwrap_or(("", spec));
        let store = match scheme {
            "s3" => Store::S3,
            "gs" => Store::Gcs,
            _ => {
                return Err(SourceError::NotObjectStore {
                    shown: super::shown_url(spec),
                    scheme: scheme.to_string(),
                });
            }
        };
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        Self::new(store, bucket, key, spec)
    }

    /// `<account>.blob.core.windows.net/<container>/<key>` (after
    /// `https://`); `None` when the host is not Azure blob storage.
    pub fn parse_azure(rest: &str) -> Option<Result<ObjectSource, SourceError>> {
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let account = host.strip_suffix(".blob.core.windows.net")?;
        let (container, key) = path.split_once('/').unwrap_or((path, ""));
        Some(Self::new(
            Store::Azure {
                account: account.to_string(),
            },
            container,
            key,
            &format!("https://{rest}"),
        ))
    }

    /// `spec` is the URL as given, for the error.
    fn new(store: Store, bucket: &str, key: &str, spec: &str) -> Result<ObjectSource, SourceError> {
        if bucket.is_empty() {
            return Err(SourceError::NoBucket {
                shown: super::shown_url(spec),
            });
        }
        let key = key.trim_matches('/');
        Ok(ObjectSource {
            store,
            bucket: bucket.to_string(),
            key: if key.is_empty() { DEFAULT_OBJECT } else { key }.to_string(),
        })
    }

    /// The URL as logs and errors show it.
    pub fn shown(&self) -> String {
        match &self.store {
            Store::S3 => format!("s3://{}/{}", self.bucket, self.key),
            Store::Gcs => format!("gs://{}/{}", self.bucket, self.key),
            Store::Azure { account } => format!(
                "https://{account}.blob.core.windows.net/{}/{}",
                self.bucket, self.key
            ),
        }
    }

    /// Streams the object down `tx`.
    pub async fn download(self, tx: ChunkSender) -> Result<(), DownloadError> {
        use object_store::{aws, azure};
        let options = client_options();
        let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match &self.store {
            Store::Gcs => return self.gcs_download(&tx).await,
            Store::S3 => {
                let builder = aws::AmazonS3Builder::new().with_client_options(options);
                let builder = from_env(builder, "AWS_", aws::AmazonS3Builder::with_config);
                s3_settings(builder, &self.bucket)
                    .build()
                    .map(|s| Arc::new(s) as _)
            }
            Store::Azure { account } => {
                let mut builder = azure::MicrosoftAzureBuilder::new().with_client_options(options);
                builder = from_env(builder, "AZURE_", azure::MicrosoftAzureBuilder::with_config);
                if let Some(endpoint) = env("IDENTITY_ENDPOINT") {
                    builder = builder.with_msi_endpoint(endpoint);
                }
                if let Some(key) = env("AZURE_STORAGE_ACCESS_KEY") {
                    builder = builder.with_access_key(key);
                }
                builder
                    .with_account(account)
                    .with_container_name(&self.bucket)
                    .build()
                    .map(|s| Arc::new(s) as _)
            }
        };
        let store = built.map_err(DownloadError::Setup)?;
        let key = ObjectPath::from(self.key.as_str());
        let object = store.get(&key).await.map_err(|e| self.explain(&e))?;
        forward(object.into_stream(), &tx, |e| self.explain(&e)).await
    }

    /// A GCS object through the XML API's plain GET, with object_store's
    /// credentials (application default credentials, service accounts,
    /// the metadata server). object_store's own `get` insists on a
    /// `Last-Modified` header that GCS sends but its emulators do not.
    async fn gcs_download(&self, tx: &ChunkSender) -> Result<(), DownloadError> {
        use object_store::gcp::GoogleCloudStorageBuilder;
        let emulator = env("STORAGE_EMULATOR_HOST").map(|host| {
            if host.contains("://") {
                host
            } else {
                format!("http://{host}")
            }
        });
        let base = emulator
            .as_deref()
            .unwrap_or("https://storage.googleapis.com");
        let mut url = reqwest::Url::parse(base).map_err(|source| DownloadError::Endpoint {
            base: base.to_string(),
            source,
        })?;
        url.path_segments_mut()
            .map_err(|()| DownloadError::NotBaseUrl(base.to_string()))?
            .pop_if_empty()
            .push(&self.bucket)
            .extend(self.key.split('/'));
        let client = crate::registry::download_client().map_err(DownloadError::Http)?;
        let mut request = client.get(url);
        if emulator.is_none() {
            let mut builder =
                GoogleCloudStorageBuilder::new().with_client_options(client_options());
            builder = from_env(builder, "GOOGLE_", GoogleCloudStorageBuilder::with_config);
            if let Some(path) = env("SERVICE_ACCOUNT") {
                builder = builder.with_service_account_path(path);
            }
            let gcs = builder
                .with_bucket_name(&self.bucket)
                .build()
                .map_err(|e| self.explain(&e))?;
            let token = gcs
                .credentials()
                .get_credential()
                .await
                .map_err(DownloadError::Credentials)?;
            request = request.bearer_auth(&token.bearer);
        }
        get_streamed(request, tx, |status, body| {
            let detail = xml_error(body).unwrap_or_else(|| status.to_string());
            self.worded(Some(status.as_u16()), detail, |detail| {
                DownloadError::Refused { status, detail }
            })
        })
        .await
    }

    /// What failed, in words; object_store's own text follows (it names
    /// the request, never the credentials, which travel in headers).
    fn explain(&self, e: &object_store::Error) -> DownloadError {
        let text = e.to_string();
        // the service's own words, when its XML error body is in the text
        let detail = xml_error(&text).unwrap_or(text);
        let status = match e {
            object_store::Error::NotFound { .. } => Some(404),
            object_store::Error::Unauthenticated { .. } => Some(401),
            object_store::Error::PermissionDenied { .. } => Some(403),
            _ => None,
        };
        self.worded(status, detail, DownloadError::Store)
    }

    /// A refusal the status names, in words with the service's `detail`;
    /// `otherwise(detail)` for any other.
    fn worded(
        &self,
        status: Option<u16>,
        detail: String,
        otherwise: impl FnOnce(String) -> DownloadError,
    ) -> DownloadError {
        let what = match &self.store {
            Store::Azure { .. } => "container or blob",
            _ => "bucket or object",
        };
        match status {
            Some(404) => DownloadError::NotFound { what, detail },
            Some(401) => DownloadError::Unauthenticated { detail },
            Some(403) => DownloadError::Denied { detail },
            _ => otherwise(detail),
        }
    }
}

/// `<Code>` and `<Message>` of a storage service's XML error body.
fn xml_error(body: &str) -> Option<String> {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find("</")? + start;
        Some(body[start..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (code, message) => code.or(message),
    }
}

/// What the builders' own `from_env` does, on a builder that already has
/// smelt's client options (`from_env` then `with_client_options` would
/// drop the client settings the environment gave).
fn from_env<B, K: std::str::FromStr>(
    mut builder: B,
    prefix: &str,
    set: impl Fn(B, K, String) -> B,
) -> B {
    for (key, value) in std::env::vars() {
        if key.starts_with(prefix)
            && let Ok(config) = key.to_ascii_lowercase().parse::<K>()
        {
            builder = set(builder, config, value);
        }
    }
    builder
}

/// The HTTP client: smelt's CA roots, no whole-request time limit (a
/// context may take minutes), but a read timeout for a stalled one.
fn client_options() -> object_store::ClientOptions {
    let options = object_store::ClientOptions::new()
        .with_timeout_disabled()
        .with_connect_timeout(Duration::from_secs(30))
        .with_read_timeout(Duration::from_secs(120))
        .with_no_system_certificates(true);
    crate::registry::ca_roots_der()
        .iter()
        .filter_map(|der| object_store::Certificate::from_der(der).ok())
        .fold(options, object_store::ClientOptions::with_root_certificate)
}

/// S3 settings: the environment, kaniko's endpoint variables, and the
/// shared files' profile when the environment has no keys.
fn s3_settings(
    builder: object_store::aws::AmazonS3Builder,
    bucket: &str,
) -> object_store::aws::AmazonS3Builder {
    let mut builder = builder.with_bucket_name(bucket);
    let profile = env("AWS_PROFILE").unwrap_or_else(|| "default".to_string());
    if env("AWS_ACCESS_KEY_ID").is_none() {
        let file = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(std::path::PathBuf::from)
            .or_else(|| home_file(".aws/credentials"));
        if let Some(keys) = file.and_then(|f| ini_section(&f, &profile)) {
            for (k, v) in keys {
                builder = match k.as_str() {
                    "aws_access_key_id" => builder.with_access_key_id(v),
                    "aws_secret_access_key" => builder.with_secret_access_key(v),
                    "aws_session_token" => builder.with_token(v),
                    _ => builder,
                };
            }
        }
    }
    if env("AWS_REGION").is_none() && env("AWS_DEFAULT_REGION").is_none() {
        let file = env("AWS_CONFIG_FILE")
            .map(std::path::PathBuf::from)
            .or_else(|| home_file(".aws/config"));
        let section = if profile == "default" {
            profile
        } else {
            format!("profile {profile}")
        };
        let region = file
            .and_then(|f| ini_section(&f, &section))
            .and_then(|keys| keys.into_iter().find(|(k, _)| k == "region"))
            .map_or_else(|| "us-east-1".to_string(), |(_, v)| v);
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = env("S3_ENDPOINT") {
        let path_style = env("S3_FORCE_PATH_STYLE").is_some_and(|v| v == "true" || v == "1");
        builder = builder.with_allow_http(endpoint.starts_with("http://"));
        builder = if path_style {
            builder.with_endpoint(endpoint)
        } else {
            // the AWS SDKs' way: the bucket is the host's first label
            let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", &endpoint));
            builder
                .with_endpoint(format!("{scheme}://{bucket}.{host}"))
                .with_virtual_hosted_style_request(true)
        };
    }
    builder
}

fn home_file(name: &str) -> Option<std::path::PathBuf> {
    env("HOME").map(|home| std::path::Path::new(&home).join(name))
}

/// The `key = value` pairs of `[section]` in an INI file (the AWS shared
/// files' format); `None` when the file or the section is missing.
fn ini_section(file: &std::path::Path, section: &str) -> Option<Vec<(String, String)>> {
    let text = fs_err::read_to_string(file).ok()?;
    let mut found = None;
    let mut current = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.trim() == section;
            if current {
                found.get_or_insert_with(Vec::new);
            }
        } else if current && let Some((k, v)) = line.split_once('=') {
            found
                .get_or_insert_with(Vec::new)
                .push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let s3 = ObjectSource::parse("s3://b/dir/ctx.tar.gz").unwrap();
        assert_eq!((s3.store, s3.bucket.as_str()), (Store::S3, "b"));
        assert_eq!(s3.key, "dir/ctx.tar.gz");
        assert_eq!(ObjectSource::parse("gs://b").unwrap().key, DEFAULT_OBJECT);
        assert_eq!(ObjectSource::parse("gs://b/").unwrap().key, DEFAULT_OBJECT);
        assert_eq!(
            ObjectSource::parse("s3:///x").unwrap_err().to_string(),
            "--context s3:///x: no bucket (or container) in the URL"
        );
        let azure = ObjectSource::parse_azure("acct.blob.core.windows.net/c/p/x.tar.gz")
            .unwrap()
            .unwrap();
        assert_eq!(
            azure.store,
            Store::Azure {
                account: "acct".into()
            }
        );
        assert_eq!(
            (azure.bucket.as_str(), azure.key.as_str()),
            ("c", "p/x.tar.gz")
        );
        assert!(ObjectSource::parse_azure("example.com/c/x.tar.gz").is_none());
        assert_eq!(
            azure.shown(),
            "https://acct.blob.core.windows.net/c/p/x.tar.gz"
        );
    }

    #[test]
    fn ini_sections() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("credentials");
        fs_err::write(
            &file,
            "[default]\naws_access_key_id = A\n# note\n[profile ci]\nregion=eu-west-1\n[empty]\n",
        )
        .unwrap();
        assert_eq!(
            ini_section(&file, "default").unwrap(),
            vec![("aws_access_key_id".to_string(), "A".to_string())]
        );
        assert_eq!(ini_section(&file, "profile ci").unwrap()[0].1, "eu-west-1");
        assert_eq!(ini_section(&file, "empty").unwrap(), vec![]);
        assert!(ini_section(&file, "other").is_none());
    }
}
