//! The examples a user copies (`examples/ci`, `examples/kubernetes`,
//! `examples/tekton`, `examples/github-actions`) keep working: each YAML file
//! is parsed, the executor and warmer command lines in it are taken out as
//! its CI system would run them, the registry and the CI variables are
//! replaced by the test registry and test values (the tables below), and the
//! command lines run against that registry with htpasswd credentials. A
//! flag an example uses that smelt stops accepting, a variable no table
//! knows, or a pushed image that is not the one built fails the test.
//!
//! The image runs smelt as `/kaniko/executor`, in place in its container.
//! Here `/kaniko/executor` and `/kaniko/warmer` are links in a temporary
//! `kaniko` directory, so smelt's binary lives elsewhere than `/kaniko` and
//! builds out of place (a root of its own per stage, RUN in a chroot
//! sandbox), with the same flags; the in-place mode is tested by
//! `in_place.rs`. The container paths (`/kaniko/.docker`, `/cache`,
//! `/workspace`) are mapped to temporary directories, as the volumes the
//! YAML files mount.

use crate::git_server::{Repos, git, git_daemon};
use crate::harness::smelt_bin;
use crate::registry_server::{Auth, PASSWORD, TestRegistry, USER, busybox};
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

/// The executor image the examples name.
const IMAGE: &str = "ghcr.io/smelt-build/smelt/executor";

/// The Dockerfile the examples build: a base from the test registry, a RUN
/// and a COPY of the context.
fn dockerfile(base: &str) -> String {
    format!("FROM {base}\nRUN echo built > /built\nCOPY app.txt /app/\n")
}

/// The YAML documents of `examples/REL`.
fn load(rel: &str) -> Vec<Yaml> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel);
    let text = fs_err::read_to_string(&path).expect("read example");
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[track_caller]
fn text(y: &Yaml) -> &str {
    y.as_str()
        .unwrap_or_else(|| panic!("a string expected, not {y:?}"))
}

#[track_caller]
fn list(y: &Yaml) -> &[Yaml] {
    y.as_vec()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("a list expected, not {y:?}"))
}

fn strings(y: &Yaml) -> Vec<String> {
    list(y).iter().map(|i| text(i).to_string()).collect()
}

/// A scratch directory holding what a container of the executor image has
/// of its own: `kaniko/executor` and `kaniko/warmer` (links to smelt) and
/// `kaniko/.docker` (the image's `DOCKER_CONFIG`).
struct Container {
    dir: tempfile::TempDir,
}

