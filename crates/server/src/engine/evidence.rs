//! Issue 9: failure evidence (CONNECTORS §6). The engine seals what a connector handed over —
//! screenshot, blanked DOM, URL, title, step trail — with the master key (the row id as
//! associated data, so a sealed value copied to another row does not open), keeps it by run for
//! the account's owner (`GET /accounts/:id/runs/:runId/evidence`) and the upkeep loop forgets it
//! after the retention (7 days).
//!
//! Secrets: the connector blanks every input and takes nothing while a code is in the page; the
//! engine also replaces the account's bank password and username in the text parts before
//! sealing — as typed, HTML-escaped, JSON-escaped and URL-encoded — so a bank that echoes them
//! somewhere (a URL, a title, a data attribute, an inline script) does not put them into the
//! evidence. An account keeps the evidence of at most one run an hour (the engine's
//! `may_keep_evidence`): a bank failing every run for a day must not fill the database.

use std::time::Duration;

use base64::Engine as _;
use reconbanker_store::{now, EvidenceId, EvidenceRow, RunRow};
use serde::{Deserialize, Serialize};

use super::connector::FailureEvidence;
use super::EngineDeps;
use crate::support::crypto::{OpenError, Sealer};
use crate::support::time::after;

/// What replaces a secret found in the evidence.
pub const REDACTED: &str = "[redacted]";

/// The sealed form (and the API's): JSON, the screenshot as base64.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Opened {
    pub step: String,
    pub url: String,
    pub title: String,
    pub trail: Vec<String>,
    pub dom: String,
    /// `image/jpeg`, base64 (standard alphabet, padded).
    pub screenshot_jpeg: String,
}

/// The forms a secret takes in a page's text: as typed, HTML-escaped (in the DOM),
/// JSON-escaped (in an inline script or a captured response), and form- or percent-encoded (in
/// a URL or a request body). Empty secrets give none.
fn spellings(secret: &str) -> Vec<String> {
    if secret.is_empty() {
        return Vec::new();
    }
    let html = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json.trim_matches('"').to_owned();
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let percent = form.replace('+', "%20");
    let mut all = vec![secret.to_owned(), html, json, form, percent];
    // Longest first, so a spelling that contains another is replaced whole.
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    all.dedup();
    all
}

/// The evidence with every spelling of every secret replaced (see [`spellings`]).
fn redact(e: FailureEvidence, secrets: &[&str]) -> Opened {
    let spellings: Vec<String> = secrets.iter().flat_map(|s| spellings(s)).collect();
    let scrub = |mut s: String| {
        for p in &spellings {
            if s.contains(p.as_str()) {
                s = s.replace(p.as_str(), REDACTED);
            }
        }
        s
    };
    Opened {
        step: scrub(e.step),
        url: scrub(e.url),
        title: scrub(e.title),
        trail: e.trail.into_iter().map(scrub).collect(),
        dom: scrub(e.dom),
        screenshot_jpeg: base64::engine::general_purpose::STANDARD.encode(&e.jpeg),
    }
}

/// Seals one piece of evidence for the row `id`.
pub(crate) fn seal(sealer: &Sealer, id: EvidenceId, opened: &Opened) -> Vec<u8> {
    // Serializing a struct of strings cannot fail.
    let json = serde_json::to_vec(opened).unwrap_or_default();
    sealer.seal(&json, id.0.as_bytes())
}

/// Opens a stored piece of evidence.
pub fn open(sealer: &Sealer, row: &EvidenceRow) -> Result<Opened, OpenError> {
    let json = sealer.open(&row.sealed, row.id.0.as_bytes())?;
    serde_json::from_slice(&json).map_err(|_| OpenError)
}

