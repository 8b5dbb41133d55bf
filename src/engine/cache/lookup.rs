//! Using the cache during a stage: every step's key and the entries found
//! for them (all looked up at once, misses explained), whether a hit's
//! layer is still in the cache repository, fetching it, and storing what
//! a step that ran made.

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
/// the cache is off), and the key after the last step. Misses are
/// explained when asked (`Cache::explains`).
#[allow(clippy::type_complexity)]
pub fn look_up(
    env: &BuildEnv<'_>,
    remote: &Remote,
    state: &StageState,
    args: &mut BuildArgs,
    steps: &[&Located<Instruction>],
    sources: &CopySources,
    base_key: String,
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
    let (keys, final_key) = step_keys(state, env, cache, args, steps, sources, base_key)?;
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
    // the newest entry after the same previous key: what changed since
    let mut changed: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    // (a miss for age has its reason already: the entry is there)
    let unexplained: Vec<usize> = misses
        .iter()
        .filter(|(_, why)| *why == NOT_FOUND)
        .map(|(i, _)| *i)
        .collect();
    if cache.explains() && !unexplained.is_empty() {
        let tags: Vec<String> = unexplained
            .iter()
            .filter_map(|i| keys[*i].as_ref())
            .map(|k| KeyInputs::next_tag(&k.prev))
            .collect();
        let before = cache
            .waiting(|left| cache.lookup(remote, &tags, left))
            .transpose()?
            .unwrap_or_default();
        for (i, answer) in unexplained.iter().zip(before) {
            if let (Ok(Some(entry)), Some(inputs)) = (answer, &keys[*i]) {
                changed.insert(*i, inputs.changed_from(&entry.annotations));
            }
        }
    }
    let why: BTreeMap<usize, &str> = misses.iter().copied().collect();
    for (i, inputs) in keys.iter().enumerate() {
        let Some(inputs) = inputs else { continue };
        let step = steps[i];
        let result = if hits[i].is_some() { "hit" } else { "miss" };
        let what_changed = changed.get(&i);
        if let Some(c) = what_changed {
            log::debug!(
                "[{label}] line {}: cache miss {}: changed since the last entry: {}",
                step.line,
                &inputs.key[..12],
                if c.is_empty() {
                    "nothing it records".to_string()
                } else {
                    c.join(", ")
                }
            );
        } else {
            log::debug!(
                "[{label}] line {}: cache {result} {}{}",
                step.line,
                &inputs.key[..12],
                why.get(&i).map(|w| format!(" ({w})")).unwrap_or_default()
            );
        }
        cache.record(serde_json::json!({
            "stage": label,
            "line": step.line,
            "instruction": inputs.instruction,
            "key": inputs.key,
            "result": result,
            "why": why.get(&i),
            "changed": what_changed,
        }));
    }
    Ok((keys, hits, final_key))
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
    let tags = [inputs.key.clone(), KeyInputs::next_tag(&inputs.prev)];
    let stored = cache
        .entry_image(env.store, env.platform, layer, history, inputs)
        .and_then(|image| cache.upload(remote, &tags, image, env.store));
    if let Err(e) = stored {
        log::warn!("cache entry {}:{} not stored: {e}", cache.repo, inputs.key);
    }
}
