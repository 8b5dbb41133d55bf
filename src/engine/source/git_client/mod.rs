//! smelt's own git client, for hosts without the `git` binary (the
//! executor image is `FROM scratch`): enough of git's fetch side to check
//! one commit out, as kaniko's image does in process.
//!
//! - Transports ([`transport`]): smart HTTP(S) and `git://`, protocol
//!   version 2 (`ls-refs` with `symrefs`, `peel` and `ref-prefix`, then
//!   `fetch` of the one commit with `deepen 1`), and version 0 when the
//!   server answers with a ref advertisement (`want`, `deepen 1`, `done`,
//!   the shallow and NAK lines). The pack comes in side-band channel 1;
//!   channel 3 is the server's error. SSH is not spoken: it needs git (and
//!   ssh).
//! - Refs resolve as the binary path resolves them (`git fetch`'s rules
//!   for a name, kaniko's branch-then-tag for `--git branch=`, a full
//!   commit id fetched by itself; when a version 0 server refuses an
//!   unadvertised commit, the history of the refs is fetched instead).
//! - The pack ([`pack`]) is saved to a spool directory next to the
//!   checkout and indexed there; the tree is written by [`checkout`]
//!   through `fs::Root`, whose every operation stays beneath the checkout
//!   and follows no symlink, with names checked as git checks them.
//! - Submodules (with `recurse-submodules`) are read from `.gitmodules`
//!   and fetched the same way, relative URLs against the superproject's;
//!   credentials go only to the superproject's own server.
//! - No `.git` is written: keeping it needs the git binary.

mod checkout;
mod pack;
mod pkt;
mod transport;

pub use transport::Login;

use pack::{Oid, Pack, hex, parse_oid};
use std::path::Path;
use transport::{Advert, Transport};

/// How deep submodules may nest.
const MAX_NESTING: usize = 8;

/// A ref as the server lists it.
#[derive(Debug, Clone)]
struct Ref {
    name: String,
    oid: String,
    peeled: Option<String>,
}

impl Ref {
    /// What the ref points at once tags are peeled.
    fn target(&self) -> &str {
        self.peeled.as_deref().unwrap_or(&self.oid)
    }
}

/// One conversation with a repository's upload-pack.
struct Remote {
    transport: Transport,
    advert: Advert,
}

/// Whether `url` is one the built-in client cannot fetch because it
/// needs ssh.
pub fn needs_ssh(url: &str) -> bool {
    match url.split_once("://") {
        Some((scheme, _)) => scheme == "ssh" || scheme == "git+ssh" || scheme == "ssh+git",
        // scp-like `user@host:path`
        None => url.contains(':') && !url.starts_with('/'),
    }
}

pub const SSH_NEEDS_GIT: &str = "cloning over ssh needs the git binary; the executor image has none: use https:// with \
     credentials";

impl Remote {
    fn connect(
        url: &str,
        login: Option<&Login>,
        insecure: bool,
        spool: &Path,
    ) -> Result<Remote, String> {
        if needs_ssh(url) {
            return Err(SSH_NEEDS_GIT.to_string());
        }
        let (transport, advert) = Transport::connect(url, login, insecure, spool)?;
        log::debug!(
            "git server {}: protocol version {}",
            super::super::shown_url(url),
            if matches!(advert, Advert::V2(_)) {
                2
            } else {
                0
            }
        );
        if let Advert::V2(caps) = &advert
            && caps
                .iter()
                .any(|c| c.starts_with("object-format=") && c != "object-format=sha1")
        {
            return Err(
                "a SHA-256 repository: the built-in git client reads SHA-1 repositories only"
                    .to_string(),
            );
        }
        Ok(Remote { transport, advert })
    }

