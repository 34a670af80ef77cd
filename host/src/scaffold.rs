//! `runnel plugin new`: a plugin project from the templates and SDKs embedded in the
//! agent, so it needs nothing but the agent to start (and it matches the agent's
//! contract version). Each project has a `build.sh` that installs what it needs, builds
//! `NAME.wasm`, and a plugin that `runnel plugin test` runs as generated.

use crate::plugin::Role;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// The languages `plugin new` writes projects for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
    C,
}

/// One file of a project: its path in the project and its text (`{{NAME}}`, `{{ROLE}}`,
/// `{{CRATE}}` and `{{TRY}}` replaced).
struct File {
    path: String,
    text: String,
    executable: bool,
}

macro_rules! embed {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../", $path))
    };
}

const WIT: &str = embed!("wit/runnel.wit");

const PYTHON_SDK: &[(&str, &str)] = &[
    (
        "__init__.py",
        embed!("guest-plugins/sdk-python/runnel_plugin/__init__.py"),
    ),
    (
        "api.py",
        embed!("guest-plugins/sdk-python/runnel_plugin/api.py"),
    ),
    (
        "flat.py",
        embed!("guest-plugins/sdk-python/runnel_plugin/flat.py"),
    ),
    (
        "roles.py",
        embed!("guest-plugins/sdk-python/runnel_plugin/roles.py"),
    ),
];
const PYTHON_BUILD: &str = embed!("guest-plugins/template-python/build.sh");

fn python_app(role: Role) -> &'static str {
    match role {
        Role::Parser => embed!("guest-plugins/template-python/app-parser.py"),
        Role::Interceptor => embed!("guest-plugins/template-python/app-interceptor.py"),
        Role::Cleaner => embed!("guest-plugins/template-python/app-cleaner.py"),
        Role::Router => embed!("guest-plugins/template-python/app-router.py"),
        Role::Processor => embed!("guest-plugins/template-python/app-processor.py"),
    }
}

const JS_SDK: &str = embed!("guest-plugins/sdk-js/runnel_plugin.js");
const JS_BUILD: &str = embed!("guest-plugins/template-js/build.sh");

fn js_app(role: Role) -> &'static str {
    match role {
        Role::Parser => embed!("guest-plugins/template-js/app-parser.js"),
        Role::Interceptor => embed!("guest-plugins/template-js/app-interceptor.js"),
        Role::Cleaner => embed!("guest-plugins/template-js/app-cleaner.js"),
        Role::Router => embed!("guest-plugins/template-js/app-router.js"),
        Role::Processor => embed!("guest-plugins/template-js/app-processor.js"),
    }
}

const C_SDK: &str = embed!("guest-plugins/sdk-c/runnel.h");
const C_BUILD: &str = embed!("guest-plugins/template-c/build.sh");

fn c_app(role: Role) -> &'static str {
    match role {
        Role::Parser => embed!("guest-plugins/template-c/app-parser.c"),
        Role::Interceptor => embed!("guest-plugins/template-c/app-interceptor.c"),
        Role::Cleaner => embed!("guest-plugins/template-c/app-cleaner.c"),
        Role::Router => embed!("guest-plugins/template-c/app-router.c"),
        Role::Processor => embed!("guest-plugins/template-c/app-processor.c"),
    }
}

