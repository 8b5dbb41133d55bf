//! Context tarballs in object stores, read from real emulators on
//! loopback: S3 (moto) with environment and profile credentials, GCS
//! (gcp-storage-emulator) with kaniko's `--bucket`, Azure blob (Azurite)
//! with `AZURE_STORAGE_ACCESS_KEY`. Errors name the object and what the
//! service said, never a secret.

use crate::contexts::{DOCKERFILE, assert_context_copied, context_tarball, smelt, smelt_fails};
use crate::emulators::{AZURE_ACCOUNT, AZURE_KEY, Emulator, python};
use crate::harness::{TestContext, tool};
use std::path::Path;

const SECRET: &str = "s3cr3t-never-shown";

/// A build that must fail (exit 1) without showing [`SECRET`]; its stderr.
fn failure(args: &[&str], env: &[(&str, &str)]) -> String {
    let err = smelt_fails(args, env);
    assert!(!err.contains(SECRET), "{err}");
    err
}

/// `curl -f` with `args`.
fn curl(args: &[&str]) {
    let mut all = vec!["-sSf", "-o", "/dev/null"];
    all.extend_from_slice(args);
    tool("curl", &all);
}

#[test]
fn an_s3_tarball_with_environment_or_profile_credentials() {
    let s3 = Emulator::s3();
    let t = TestContext::new(DOCKERFILE);
    let tarball = context_tarball(&t);
    let at = |path: &str| format!("{}/{path}", s3.url());
    curl(&["-X", "PUT", &at("ctx")]);
    curl(&[
        "-T",
        tarball.to_str().unwrap(),
        &at("ctx/builds/context.tar.gz"),
    ]);
    let endpoint = s3.url();
    let keys = [
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ];
    let t1 = TestContext::new("unused\n");
    smelt(
        &t1,
        &["--context", "s3://ctx/builds/context.tar.gz"],
        b"",
        &keys,
    );
    assert_context_copied(&t1);

    // no keys in the environment: the shared credentials file's profile
    // (without it the client would ask the instance metadata service,
    // which is not here) and the config file's region
    let home = t.path("home");
    fs_err::create_dir_all(home.join(".aws")).unwrap();
    fs_err::write(
        home.join(".aws/credentials"),
        format!(
            "[default]\naws_access_key_id = WRONG\n\n\
             [ci]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = {SECRET}\n"
        ),
    )
    .unwrap();
    fs_err::write(
        home.join(".aws/config"),
        "[profile ci]\nregion = eu-west-1\n",
    )
    .unwrap();
    let home = home.display().to_string();
    let profile = [
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_FORCE_PATH_STYLE", "true"),
        ("HOME", home.as_str()),
        ("AWS_PROFILE", "ci"),
    ];
    // the bucket alone names context.tar.gz, as in kaniko
    curl(&["-T", tarball.to_str().unwrap(), &at("ctx/context.tar.gz")]);
    let t2 = TestContext::new("unused\n");
    smelt(&t2, &["--context", "s3://ctx"], b"", &profile);
    assert_context_copied(&t2);

    // a bucket that is not there
    let err = failure(&["--context", "s3://no-such-bucket/context.tar.gz"], &keys);
    assert!(
        err.contains("s3://no-such-bucket/context.tar.gz")
            && err.contains("not found (NoSuchBucket"),
        "{err}"
    );
    // an object that is not there
    let err = failure(&["--context", "s3://ctx/nothing.tar.gz"], &keys);
    assert!(err.contains("not found (NoSuchKey"), "{err}");
}

#[test]
fn a_gcs_tarball_and_kanikos_bucket_flag() {
    let gcs = Emulator::gcs();
    let t = TestContext::new(DOCKERFILE);
    let tarball = context_tarball(&t);
    let url = gcs.url();
    curl(&[
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"name":"ctx-bucket"}"#,
        &format!("{url}/storage/v1/b?project=test"),
    ]);
    for name in ["path/to/ctx.tar.gz", "context.tar.gz"] {
        curl(&[
            "--data-binary",
            &format!("@{}", tarball.display()),
            &format!(
                "{url}/upload/storage/v1/b/ctx-bucket/o?uploadType=media&name={}",
                name.replace('/', "%2F")
            ),
        ]);
    }
    let host = format!("127.0.0.1:{}", gcs.port);
    let env = [("STORAGE_EMULATOR_HOST", host.as_str())];
    let t1 = TestContext::new("unused\n");
    smelt(
        &t1,
        &["--context", "gs://ctx-bucket/path/to/ctx.tar.gz"],
        b"",
        &env,
    );
    assert_context_copied(&t1);
    // --bucket alone: gs://, context.tar.gz
    let t2 = TestContext::new("unused\n");
    smelt(&t2, &["--bucket", "ctx-bucket"], b"", &env);
    assert_context_copied(&t2);

    let err = failure(&["--context", "gs://ctx-bucket/missing.tar.gz"], &env);
    assert!(
        err.contains("gs://ctx-bucket/missing.tar.gz") && err.contains("not found"),
        "{err}"
    );
}

/// Creates `container` in Azurite and uploads `file` as `blob`, with
/// Microsoft's own Python client.
fn azure_upload(azurite: &Emulator, container: &str, blob: &str, file: &Path) {
    let script = format!(
        "from azure.storage.blob import BlobServiceClient\n\
         c = BlobServiceClient.from_connection_string('DefaultEndpointsProtocol=http;\
         AccountName={AZURE_ACCOUNT};AccountKey={AZURE_KEY};\
         BlobEndpoint={url}/{AZURE_ACCOUNT};')\n\
         c.create_container('{container}')\n\
         c.get_blob_client('{container}', '{blob}').upload_blob(open('{file}', 'rb'))\n",
        url = azurite.url(),
        file = file.display()
    );
    tool(python().to_str().unwrap(), &["-c", &script]);
}

#[test]
fn an_azure_blob_tarball_and_a_refused_key() {
    let azurite = Emulator::azure();
    let t = TestContext::new(DOCKERFILE);
    let tarball = context_tarball(&t);
    azure_upload(&azurite, "contexts", "app/context.tar.gz", &tarball);
    let context =
        format!("https://{AZURE_ACCOUNT}.blob.core.windows.net/contexts/app/context.tar.gz");
    let url = azurite.url();
    let emulator = [
        ("AZURE_STORAGE_USE_EMULATOR", "true"),
        ("AZURITE_BLOB_STORAGE_URL", url.as_str()),
    ];
    let with_key = |key: &'static str| {
        let mut env = emulator.to_vec();
        env.push(("AZURE_STORAGE_ACCESS_KEY", key));
        env
    };
    let t1 = TestContext::new("unused\n");
    smelt(&t1, &["--context", &context], b"", &with_key(AZURE_KEY));
    assert_context_copied(&t1);

    // a key the account does not have (base64, as keys are)
    let wrong = "czNjcjN0LW5ldmVyLXNob3du"; // base64 of SECRET
    let err = failure(&["--context", &context], &with_key(wrong));
    assert!(
        err.contains(&context) && err.contains("AuthorizationFailure"),
        "{err}"
    );
    assert!(!err.contains(wrong), "{err}");

    let missing = format!("https://{AZURE_ACCOUNT}.blob.core.windows.net/contexts/none.tar.gz");
    let err = failure(&["--context", &missing], &with_key(AZURE_KEY));
    assert!(err.contains("container or blob not found"), "{err}");
}