    /// The refs whose names start with one of `prefixes` (all of them
    /// for a version 0 server, which lists everything anyway).
    fn refs(&mut self, prefixes: &[&str]) -> Result<Vec<Ref>, String> {
        match &self.advert {
            Advert::V0 { refs, .. } => {
                let mut out: Vec<Ref> = Vec::new();
                for (oid, name) in refs {
                    match name.strip_suffix("^{}") {
                        Some(base) => {
                            if let Some(r) = out.iter_mut().find(|r| r.name == base) {
                                r.peeled = Some(oid.clone());
                            }
                        }
                        None => out.push(Ref {
                            name: name.clone(),
                            oid: oid.clone(),
                            peeled: None,
                        }),
                    }
                }
                Ok(out)
            }
            Advert::V2(_) => {
                let mut body = Vec::new();
                pkt::line(&mut body, "command=ls-refs");
                pkt::line(
                    &mut body,
                    concat!("agent=smelt/", env!("CARGO_PKG_VERSION")),
                );
                pkt::delim(&mut body);
                pkt::line(&mut body, "peel");
                pkt::line(&mut body, "symrefs");
                for p in prefixes {
                    pkt::line(&mut body, &format!("ref-prefix {p}"));
                }
                pkt::flush(&mut body);
                let mut answer = self.transport.request(&body, false)?;
                let mut out = Vec::new();
                while let Some(p) = pkt::read(&mut answer)? {
                    let Some(text) = p.text() else { break };
                    if let Some(msg) = text.strip_prefix("ERR ") {
                        return Err(format!("the server said: {}", transport::printable(msg)));
                    }
                    let mut words = text.split(' ');
                    let (Some(oid), Some(name)) = (words.next(), words.next()) else {
                        return Err("the server's ref list is not git's".to_string());
                    };
                    let peeled = words
                        .find_map(|w| w.strip_prefix("peeled:"))
                        .map(str::to_string);
                    out.push(Ref {
                        name: name.to_string(),
                        oid: oid.to_string(),
                        peeled,
                    });
                }
                Ok(out)
            }
        }
    }

    /// Fetches `wants` (only their own trees when `shallow`) into the
    /// pack file `into`.
    fn fetch(&mut self, wants: &[String], shallow: bool, into: &Path) -> Result<(), String> {
        let mut body = Vec::new();
        let sideband = match &self.advert {
            Advert::V2(caps) => {
                let can_deepen = caps.iter().any(|c| {
                    c.strip_prefix("fetch=")
                        .is_some_and(|f| f.split(' ').any(|x| x == "shallow"))
                });
                pkt::line(&mut body, "command=fetch");
                pkt::line(
                    &mut body,
                    concat!("agent=smelt/", env!("CARGO_PKG_VERSION")),
                );
                pkt::delim(&mut body);
                pkt::line(&mut body, "ofs-delta");
                pkt::line(&mut body, "no-progress");
                if shallow && can_deepen {
                    pkt::line(&mut body, "deepen 1");
                }
                for w in wants {
                    pkt::line(&mut body, &format!("want {w}"));
                }
                pkt::line(&mut body, "done");
                pkt::flush(&mut body);
                true
            }
            Advert::V0 { caps, .. } => {
                let has = |c: &str| caps.iter().any(|x| x == c);
                let mut first: Vec<&str> = Vec::new();
                let sideband = if has("side-band-64k") {
                    first.push("side-band-64k");
                    true
                } else if has("side-band") {
                    first.push("side-band");
                    true
                } else {
                    false
                };
                for c in ["ofs-delta", "no-progress"] {
                    if has(c) {
                        first.push(c);
                    }
                }
                let deepen = shallow && has("shallow");
                if deepen {
                    first.push("shallow");
                }
                let agent = concat!("agent=smelt/", env!("CARGO_PKG_VERSION"));
                first.push(agent);
                for (i, w) in wants.iter().enumerate() {
                    if i == 0 {
                        pkt::line(&mut body, &format!("want {w} {}", first.join(" ")));
                    } else {
                        pkt::line(&mut body, &format!("want {w}"));
                    }
                }
                if deepen {
                    pkt::line(&mut body, "deepen 1");
                }
                pkt::flush(&mut body);
                pkt::line(&mut body, "done");
                sideband
            }
        };
        let v2 = matches!(self.advert, Advert::V2(_));
        let mut answer = self.transport.request(&body, true)?;
        // up to the pack: v2's sections, v0's shallow lines and NAK
        loop {
            let Some(p) = pkt::read(&mut answer)? else {
                return Err("the server sent no pack".to_string());
            };
            let text = p.text().unwrap_or_default();
            if let Some(msg) = text.strip_prefix("ERR ") {
                return Err(format!("the server said: {}", transport::printable(msg)));
            }
            if (v2 && text == "packfile") || (!v2 && (text == "NAK" || text.starts_with("ACK "))) {
                break;
            }
        }
        let mut file =
            std::io::BufWriter::new(fs_err::File::create(into).map_err(|e| e.to_string())?);
        if sideband {
            demux(&mut answer, &mut file)?;
        } else {
            std::io::copy(&mut answer, &mut file)
                .map_err(|e| format!("receiving the pack: {e}"))?;
        }
        use std::io::Write;
        file.flush()
            .map_err(|e| format!("{}: {e}", into.display()))?;
        Ok(())
    }
}

