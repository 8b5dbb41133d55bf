//! Resolving `user[:group]` (for `--chown`, USER and WORKDIR) against the
//! image's own `/etc/passwd` and `/etc/group`, as docker does.

use crate::fs::scope;
use std::path::Path;

/// Resolves `spec` inside `root`. A user name without a group takes the
/// user's primary group; a numeric uid without a group uses the same number
/// as gid (docker's documented rule).
pub fn resolve(root: &Path, spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) => {
            let entry = lookup(root, "etc/passwd", user, 0).ok_or_else(|| {
                format!("unable to find user {user}: no matching entries in passwd file")
            })?;
            let uid = entry
                .get(2)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad passwd entry for {user}"))?;
            let gid = entry
                .get(3)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad passwd entry for {user}"))?;
            (uid, gid)
        }
    };
    let gid = match group {
        None | Some("") => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(root, "etc/group", g, 0)
                .and_then(|e| e.get(2).and_then(|s| s.parse().ok()))
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
    };
    Ok((uid, gid))
}

/// The `:`-separated fields of the entry whose field `key_field` is `name`.
fn lookup(root: &Path, file: &str, name: &str, key_field: usize) -> Option<Vec<String>> {
    let rel = scope::resolve(root, file, true).ok()?;
    let text = fs_err::read_to_string(root.join(rel)).ok()?;
    text.lines()
        .map(|l| l.split(':').map(str::to_string).collect::<Vec<_>>())
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
        assert!(
            resolve(r, "ghost")
                .unwrap_err()
                .contains("unable to find user ghost")
        );
        assert!(
            resolve(r, "root:ghosts")
                .unwrap_err()
                .contains("unable to find group ghosts")
        );
    }
}
