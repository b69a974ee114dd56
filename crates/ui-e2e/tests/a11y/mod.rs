//! Issue 10: the automated accessibility check. axe-core (fetched at test time by
//! `scripts/fetch-axe.sh`, never committed) is injected into the page over the DevTools protocol
//! (`Runtime.evaluate` runs outside the page's Content-Security-Policy, which allows no inline
//! or foreign script) and `axe.run()` audits the document as the browser rendered it. Every
//! violation is kept with the page, width and theme it was found at; the test fails at its end
//! when any is serious or critical, listing them all (rule id, impact, help, the offending
//! elements), and prints the moderate and minor ones.

/// The impacts that fail the test.
pub fn fails(impact: &str) -> bool {
    matches!(impact, "serious" | "critical")
}

use std::path::PathBuf;

use chromiumoxide::Page;

/// Where the axe-core bundle is: `RECONBANKER_AXE`, or the cache `scripts/fetch-axe.sh` fills.
/// `None` (with a notice) when absent, unless `REQUIRE_CHROMIUM=1`: then a missing bundle fails
/// the run, like a missing Chromium.
pub fn load() -> Option<String> {
    let path = std::env::var_os("RECONBANKER_AXE").map(PathBuf::from).or_else(|| {
        let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/axe");
        std::fs::read_dir(&cache)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("axe.min.js"))
            .find(|p| p.is_file())
    });
    let source = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok());
    if source.is_none() {
        assert!(
            std::env::var("REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "REQUIRE_CHROMIUM=1 but axe-core was not found at {path:?} (set RECONBANKER_AXE to the \
             path scripts/fetch-axe.sh prints)"
        );
        eprintln!(
            "NOTICE: axe-core not found (run scripts/fetch-axe.sh or set RECONBANKER_AXE); the \
             dashboard's accessibility check is SKIPPED"
        );
    }
    source
}

/// The audit: injects axe-core when this document does not have it yet and reports every
/// violation as (impact, one line). `rules`: only these axe rules (all when empty).
pub async fn audit(page: &Page, source: &str, rules: &[&str]) -> Vec<(String, String)> {
    let loaded: bool = page
        .evaluate_expression("typeof window.axe === 'object'")
        .await
        .expect("evaluate")
        .into_value()
        .expect("a boolean");
    if !loaded {
        page.evaluate_expression(format!("{source}\n;true"))
            .await
            .expect("axe-core injected");
    }
    let options = if rules.is_empty() {
        serde_json::json!({ "resultTypes": ["violations"] })
    } else {
        serde_json::json!({ "resultTypes": ["violations"], "runOnly": { "type": "rule", "values": rules } })
    };
    let js = format!(
        "(async () => {{
        const r = await axe.run(document, {options});
        return r.violations
            .map(v => [v.impact || 'unknown', `${{v.id}} (${{v.impact}}): ${{v.help}} — at ${{v.nodes.map(n => n.target.join(' ')).join(', ')}}`]);
    }})()"
    );
    page.evaluate_expression(js)
        .await
        .expect("axe.run")
        .into_value()
        .expect("a list of violations")
}

/// Whether the page's Content-Security-Policy is in force while axe-core runs in it (the audit
/// needs no loosening of the policy, e.g. `Page.setBypassCSP`): an inline script the page adds
/// does not run. (Strings evaluated over the protocol are exempt from the policy by design, so
/// `axe.min.js` runs although the page allows no inline or foreign script.)
pub async fn csp_in_force(page: &Page) -> bool {
    page.evaluate_expression(
        "(() => { const s = document.createElement('script'); s.textContent = 'window.__inlineRan = true'; \
         document.head.appendChild(s); s.remove(); return window.__inlineRan !== true; })()",
    )
    .await
    .expect("evaluate")
    .into_value()
    .expect("a boolean")
}
