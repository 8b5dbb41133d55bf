//! Target platforms (`os/arch[/variant]`), normalised as containerd does, and
//! the automatic platform build args (`TARGETPLATFORM`, `BUILDARCH`, …).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

/// A platform that is not `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: want os/arch[/variant]")]
pub struct PlatformError(pub String);

impl Platform {
    /// The machine smelt runs on.
    pub fn host() -> Platform {
        let arch = normalize_arch(std::env::consts::ARCH, None);
        Platform {
            os: std::env::consts::OS.to_string(),
            arch: arch.0,
            variant: arch.1,
        }
    }

    /// Parses `os/arch[/variant]` (or just `arch`, taken as linux).
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        let (os, arch, variant) = match parts.as_slice() {
            [arch] if !arch.is_empty() => ("linux", *arch, None),
            [os, arch] => (*os, *arch, None),
            [os, arch, variant] => (*os, *arch, Some(*variant)),
            _ => return Err(PlatformError(s.to_string())),
        };
        if os.is_empty() || arch.is_empty() || variant.is_some_and(str::is_empty) {
            return Err(PlatformError(s.to_string()));
        }
        let (arch, variant) = normalize_arch(
            &arch.to_ascii_lowercase(),
            variant.map(str::to_ascii_lowercase),
        );
        Ok(Platform {
            os: os.to_ascii_lowercase(),
            arch,
            variant,
        })
    }

    /// The platform as manifests and indexes name it.
    pub fn descriptor(&self) -> crate::image::manifest::Platform {
        crate::image::manifest::Platform {
            architecture: self.arch.clone(),
            os: self.os.clone(),
            variant: self.variant.clone(),
        }
    }

    /// The automatic args for this target platform on this build machine
    /// and the stage `target` (`--target`, else the last stage's name, else
    /// `default`): the platform args and `TARGETSTAGE`, as BuildKit's
    /// `defaultArgs` sets them; a `--build-arg` of the same name replaces a
    /// value (`given`). They are global args: a stage sees one only once it
    /// declares it with ARG.
    pub fn build_args(
        &self,
        target: &str,
        given: impl Fn(&str) -> Option<String>,
    ) -> Vec<(String, String)> {
        let build = Platform::host();
        let mut out = Vec::new();
        for (prefix, p) in [("BUILD", &build), ("TARGET", self)] {
            out.push((format!("{prefix}PLATFORM"), p.to_string()));
            out.push((format!("{prefix}OS"), p.os.clone()));
            // Windows versions; empty elsewhere, but set (`ARG BUILDOSVERSION` has a value)
            out.push((format!("{prefix}OSVERSION"), String::new()));
            out.push((format!("{prefix}ARCH"), p.arch.clone()));
            out.push((
                format!("{prefix}VARIANT"),
                p.variant.clone().unwrap_or_default(),
            ));
        }
        out.push(("TARGETSTAGE".to_string(), target.to_string()));
        for (k, v) in &mut out {
            if let Some(g) = given(k) {
                *v = g;
            }
        }
        out
    }
}

/// The stage `TARGETSTAGE` names: `--target` as given, else the last
/// stage's name, else `default` (BuildKit's `defaultArgs`).
pub fn target_stage(target: Option<&str>, last_stage_name: Option<&str>) -> String {
    target.or(last_stage_name).unwrap_or("default").to_string()
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

fn normalize_arch(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    match arch {
        "x86_64" | "x86-64" | "amd64" => ("amd64".to_string(), variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => (
            "arm64".to_string(),
            variant.filter(|v| v != "v8" && v != "8"),
        ),
        "armhf" => ("arm".to_string(), Some("v7".to_string())),
        "armel" => ("arm".to_string(), Some("v6".to_string())),
        "arm" => (
            "arm".to_string(),
            Some(variant.map_or("v7".to_string(), |v| {
                if v.starts_with('v') {
                    v
                } else {
                    format!("v{v}")
                }
            })),
        ),
        "i386" | "i686" | "386" => ("386".to_string(), variant),
        other => (other.to_string(), variant),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let cases = [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("arm64", "linux/arm64"),
            ("Linux/AMD64", "linux/amd64"),
        ];
        for (input, want) in cases {
            assert_eq!(
                Platform::parse(input).expect(input).to_string(),
                want,
                "{input}"
            );
        }
        assert!(Platform::parse("linux/").is_err());
    }

    #[test]
    fn automatic_args_name_the_target_stage() {
        // TARGETSTAGE: --target as given, else the last stage's name, else
        // "default" (BuildKit's defaultArgs; dockerfile_args_test.go has a
        // stage built for the target "foo" see "foo")
        assert_eq!(target_stage(Some("Foo"), Some("last")), "Foo");
        assert_eq!(target_stage(None, Some("last")), "last");
        assert_eq!(target_stage(None, None), "default");
        let p = Platform::parse("linux/arm/v7").unwrap();
        let args = p.build_args("final", |k| (k == "TARGETOS").then(|| "given".to_string()));
        let get = |k: &str| args.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("TARGETSTAGE"), Some("final"));
        assert_eq!(get("TARGETPLATFORM"), Some("linux/arm/v7"));
        assert_eq!(get("TARGETVARIANT"), Some("v7"));
        assert_eq!(get("TARGETOSVERSION"), Some(""));
        assert_eq!(get("BUILDOSVERSION"), Some(""));
        assert_eq!(
            get("BUILDPLATFORM"),
            Some(Platform::host().to_string().as_str())
        );
        // a --build-arg of the same name replaces the value
        assert_eq!(get("TARGETOS"), Some("given"));
        assert_eq!(args.len(), 11);
        assert!(Platform::parse("a/b/c/d").is_err());
    }
}
