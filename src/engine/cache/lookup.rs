//! Using the cache during a stage: every step's key and the entries found
//! for them (all looked up at once, misses explained), whether a hit's
//! layer is still in the cache repository, fetching it, and storing what
//! a step that ran made.

use super::key::{LABEL, line_tag};
use super::{CacheEntry, CacheError, KeyInputs, step_keys};
use crate::dockerfile::{Instruction, Located};
use crate::engine::EngineError;
use crate::engine::copy_sources::CopySources;
use crate::engine::remote::Remote;
use crate::engine::scope::BuildArgs;
use crate::engine::stage::{BuildEnv, StageState};
use crate::image::Descriptor;
use std::collections::BTreeMap;

/// Why a step missed when no entry has its key.
const NOT_FOUND: &str = "not in the cache";

/// The cache keys of `steps` and the entries found for them (none when
/// the cache is off), and the key after the last step. `base` is the
/// stage's base as a miss names it (an image digest, `stage NAME`). The
/// stage's first miss is explained in one info line, against the newest
/// entry made for the same step ([`super::key::line_tag`]: one more GET);
/// the misses after it follow from it.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub fn look_up(
    env: &BuildEnv<'_>,
    remote: &Remote,
    state: &StageState,
    args: &mut BuildArgs,
    steps: &[&Located<Instruction>],
    sources: &CopySources,
    base_key: String,
    base: &str,
) -> Result<(Vec<Option<KeyInputs>>, Vec<Option<CacheEntry>>, String), EngineError> {
    let label = &state.label;
    let no_hits = || {
        steps
            .iter()
            .map(|_| None)
            .collect::<Vec<Option<CacheEntry>>>()
    };
    let Some(cache) = env.cache.as_ref().filter(|c| c.usable()) else {
        let no_keys = steps.iter().map(|_| None).collect();
        return Ok((no_keys, no_hits(), base_key));
    };
    let (mut keys, final_key, texts) =
        step_keys(state, env, cache, args, steps, sources, base_key)?;
    for (i, inputs) in keys.iter_mut().enumerate() {
        if let Some(inputs) = inputs {
            inputs.record.base = base.to_string();
            inputs.line_tag = Some(line_tag(&env.dockerfile.file, label, i, env.platform));
        }
    }
    let wanted: Vec<String> = keys.iter().flatten().map(|k| k.key.clone()).collect();
    let mut hits = no_hits();
    if wanted.is_empty() {
        return Ok((keys, hits, final_key));
    }
    let Some(answers) = cache.waiting(|left| cache.lookup(remote, &wanted, left)) else {
        return Ok((keys, hits, final_key));
    };
    let mut answers = answers?.into_iter();
    // misses, with why so far
    let mut misses: Vec<(usize, &'static str)> = Vec::new();
    for (i, inputs) in keys.iter().enumerate() {
        if inputs.is_none() {
            continue;
        }
        let Some(answer) = answers.next() else { break };
        match answer {
            Ok(Some(entry)) if cache.fresh(&entry) => hits[i] = Some(entry),
            Ok(Some(_)) => misses.push((i, "older than --cache-ttl")),
            Ok(None) => misses.push((i, NOT_FOUND)),
            Err(e) => {
                cache.give_up(&e.to_string());
                return Ok((keys, no_hits(), final_key));
            }
        }
    }
    log::info!(
        "[{label}] cache: {} of {} steps found",
        hits.iter().flatten().count(),
        wanted.len()
    );
    let first = misses.first().copied();
    let mut changed: Option<Vec<String>> = None;
    if let Some((m, why)) = first
        && let Some(inputs) = &keys[m]
    {
        let step = steps[m];
        let reason = if why == NOT_FOUND {
            let earlier = earlier_entry(cache, remote, inputs);
            if let Some(entry) = &earlier {
                changed = Some(inputs.changed_from(&entry.annotations));
            }
            explain(inputs, earlier.as_ref(), steps, &texts, m)
        } else {
            format!("its entry is {why}")
        };
        log::info!(
            "[{label}] cache miss at {}:{} {}: {reason}",
            env.dockerfile.file,
            step.line,
            shorten(&inputs.instruction, 80),
        );
    }
    let why: BTreeMap<usize, &str> = misses.iter().copied().collect();
    for (i, inputs) in keys.iter().enumerate() {
        let Some(inputs) = inputs else { continue };
        let step = steps[i];
        let result = if hits[i].is_some() { "hit" } else { "miss" };
        // (a miss for age has a key of its own that did not change)
        let follows = first.filter(|(m, _)| *m < i && why.get(&i) == Some(&NOT_FOUND));
        if let Some((m, _)) = follows {
            log::debug!(
                "[{label}] line {}: cache miss {}: after a miss at line {}",
                step.line,
                &inputs.key[..12],
                steps[m].line
            );
        } else {
            log::debug!(
                "[{label}] line {}: cache {result} {}{}",
                step.line,
                &inputs.key[..12],
                why.get(&i).map(|w| format!(" ({w})")).unwrap_or_default()
            );
        }
        let what_changed = first.filter(|(m, _)| *m == i).and(changed.as_ref());
        cache.record(serde_json::json!({
            "stage": label,
            "line": step.line,
            "instruction": inputs.instruction,
            "key": inputs.key,
            "result": result,
            "why": why.get(&i),
            "changed": what_changed,
            "after_line": follows.map(|(m, _)| steps[m].line),
        }));
    }
    Ok((keys, hits, final_key))
}

/// The newest entry made for the step `inputs` is the key of (by its
/// line tag), within the cache's time; `None` if there is none, or the
/// question failed (a miss is not worth a warning).
fn earlier_entry(cache: &super::Cache, remote: &Remote, inputs: &KeyInputs) -> Option<CacheEntry> {
    let tag = inputs.line_tag.clone()?;
    match cache.waiting(|left| cache.lookup(remote, std::slice::from_ref(&tag), left)) {
        Some(Ok(answers)) => answers.into_iter().next()?.ok().flatten(),
        Some(Err(e)) => {
            log::debug!("looking up the entry before {}: {e}", inputs.key);
            None
        }
        None => None,
    }
}

/// Why the step `m` of `steps` (whose key is `inputs`) missed, compared
/// with `earlier`, the newest entry made for it: the base, or an earlier
/// step (the first where the two builds part, with what changed in it if
/// known), or which of its own inputs changed.
fn explain(
    inputs: &KeyInputs,
    earlier: Option<&CacheEntry>,
    steps: &[&Located<Instruction>],
    texts: &[String],
    m: usize,
) -> String {
    let Some(earlier) = earlier else {
        return "no earlier entry for this step".to_string();
    };
    let ours = &inputs.record;
    let theirs = earlier.record();
    if let Some(theirs) = &theirs
        && !ours.chain.is_empty()
        && !theirs.chain.is_empty()
    {
        let parted = ours
            .chain
            .iter()
            .zip(&theirs.chain)
            .position(|(a, b)| a != b)
            .or_else(|| (ours.chain.len() != theirs.chain.len()).then_some(0));
        match parted {
            Some(0) if ours.base != theirs.base => {
                return format!(
                    "the base changed ({}→{})",
                    short_digest(&theirs.base),
                    short_digest(&ours.base)
                );
            }
            Some(0) => return format!("the base ({}) changed", short_digest(&ours.base)),
            Some(d) => {
                // the key after step d-1 differs: that step changed
                let t = d - 1;
                let text = texts.get(t).map_or("", String::as_str);
                let what = ours
                    .files
                    .get(&t)
                    .zip(theirs.files.get(&t))
                    .and_then(|(a, b)| a.changed_from(b))
                    .or_else(|| ours.vars_changed_from(theirs));
                return format!(
                    "after a change at line {} {}{}",
                    steps[t].line,
                    shorten(text, 60),
                    what.map(|w| format!(": {w}")).unwrap_or_default()
                );
            }
            None => {}
        }
    }
    let mut parts = Vec::new();
    for name in inputs.changed_from(&earlier.annotations) {
        let part = match name.as_str() {
            "instruction" => {
                let was = earlier
                    .annotations
                    .get(&format!("{LABEL}instruction"))
                    .map(|w| format!(" (was {})", shorten(w, 60)));
                format!("the instruction changed{}", was.unwrap_or_default())
            }
            "args and env" => theirs
                .as_ref()
                .and_then(|t| ours.vars_changed_from(t))
                .unwrap_or_else(|| "an arg or env value changed".to_string()),
            "files" => theirs
                .as_ref()
                .and_then(|t| ours.files.get(&m).zip(t.files.get(&m)))
                .and_then(|(a, b)| a.changed_from(b))
                .unwrap_or_else(|| "its files changed".to_string()),
            _ => format!("{name} changed"),
        };
        parts.push(part);
    }
    if parts.is_empty() {
        // the same inputs after other steps: an entry without a record
        return "an earlier step or the base changed".to_string();
    }
    parts.join("; ")
}

/// `text` cut to `max` characters, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > max {
        format!("{}…", one_line.chars().take(max).collect::<String>())
    } else {
        one_line
    }
}

