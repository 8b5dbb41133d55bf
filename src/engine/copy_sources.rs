//! What a COPY/ADD reads, worked out once for both of its users: running
//! the step (`StageState::run_step`) and its cache key
//! (`cache::step_keys`). [`CopyWords::expand`] expands the step's
//! words (sources, heredoc bodies, destination, `--from`, `--chown`,
//! `--chmod`) with the variables the step sees, and
//! [`CopySources::source_tree`] finds the tree the sources are read from:
//! the build context, or the stage or image `--from` names.
//! [`CopyWords::check_remote`] applies BuildKit's rules for `--checksum`
//! and URL sources once the words are expanded (a URL may come from a
//! variable).

use super::context::SourceTree;
use crate::dockerfile::{Budget, Copy, Dockerfile, Lexer, ShellError, Source, Vars};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A `COPY --from` whose tree this build did not prepare, or a URL or
/// `--checksum` where BuildKit refuses one (its words).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CopySourceError {
    #[error(
        "COPY --from={from}: not a stage or image this build prepared (a --from given by a stage's own ARG cannot be planned)"
    )]
    NotPrepared { from: String },
    #[error("source can't be a URL for COPY")]
    UrlForCopy,
    #[error("checksum can't be specified for COPY")]
    ChecksumForCopy,
    #[error("checksum can't be specified for multiple sources")]
    ChecksumManySources,
    #[error("checksum requires HTTP(S) or Git sources")]
    ChecksumNotRemote,
    #[error(transparent)]
    Checksum(#[from] super::download::ChecksumError),
}

/// Where `COPY --from` reads: the roots of the stages a stage reads, by
/// index, and the images it copies from, unpacked, by reference.
#[derive(Debug, Clone, Default)]
pub struct CopySources {
    pub stages: BTreeMap<usize, PathBuf>,
    pub images: BTreeMap<String, PathBuf>,
}

impl CopySources {
    /// The tree `COPY --from=<from>` reads (a stage by name or index, else
    /// an image), if this build prepared it.
    pub fn tree(&self, df: &Dockerfile, from: &str) -> Option<SourceTree> {
        let (root, what) = match df.stage_index(from) {
            Some(i) => (self.stages.get(&i)?, "stage"),
            None => (self.images.get(from)?, "image"),
        };
        Some(SourceTree::stage(root.clone(), format!("{what} {from}")))
    }

    /// The tree a COPY/ADD reads its sources from: `context` without
    /// `--from`, else the stage or image named by the expanded `--from`.
    pub fn source_tree<'a>(
        &self,
        df: &Dockerfile,
        context: &'a SourceTree,
        from: Option<&str>,
    ) -> Result<Cow<'a, SourceTree>, CopySourceError> {
        match from {
            None => Ok(Cow::Borrowed(context)),
            Some(from) => {
                self.tree(df, from)
                    .map(Cow::Owned)
                    .ok_or_else(|| CopySourceError::NotPrepared {
                        from: from.to_string(),
                    })
            }
        }
    }
}

/// What happens to the bodies of heredoc sources that expand variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bodies {
    /// Expanded, as the step writes them.
    Expanded,
    /// Kept as written (the cache key sees the variables themselves).
    AsWritten,
}

/// The words of a COPY/ADD after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyWords {
    /// The sources in the order written: paths expanded, heredoc files
    /// with their bodies as [`Bodies`] says.
    pub sources: Vec<Source>,
    pub dest: String,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    /// ADD `--checksum`, expanded (as BuildKit expands it).
    pub checksum: Option<String>,
}

impl CopyWords {
    /// Expands the words of `c` with `vars`, charging `budget`: the
    /// sources, then the destination, `--chown`, `--chmod` and `--from`;
    /// the first error stops it.
    pub fn expand(
        c: &Copy,
        lexer: Lexer,
        vars: &dyn Vars,
        budget: &Budget,
        bodies: Bodies,
    ) -> Result<Self, ShellError> {
        let word = |w: &str| lexer.process_word_in(w, vars, budget);
        let mut sources = Vec::with_capacity(c.sources.len());
        for s in &c.sources {
            sources.push(match s {
                Source::Path(p) => Source::Path(word(p)?),
                Source::Inline {
                    name,
                    content,
                    expand,
                } => {
                    let content = if *expand && bodies == Bodies::Expanded {
                        Lexer::heredoc().process_word_in(content, vars, budget)?
                    } else {
                        content.clone()
                    };
                    Source::Inline {
                        name: name.clone(),
                        content,
                        expand: *expand,
                    }
                }
            });
        }
        let dest = word(&c.dest)?;
        let flag = |v: &Option<String>| v.as_deref().map(word).transpose();
        Ok(CopyWords {
            sources,
            dest,
            chown: flag(&c.chown)?,
            chmod: flag(&c.chmod)?,
            from: flag(&c.from)?,
            checksum: flag(&c.checksum)?,
        })
    }