/// Side-band: 1 is the pack, 2 progress, 3 an error.
fn demux(answer: &mut dyn std::io::Read, out: &mut dyn std::io::Write) -> Result<(), String> {
    while let Some(p) = pkt::read(answer)? {
        let pkt::Pkt::Data(d) = p else { break };
        match d.first() {
            Some(1) => out
                .write_all(&d[1..])
                .map_err(|e| format!("saving the pack: {e}"))?,
            Some(2) => log::debug!(
                "git server: {}",
                transport::printable(&String::from_utf8_lossy(&d[1..]))
            ),
            Some(3) => {
                return Err(format!(
                    "the server failed: {}",
                    transport::printable(&String::from_utf8_lossy(&d[1..]))
                ));
            }
            _ => return Err("the server's pack stream has an unknown side-band".to_string()),
        }
        if let Some(s) = crate::engine::interrupt::signal() {
            return Err(format!(
                "stopped by {}",
                crate::engine::interrupt::signal_name(s)
            ));
        }
    }
    Ok(())
}

/// `git ls-remote`'s match: the whole name or its tail after a `/`.
fn tail_match(name: &str, pattern: &str) -> bool {
    name == pattern || name.ends_with(&format!("/{pattern}"))
}

/// The lines `git ls-remote URL PATTERNS…` prints (`SHA\tREF`, peeled
/// tags as `REF^{}`).
pub fn ls_remote(
    url: &str,
    login: Option<&Login>,
    patterns: &[&str],
    insecure: bool,
) -> Result<String, String> {
    let spool = std::env::temp_dir();
    let mut remote = Remote::connect(url, login, insecure, &spool)?;
    let refs = remote.refs(&[])?;
    let mut out = String::new();
    for r in &refs {
        let peeled_name = format!("{}^{{}}", r.name);
        let lines = std::iter::once((r.oid.as_str(), r.name.clone()))
            .chain(r.peeled.as_deref().map(|p| (p, peeled_name)));
        for (oid, name) in lines {
            if patterns.is_empty() || patterns.iter().any(|p| tail_match(&name, p)) {
                out.push_str(&format!("{oid}\t{name}\n"));
            }
        }
    }
    Ok(out)
}

/// What to check out of a repository.
#[derive(Debug)]
pub struct Want<'a> {
    /// `--git branch=`.
    pub branch: Option<&'a str>,
    pub reference: Option<&'a str>,
    pub commit: Option<&'a str>,
    pub subdir: Option<&'a str>,
    pub single_branch: bool,
    pub recurse_submodules: bool,
    pub insecure: bool,
}

/// What a fetch checked out.
#[derive(Debug)]
pub struct Fetched {
    pub described: String,
    pub commit: String,
    pub submodules: usize,
}

/// `git fetch`'s rules for a short name, in its order.
fn candidates(name: &str) -> Vec<String> {
    if name == "HEAD" || name.starts_with("refs/") {
        return vec![name.to_string()];
    }
    vec![
        name.to_string(),
        format!("refs/{name}"),
        format!("refs/tags/{name}"),
        format!("refs/heads/{name}"),
        format!("refs/remotes/{name}"),
        format!("refs/remotes/{name}/HEAD"),
    ]
}