const RUST_SDK: &[(&str, &str)] = &[
    ("lib.rs", embed!("guest-plugins/sdk-rust/src/lib.rs")),
    ("batch.rs", embed!("guest-plugins/sdk-rust/src/batch.rs")),
    (
        "bindings.rs",
        embed!("guest-plugins/sdk-rust/src/bindings.rs"),
    ),
    ("config.rs", embed!("guest-plugins/sdk-rust/src/config.rs")),
    ("level.rs", embed!("guest-plugins/sdk-rust/src/level.rs")),
    ("nodes.rs", embed!("guest-plugins/sdk-rust/src/nodes.rs")),
    ("output.rs", embed!("guest-plugins/sdk-rust/src/output.rs")),
    ("time.rs", embed!("guest-plugins/sdk-rust/src/time.rs")),
    ("value.rs", embed!("guest-plugins/sdk-rust/src/value.rs")),
];
const RUST_FLAT: &str = embed!("wit/flat/src/lib.rs");
fn rust_lib(role: Role) -> &'static str {
    match role {
        Role::Parser => embed!("guest-plugins/template-rust/roles/parser.rs"),
        Role::Interceptor => embed!("guest-plugins/template-rust/src/lib.rs"),
        Role::Cleaner => embed!("guest-plugins/template-rust/roles/cleaner.rs"),
        Role::Router => embed!("guest-plugins/template-rust/roles/router.rs"),
        Role::Processor => embed!("guest-plugins/template-rust/roles/processor.rs"),
    }
}
const RUST_BUILD: &str = embed!("guest-plugins/template-rust/build.sh");
const RUST_CARGO_CONFIG: &str = embed!(".cargo/config.toml");
const WIT_BINDGEN_VERSION: &str = "0.61";

/// Writes a new project for a `role` plugin called `name` into `dir` (which must not
/// exist or be empty); returns the files written.
pub fn create(lang: Lang, role: Role, name: &str, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("read {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", dir.display());
    }
    let files = match lang {
        Lang::Python => python(role),
        Lang::Js => js(role),
        Lang::Rust => rust(role),
        Lang::C => c(role),
    };
    let crate_name = name.replace('-', "_");
    let try_args = match role {
        Role::Parser => "< sample.log",
        Role::Interceptor | Role::Router => "--after combined < access.log",
        Role::Cleaner | Role::Processor => "--events-json < events.jsonl",
    };
    let mut written = Vec::new();
    for file in files {
        let path = dir.join(&file.path);
        let text = file
            .text
            .replace("{{NAME}}", name)
            .replace("{{CRATE}}", &crate_name)
            .replace("{{ROLE}}", &role.to_string())
            .replace("{{TRY}}", try_args);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))?;
        if file.executable {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod {}", path.display()))?;
        }
        written.push(path);
    }
    Ok(written)
}

/// Plugin names become file, module and crate names: lower-case letters, digits and
/// dashes, starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "plugin name `{name}`: use lower-case letters, digits and dashes, starting with a letter"
        );
    }
    Ok(())
}

fn file(path: impl Into<String>, text: impl Into<String>) -> File {
    File {
        path: path.into(),
        text: text.into(),
        executable: false,
    }
}

fn python(role: Role) -> Vec<File> {
    let mut files = vec![
        file("app.py", python_app(role)),
        // componentize-py looks for the class `Instance` in a module named after the
        // exported interface.
        file(
            format!("{role}.py"),
            format!(
                "# The component's `{role}` export: the plugin class in app.py, wrapped by the SDK.\n\
                 import app\nfrom runnel_plugin.roles import {role}\n\nInstance = {role}(app.Plugin)\n"
            ),
        ),
        File {
            executable: true,
            ..file("build.sh", PYTHON_BUILD)
        },
        file("wit/runnel.wit", WIT),
        file(".gitignore", "*.wasm\n__pycache__/\n"),
        file(
            "README.md",
            readme("Python", "app.py", "guest-plugins/sdk-python/README.md"),
        ),
    ];
    files.extend(
        PYTHON_SDK
            .iter()
            .map(|(name, text)| file(format!("runnel_plugin/{name}"), *text)),
    );
    files
}

fn js(role: Role) -> Vec<File> {
    vec![
        file("app.js", js_app(role)),
        file("runnel_plugin.js", JS_SDK),
        File {
            executable: true,
            ..file("build.sh", JS_BUILD)
        },
        file("wit/runnel.wit", WIT),
        file(".gitignore", "*.wasm\n"),
        file(
            "README.md",
            readme("JavaScript", "app.js", "guest-plugins/sdk-js/README.md")
                + "\nGive it `memory_mb = 128` in the agent config: the JavaScript engine needs more than the default 64.\n",
        ),
    ]
}

