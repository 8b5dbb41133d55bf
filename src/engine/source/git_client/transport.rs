//! The two ways to reach `git-upload-pack` without the git binary: git's
//! smart HTTP (`GET info/refs?service=git-upload-pack`, then one `POST
//! git-upload-pack` per command) and the git protocol (`git://`, TCP port
//! 9418, one connection for the whole conversation). Both ask for
//! protocol version 2 and take a version 0 answer too.
//!
//! HTTP goes through reqwest with smelt's CA roots (`registry::ca_roots`:
//! the system's, else the Mozilla roots built in) and the proxy
//! environment, as every other download does; a response is streamed to a
//! file in the fetch's spool directory, so a pack is never held in memory.

use super::pkt::{self, Pkt};
use std::io::{Read, Seek, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the server said it can do when first asked.
#[derive(Debug)]
pub enum Advert {
    /// Protocol version 2 and its capability lines.
    V2(Vec<String>),
    /// A version 0 (or 1) ref advertisement: the refs, and the
    /// capabilities after the first one's NUL.
    V0 {
        refs: Vec<(String, String)>,
        caps: Vec<String>,
    },
}

/// Basic-auth credentials for the repository's own server.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: String,
    pub password: String,
    /// `scheme://host[:port]`: the server they are for.
    pub scope: String,
}

#[derive(Debug)]
pub enum Transport {
    Http(Box<Http>),
    Daemon(Daemon),
}

#[derive(Debug)]
pub struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    /// The repository URL without user info or a trailing slash.
    url: String,
    login: Option<Login>,
    spool: PathBuf,
    v2: bool,
}

#[derive(Debug)]
pub struct Daemon {
    stream: TcpStream,
}

/// `scheme://host[:port]` of a URL without user info.
pub fn scope_of(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
        None => url.to_string(),
    }
}

impl Transport {
    /// Connects to the repository at `url` (`http(s)://` or `git://`,
    /// without user info); `login` is sent only to its own server.
    pub fn connect(
        url: &str,
        login: Option<&Login>,
        insecure: bool,
        spool: &Path,
    ) -> Result<(Transport, Advert), String> {
        let url = url.trim_end_matches('/');
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or("");
        match scheme {
            "http" | "https" => {
                let login = login.filter(|l| l.scope == scope_of(url)).cloned();
                Http::connect(url, login, insecure, spool)
            }
            "git" => Daemon::connect(url),
            _ => Err(format!(
                "{scheme}:// is not a transport the built-in git client speaks (https://, \
                 http:// and git:// are)"
            )),
        }
    }

    /// Sends one request and returns a reader of the answer: over HTTP
    /// saved to a file in the spool directory when `large` (a pack), else
    /// held in memory (a ref list, at most 64 MiB; `ls-remote` has no
    /// spool directory, and the executor image may have no `/tmp`).
    pub fn request(&mut self, body: &[u8], large: bool) -> Result<Box<dyn Read + '_>, String> {
        match self {
            Transport::Http(h) if large => Ok(Box::new(h.post(body)?)),
            Transport::Http(h) => Ok(Box::new(std::io::Cursor::new(h.post_small(body)?))),
            Transport::Daemon(d) => {
                d.stream
                    .write_all(body)
                    .map_err(|e| format!("sending to the server: {e}"))?;
                Ok(Box::new(&mut d.stream))
            }
        }
    }
}

/// Reads the server's first answer: an optional `# service=` line (smart
/// HTTP), then `version 2` and capabilities, or a ref advertisement.
fn advert<R: Read + ?Sized>(r: &mut R) -> Result<Advert, String> {
    let mut first = pkt::read(r)?;
    if let Some(t) = first.as_ref().and_then(Pkt::text)
        && t.starts_with("# service=")
    {
        // a flush ends the service header
        pkt::read(r)?;
        first = pkt::read(r)?;
    }
    let Some(first) = first else {
        return Err("the server closed the connection without a word".to_string());
    };
    let text = first.text().unwrap_or_default();
    if let Some(msg) = text.strip_prefix("ERR ") {
        return Err(format!("the server said: {}", printable(msg)));
    }
    if text == "version 2" {
        let mut caps = Vec::new();
        while let Some(p @ Pkt::Data(_)) = pkt::read(r)? {
            caps.extend(p.text());
        }
        return Ok(Advert::V2(caps));
    }
    let mut refs = Vec::new();
    let mut caps = Vec::new();
    let mut line = Some(first);
    while let Some(Pkt::Data(d)) = line {
        let d = d.strip_suffix(b"\n").unwrap_or(&d);
        let (ref_part, cap_part) = match d.iter().position(|b| *b == 0) {
            Some(i) => (&d[..i], Some(&d[i + 1..])),
            None => (d, None),
        };
        if let Some(c) = cap_part {
            caps = String::from_utf8_lossy(c)
                .split(' ')
                .map(str::to_string)
                .collect();
        }
        let text = String::from_utf8_lossy(ref_part);
        if text == "version 1" {
            line = pkt::read(r)?;
            continue;
        }
        let (oid, name) = text
            .split_once(' ')
            .filter(|(oid, _)| oid.len() == 40)
            .ok_or_else(|| "the server's ref advertisement is not git's".to_string())?;
        if name != "capabilities^{}" {
            refs.push((oid.to_string(), name.to_string()));
        }
        line = pkt::read(r)?;
    }
    Ok(Advert::V0 { refs, caps })
}