/// A digest as `sha256:` and its first 12 hex digits; anything else as it is.
fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 && !alg.contains(' ') => {
            format!("{alg}:{}…", &hex[..12])
        }
        _ => d.to_string(),
    }
}

/// Which of the hits `lazy` (whose layers are not downloaded) have lost
/// their layer from the cache repository, and why.
pub fn gone_from_cache(
    env: &BuildEnv<'_>,
    remote: &Remote,
    hits: &[Option<CacheEntry>],
    lazy: &[usize],
) -> Vec<(usize, String)> {
    let blobs: Vec<(usize, super::EntrySource, Descriptor)> = lazy
        .iter()
        .filter_map(|&i| {
            let entry = hits[i].as_ref()?;
            let layer = entry.layers.first()?;
            Some((i, entry.source.clone(), layer.clone()))
        })
        .filter(|(_, _, layer)| !env.store.path(&layer.digest).exists())
        .collect();
    let Some(cache) = env.cache.as_ref() else {
        return Vec::new();
    };
    if blobs.is_empty() {
        return Vec::new();
    }
    let pairs: Vec<_> = blobs
        .iter()
        .map(|(_, r, d)| (r.clone(), d.clone()))
        .collect();
    let answers = match cache.waiting(|left| cache.blobs_exist(remote, &pairs, env.store, left)) {
        Some(Ok(answers)) => answers,
        Some(Err(e)) => return blobs.iter().map(|(i, ..)| (*i, e.to_string())).collect(),
        None => {
            let why = "the layer cache's time (--cache-timeout) ran out";
            return blobs.iter().map(|(i, ..)| (*i, why.to_string())).collect();
        }
    };
    blobs
        .iter()
        .zip(answers)
        .filter_map(|((i, ..), answer)| match answer {
            Ok(true) => None,
            Ok(false) => Some((*i, "its blob is gone".to_string())),
            Err(e) => {
                if matches!(e, crate::registry::RegistryError::TimedOut { .. }) {
                    cache.give_up(&e.to_string());
                }
                Some((*i, e.to_string()))
            }
        })
        .collect()
}

