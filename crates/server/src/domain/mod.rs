//! Domain rules that every layer may use and that use nothing above them: the account
//! configuration document and e-mail normalisation.

pub mod account_config;
pub mod email;
pub mod exact_json;

/// A rule a client input broke: the field and what was wrong. The HTTP layer renders it as
/// `400 VALIDATION_ERROR` with the field in `details`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
