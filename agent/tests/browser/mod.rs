//! A real browser for the page tests: Debian's headless `chromium` loads a URL and
//! hands back the DOM it built, which `scraper` queries with CSS selectors.

use std::path::PathBuf;
use std::time::Duration;

use depprobe_tests::Scratch;
use scraper::{ElementRef, Html, Selector};

/// How long one page load may take.
const LOAD: Duration = Duration::from_secs(60);

/// Debian's `chromium` (or `$CHROMIUM`), headless, with a fresh profile: the DOM
/// after the page loaded, serialized.
pub async fn dump_dom(scratch: &Scratch, url: &str) -> String {
    // At most two browsers at once across the tests of a binary: each is heavy.
    static BROWSERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    let _turn = BROWSERS.acquire().await.unwrap();
    let chromium =
        std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("chromium"), PathBuf::from);
    let profile = tempfile::tempdir_in(scratch.path("")).unwrap();
    let run = tokio::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(LOAD, run).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!(
            "cannot run {} (scripts/deps installs it): {e}",
            chromium.display()
        ),
        Err(_) => panic!("chromium did not finish loading {url} within {LOAD:?}"),
    };
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed on {url}: {}\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// A CSS selector.
pub fn sel(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

/// The text of an element, trimmed.
pub fn text(e: ElementRef<'_>) -> String {
    e.text().collect::<String>().trim().to_owned()
}

/// The row of target `name` on the overview.
pub fn row<'a>(doc: &'a Html, name: &str) -> ElementRef<'a> {
    doc.select(&sel("tr.target"))
        .find(|r| r.select(&sel("td.name a")).next().map(text).as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}"))
}

/// The text and classes of the cell `class` in `row`.
pub fn cell(row: ElementRef<'_>, class: &str) -> (String, Vec<String>) {
    let c = row.select(&sel(&format!("td.{class}"))).next().unwrap();
    (text(c), c.value().classes().map(str::to_owned).collect())
}