/// Brings a cache hit's layer into the store before it is applied. An
/// error is why not (the step then runs as a miss); a time-out turns
/// the cache off.
pub fn fetch_hit(
    env: &BuildEnv<'_>,
    remote: &Remote,
    entry: &CacheEntry,
) -> Result<(), CacheError> {
    let Some(layer) = entry.layers.first() else {
        return Ok(());
    };
    if env.store.path(&layer.digest).exists() {
        return Ok(());
    }
    let Some(cache) = env.cache.as_ref().filter(|c| c.usable()) else {
        return Err(CacheError::Off);
    };
    let fetched = cache
        .waiting(|left| cache.fetch_layer(remote, layer, &entry.source, env.store, left))
        .ok_or(CacheError::OutOfTime)?;
    match fetched {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            if matches!(e, crate::registry::RegistryError::TimedOut { .. }) {
                cache.give_up(&e.to_string());
            }
            Err(e.into())
        }
        Err(e) => Err(CacheError::Engine(Box::new(e))),
    }
}

/// Uploads the result of the step just run under its key (and as the
/// newest entry after the previous key), in the background; a failure
/// is a warning, later.
pub fn store_in_cache(
    env: &BuildEnv<'_>,
    remote: &Remote,
    state: &StageState,
    inputs: &KeyInputs,
    layers_before: usize,
) {
    let Some(cache) = env.cache.as_ref().filter(|c| c.usable() && c.opts.push) else {
        return;
    };
    let layer = (state.layers.len() > layers_before)
        .then(|| {
            state
                .layers
                .last()
                .cloned()
                .zip(state.config.rootfs.diff_ids.last().cloned())
        })
        .flatten();
    let Some(history) = state.config.history.last().cloned() else {
        return;
    };
    let mut tags = vec![inputs.key.clone(), KeyInputs::next_tag(&inputs.prev)];
    tags.extend(inputs.line_tag.clone());
    let stored = cache
        .entry_image(env.store, env.platform, layer, history, inputs)
        .and_then(|image| cache.upload(remote, &tags, image, env.store));
    if let Err(e) = stored {
        log::warn!("cache entry {}:{} not stored: {e}", cache.repo, inputs.key);
    }
}
