//! Resolving `user[:group]` (for `--chown`, USER and WORKDIR) against the
//! image's own `/etc/passwd` and `/etc/group`, as docker does.

use crate::fs::root::Root;
use crate::fs::scope;
use std::path::Path;

/// A `user[:group]` that the image's account files cannot resolve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("bad passwd entry for {0}")]
    BadEntry(String),
}

/// A user or group given as a number, or as `root`, which is 0 whether or
/// not the image has account files (BuildKit's rule for COPY --chown,
/// WORKDIR and `USER root:root`).
fn numeric_id(s: &str) -> Option<u32> {
    if s == "root" { Some(0) } else { s.parse().ok() }
}

/// Resolves `spec` inside `root`, for the files COPY/ADD --chown and
/// WORKDIR make. A user name without a group takes the user's primary
/// group; a numeric uid (or `root`) without a group uses the same number as
/// gid (docker's documented rule).
pub fn resolve(root: &Path, spec: &str) -> Result<(u32, u32), UserError> {
    let (user, group) = split_spec(spec);
    let (uid, primary) = match numeric_id(user) {
        Some(uid) => (uid, uid),
        None => {
            let (uid, gid, _) = named_user(root, user)?;
            (uid, gid)
        }
    };
    let gid = match group {
        None | Some("") => primary,
        Some(g) => group_id(root, g)?,
    };
    Ok((uid, gid))
}

/// The identity a RUN step runs as, resolved as runc/BuildKit do for
/// USER: a name must exist in the image's passwd; a number need not (its
/// primary group is then 0); without an explicit group the user's
/// supplementary groups come from /etc/group. `uid:gid` given both as
/// numbers or `root` needs no account file (BuildKit's fast path).
pub fn run_user(root: &Path, spec: &str) -> Result<(u32, u32, Vec<u32>), UserError> {
    let (user, group) = split_spec(if spec.is_empty() { "0" } else { spec });
    if let (Some(uid), Some(gid)) = (numeric_id(user), group.and_then(numeric_id)) {
        return Ok((uid, gid, vec![gid]));
    }
    let (uid, primary, name) = match user.parse::<u32>() {
        Ok(uid) => {
            let entry = lookup(root, "etc/passwd", &uid.to_string(), 2);
            let primary = entry
                .as_ref()
                .and_then(|e| e.get(3))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            (uid, primary, entry.and_then(|e| e.first().cloned()))
        }
        Err(_) => {
            let (uid, gid, entry) = named_user(root, user)?;
            (uid, gid, entry.first().cloned())
        }
    };
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        let gid = group_id(root, g)?;
        return Ok((uid, gid, vec![gid]));
    }
    let mut groups = vec![primary];
    if let Some(name) = name {
        for g in entries(root, "etc/group") {
            let member = g
                .get(3)
                .is_some_and(|m| m.split(',').any(|u| u.trim() == name));
            if let Some(gid) = g.get(2).and_then(|s| s.parse::<u32>().ok())
                && member
                && !groups.contains(&gid)
            {
                groups.push(gid);
            }
        }
    }
    Ok((uid, primary, groups))
}

/// `user[:group]`
fn split_spec(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    }
}

/// A user that must be in the image's passwd: uid, primary gid, the entry.
fn named_user(root: &Path, user: &str) -> Result<(u32, u32, Vec<String>), UserError> {
    let entry = lookup(root, "etc/passwd", user, 0)
        .ok_or_else(|| UserError::UnknownUser(user.to_string()))?;
    let field = |i: usize| {
        entry
            .get(i)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| UserError::BadEntry(user.to_string()))
    };
    let (uid, gid) = (field(2)?, field(3)?);
    Ok((uid, gid, entry))
}

/// A group given by number, or by a name the image's /etc/group has.
fn group_id(root: &Path, group: &str) -> Result<u32, UserError> {
    match numeric_id(group) {
        Some(gid) => Ok(gid),
        None => lookup(root, "etc/group", group, 0)
            .and_then(|e| e.get(2).and_then(|s| s.parse().ok()))
            .ok_or_else(|| UserError::UnknownGroup(group.to_string())),
    }
}