    /// BuildKit's rules for URL sources and `--checksum`, on the expanded
    /// words: COPY takes neither a URL nor a checksum; a checksum needs a
    /// single source, a URL (a `sha256:` digest) or a git repository.
    pub fn check_remote(&self, is_add: bool) -> Result<(), CopySourceError> {
        if !is_add && self.paths().any(super::download::is_url) {
            return Err(CopySourceError::UrlForCopy);
        }
        let Some(checksum) = &self.checksum else {
            return Ok(());
        };
        if !is_add {
            return Err(CopySourceError::ChecksumForCopy);
        }
        if self.sources.len() != 1 {
            return Err(CopySourceError::ChecksumManySources);
        }
        match self.paths().next() {
            Some(p) if super::download::is_url(p) => {
                super::download::parse_checksum(checksum)?;
                Ok(())
            }
            Some(p) if super::add_git::is_repository(p) => Ok(()),
            _ => Err(CopySourceError::ChecksumNotRemote),
        }
    }

    /// The expanded source paths (heredoc files left out).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().filter_map(|s| match s {
            Source::Path(p) => Some(p.as_str()),
            Source::Inline { .. } => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::Instruction;

    /// The COPY/ADD on the last line of `FROM scratch AS base` + `steps`,
    /// with the file itself.
    fn last_copy(steps: &str) -> (Dockerfile, Copy) {
        let text = format!("FROM scratch AS base\n{steps}\n");
        let df = Dockerfile::parse_bytes(text.as_bytes(), "Dockerfile").unwrap();
        let step = df.stages.last().unwrap().steps.last().unwrap();
        let Instruction::Copy(c) = &step.value else {
            panic!("not a COPY: {step:?}");
        };
        let c = c.clone();
        (df, c)
    }

    fn vars() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("SRC".to_string(), "app".to_string()),
            ("DST".to_string(), "/srv".to_string()),
            ("WHO".to_string(), "1000:1000".to_string()),
            ("MODE".to_string(), "0755".to_string()),
            ("STAGE".to_string(), "base".to_string()),
        ])
    }

    #[test]
    fn expand_expands_every_word_in_order() {
        let (df, c) = last_copy(
            "COPY --from=$STAGE --chown=$WHO --chmod=$MODE ${SRC}.txt lib/$SRC <<EOF $DST/\nhello $SRC\nEOF",
        );
        let words = CopyWords::expand(
            &c,
            df.lexer(),
            &vars(),
            &Budget::default(),
            Bodies::Expanded,
        )
        .unwrap();
        assert_eq!(words.paths().collect::<Vec<_>>(), ["app.txt", "lib/app"]);
        assert_eq!(words.dest, "/srv/");
        assert_eq!(words.from.as_deref(), Some("base"));
        assert_eq!(words.chown.as_deref(), Some("1000:1000"));
        assert_eq!(words.chmod.as_deref(), Some("0755"));
        assert!(
            matches!(&words.sources[2], Source::Inline { name, content, .. }
                if name == "EOF" && content == "hello app\n"),
            "{:?}",
            words.sources[2]
        );
    }

    #[test]
    fn heredoc_bodies_stay_as_written_when_asked_or_quoted() {
        let (df, c) = last_copy("COPY <<EOF /a\n$SRC\nEOF");
        let kept = CopyWords::expand(
            &c,
            df.lexer(),
            &vars(),
            &Budget::default(),
            Bodies::AsWritten,
        )
        .unwrap();
        assert!(matches!(&kept.sources[0], Source::Inline { content, .. } if content == "$SRC\n"));
        let (df, c) = last_copy("COPY <<'EOF' /a\n$SRC\nEOF");
        let quoted = CopyWords::expand(
            &c,
            df.lexer(),
            &vars(),
            &Budget::default(),
            Bodies::Expanded,
        )
        .unwrap();
        assert!(
            matches!(&quoted.sources[0], Source::Inline { content, .. } if content == "$SRC\n")
        );
    }

    #[test]
    fn expand_fails_on_a_bad_word() {
        let (df, c) = last_copy("COPY a ${DST:?unset}");
        let err = CopyWords::expand(
            &c,
            df.lexer(),
            &BTreeMap::new(),
            &Budget::default(),
            Bodies::Expanded,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("DST: unset"), "{err}");
    }

    #[test]
    fn source_tree_is_the_context_or_the_prepared_stage_or_image() {
        let (df, _) = last_copy("COPY a b");
        let context = SourceTree::stage(PathBuf::from("/ctx"), "build context".to_string());
        let sources = CopySources {
            stages: BTreeMap::from([(0, PathBuf::from("/stage0"))]),
            images: BTreeMap::from([("alpine".to_string(), PathBuf::from("/alpine"))]),
        };
        let root = |from: Option<&str>| {
            sources
                .source_tree(&df, &context, from)
                .map(|t| (t.root.clone(), t.label.clone()))
        };
        assert_eq!(root(None).unwrap().0, PathBuf::from("/ctx"));
        assert_eq!(
            root(Some("base")).unwrap(),
            (PathBuf::from("/stage0"), "stage base".to_string())
        );
        assert_eq!(root(Some("0")).unwrap().0, PathBuf::from("/stage0"));
        assert_eq!(
            root(Some("alpine")).unwrap(),
            (PathBuf::from("/alpine"), "image alpine".to_string())
        );
        let err = root(Some("busybox")).unwrap_err();
        assert_eq!(
            err,
            CopySourceError::NotPrepared {
                from: "busybox".to_string()
            }
        );
        assert!(
            err.to_string().starts_with("COPY --from=busybox: "),
            "{err}"
        );
    }
}
