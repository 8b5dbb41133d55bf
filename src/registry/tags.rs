//! A repository's tags (`GET /v2/<name>/tags/list`, page by page as the
//! `Link` header says) and deleting a manifest by digest (`DELETE
//! /v2/<name>/manifests/<digest>`, which untags every tag naming it): what
//! `smelt cache prune` asks of a registry. Nothing here decides what to
//! delete.

use super::client::{BUILT_IN_ATTEMPTS, Direction, fail};
use super::{Reference, Registry, RegistryError};
use crate::image::Digest;

/// Tags asked for per page (the distribution registry's default page is
/// its whole list; `n` bounds a response).
const PAGE: usize = 1000;

/// At most this many pages are followed (a million tags): a registry whose
/// `Link` never ends cannot keep the listing going for ever.
const MAX_PAGES: usize = 1000;

/// How a registry answered a manifest deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// Accepted (202): the manifest and every tag naming it are gone.
    Yes,
    /// 404: nothing there by that digest (deleted meanwhile).
    Gone,
}

impl Registry {
    /// Every tag of `repo` (registry and repository), in the registry's
    /// order, following `Link: <…>; rel="next"` page after page. A
    /// repository the registry does not know is an error naming it.
    pub async fn list_tags(&self, repo: &Reference) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let ep = self.endpoint(&repo.registry, Direction::Pull).await?;
        let what = format!("listing the tags of {}/{}", repo.registry, repo.repository);
        let scopes = [super::client::scope(&repo.repository, false)];
        let attempts = BUILT_IN_ATTEMPTS + self.settings.download_retries;
        let mut url = format!("{}/v2/{}/tags/list?n={PAGE}", ep.base, repo.repository);
        let mut tags = Vec::new();
        for _ in 0..MAX_PAGES {
            let (page, next) = self
                .retrying(attempts, &what, || async {
                    let response = self
                        .send(&ep, &scopes, &what, |http| Ok(http.get(&url)))
                        .await?;
                    if !response.status().is_success() {
                        return Err(fail(response, &what).await);
                    }
                    let next = response
                        .headers()
                        .get(reqwest::header::LINK)
                        .and_then(|h| h.to_str().ok())
                        .and_then(next_link);
                    let body = response
                        .bytes()
                        .await
                        .map_err(|e| RegistryError::transport(&what, &e))?;
                    let page: Page = serde_json::from_slice(&body).map_err(|e| {
                        RegistryError::invalid(&what, format!("malformed tag list: {e}"))
                    })?;
                    Ok((page, next))
                })
                .await?;
            let got = page.tags.unwrap_or_default();
            let empty = got.is_empty();
            tags.extend(got);
            match next {
                // a next page that adds nothing would repeat for ever
                Some(next) if !empty => {
                    url = join_url(&ep.base, &next).ok_or_else(|| {
                        RegistryError::invalid(&what, format!("bad Link to the next page: {next}"))
                    })?;
                }
                _ => return Ok(tags),
            }
        }
        Err(RegistryError::invalid(
            &what,
            format!("more than {MAX_PAGES} pages of tags; stopped"),
        ))
    }

    /// Deletes the manifest `digest` of `repo` (and so every tag naming
    /// it). A registry that refuses deletes answers 405 (the distribution
    /// registry, unless `storage.delete.enabled`); that comes back as the
    /// error it is, for the caller to explain.
    pub async fn delete_manifest(
        &self,
        repo: &Reference,
        digest: &Digest,
    ) -> Result<Deleted, RegistryError> {
        let ep = self.endpoint(&repo.registry, Direction::Push).await?;
        let what = format!(
            "deleting manifest {digest} of {}/{}",
            repo.registry, repo.repository
        );
        let url = format!("{}/v2/{}/manifests/{digest}", ep.base, repo.repository);
        // the distribution registry's token auth asks for `delete`
        let scopes = [format!("repository:{}:delete", repo.repository)];
        let attempts = BUILT_IN_ATTEMPTS + self.settings.push_retries;
        self.retrying(attempts, &what, || async {
            let response = self
                .send(&ep, &scopes, &what, |http| Ok(http.delete(&url)))
                .await?;
            match response.status() {
                s if s.is_success() => Ok(Deleted::Yes),
                reqwest::StatusCode::NOT_FOUND => Ok(Deleted::Gone),
                _ => Err(fail(response, &what).await),
            }
        })
        .await
    }
}

/// The target of `Link: <URL>; rel="next"` (RFC 8288, as the distribution
/// API sends it), if the header has one.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                p.trim()
                    .strip_prefix("rel=")
                    .is_some_and(|r| r.trim_matches('"') == "next")
            })
            .then(|| target.to_string())
    })
}

/// `target` (absolute, or a path on the registry) as a URL on `base`.
fn join_url(base: &str, target: &str) -> Option<String> {
    let base = reqwest::Url::parse(base).ok()?;
    base.join(target).ok().map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_is_read_from_link() {
        assert_eq!(
            next_link(r#"</v2/app/cache/tags/list?last=abc&n=1000>; rel="next""#).as_deref(),
            Some("/v2/app/cache/tags/list?last=abc&n=1000")
        );
        assert_eq!(
            next_link(r#"<https://r.example/a>; rel="prev", <https://r.example/b>; rel=next"#)
                .as_deref(),
            Some("https://r.example/b")
        );
        assert_eq!(next_link(r#"</v2/x>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
        assert_eq!(
            join_url("http://127.0.0.1:5000", "/v2/app/tags/list?last=k&n=1000").as_deref(),
            Some("http://127.0.0.1:5000/v2/app/tags/list?last=k&n=1000")
        );
    }
}