/// The home directory of `uid` in the image's passwd, `/` when none.
pub fn home_dir(root: &Path, uid: u32) -> String {
    lookup(root, "etc/passwd", &uid.to_string(), 2)
        .and_then(|e| e.get(5).cloned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".to_string())
}

/// The `:`-separated fields of every line of an image file (none when the
/// image has no such file).
fn entries(root: &Path, file: &str) -> Vec<Vec<String>> {
    let Ok(root) = Root::open(root) else {
        return Vec::new();
    };
    let Ok(rel) = scope::resolve_in(&root, file, true) else {
        return Vec::new();
    };
    // a regular file of sane size: an image's /etc/passwd that is a link
    // to a device or a FIFO is not read
    root.read_regular(&rel, ACCOUNT_FILE_MAX)
        .map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(|l| l.split(':').map(str::to_string).collect())
                .collect()
        })
        .unwrap_or_default()
}

/// The most of `/etc/passwd` or `/etc/group` read (64 MiB).
const ACCOUNT_FILE_MAX: u64 = 64 << 20;

/// The `:`-separated fields of the entry whose field `key_field` is `name`.
fn lookup(root: &Path, file: &str, name: &str, key_field: usize) -> Option<Vec<String>> {
    entries(root, file)
        .into_iter()
        .find(|f| f.get(key_field).map(String::as_str) == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        let t = tempfile::tempdir().expect("tempdir");
        fs_err::create_dir_all(t.path().join("etc")).expect("mkdir");
        fs_err::write(
            t.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65533::/:/bin/false\n",
        )
        .expect("write");
        fs_err::write(t.path().join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("write");
        let r = t.path();
        assert_eq!(resolve(r, "nobody"), Ok((65534, 65533)));
        assert_eq!(resolve(r, "nobody:nogroup"), Ok((65534, 65534)));
        assert_eq!(resolve(r, "1234"), Ok((1234, 1234)));
        assert_eq!(resolve(r, "1234:5678"), Ok((1234, 5678)));
        assert_eq!(resolve(r, "10:root"), Ok((10, 0)));
        assert_eq!(
            resolve(r, "ghost").unwrap_err().to_string(),
            "unable to find user ghost: no matching entries in passwd file"
        );
        assert_eq!(run_user(r, ""), Ok((0, 0, vec![0])));
        assert_eq!(run_user(r, "nobody"), Ok((65534, 65533, vec![65533])));
        assert_eq!(run_user(r, "4242"), Ok((4242, 0, vec![0])));
        assert_eq!(run_user(r, "65534"), Ok((65534, 65533, vec![65533])));
        assert_eq!(run_user(r, "nobody:root"), Ok((65534, 0, vec![0])));
        assert!(run_user(r, "ghost").is_err());
        assert_eq!(
            resolve(r, "root:ghosts"),
            Err(UserError::UnknownGroup("ghosts".into()))
        );
    }

    /// An image without account files (FROM scratch): numbers and `root`
    /// resolve, as BuildKit's file operations and RUN's `uid:gid` fast path
    /// have it; other names do not.
    #[test]
    fn no_account_files() {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        assert_eq!(resolve(r, "root"), Ok((0, 0)));
        assert_eq!(resolve(r, "root:root"), Ok((0, 0)));
        assert_eq!(resolve(r, "9999"), Ok((9999, 9999)));
        assert_eq!(resolve(r, "9999:root"), Ok((9999, 0)));
        assert_eq!(resolve(r, "0"), Ok((0, 0)));
        assert_eq!(resolve(r, "app"), Err(UserError::UnknownUser("app".into())));
        assert_eq!(
            resolve(r, "1:app"),
            Err(UserError::UnknownGroup("app".into()))
        );
        assert_eq!(run_user(r, "root:root"), Ok((0, 0, vec![0])));
        assert_eq!(run_user(r, "9999:9999"), Ok((9999, 9999, vec![9999])));
        assert_eq!(run_user(r, "9999"), Ok((9999, 0, vec![0])));
        assert_eq!(run_user(r, ""), Ok((0, 0, vec![0])));
        assert_eq!(
            run_user(r, "root"),
            Err(UserError::UnknownUser("root".into()))
        );
    }
}