fn c(role: Role) -> Vec<File> {
    vec![
        file("app.c", c_app(role)),
        file("runnel.h", C_SDK),
        File {
            executable: true,
            ..file("build.sh", C_BUILD)
        },
        file("wit/runnel.wit", WIT),
        // gen/: the bindings and the core module build.sh makes.
        file(".gitignore", "*.wasm\ngen/\n"),
        file(
            "README.md",
            readme("C", "app.c", "guest-plugins/sdk-c/README.md"),
        ),
    ]
}

fn rust(role: Role) -> Vec<File> {
    let mut files = vec![
        file(
            "Cargo.toml",
            "[package]\nname = \"{{NAME}}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n\
             [dependencies]\nrunnel-plugin-sdk = { path = \"vendor/runnel-plugin-sdk\" }\n\n\
             [profile.release]\ncodegen-units = 1\nlto = true\nstrip = true\n\n\
             # Not part of any workspace around it.\n[workspace]\n",
        ),
        file("src/lib.rs", rust_lib(role)),
        File {
            executable: true,
            ..file("build.sh", RUST_BUILD)
        },
        file(".cargo/config.toml", RUST_CARGO_CONFIG),
        file(".gitignore", "/target\n*.wasm\n"),
        file(
            "README.md",
            readme("Rust", "src/lib.rs", "guest-plugins/sdk-rust"),
        ),
        file(
            "vendor/runnel-plugin-sdk/Cargo.toml",
            format!(
                "[package]\nname = \"runnel-plugin-sdk\"\nversion = \"{version}\"\nedition = \"2024\"\n\
                 license = \"Apache-2.0\"\ndescription = \"Write Runnel plugins in Rust (vendored by `runnel plugin new`)\"\n\n\
                 [dependencies]\nrunnel-flat = {{ path = \"../runnel-flat\" }}\n\
                 wit-bindgen = {{ version = \"{WIT_BINDGEN_VERSION}\", default-features = false, features = [\"macros\", \"realloc\", \"std\"] }}\n",
                version = env!("CARGO_PKG_VERSION"),
            ),
        ),
        file("vendor/runnel-plugin-sdk/wit/runnel.wit", WIT),
        file(
            "vendor/runnel-flat/Cargo.toml",
            format!(
                "[package]\nname = \"runnel-flat\"\nversion = \"{}\"\nedition = \"2024\"\nlicense = \"Apache-2.0\"\n\
                 description = \"The flat encoding of the runnel:plugin contract (vendored by `runnel plugin new`)\"\n",
                env!("CARGO_PKG_VERSION")
            ),
        ),
        file("vendor/runnel-flat/src/lib.rs", RUST_FLAT),
    ];
    files.extend(
        RUST_SDK
            .iter()
            .map(|(name, text)| file(format!("vendor/runnel-plugin-sdk/src/{name}"), *text)),
    );
    files
}

fn readme(language: &str, code: &str, sdk: &str) -> String {
    format!(
        "# {{{{NAME}}}}\n\nA Runnel {{{{ROLE}}}} plugin in {language}, made by `runnel plugin new`.\n\n\
         ```sh\n./build.sh                                   # installs what it needs, builds {{{{NAME}}}}.wasm\n\
         runnel plugin test {{{{NAME}}}}.wasm {{{{TRY}}}}\n```\n\n\
         The plugin is `{code}`. Use it in an agent config:\n\n\
         ```toml\n[plugins.{{{{NAME}}}}]\npath = \"/path/to/{{{{NAME}}}}.wasm\"\n```\n\n\
         The SDK's guide is `{sdk}` in the Runnel repository; the contract is `wit/runnel.wit`.\n"
    )
}
