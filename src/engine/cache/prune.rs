//! `smelt cache prune`: removes the layer cache's old entries from its
//! repository through the registry API. Every tag is listed, each
//! manifest read once (tags naming the same manifest, an entry's key and
//! its `next-` tag, go together), and an entry older than the age asked
//! for (by the time its annotations say it was stored), and not among
//! the newest `--keep-last`, is deleted by digest, which removes its tags
//! with it. A manifest that is not a smelt cache entry is never deleted:
//! it is reported and left alone. What a deletion frees is counted as the
//! layers no remaining manifest of the repository names; the registry
//! frees them only when it garbage-collects.
//!
//! It must not delete anything when asked for a dry run, nor delete
//! before every manifest was read.

use super::EntrySource;
use super::entry::parse_entry;
use super::key::LABEL;
use crate::image::{Digest, Manifest};
use crate::registry::{Deleted, Reference, Registry, RegistryError, Settings};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// What to prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// The cache repository (registry and repository, no tag).
    pub repo: Reference,
    /// Entries stored longer ago than this go.
    pub older_than: Duration,
    /// The newest this many entries stay, whatever their age.
    pub keep_last: Option<usize>,
    /// Report what would go; delete nothing.
    pub dry_run: bool,
}

/// One manifest of the repository, with every tag naming it.
#[derive(Debug, Clone)]
struct Listed {
    digest: Digest,
    tags: Vec<String>,
    /// The blobs it names (config and layers) with their sizes: what its
    /// deletion may free.
    blobs: Vec<(Digest, u64)>,
    /// When it was stored (seconds since the epoch), or why it is not a
    /// smelt cache entry.
    stored: Result<i64, String>,
}

/// An entry removed (or, in a dry run, that would be).
#[derive(Debug, Clone)]
pub struct PrunedEntry {
    pub digest: Digest,
    /// Its tags: the key first, then the `next-` tags.
    pub tags: Vec<String>,
    /// How long ago it was stored.
    pub age: Duration,
}

/// What a prune did.
#[derive(Debug)]
pub struct PruneReport {
    /// The cache repository, as `registry/repository`.
    pub repo: String,
    /// The entries removed (dry run: to remove), oldest first.
    pub removed: Vec<PrunedEntry>,
    /// Cache entries left in place.
    pub kept: usize,
    /// Manifests left alone, each with its tags and why.
    pub skipped: Vec<(Vec<String>, String)>,
    /// Bytes of the blobs only removed entries named.
    pub freed: u64,
    pub dry_run: bool,
    /// Why deleting stopped (what was removed before is in `removed`).
    pub error: Option<PruneError>,
}

/// Why a prune failed.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    #[error("starting the network runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The registry answered a deletion with 405 (the distribution
    /// registry's `UNSUPPORTED` when deletes are not enabled).
    #[error(
        "{registry} refuses to delete manifests ({message}): the distribution registry deletes only \
         with `storage: delete: enabled: true` in its configuration (or \
         REGISTRY_STORAGE_DELETE_ENABLED=true in its environment); other registries need deletion \
         allowed for {repo} and credentials that may delete"
    )]
    DeletesRefused {
        registry: String,
        repo: String,
        message: String,
    },
}

/// Manifests read at once.
const READS_AT_ONCE: usize = 8;
/// Deletions sent at once, after the first has shown deletes are allowed.
const DELETES_AT_ONCE: usize = 4;

/// Prunes `opts.repo` as `opts` says, with `settings` (and so the
/// credentials every smelt registry call uses). An error before any
/// deletion is returned as one; one while deleting is in the report,
/// after what was removed.
pub fn prune(settings: Settings, opts: &PruneOptions) -> Result<PruneReport, PruneError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PruneError::Runtime)?;
    let registry = Registry::new(settings);
    runtime.block_on(prune_with(&registry, opts))
}