/// Text from the server, safe to print.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

impl Http {
    fn connect(
        url: &str,
        login: Option<Login>,
        insecure: bool,
        spool: &Path,
    ) -> Result<(Transport, Advert), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the HTTP client: {e}"))?;
        let client = reqwest::Client::builder()
            .user_agent(concat!("git/smelt-", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .tls_certs_only(crate::registry::client::ca_roots().iter().cloned())
            .danger_accept_invalid_certs(insecure)
            .build()
            .map_err(|e| format!("setting up the HTTP client: {}", e.without_url()))?;
        let mut http = Http {
            runtime,
            client,
            url: url.to_string(),
            login,
            spool: spool.to_path_buf(),
            v2: false,
        };
        let (body, base) = http.get_refs()?;
        if base != http.url {
            // redirected, as git follows it: later requests go there, and
            // the credentials only if it is the same server
            log::debug!(
                "git server redirected to {}",
                super::super::super::shown_url(&base)
            );
            if http
                .login
                .as_ref()
                .is_some_and(|l| l.scope != scope_of(&base))
            {
                http.login = None;
            }
            http.url = base;
        }
        let advert = advert(&mut &body[..])?;
        http.v2 = matches!(advert, Advert::V2(_));
        Ok((Transport::Http(Box::new(http)), advert))
    }

    fn authorize(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.login {
            Some(l) => r.basic_auth(&l.user, Some(&l.password)),
            None => r,
        }
    }

    /// Runs `f` on the client's runtime, on a thread of its own (the
    /// caller may be on a runtime already).
    fn block<T: Send>(
        &self,
        f: impl Future<Output = Result<T, String>> + Send,
    ) -> Result<T, String> {
        std::thread::scope(|s| {
            s.spawn(|| self.runtime.block_on(f))
                .join()
                .unwrap_or_else(|_| Err("the HTTP thread panicked".to_string()))
        })
    }

    /// The ref advertisement, and the repository URL it came from after
    /// redirects.
    fn get_refs(&self) -> Result<(Vec<u8>, String), String> {
        const REFS: &str = "/info/refs?service=git-upload-pack";
        let url = self.url.as_str();
        let request = self
            .client
            .get(format!("{}{REFS}", self.url))
            .header("Git-Protocol", "version=2");
        let request = self.authorize(request);
        let (body, base) = self.block(async move {
            let response = request.send().await.map_err(failed)?;
            let response = checked(response, "application/x-git-upload-pack-advertisement", url)?;
            let base = response
                .url()
                .as_str()
                .strip_suffix(REFS)
                .map(str::to_string);
            let mut body = Vec::new();
            let mut response = response;
            while let Some(chunk) = response.chunk().await.map_err(failed)? {
                body.extend_from_slice(&chunk);
                if body.len() > 64 << 20 {
                    return Err("the server's ref advertisement is over 64 MiB".to_string());
                }
            }
            Ok((body, base))
        })?;
        Ok((body, base.unwrap_or_else(|| self.url.clone())))
    }

    fn post_request(&self, body: &[u8]) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .post(format!("{}/git-upload-pack", self.url))
            .header("Content-Type", "application/x-git-upload-pack-request")
            .header("Accept", "application/x-git-upload-pack-result")
            .body(body.to_vec());
        if self.v2 {
            request = request.header("Git-Protocol", "version=2");
        }
        self.authorize(request)
    }

    /// POSTs `body` to `git-upload-pack`; the answer, in memory.
    fn post_small(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let request = self.post_request(body);
        let url = self.url.as_str();
        self.block(async move {
            let response = request.send().await.map_err(failed)?;
            let mut response = checked(response, "application/x-git-upload-pack-result", url)?;
            let mut out = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(failed)? {
                out.extend_from_slice(&chunk);
                if out.len() > 64 << 20 {
                    return Err("the server's ref list is over 64 MiB".to_string());
                }
            }
            Ok(out)
        })
    }

