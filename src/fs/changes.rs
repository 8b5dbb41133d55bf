//! A change set: the paths a step added or modified, and the paths it
//! deleted, relative to the build root. It is what a layer is made of.

use std::collections::BTreeSet;

/// Paths are relative to the root, `/`-separated, without a leading `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// Added or modified paths (their parent directories are implied).
    pub changed: BTreeSet<String>,
    /// Deleted paths: become whiteouts.
    pub deleted: BTreeSet<String>,
    /// Directories whose earlier contents are all gone (opaque markers).
    pub opaque: BTreeSet<String>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.deleted.is_empty() && self.opaque.is_empty()
    }

    /// Records an added or modified path.
    pub fn add(&mut self, rel: &str) {
        let rel = rel.trim_matches('/');
        if !rel.is_empty() {
            self.deleted.remove(rel);
            self.changed.insert(rel.to_string());
        }
    }

    /// Forgets the changed paths strictly under `rel` (a directory that
    /// was removed or replaced: what was written in it is gone).
    pub fn forget_below(&mut self, rel: &str) {
        let prefix = format!("{}/", rel.trim_matches('/'));
        let below: Vec<String> = self
            .changed
            .range(prefix.clone()..)
            .take_while(|c| c.starts_with(&prefix))
            .cloned()
            .collect();
        for c in below {
            self.changed.remove(&c);
        }
    }

    /// Merges a later change set into this one.
    pub fn extend(&mut self, later: ChangeSet) {
        for d in later.deleted {
            self.changed.remove(&d);
            self.forget_below(&d);
            self.deleted.insert(d);
        }
        self.opaque.extend(later.opaque);
        for c in later.changed {
            self.add(&c);
        }
    }
}
