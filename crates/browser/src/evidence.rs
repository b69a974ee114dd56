//! Failure evidence (CONNECTORS §6): what the page looked like when a step failed. The server
//! seals it with the master key and keeps it 7 days for the account's owner; nothing here is
//! written anywhere.

/// A screenshot and a DOM snapshot of a failed step. Inputs are blanked in both; none is taken
/// while a one-time code is in the page.
#[derive(Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The step that failed (`login[4]`, `otp`, `movements.fields`).
    pub step: String,
    pub url: String,
    pub title: String,
    /// JPEG, quality 60, the viewport.
    pub jpeg: Vec<u8>,
    /// `outerHTML` with every input, textarea and script emptied, at most 512 KiB.
    pub dom: String,
    /// The steps run before it, in order.
    pub trail: Vec<String>,
}

impl std::fmt::Debug for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evidence")
            .field("step", &self.step)
            .field("url", &self.url)
            .field("jpeg_bytes", &self.jpeg.len())
            .field("dom_bytes", &self.dom.len())
            .finish_non_exhaustive()
    }
}