async fn prune_with(registry: &Registry, opts: &PruneOptions) -> Result<PruneReport, PruneError> {
    use futures_util::StreamExt;
    let repo = Reference {
        tag: None,
        digest: None,
        ..opts.repo.clone()
    };
    let tags = registry.list_tags(&repo).await?;
    log::info!(
        "{} tags in {}/{}",
        tags.len(),
        repo.registry,
        repo.repository
    );
    let reads = futures_util::stream::iter(&tags)
        .map(|tag| {
            let r = Reference {
                tag: Some(tag.clone()),
                ..repo.clone()
            };
            async move {
                match registry.manifest_at(&r).await {
                    Ok((bytes, _, digest)) => Ok(Some(Ok((r, bytes, digest)))),
                    // untagged since it was listed
                    Err(RegistryError::Status { status: 404, .. }) => Ok(None),
                    // what smelt cannot read is no entry of its own
                    Err(e @ (RegistryError::Invalid { .. } | RegistryError::Digest { .. })) => {
                        Ok(Some(Err((tag.clone(), e.to_string()))))
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .buffered(READS_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    let mut by_digest: BTreeMap<Digest, Listed> = BTreeMap::new();
    let mut unreadable = Vec::new();
    for read in reads {
        let (r, bytes, digest) = match read? {
            None => continue,
            Some(Ok(read)) => read,
            Some(Err((tag, why))) => {
                unreadable.push((
                    vec![tag],
                    format!("unreadable, not a smelt cache entry ({why})"),
                ));
                continue;
            }
        };
        let tag = r.tag.clone().unwrap_or_default();
        by_digest
            .entry(digest.clone())
            .or_insert_with(|| classify(&r, &bytes, digest))
            .tags
            .push(tag);
    }
    let listed: Vec<Listed> = by_digest.into_values().map(key_tag_first).collect();
    let now = jiff::Timestamp::now().as_second();
    let chosen = choose(&listed, now, opts);
    let mut report = PruneReport {
        repo: format!("{}/{}", repo.registry, repo.repository),
        removed: Vec::new(),
        kept: chosen.kept,
        skipped: listed
            .iter()
            .filter_map(|l| {
                l.stored
                    .as_ref()
                    .err()
                    .map(|why| (l.tags.clone(), why.clone()))
            })
            .chain(unreadable)
            .collect(),
        freed: freed(&listed, &chosen.remove),
        dry_run: opts.dry_run,
        error: None,
    };
    let entry = |i: usize| PrunedEntry {
        digest: listed[i].digest.clone(),
        tags: listed[i].tags.clone(),
        age: Duration::from_secs(
            u64::try_from(now - *listed[i].stored.as_ref().unwrap_or(&now)).unwrap_or(0),
        ),
    };
    if opts.dry_run {
        report.removed = chosen.remove.iter().map(|&i| entry(i)).collect();
        return Ok(report);
    }
    let delete = |i: usize| {
        let repo = &repo;
        let digest = listed[i].digest.clone();
        async move { (i, registry.delete_manifest(repo, &digest).await) }
    };
    let Some((&first, rest)) = chosen.remove.split_first() else {
        return Ok(report);
    };
    // the first alone: a registry that refuses deletes refuses them all
    let first = delete(first).await;
    if let (_, Err(e)) = first {
        return Err(refused(&repo, e));
    }
    let answers = futures_util::stream::iter(rest.iter().copied())
        .map(delete)
        .buffered(DELETES_AT_ONCE)
        .collect::<Vec<_>>()
        .await;
    let mut removed = Vec::new();
    for (i, answer) in std::iter::once(first).chain(answers) {
        match answer {
            Ok(deleted) => {
                if deleted == Deleted::Gone {
                    log::info!("{}@{} was gone already", report.repo, listed[i].digest);
                }
                removed.push(i);
            }
            Err(e) => {
                if report.error.is_none() {
                    report.error = Some(refused(&repo, e));
                }
            }
        }
    }
    // what stays after a failed deletion frees nothing
    report.kept += chosen.remove.len() - removed.len();
    report.freed = freed(&listed, &removed);
    report.removed = removed.into_iter().map(entry).collect();
    Ok(report)
}

/// A deletion's error, told as the registry's refusal of deletes when it
/// answered 405.
fn refused(repo: &Reference, e: RegistryError) -> PruneError {
    match e {
        RegistryError::Status {
            status: 405,
            message,
            ..
        } => PruneError::DeletesRefused {
            registry: repo.registry.clone(),
            repo: format!("{}/{}", repo.registry, repo.repository),
            message: if message.is_empty() {
                "405 Method Not Allowed".to_string()
            } else {
                format!("405 {message}")
            },
        },
        e => PruneError::Registry(e),
    }
}

/// What one manifest is: a smelt cache entry and when it was stored, or
/// why not; and the blobs it names.
fn classify(r: &Reference, bytes: &[u8], digest: Digest) -> Listed {
    let blobs = serde_json::from_slice::<Manifest>(bytes)
        .map(|m| {
            std::iter::once(&m.config)
                .chain(&m.layers)
                .map(|d| (d.digest.clone(), d.size))
                .collect()
        })
        .unwrap_or_default();
    // a step's entry, or a saved cache mount (`cache/mounts.rs`)
    let annotations = parse_entry(&EntrySource::Registry(r.clone()), bytes)
        .map(|e| e.annotations)
        .or_else(|_| {
            serde_json::from_slice::<Manifest>(bytes)
                .ok()
                .and_then(|m| m.annotations)
                .filter(|a| a.contains_key(&format!("{LABEL}mount")))
                .ok_or(())
        });
    let stored = annotations
        .map_err(|_| "not a smelt cache entry".to_string())
        .and_then(|annotations| {
            // the marker every entry carries: when it was stored
            let stored = annotations
                .get(&format!("{LABEL}stored"))
                .ok_or_else(|| "a cache entry with no time stored".to_string())?;
            stored
                .parse::<jiff::Timestamp>()
                .map(|t| t.as_second())
                .map_err(|_| format!("a cache entry whose time stored ({stored:?}) is unreadable"))
        });
    Listed {
        digest,
        tags: Vec::new(),
        blobs,
        stored,
    }
}

/// Orders an entry's tags as a reader expects: its key, then its
/// `next-` tags.
fn key_tag_first(mut l: Listed) -> Listed {
    l.tags
        .sort_by(|a, b| (a.starts_with("next-"), a).cmp(&(b.starts_with("next-"), b)));
    l
}

/// Which entries go.
#[derive(Debug, PartialEq, Eq)]
struct Chosen {
    /// Indices into the listing, oldest first.
    remove: Vec<usize>,
    /// Cache entries that stay.
    kept: usize,
}

/// The entries older than `opts.older_than` at `now` (a `--cache-ttl` of
/// that length would miss them), less the newest `opts.keep_last`;
/// manifests that are not cache entries never.
fn choose(listed: &[Listed], now: i64, opts: &PruneOptions) -> Chosen {
    let mut entries: Vec<(usize, i64)> = listed
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.stored.as_ref().ok().map(|s| (i, *s)))
        .collect();
    // newest first
    entries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let keep = opts.keep_last.unwrap_or(0);
    let limit = i64::try_from(opts.older_than.as_secs()).unwrap_or(i64::MAX);
    let mut remove: Vec<usize> = entries
        .iter()
        .skip(keep)
        // `--older-than 0` is every entry, one stored this second too
        .filter(|(_, stored)| limit == 0 || now.saturating_sub(*stored) > limit)
        .map(|(i, _)| *i)
        .collect();
    remove.reverse();
    Chosen {
        kept: entries.len() - remove.len(),
        remove,
    }
}

/// Bytes of the blobs that only the manifests in `remove` name.
fn freed(listed: &[Listed], remove: &[usize]) -> u64 {
    let removed: BTreeSet<usize> = remove.iter().copied().collect();
    let staying: BTreeSet<&Digest> = listed
        .iter()
        .enumerate()
        .filter(|(i, _)| !removed.contains(i))
        .flat_map(|(_, l)| l.blobs.iter().map(|(d, _)| d))
        .collect();
    let going: BTreeMap<&Digest, u64> = remove
        .iter()
        .flat_map(|&i| listed[i].blobs.iter().map(|(d, s)| (d, *s)))
        .filter(|(d, _)| !staying.contains(d))
        .collect();
    going.values().sum()
}

/// An age or duration as `--older-than` takes it: Go's (`168h`, `30m`,
/// `1h30m`, as `--cache-ttl`) with days (`7d`) and weeks (`2w`) besides.
pub fn parse_age(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let unit = rest[number..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .map_or(rest.len(), |n| number + n);
        let (value, part) = (&rest[..number], &rest[..unit]);
        let day = 86_400.0;
        let seconds = match &rest[number..unit] {
            "d" => value.parse::<f64>().ok()? * day,
            "w" => value.parse::<f64>().ok()? * 7.0 * day,
            _ => crate::dockerfile::instruction::parse_go_duration(part)? as f64 / 1e9,
        };
        if !seconds.is_finite() || value.is_empty() {
            return None;
        }
        total += Duration::try_from_secs_f64(seconds).ok()?;
        rest = &rest[unit..];
    }
    Some(total)
}

/// An age as a person reads it: `15d 3h`, `3h 12m`, `4m 10s`, `42s`.
pub fn show_age(age: Duration) -> String {
    let s = age.as_secs();
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::human_size;

    fn digest(n: u8) -> Digest {
        Digest::parse(&format!("sha256:{}", format!("{n:02x}").repeat(32))).unwrap()
    }

    fn entry(n: u8, stored: Result<i64, String>, blobs: &[(u8, u64)]) -> Listed {
        Listed {
            digest: digest(n),
            tags: vec![format!("key{n}")],
            blobs: blobs.iter().map(|&(b, s)| (digest(b), s)).collect(),
            stored,
        }
    }

    fn opts(older_than: u64, keep_last: Option<usize>) -> PruneOptions {
        PruneOptions {
            repo: Reference::parse("127.0.0.1:5000/app/cache").unwrap(),
            older_than: Duration::from_secs(older_than),
            keep_last,
            dry_run: false,
        }
    }

    #[test]
    fn old_entries_go_newest_kept_others_never() {
        let now = 10_000;
        let listed = vec![
            entry(1, Ok(now - 5000), &[(11, 100), (50, 7)]),
            entry(2, Ok(now - 100), &[(12, 200), (50, 7)]),
            entry(3, Err("not a smelt cache entry".into()), &[(13, 300)]),
            entry(4, Ok(now - 3000), &[(13, 300), (14, 400)]),
            entry(5, Ok(now - 9000), &[(15, 500)]),
        ];
        // older than 1000 s: 1, 4 and 5 (oldest first); 3 never
        let c = choose(&listed, now, &opts(1000, None));
        assert_eq!(
            c,
            Chosen {
                remove: vec![4, 0, 3],
                kept: 1
            }
        );
        // blob 50 stays with entry 2, blob 13 with the foreign manifest
        assert_eq!(freed(&listed, &c.remove), 100 + 400 + 500);
        // the newest 2 stay whatever their age
        let c = choose(&listed, now, &opts(1000, Some(2)));
        assert_eq!(
            c,
            Chosen {
                remove: vec![4, 0],
                kept: 2
            }
        );
        // --older-than 0 with --keep-last: everything but the newest
        let c = choose(&listed, now, &opts(0, Some(1)));
        assert_eq!(c.remove, vec![4, 0, 3]);
        // an age at the limit is not older than it
        let c = choose(&listed, now, &opts(5000, None));
        assert_eq!(c.remove, vec![4]);
        assert_eq!(choose(&[], now, &opts(0, None)).remove, Vec::<usize>::new());
        // 0 is every entry, one stored just now too
        let just_now = [entry(6, Ok(now), &[])];
        assert_eq!(choose(&just_now, now, &opts(0, None)).remove, vec![0]);
        assert_eq!(
            choose(&just_now, now, &opts(1, None)).remove,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn ages_in_go_units_days_and_weeks() {
        let h = |n: u64| Duration::from_secs(n * 3600);
        assert_eq!(parse_age("168h"), Some(h(168)));
        assert_eq!(parse_age("7d"), Some(h(168)));
        assert_eq!(parse_age("2w"), Some(h(336)));
        assert_eq!(parse_age("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_age("336h0m0s"), Some(h(336)));
        assert_eq!(parse_age("1d12h"), Some(h(36)));
        assert_eq!(parse_age("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_age("0"), Some(Duration::ZERO));
        for bad in ["", "d", "7", "7y", "1.2.3d", "-1d", "h1"] {
            assert_eq!(parse_age(bad), None, "{bad}");
        }
        assert_eq!(show_age(Duration::from_secs(42)), "42s");
        assert_eq!(show_age(Duration::from_secs(250)), "4m 10s");
        assert_eq!(show_age(h(3) + Duration::from_secs(720)), "3h 12m");
        assert_eq!(show_age(h(15 * 24 + 3)), "15d 3h");
        assert_eq!(human_size(41_800_000), "41.8 MB");
        assert_eq!(human_size(512), "512 B");
    }

    #[test]
    fn a_405_is_told_as_deletes_refused_and_what_to_change() {
        let repo = Reference::parse("127.0.0.1:5000/app/cache").unwrap();
        let status = |status, message: &str| RegistryError::Status {
            what: "deleting manifest".to_string(),
            status,
            message: message.to_string(),
        };
        let e = refused(
            &repo,
            status(405, "UNSUPPORTED: The operation is unsupported."),
        )
        .to_string();
        assert!(
            e.starts_with("127.0.0.1:5000 refuses to delete manifests (405 UNSUPPORTED"),
            "{e}"
        );
        assert!(e.contains("storage: delete: enabled: true"), "{e}");
        assert!(e.contains("127.0.0.1:5000/app/cache"), "{e}");
        let e = refused(&repo, status(500, "boom")).to_string();
        assert_eq!(e, "deleting manifest: the registry answered 500: boom");
    }

    #[test]
    fn only_smelt_entries_count_as_entries() {
        let r = Reference::parse("127.0.0.1:5000/app/cache:t").unwrap();
        let foreign = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0101010101010101010101010101010101010101010101010101010101010101","size":3},
            "layers":[]}"#;
        let l = classify(&r, foreign, digest(9));
        assert_eq!(l.stored, Err("not a smelt cache entry".to_string()));
        assert_eq!(l.blobs, vec![(digest(1), 3)]);
        assert!(classify(&r, b"not json", digest(9)).stored.is_err());
        let l = key_tag_first(Listed {
            tags: vec!["next-a".into(), "b".into()],
            ..l
        });
        assert_eq!(l.tags, ["b", "next-a"]);
    }
}
