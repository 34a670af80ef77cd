//! The plugins shipped inside the agent binary (guest-plugins/, built for wasm32-wasip2).
//! Configs name them with `builtin = "NAME"`.

/// A shipped plugin.
pub struct Builtin {
    pub name: &'static str,
    /// The stem of its files: `runnel_plugin_STEM.wasm`, `STEM.cwasm`.
    #[cfg_attr(not(feature = "compiler"), allow(dead_code))]
    stem: &'static str,
    pub wasm: &'static [u8],
    /// Its code compiled by build.rs for the build host (empty: not precompiled).
    precompiled: &'static [u8],
}

impl Builtin {
    /// The code compiled at build time, if there is any.
    pub fn precompiled(&self) -> Option<Precompiled> {
        (!self.precompiled.is_empty()).then_some(Precompiled(self.precompiled))
    }

    /// Its code as the plugin engine loads it: the component, with the code compiled
    /// at build time if any.
    pub fn code(&self) -> crate::plugin::Code<'static> {
        crate::plugin::Code::Component {
            wasm: self.wasm,
            precompiled: self.precompiled(),
        }
    }
}

/// Code compiled from a builtin plugin by `runnel plugin compile --builtins` (see
/// [`precompile_into`]) and embedded in the agent's binary by build.rs. Only this module
/// makes one, so holding one says where the bytes come from: the binary itself, as
/// trusted as the agent's own code. (wasmtime still checks that the code fits the
/// running engine — version, settings, CPU features — and refuses it otherwise.)
#[derive(Clone, Copy)]
pub struct Precompiled(&'static [u8]);

impl Precompiled {
    pub fn code(self) -> &'static [u8] {
        self.0
    }

    /// Code a test made with `CompileCache::precompile`.
    #[cfg(test)]
    pub(crate) fn for_test(code: &'static [u8]) -> Self {
        Precompiled(code)
    }
}

macro_rules! builtin {
    ($name:literal, $file:literal) => {
        Builtin {
            name: $name,
            stem: $file,
            wasm: include_bytes!(concat!(
                env!("RUNNEL_PLUGIN_DIR"),
                "/runnel_plugin_",
                $file,
                ".wasm"
            )),
            precompiled: include_bytes!(concat!(
                env!("RUNNEL_PRECOMPILED_DIR"),
                "/",
                $file,
                ".cwasm"
            )),
        }
    };
}

static BUILTINS: &[Builtin] = &[
    builtin!("combined", "combined"),
    builtin!("json", "json"),
    builtin!("regex", "regex"),
    builtin!("level-router", "level_router"),
    builtin!("strip-control", "strip_control"),
    builtin!("host-timestamp", "host_timestamp"),
    builtin!("field-filter", "field_filter"),
];

pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|b| b.name).collect()
}

/// Writes every builtin's code compiled for the engine's target into `dir` as `STEM.cwasm`,
/// the files build.rs embeds when `RUNNEL_PRECOMPILED_DIR` names `dir`. A builtin whose
/// embedded code already fits is written from it, not compiled again; a file whose
/// content would not change is left alone (so cargo sees nothing new). Returns, per
/// builtin, its name and whether it was compiled now.
#[cfg(feature = "compiler")]
pub fn precompile_into(
    engine: &crate::plugin::PluginEngine,
    dir: &std::path::Path,
) -> anyhow::Result<Vec<(&'static str, bool)>> {
    use anyhow::Context as _;
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let mut done = Vec::new();
    for b in BUILTINS {
        let (code, compiled) = engine
            .precompile(b.wasm, b.precompiled())
            .map_err(anyhow::Error::from)
            .with_context(|| format!("compile the builtin plugin `{}`", b.name))?;
        let file = dir.join(format!("{}.cwasm", b.stem));
        if std::fs::read(&file).ok().as_deref() != Some(code.as_slice()) {
            crate::files::replace_shared(&file, &[&code])
                .with_context(|| format!("write {}", file.display()))?;
        }
        done.push((b.name, compiled));
    }
    Ok(done)
}
