//! The dashboard's files, embedded at compile time (nothing to deploy, no
//! CDN: the page works offline), with their content types and the one
//! version string that names them in URLs.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// One embedded file.
#[derive(Debug)]
pub(super) struct Asset {
    /// Its name in URLs and in `processor/dashboard/`.
    pub(super) name: &'static str,
    /// Its `Content-Type`.
    pub(super) content_type: &'static str,
    /// Its bytes.
    pub(super) body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../dashboard/", $name)),
        }
    };
}

/// The page's shell; its `__ASSET_VERSION__` is replaced by [`version`].
const INDEX_TEMPLATE: &str = include_str!("../../dashboard/index.html");

/// What `index.html` says where the version goes.
const VERSION_PLACEHOLDER: &str = "__ASSET_VERSION__";

/// Every file under `/admin/assets/<version>/` (`index.html` is served at
/// `/admin/` instead). A test checks this list against the folder.
pub(super) static ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("api.js", JS),
    asset!("app.js", JS),
    asset!("charts.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("route.js", JS),
    asset!("view-alerts.js", JS),
    asset!("view-overview.js", JS),
    asset!("view-statistics.js", JS),
    asset!("view-top-users.js", JS),
    asset!("view-user.js", JS),
];

/// The first 16 hex digits of a SHA-256 over every file (names and bytes,
/// the page's shell included). Assets are served under it, so a browser
/// may keep them for ever: a new build has a new version, and the page
/// (revalidated each time) names the new one.
pub(super) fn version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        let mut hash = Sha256::new();
        hash.update(INDEX_TEMPLATE.as_bytes());
        for asset in ASSETS {
            hash.update(asset.name.as_bytes());
            hash.update([0]);
            hash.update((asset.body.len() as u64).to_le_bytes());
            hash.update(asset.body);
        }
        hash.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    });
    &VERSION
}

/// The page at `/admin/`, naming the assets of this [`version`].
pub(super) fn index_html() -> &'static str {
    static INDEX: LazyLock<String> =
        LazyLock::new(|| INDEX_TEMPLATE.replace(VERSION_PLACEHOLDER, version()));
    &INDEX
}

/// The asset called `name`.
pub(super) fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard")
    }

    #[test]
    fn every_file_of_the_folder_is_embedded_and_nothing_else() {
        let mut on_disk: Vec<String> = std::fs::read_dir(folder())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name != "index.html")
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.name.to_owned()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }

    #[test]
    fn the_page_names_its_assets_by_version_and_runs_no_inline_code() {
        let index = index_html();
        assert!(!index.contains(VERSION_PLACEHOLDER));
        assert!(index.contains(&format!("assets/{}/app.js", version())));
        assert!(index.contains(&format!("assets/{}/app.css", version())));
        let lower = index.to_ascii_lowercase();
        // Every script has a source, nothing styles or handles inline:
        // the CSP would refuse it.
        assert_eq!(
            lower.matches("<script").count(),
            lower.matches("<script type=\"module\" src=").count()
        );
        assert!(!lower.contains("<style"));
        assert!(!lower.contains(" style="));
        assert!(!lower.contains(" onclick=") && !lower.contains(" onload="));
    }

    #[test]
    fn scripts_never_set_inline_styles_or_html_strings() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "setAttribute('style'",
                "new Function",
            ] {
                assert!(!text.contains(banned), "{} uses {banned}", asset.name);
            }
        }
    }

    #[test]
    fn the_version_is_stable_and_short() {
        assert_eq!(version(), version());
        assert_eq!(version().len(), 16);
        assert!(version().bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
