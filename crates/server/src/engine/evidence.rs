//! Issue 9: failure evidence (CONNECTORS §6). The engine seals what a connector handed over —
//! screenshot, blanked DOM, URL, title, step trail — with the master key (the row id as
//! associated data, so a sealed value copied to another row does not open), keeps it by run for
//! the account's owner (`GET /accounts/:id/runs/:runId/evidence`) and the upkeep loop forgets it
//! after the retention (7 days).
//!
//! Secrets: the connector blanks every input and takes nothing while a code is in the page; the
//! engine also replaces every occurrence of the account's bank password in the text parts before
//! sealing, so a bank that echoes it somewhere (a URL, a title, a data attribute) does not put it
//! into the evidence.

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

/// The evidence with every occurrence of `secret` replaced (nothing when `secret` is empty).
fn redact(e: FailureEvidence, secret: Option<&str>) -> Opened {
    let scrub = |s: String| match secret {
        Some(p) if !p.is_empty() && s.contains(p) => s.replace(p, REDACTED),
        _ => s,
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
    password: Option<&str>,
    retention: Duration,
) {
    let taken_at = now();
    for e in evidence {
        let id = EvidenceId::new();
        let opened = redact(e, password);
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
    fn the_password_is_redacted_everywhere_and_the_rest_kept() {
        let o = redact(sample(), Some("hunter22"));
        let all = format!("{} {} {} {} {:?}", o.step, o.url, o.title, o.dom, o.trail);
        assert!(!all.contains("hunter22"), "{all}");
        assert_eq!(o.url, "https://bank.example/login?p=[redacted]");
        assert_eq!(o.dom, "<input value=\"\"><p data-echo=\"[redacted]\">[redacted]</p>");
        assert_eq!(o.screenshot_jpeg, "/9j/4A==");
        // No password (or an empty one): nothing is touched.
        assert_eq!(redact(sample(), None).title, "Welcome hunter22");
        assert_eq!(redact(sample(), Some("")).title, "Welcome hunter22");
    }

    #[test]
    fn sealed_evidence_opens_only_for_its_row() {
        let sealer = Sealer::new(&[7u8; 32]);
        let opened = redact(sample(), Some("hunter22"));
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