    /// POSTs `body` to `git-upload-pack`; the answer, saved to a file.
    fn post(&self, body: &[u8]) -> Result<std::fs::File, String> {
        let request = self.post_request(body);
        let url = self.url.as_str();
        let mut file = tempfile::tempfile_in(&self.spool)
            .map_err(|e| format!("{}: {e}", self.spool.display()))?;
        let spool = &self.spool;
        let out = &mut file;
        self.block(async move {
            let response = request.send().await.map_err(failed)?;
            let mut response = checked(response, "application/x-git-upload-pack-result", url)?;
            while let Some(chunk) = response.chunk().await.map_err(failed)? {
                out.write_all(&chunk)
                    .map_err(|e| format!("{}: {e}", spool.display()))?;
            }
            Ok(())
        })?;
        file.rewind()
            .map_err(|e| format!("{}: {e}", self.spool.display()))?;
        Ok(file)
    }
}

fn failed(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// The response if it is a smart-HTTP answer of `kind`; else why not.
fn checked(
    response: reqwest::Response,
    kind: &str,
    requested: &str,
) -> Result<reqwest::Response, String> {
    let status = response.status();
    // a redirect's target is named: another server than the URL's
    let answered = scope_of(&super::super::super::shown_url(response.url().as_str()));
    let server = if answered == scope_of(requested) {
        "the server".to_string()
    } else {
        format!("{answered} (redirected to)")
    };
    match status.as_u16() {
        401 | 403 => {
            return Err(format!(
                "Authentication failed ({server} answered {status})"
            ));
        }
        404 => return Err(format!("repository not found ({server} answered {status})")),
        _ if !status.is_success() => return Err(format!("{server} answered {status}")),
        _ => {}
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with(kind) {
        return Err(format!(
            "not a smart HTTP git server (answered {:?}, want {kind})",
            printable(content_type)
        ));
    }
    Ok(response)
}

impl Daemon {
    fn connect(url: &str) -> Result<(Transport, Advert), String> {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if path.is_empty() {
            return Err("no repository path in the URL".to_string());
        }
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.ends_with(':') && port.parse::<u16>().is_ok())
            && (!authority.starts_with('[') || authority.contains("]:"));
        let address = if has_port {
            authority.to_string()
        } else {
            format!("{authority}:9418")
        };
        let mut last = None;
        let addrs = std::net::ToSocketAddrs::to_socket_addrs(&address)
            .map_err(|e| format!("resolving {authority}: {e}"))?;
        let mut stream = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, Duration::from_secs(30)) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut stream = stream.ok_or_else(|| match last {
            Some(e) => format!("connecting to {address}: {e}"),
            None => format!("{authority}: no address"),
        })?;
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .map_err(|e| e.to_string())?;
        let mut hello = Vec::new();
        pkt::data(
            &mut hello,
            format!("git-upload-pack {path}\0host={authority}\0\0version=2\0").as_bytes(),
        );
        stream
            .write_all(&hello)
            .map_err(|e| format!("sending to {address}: {e}"))?;
        let advert = advert(&mut stream)?;
        Ok((Transport::Daemon(Daemon { stream }), advert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adverts_of_both_versions() {
        let mut v2 = Vec::new();
        pkt::line(&mut v2, "# service=git-upload-pack");
        pkt::flush(&mut v2);
        pkt::line(&mut v2, "version 2");
        pkt::line(&mut v2, "ls-refs=unborn");
        pkt::line(&mut v2, "fetch=shallow");
        pkt::flush(&mut v2);
        match advert(&mut &v2[..]).unwrap() {
            Advert::V2(caps) => assert_eq!(caps, ["ls-refs=unborn", "fetch=shallow"]),
            a => panic!("{a:?}"),
        }
        let oid = "0123456789abcdef0123456789abcdef01234567";
        let mut v0 = Vec::new();
        pkt::data(
            &mut v0,
            format!("{oid} HEAD\0side-band-64k shallow symref=HEAD:refs/heads/main\n").as_bytes(),
        );
        pkt::line(&mut v0, &format!("{oid} refs/heads/main"));
        pkt::flush(&mut v0);
        match advert(&mut &v0[..]).unwrap() {
            Advert::V0 { refs, caps } => {
                assert_eq!(refs.len(), 2);
                assert_eq!(refs[1].1, "refs/heads/main");
                assert!(caps.contains(&"shallow".to_string()));
            }
            a => panic!("{a:?}"),
        }
        let mut err = Vec::new();
        pkt::line(&mut err, "ERR access denied or repository not exported: /x");
        assert!(advert(&mut &err[..]).unwrap_err().contains("access denied"));
        assert_eq!(scope_of("https://h:1/a/b.git"), "https://h:1");
    }
}