/// Checks the repository at `url` out into the empty directory `into`.
pub fn fetch(
    url: &str,
    login: Option<&Login>,
    want: &Want<'_>,
    into: &Path,
) -> Result<Fetched, String> {
    let spool_parent = into.parent().unwrap_or(into);
    let spool = tempfile::Builder::new()
        .prefix("git-spool-")
        .tempdir_in(spool_parent)
        .map_err(|e| format!("{}: {e}", spool_parent.display()))?;
    let mut remote = Remote::connect(url, login, want.insecure, spool.path())?;
    let wanted = match want.branch {
        Some(b) => {
            let (heads, tags) = (format!("refs/heads/{b}"), format!("refs/tags/{b}"));
            let refs = remote
                .refs(&[&heads, &tags])
                .map_err(|e| format!("listing refs: {e}"))?;
            let full = [&heads, &tags]
                .into_iter()
                .find(|n| refs.iter().any(|r| &r.name == *n))
                .ok_or_else(|| {
                    format!(
                        "--git branch={b}: no branch or tag of that name (refs/heads/{b}, \
                         refs/tags/{b})"
                    )
                })?;
            Some(full.clone())
        }
        None => want.reference.map(str::to_string),
    };
    let (described, commit) = match want.commit {
        Some(c) => (c.to_string(), c.to_ascii_lowercase()),
        None => {
            let name = wanted.as_deref().unwrap_or("HEAD");
            let names = candidates(name);
            let prefixes: Vec<&str> = names.iter().map(String::as_str).collect();
            let refs = remote
                .refs(&prefixes)
                .map_err(|e| format!("listing refs: {e}"))?;
            let found = names
                .iter()
                .find_map(|n| refs.iter().find(|r| &r.name == n))
                .ok_or_else(|| format!("fetching {name}: couldn't find remote ref {name}"))?;
            (name.to_string(), found.target().to_string())
        }
    };
    let oid = parse_oid(&commit).ok_or_else(|| {
        format!("{commit}: not a SHA-1 commit id (the built-in git client reads SHA-1 repositories only)")
    })?;
    let pack = fetch_commit(
        remote,
        url,
        login,
        want,
        wanted.as_deref(),
        &commit,
        &oid,
        spool.path(),
    )
    .map_err(|e| format!("fetching {described}: {e}"))?;
    let root = crate::fs::root::Root::open(into).map_err(|e| e.to_string())?;
    let mut count = 0;
    checkout_commit(
        &pack,
        &oid,
        &root,
        "",
        want.subdir,
        url,
        login,
        want,
        spool.path(),
        0,
        &mut count,
    )?;
    Ok(Fetched {
        described,
        commit,
        submodules: count,
    })
}

/// The pack holding `commit`: fetched alone (its tree only), else, when
/// the server will not give an unadvertised commit, with the history of
/// `reference` (or of every branch and tag, or of HEAD alone with
/// `single-branch`).
#[allow(clippy::too_many_arguments)]
fn fetch_commit(
    mut remote: Remote,
    url: &str,
    login: Option<&Login>,
    want: &Want<'_>,
    reference: Option<&str>,
    commit: &str,
    oid: &Oid,
    spool: &Path,
) -> Result<Pack, String> {
    let path = spool.join(format!("{commit}.pack"));
    let alone = remote
        .fetch(&[commit.to_string()], true, &path)
        .and_then(|()| Pack::open(&path));
    match alone {
        Ok(pack) if pack.get(oid)?.is_some() => return Ok(pack),
        Ok(_) => log::debug!("the pack for {commit} does not hold it; fetching history"),
        Err(e) => log::debug!("fetching {commit} alone: {e}; fetching history"),
    }
    let _ = fs_err::remove_file(&path);
    drop(remote);
    let mut remote = Remote::connect(url, login, want.insecure, spool)?;
    let refs = remote.refs(&["HEAD", "refs/heads/", "refs/tags/"])?;
    let pick: Vec<String> = refs
        .iter()
        .filter(|r| match (reference, want.single_branch) {
            (Some(name), _) => candidates(name).contains(&r.name),
            (None, true) => r.name == "HEAD",
            (None, false) => r.name.starts_with("refs/heads/") || r.name.starts_with("refs/tags/"),
        })
        .map(|r| r.oid.clone())
        .collect();
    if pick.is_empty() {
        return Err(format!(
            "the server has no ref whose history holds {commit}"
        ));
    }
    remote.fetch(&pick, false, &path)?;
    let pack = Pack::open(&path)?;
    if pack.get(oid)?.is_none() {
        return Err(format!(
            "commit {commit} is not in the history the server sent"
        ));
    }
    Ok(pack)
}

