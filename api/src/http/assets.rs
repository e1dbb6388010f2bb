//! The pricing page's wasm bundle: where it is, and Leptos' options for its hydration scripts.

use std::path::{Path, PathBuf};

use leptos::config::LeptosOptions;

/// Where the wasm bundle is, when it is there.
#[derive(Debug, Clone, Default)]
pub struct Assets {
    /// The site folder (holding `pkg/`), when it holds a complete bundle.
    pub site: Option<PathBuf>,
    /// Leptos' options for the hydration scripts (where the bundle is), built once with `site`.
    options: Option<LeptosOptions>,
    /// The same for the billing page's bundle, when it is there too.
    billing: Option<LeptosOptions>,
}

/// The files a complete bundle has in `pkg/`.
const BUNDLE: [&str; 2] = ["pricing_ui.js", "pricing_ui_bg.wasm"];

/// The billing page's bundle (without it, the billing page is served without scripts: it works as forms).
const BILLING_BUNDLE: (&str, &str) = ("billing_ui.js", "billing_ui_bg.wasm");

fn complete(site: &Path) -> bool {
    BUNDLE.iter().all(|f| site.join("pkg").join(f).is_file())
}

impl Assets {
    /// Finds the bundle: in `given` (`--assets`), else next to the binary (`target/site` for
    /// `target/release/tally`), else `./target/site`. Logs a warning when there is none.
    pub fn locate(given: Option<&Path>) -> Assets {
        let candidates: Vec<PathBuf> = match given {
            Some(dir) => vec![dir.to_path_buf()],
            None => std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().and_then(Path::parent).map(|target| target.join("site")))
                .into_iter()
                .chain(std::iter::once(PathBuf::from("target/site")))
                .collect(),
        };
        let site = candidates.iter().find(|dir| complete(dir)).cloned();
        match &site {
            Some(dir) => tracing::info!(assets = %dir.display(), "pricing page: serving the wasm bundle"),
            None => tracing::warn!(
                looked_in = %candidates.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
                "pricing page: no wasm bundle found (build it with scripts/build-ui, or pass --assets DIR); \
                 serving the page without JavaScript, as a form"
            ),
        }
        let options_for = |name: &str| {
            site.as_ref().map(|site| {
                LeptosOptions::builder()
                    .output_name(name)
                    .site_root(site.display().to_string())
                    .site_pkg_dir("pkg")
                    .build()
            })
        };
        let options = options_for(pricing_ui::OUTPUT_NAME);
        let billing_files = [BILLING_BUNDLE.0, BILLING_BUNDLE.1];
        let billing = options_for(pricing_ui::BILLING_OUTPUT_NAME).filter(|_| {
            site.as_ref().is_some_and(|s| billing_files.iter().all(|f| s.join("pkg").join(f).is_file()))
        });
        Assets { site, options, billing }
    }

    /// Leptos' options for the billing page's hydration scripts, when its bundle is there.
    pub fn billing_options(&self) -> Option<&LeptosOptions> {
        self.billing.as_ref()
    }

    /// Leptos' options for the hydration scripts, when the bundle is there.
    pub fn options(&self) -> Option<&LeptosOptions> {
        self.options.as_ref()
    }
}