impl Container {
    fn new() -> Container {
        let dir = tempfile::tempdir().expect("tempdir");
        let kaniko = dir.path().join("kaniko");
        fs_err::create_dir_all(kaniko.join(".docker")).expect("mkdir");
        for name in ["executor", "warmer"] {
            std::os::unix::fs::symlink(smelt_bin(), kaniko.join(name)).expect("symlink");
        }
        Container { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A directory of busybox applet links: the debug image's `/busybox`.
    fn busybox(&self) -> PathBuf {
        let dir = self.path("busybox");
        if !dir.exists() {
            fs_err::create_dir_all(&dir).expect("mkdir");
            let out = Command::new(busybox())
                .arg("--install")
                .arg("-s")
                .arg(&dir)
                .output()
                .expect("busybox");
            assert!(out.status.success(), "busybox --install failed");
        }
        dir
    }

    /// Runs `argv` (its first word a container path, mapped by `mounts`)
    /// in `cwd` with `env`; returns stdout, failing the test with the log
    /// when it does not exit 0.
    #[track_caller]
    fn run(
        &self,
        what: &str,
        argv: &[String],
        mounts: &Mounts,
        cwd: &Path,
        env: &[(&str, String)],
        stdin: Option<&str>,
    ) -> String {
        let argv: Vec<String> = argv.iter().map(|a| mounts.map_arg(a)).collect();
        // a shell script reads its variables from `env`
        let shell = argv[0].ends_with("/sh");
        for a in argv.iter().filter(|_| !shell) {
            assert!(
                !a.contains('$'),
                "{what}: {a:?} has a variable no table of the test replaces"
            );
        }
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .current_dir(cwd)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", self.path("home"))
            .env("NO_COLOR", "1")
            // the image's ENV, through the mounts
            .env("DOCKER_CONFIG", mounts.map_path("/kaniko/.docker"))
            .envs(env.iter().map(|(k, v)| (k, v)));
        let out = crate::harness::output_with_stdin(&mut cmd, stdin, &format!("{what}: {argv:?}"));
        assert!(
            out.status.success(),
            "{what} failed ({:?}):\n{argv:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Container paths and the host directories mounted there; `/kaniko/`
/// (the image's own directory) is the container's scratch `kaniko`.
struct Mounts(Vec<(String, PathBuf)>);

impl Mounts {
    fn new(c: &Container) -> Mounts {
        Mounts(vec![("/kaniko".into(), c.path("kaniko"))])
    }

    fn add(&mut self, container: &str, host: PathBuf) {
        self.0.push((container.trim_end_matches('/').into(), host));
        // the longest first, so /kaniko/.docker wins over /kaniko
        self.0.sort_by_key(|(c, _)| std::cmp::Reverse(c.len()));
    }

    /// `path` with a mounted prefix replaced by its host directory.
    fn map_path(&self, path: &str) -> String {
        for (c, host) in &self.0 {
            if let Some(rest) = path.strip_prefix(c.as_str())
                && (rest.is_empty() || rest.starts_with('/'))
            {
                return format!("{}{rest}", host.display());
            }
        }
        path.to_string()
    }

    /// An argument: a path, or `--flag=path`.
    fn map_arg(&self, arg: &str) -> String {
        match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                format!("{flag}={}", self.map_path(value))
            }
            _ => self.map_path(arg),
        }
    }
}

/// Replaces each `from` of `table` by its value.
fn substitute(s: &str, table: &[(&str, String)]) -> String {
    let mut s = s.to_string();
    for (from, to) in table {
        s = s.replace(from, to);
    }
    s
}

/// The names of the shell variables `script` reads (`$NAME`, `${NAME}`).
fn shell_variables(script: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = script;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let braced = rest.starts_with('{');
        let name: String = rest
            .trim_start_matches('{')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && (braced || !name.starts_with(|c: char| c.is_ascii_digit())) {
            names.push(name);
        }
    }
    names
}

/// The digest of `name` in the registry.
fn digest(reg: &TestRegistry, name: &str) -> String {
    reg.inspect(name, &[])["Digest"]
        .as_str()
        .expect("digest")
        .to_string()
}

/// A build context directory for `base`.
fn context(dir: &Path, base: &str) {
    fs_err::create_dir_all(dir).expect("mkdir");
    fs_err::write(dir.join("Dockerfile"), dockerfile(base)).expect("Dockerfile");
    fs_err::write(dir.join("app.txt"), "the app\n").expect("app.txt");
}

/// `examples/ci/gitlab-ci.yml`: the debug image with its entrypoint
/// emptied, and the job's script run by the debug image's busybox shell
/// (`-e` as GitLab stops at a failing line, `-u` so that a variable GitLab
/// would set and the table does not is an error): it writes config.json
/// from the CI registry variables and builds with `--cache=true`.
#[test]
fn gitlab_ci_example_builds_and_pushes() {
    let reg = TestRegistry::start(Auth::Htpasswd);
    let base = reg.push_base("group/base:1", "linux/amd64");
    let docs = load("ci/gitlab-ci.yml");
    let job = &docs[0]["build"];
    assert_eq!(text(&job["image"]["name"]), format!("{IMAGE}:debug"));
    assert_eq!(strings(&job["image"]["entrypoint"]), [""]);

    let c = Container::new();
    let project = c.path("project");
    context(&project, &base);
    // GitLab's predefined variables, as a tag pipeline sets them
    let vars: Vec<(&str, String)> = vec![
        ("CI_REGISTRY", reg.host.clone()),
        ("CI_REGISTRY_USER", USER.into()),
        ("CI_REGISTRY_PASSWORD", PASSWORD.into()),
        ("CI_REGISTRY_IMAGE", format!("{}/group/project", reg.host)),
        ("CI_COMMIT_TAG", "v1.0.0".into()),
        ("CI_PROJECT_DIR", project.display().to_string()),
    ];
    let script = strings(&job["script"]).join("\n");
    assert!(script.contains("/kaniko/executor"), "{script}");
    for name in shell_variables(&script) {
        assert!(
            vars.iter().any(|(k, _)| *k == name),
            "the GitLab example reads ${name}, which the test's table lacks"
        );
    }
    // the image's own directory is the container's scratch one
    let script = script.replace("/kaniko/", &format!("{}/", c.path("kaniko").display()));
    let sh = c.busybox().join("sh");
    let mut env = vars;
    env.push(("PATH", c.busybox().display().to_string()));
    let stdout = c.run(
        "the GitLab job's script",
        &[sh.display().to_string(), "-euc".into(), script],
        &Mounts::new(&c),
        &project,
        &env,
        None,
    );
    assert!(
        c.path("kaniko/.docker/config.json").is_file(),
        "the script wrote no config.json"
    );
    let pushed = digest(&reg, "group/project:v1.0.0");
    assert_eq!(stdout.trim(), pushed);
    assert_eq!(
        reg.layer_count("group/project:v1.0.0"),
        reg.layer_count("group/base:1") + 2
    );
    // --cache=true filled <destination>/cache
    let tags = reg.skopeo(
        "list-tags",
        &[""],
        &[&format!("docker://{}/group/project/cache", reg.host)],
    );
    let tags: serde_json::Value = serde_json::from_str(&tags).expect("JSON");
    assert!(
        !tags["Tags"].as_array().expect("tags").is_empty(),
        "no cache entry: {tags}"
    );
}

/// A Kubernetes pod's container of the executor image: its command line
/// (`command` or the entrypoint, then `args`) and its volume mounts, each
/// volume a directory of the container's scratch one (a secret's items
/// written there, a claim's directory shared by name).
fn pod_container(
    c: &Container,
    job: &Yaml,
    secrets: &[(&str, String)],
    table: &[(&str, String)],
) -> (Vec<String>, Mounts) {
    assert_eq!(text(&job["kind"]), "Job");
    let pod = &job["spec"]["template"]["spec"];
    let containers = list(&pod["containers"]);
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert!(
        text(&container["image"]).starts_with(&format!("{IMAGE}:")),
        "{container:?}"
    );
    let mut argv = match container["command"].as_vec() {
        Some(_) => strings(&container["command"]),
        None => vec!["/kaniko/executor".to_string()],
    };
    argv.extend(
        strings(&container["args"])
            .iter()
            .map(|a| substitute(a, table)),
    );
    let mut mounts = Mounts::new(c);
    for m in list(&container["volumeMounts"]) {
        let name = text(&m["name"]);
        let volume = list(&pod["volumes"])
            .iter()
            .find(|v| text(&v["name"]) == name)
            .unwrap_or_else(|| panic!("no volume {name}"));
        let host = if let Some(secret) = volume["secret"]["secretName"].as_str() {
            let dir = c.path(&format!("secret-{name}"));
            fs_err::create_dir_all(&dir).expect("mkdir");
            for item in list(&volume["secret"]["items"]) {
                let data = secrets
                    .iter()
                    .find(|(k, _)| *k == format!("{secret}/{}", text(&item["key"])))
                    .unwrap_or_else(|| panic!("no test value for secret {secret}"));
                fs_err::write(dir.join(text(&item["path"])), &data.1).expect("write");
            }
            dir
        } else {
            let claim = text(&volume["persistentVolumeClaim"]["claimName"]);
            let dir = c.path(&format!("claim-{claim}"));
            fs_err::create_dir_all(&dir).expect("mkdir");
            dir
        };
        mounts.add(text(&m["mountPath"]), host);
    }
    (argv, mounts)
}

/// `examples/kubernetes/`: the warmer Job fills the claim of
/// `cache-pvc.yaml` with the base image; the base is then deleted from the
/// registry, so the build Job (a git context, the docker config secret)
/// can only have it from `--cache-dir=/cache`.
#[test]
fn kubernetes_examples_warm_then_build_from_git() {
    let reg = TestRegistry::start(Auth::Htpasswd);
    let base = reg.push_base("team/base:1.0", "linux/amd64");
    let c = Container::new();

    // the repository of the build Job's --context, served by git daemon
    let repos = Repos {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let work = c.path("app-work");
    context(&work, &base);
    git(&work, &["init", "-q"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "app"]);
    fs_err::create_dir_all(repos.dir.path().join("team")).expect("mkdir");
    git(
        &repos.dir.path().join("team"),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().expect("utf8"),
            "app.git",
        ],
    );
    let daemon = git_daemon(&repos);

    let table: Vec<(&str, String)> = vec![
        ("registry.example.com", reg.host.clone()),
        (
            "git://git.example.com/",
            format!("git://127.0.0.1:{}/", daemon.port),
        ),
    ];
    let config = fs_err::read_to_string(reg.docker_config().join("config.json")).expect("config");
    let secrets = [("regcred/.dockerconfigjson", config)];
    let pvc = &load("kubernetes/cache-pvc.yaml")[0];
    assert_eq!(text(&pvc["kind"]), "PersistentVolumeClaim");
    let claim = text(&pvc["metadata"]["name"]);

    let warmer = &load("kubernetes/warmer-job.yaml")[0];
    let (argv, mounts) = pod_container(&c, warmer, &secrets, &table);
    assert_eq!(argv[0], "/kaniko/warmer");
    assert_eq!(
        mounts.map_path("/cache"),
        c.path(&format!("claim-{claim}")).display().to_string()
    );
    c.run("the warmer Job", &argv, &mounts, c.dir.path(), &[], None);
    assert!(c.path(&format!("claim-{claim}/index.json")).is_file());

    let base_layers = reg.layer_count("team/base:1.0");
    reg.skopeo(
        "delete",
        &[""],
        &[&format!("docker://{}/team/base:1.0", reg.host)],
    );
    let build = &load("kubernetes/build-job.yaml")[0];
    let (argv, mounts) = pod_container(&c, build, &secrets, &table);
    assert_eq!(argv[0], "/kaniko/executor");
    // in a cluster git:// is fetched over HTTPS (kaniko's default); the
    // test's server speaks the git protocol
    let env = [("GIT_PULL_METHOD", "git".to_string())];
    let stdout = c.run("the build Job", &argv, &mounts, c.dir.path(), &env, None);
    assert_eq!(stdout.trim(), digest(&reg, "team/app:latest"));
    assert_eq!(reg.layer_count("team/app:latest"), base_layers + 2);
}

/// Replaces Tekton's `$(params.NAME)`, `$(workspaces.NAME.path)` and
/// `$(results.NAME.path)`; an argument that is an array parameter's
/// `$(params.NAME[*])` becomes its items.
fn tekton_args(args: &[String], table: &[(String, Vec<String>)]) -> Vec<String> {
    let mut out = Vec::new();
    for a in args {
        if let Some((_, items)) = table.iter().find(|(k, _)| *a == format!("$({k}[*])")) {
            out.extend(items.iter().cloned());
            continue;
        }
        let mut a = a.clone();
        for (k, v) in table {
            if let [one] = v.as_slice() {
                a = a.replace(&format!("$({k})"), one);
            }
        }
        out.push(a);
    }
    out
}

/// `examples/tekton/task.yaml`: the catalog kaniko task's parameters and
/// results; a TaskRun's values (the table) given, the build step runs in
/// its working directory with the dockerconfig workspace at
/// `/kaniko/.docker`, and the results are the pushed image's digest and
/// reference.
#[test]
fn tekton_task_example_builds_and_writes_its_results() {
    let reg = TestRegistry::start(Auth::Htpasswd);
    let base = reg.push_base("team/base:1", "linux/amd64");
    let task = &load("tekton/task.yaml")[0];
    assert_eq!(text(&task["kind"]), "Task");
    let spec = &task["spec"];
    let c = Container::new();
    let source = c.path("source");
    context(&source, &base);
    fs_err::create_dir_all(c.path("results")).expect("mkdir");

    let image = format!("{}/team/app:tekton", reg.host);
    // the TaskRun's params, its registry the test's
    let run = &load("tekton/taskrun.yaml")[0];
    assert_eq!(text(&run["kind"]), "TaskRun");
    assert_eq!(
        text(&run["spec"]["taskRef"]["name"]),
        text(&task["metadata"]["name"])
    );
    let ours = |v: &Yaml| text(v).replace("registry.example.com", &reg.host);
    let given: Vec<(&str, Vec<String>)> = list(&run["spec"]["params"])
        .iter()
        .map(|p| {
            let value = match &p["value"] {
                Yaml::Array(items) => items.iter().map(ours).collect(),
                one => vec![ours(one)],
            };
            (text(&p["name"]), value)
        })
        .collect();
    let bound: Vec<&str> = list(&run["spec"]["workspaces"])
        .iter()
        .map(|w| text(&w["name"]))
        .collect();
    assert_eq!(bound, ["source", "dockerconfig"]);
    assert_eq!(
        text(&list(&run["spec"]["workspaces"])[1]["secret"]["items"][0]["path"]),
        "config.json"
    );
    let mut table: Vec<(String, Vec<String>)> = Vec::new();
    for p in list(&spec["params"]) {
        let name = text(&p["name"]);
        let value = match given.iter().find(|(k, _)| *k == name) {
            Some((_, v)) => v.clone(),
            None => match &p["default"] {
                Yaml::Array(items) => items.iter().map(|i| text(i).to_string()).collect(),
                other => vec![text(other).to_string()],
            },
        };
        table.push((format!("params.{name}"), value));
    }
    let names: Vec<&str> = table.iter().map(|(k, _)| k.as_str()).collect();
    for want in [
        "IMAGE",
        "DOCKERFILE",
        "CONTEXT",
        "EXTRA_ARGS",
        "BUILDER_IMAGE",
    ] {
        assert!(
            names.contains(&format!("params.{want}").as_str()),
            "{names:?}"
        );
    }
    let results: Vec<&str> = list(&spec["results"])
        .iter()
        .map(|r| text(&r["name"]))
        .collect();
    assert_eq!(results, ["IMAGE_DIGEST", "IMAGE_URL"]);
    for r in &results {
        table.push((
            format!("results.{r}.path"),
            vec![c.path(&format!("results/{r}")).display().to_string()],
        ));
    }
    table.push((
        "workspaces.source.path".into(),
        vec![source.display().to_string()],
    ));
    let mut mounts = Mounts::new(&c);
    for w in list(&spec["workspaces"]) {
        if text(&w["name"]) == "dockerconfig" {
            mounts.add(text(&w["mountPath"]), reg.docker_config());
        }
    }
    assert_eq!(
        mounts.map_path("/kaniko/.docker"),
        reg.docker_config().display().to_string()
    );

    let steps = list(&spec["steps"]);
    let build = &steps[0];
    assert_eq!(
        tekton_args(&[text(&build["image"]).to_string()], &table),
        [format!("{IMAGE}:latest")]
    );
    let mut argv = vec!["/kaniko/executor".to_string()];
    argv.extend(tekton_args(&strings(&build["args"]), &table));
    assert!(argv.contains(&"--cache=true".to_string()), "{argv:?}");
    let cwd = tekton_args(&[text(&build["workingDir"]).to_string()], &table);
    c.run(
        "the build-and-push step",
        &argv,
        &mounts,
        Path::new(&cwd[0]),
        &[],
        None,
    );

    let write_url = &steps[1];
    assert_eq!(
        tekton_args(&[text(&write_url["image"]).to_string()], &table),
        [format!("{IMAGE}:debug")]
    );
    let script = tekton_args(&[text(&write_url["script"]).to_string()], &table).remove(0);
    assert!(
        !script.contains("$("),
        "a Tekton variable the test does not replace: {script}"
    );
    let script = script
        .strip_prefix("#!/busybox/sh\n")
        .unwrap_or_else(|| panic!("the script is not the debug image's shell's: {script}"));
    let sh = c.busybox().join("sh");
    c.run(
        "the write-url step",
        &[sh.display().to_string(), "-euc".into(), script.to_string()],
        &mounts,
        c.dir.path(),
        &[("PATH", c.busybox().display().to_string())],
        None,
    );
    let read = |r: &str| fs_err::read_to_string(c.path(&format!("results/{r}"))).expect("result");
    assert_eq!(read("IMAGE_DIGEST"), digest(&reg, "team/app:tekton"));
    assert_eq!(read("IMAGE_URL"), image);
}

/// Splits a shell command line into words: single and double quotes,
/// backslash escapes outside quotes; no expansion.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    let mut quote = None;
    while let Some(ch) = chars.next() {
        match (quote, ch) {
            (None, ' ' | '\t') => words.extend(word.take()),
            (None, '\'' | '"') => {
                quote = Some(ch);
                word.get_or_insert_default();
            }
            (None, '\\') => word.get_or_insert_default().extend(chars.next()),
            (Some(q), _) if ch == q => quote = None,
            _ => word.get_or_insert_default().push(ch),
        }
    }
    assert!(quote.is_none(), "an unclosed quote in {line}");
    words.extend(word);
    words
}

/// `examples/github-actions/build.yml`: each `run:` step; a `docker run`
/// of the executor image runs its arguments with its `-v` volumes mapped
/// (and what an `echo ... |` before it gives on stdin), any other line
/// runs in a shell. The login step writes the config the build reads.
#[test]
fn github_actions_example_logs_in_then_builds_and_pushes() {
    let reg = TestRegistry::start(Auth::Htpasswd);
    let base = reg.push_base("octo/base:1", "linux/amd64");
    let c = Container::new();
    let workspace = c.path("workspace");
    context(&workspace, &base);
    let runner_temp = c.path("runner-temp");
    fs_err::create_dir_all(&runner_temp).expect("mkdir");
    let sha = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
    // the workflow's expressions and the runner's variables
    let table: Vec<(&str, String)> = vec![
        ("${{ secrets.GITHUB_TOKEN }}", PASSWORD.into()),
        ("${{ github.actor }}", USER.into()),
        ("${{ github.workspace }}", workspace.display().to_string()),
        ("${{ github.repository }}", "octo/app".into()),
        ("${{ github.sha }}", sha.into()),
        ("$RUNNER_TEMP", runner_temp.display().to_string()),
    ];

    let workflow = &load("github-actions/build.yml")[0];
    let steps = list(&workflow["jobs"]["build"]["steps"]);
    let mut outputs = Vec::new();
    for step in steps {
        let Some(script) = step["run"].as_str() else {
            continue;
        };
        let script = substitute(&script.replace("\\\n", " "), &table);
        for line in script.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                !line.contains('$'),
                "{line:?} has a variable no table of the test replaces"
            );
            let Some((before, docker)) = line.split_once("docker run ") else {
                c.run(
                    "a workflow line",
                    &["/bin/sh".into(), "-euc".into(), line.into()],
                    &Mounts::new(&c),
                    c.dir.path(),
                    &[],
                    None,
                );
                continue;
            };
            let stdin = before.trim().strip_suffix('|').map(|echo| {
                let words = shell_words(echo);
                assert_eq!(words[0], "echo", "{line}");
                format!("{}\n", words[1..].join(" "))
            });
            let mut words = shell_words(docker).into_iter();
            let mut mounts = Mounts::new(&c);
            let image = loop {
                let w = words.next().expect("the image");
                match w.as_str() {
                    "--rm" | "-i" => {}
                    "-v" => {
                        let v = words.next().expect("a volume");
                        let v = v.strip_suffix(":ro").unwrap_or(&v);
                        let (host, container) = v.split_once(':').expect("host:container");
                        mounts.add(container, PathBuf::from(host));
                    }
                    other if other.starts_with('-') => panic!("docker run {other}: not understood"),
                    _ => break w,
                }
            };
            assert_eq!(image, format!("{IMAGE}:latest"));
            let mut argv = vec!["/kaniko/executor".to_string()];
            argv.extend(words.map(|w| w.replace("ghcr.io", &reg.host)));
            outputs.push(c.run(
                "a docker run of the workflow",
                &argv,
                &mounts,
                c.dir.path(),
                &[],
                stdin.as_deref(),
            ));
        }
    }
    assert_eq!(outputs.len(), 2, "a login and a build expected");
    let built = outputs[1].trim();
    assert_eq!(built, digest(&reg, &format!("octo/app:{sha}")));
    assert_eq!(built, digest(&reg, "octo/app:latest"));
}