/// Writes `commit`'s tree (or its `subdir`) at `prefix` in `root`, then
/// its submodules.
#[allow(clippy::too_many_arguments)]
fn checkout_commit(
    pack: &Pack,
    commit: &Oid,
    root: &crate::fs::root::Root,
    prefix: &str,
    subdir: Option<&str>,
    url: &str,
    login: Option<&Login>,
    want: &Want<'_>,
    spool: &Path,
    depth: usize,
    count: &mut usize,
) -> Result<(), String> {
    let tree = checkout::commit_tree(pack, commit)?;
    let gitlinks = checkout::write(pack, &tree, root, prefix, subdir)?;
    if gitlinks.is_empty() || !want.recurse_submodules {
        return Ok(());
    }
    if depth >= MAX_NESTING {
        return Err(format!("submodules nest deeper than {MAX_NESTING}"));
    }
    let modules = checkout::gitmodules(pack, &tree)?;
    for (path, oid) in gitlinks {
        let fail = |e: String| format!("checking out submodules: submodule {path}: {e}");
        let Some(sub_url) = modules
            .iter()
            .find(|m| m.path == path)
            .map(|m| m.url.clone())
        else {
            return Err(fail("no url found for it in .gitmodules".to_string()));
        };
        let sub_url = resolve_url(url, &sub_url).map_err(fail)?;
        let fail = |e: String| {
            format!(
                "checking out submodules: submodule {path} ({}): {e}",
                super::super::shown_url(&sub_url)
            )
        };
        let sub_login = login.filter(|l| l.scope == transport::scope_of(&sub_url));
        let spool_sub = tempfile::Builder::new()
            .prefix("sub-")
            .tempdir_in(spool)
            .map_err(|e| fail(e.to_string()))?;
        let remote =
            Remote::connect(&sub_url, sub_login, want.insecure, spool_sub.path()).map_err(fail)?;
        let commit = hex(&oid);
        let sub_want = Want {
            branch: None,
            reference: None,
            commit: Some(&commit),
            subdir: None,
            ..*want
        };
        let pack = fetch_commit(
            remote,
            &sub_url,
            sub_login,
            &sub_want,
            None,
            &commit,
            &oid,
            spool_sub.path(),
        )
        .map_err(fail)?;
        let at = if prefix.is_empty() {
            path.clone()
        } else {
            format!("{prefix}/{path}")
        };
        checkout_commit(
            &pack,
            &oid,
            root,
            &at,
            None,
            &sub_url,
            sub_login,
            want,
            spool_sub.path(),
            depth + 1,
            count,
        )?;
        *count += 1;
    }
    Ok(())
}

/// A submodule URL as git resolves it: `./` and `../` against the
/// superproject's URL.
fn resolve_url(base: &str, url: &str) -> Result<String, String> {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return Ok(url.to_string());
    }
    let mut base = base.trim_end_matches('/').to_string();
    let floor = base.find("://").map_or(0, |i| i + 3);
    let mut rest = url;
    loop {
        if let Some(r) = rest.strip_prefix("./") {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("../") {
            rest = r;
            match base.rfind('/') {
                Some(i) if i >= floor => base.truncate(i),
                _ => return Err(format!("{url:?} climbs above the superproject's server")),
            }
        } else {
            break;
        }
    }
    Ok(format!("{base}/{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submodule_urls_and_names() {
        assert_eq!(
            resolve_url("http://h:1/a/repo.git", "../lib.git").unwrap(),
            "http://h:1/a/lib.git"
        );
        assert_eq!(
            resolve_url("git://h/repo.git/", "./sub").unwrap(),
            "git://h/repo.git/sub"
        );
        assert!(resolve_url("http://h/r.git", "../../x").is_err());
        assert_eq!(
            resolve_url("http://h/r.git", "https://o/x.git").unwrap(),
            "https://o/x.git"
        );
        assert!(needs_ssh("git@github.com:o/r.git"));
        assert!(needs_ssh("ssh://h/r.git"));
        assert!(!needs_ssh("https://h/r.git"));
        assert!(tail_match("refs/tags/v1^{}", "v1^{}"));
        assert!(!tail_match("refs/tags/xv1", "v1"));
        assert_eq!(candidates("dev")[3], "refs/heads/dev");
    }
}