/// Seals and keeps a run's evidence (logged, never fatal: the run is recorded either way).
pub(super) async fn keep(
    deps: &EngineDeps,
    run: &RunRow,
    evidence: Vec<FailureEvidence>,
    secrets: &[&str],
    retention: Duration,
) {
    let taken_at = now();
    for e in evidence {
        let id = EvidenceId::new();
        let opened = redact(e, secrets);
        let row = EvidenceRow {
            id,
            run_id: run.id,
            step: opened.step.clone(),
            sealed: seal(&deps.sealer, id, &opened),
            taken_at,
            expires_at: after(taken_at, retention),
        };
        match deps.store.insert_evidence(&row).await {
            Ok(true) => tracing::info!(run = %run.id, step = %row.step, "failure evidence kept"),
            Ok(false) => tracing::debug!(run = %run.id, "the run is gone; its evidence is not kept"),
            Err(e) => tracing::warn!(error = %e, run = %run.id, "could not keep failure evidence"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FailureEvidence {
        FailureEvidence {
            step: "login[1]".into(),
            url: "https://bank.example/login?p=hunter22".into(),
            title: "Welcome hunter22".into(),
            jpeg: vec![0xff, 0xd8, 0xff, 0xe0],
            dom: "<input value=\"\"><p data-echo=\"hunter22\">hunter22</p>".into(),
            trail: vec!["goto /login".into(), "fill hunter22".into()],
        }
    }

    #[test]
    fn every_spelling_of_a_secret_is_redacted() {
        let secret = "p@ss&w\"rd 1";
        let e = FailureEvidence {
            step: "login[1]".into(),
            url: "https://bank.example/login?p=p%40ss%26w%22rd+1&q=p%40ss%26w%22rd%201".into(),
            title: "t".into(),
            jpeg: vec![],
            dom: "<p>p@ss&amp;w&quot;rd 1</p><script>{\"p\":\"p@ss&w\\\"rd 1\"}</script> ana.user".into(),
            trail: vec!["fill p@ss&w\"rd 1".into()],
        };
        let o = redact(e, &[secret, "ana.user", ""]);
        assert_eq!(o.url, "https://bank.example/login?p=[redacted]&q=[redacted]");
        assert_eq!(
            o.dom,
            "<p>[redacted]</p><script>{\"p\":\"[redacted]\"}</script> [redacted]"
        );
        assert_eq!(o.trail, vec!["fill [redacted]".to_owned()]);
    }

    #[test]
    fn the_password_is_redacted_everywhere_and_the_rest_kept() {
        let o = redact(sample(), &["hunter22"]);
        let all = format!("{} {} {} {} {:?}", o.step, o.url, o.title, o.dom, o.trail);
        assert!(!all.contains("hunter22"), "{all}");
        assert_eq!(o.url, "https://bank.example/login?p=[redacted]");
        assert_eq!(o.dom, "<input value=\"\"><p data-echo=\"[redacted]\">[redacted]</p>");
        assert_eq!(o.screenshot_jpeg, "/9j/4A==");
        // No password (or an empty one): nothing is touched.
        assert_eq!(redact(sample(), &[]).title, "Welcome hunter22");
        assert_eq!(redact(sample(), &[""]).title, "Welcome hunter22");
    }

    #[test]
    fn sealed_evidence_opens_only_for_its_row() {
        let sealer = Sealer::new(&[7u8; 32]);
        let opened = redact(sample(), &["hunter22"]);
        let id = EvidenceId::new();
        let r = EvidenceRow {
            id,
            run_id: reconbanker_store::RunId::new(),
            step: "login[1]".into(),
            sealed: seal(&sealer, id, &opened),
            taken_at: now(),
            expires_at: now(),
        };
        assert!(
            !String::from_utf8_lossy(&r.sealed).contains("bank.example"),
            "sealed, not clear"
        );
        assert_eq!(open(&sealer, &r).expect("opens"), opened);
        let moved = EvidenceRow {
            id: EvidenceId::new(),
            ..r.clone()
        };
        assert!(open(&sealer, &moved).is_err(), "bound to its row id");
        assert!(open(&Sealer::new(&[8u8; 32]), &r).is_err(), "another master key");
    }
}
