//! Issue 10: the dashboard's HTML, rendered with maud (compile-time templates: a page that does
//! not type-check does not build, and every interpolated value is HTML-escaped).

use std::sync::LazyLock;

use maud::{html, Markup, PreEscaped, DOCTYPE};
use reconbanker_store::{BankRow, UserRow};

pub const CSS: &str = include_str!("assets/app.css");
pub const JS: &str = include_str!("assets/app.js");
pub const ACCOUNTS_JS: &str = include_str!("assets/accounts.js");

fn versioned(path: &str, body: &str) -> String {
    format!("{path}?v={:08x}", crc32fast::hash(body.as_bytes()))
}

pub static CSS_URL: LazyLock<String> = LazyLock::new(|| versioned("/app/static/app.css", CSS));
pub static JS_URL: LazyLock<String> = LazyLock::new(|| versioned("/app/static/app.js", JS));
pub static ACCOUNTS_JS_URL: LazyLock<String> = LazyLock::new(|| versioned("/app/static/accounts.js", ACCOUNTS_JS));

/// The signed-in part of the page chrome.
pub struct Chrome<'a> {
    pub user: &'a UserRow,
    pub csrf: &'a str,
    /// The review queue's length (issue 10: review), shown as a badge when known.
    pub review: Option<i64>,
}

/// The page frame: header (with navigation and the sign-out control when signed in), `main`.
pub fn page(title: &str, chrome: Option<&Chrome<'_>>, scripts: &[&str], content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                @if let Some(c) = chrome {
                    meta name="csrf-token" content=(c.csrf);
                }
                title { (title) " · Reconbanker" }
                link rel="stylesheet" href=(*CSS_URL);
                script src=(*JS_URL) defer {}
                @for s in scripts {
                    script src=(s) defer {}
                }
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/app" { "Reconbanker" }
                    @if let Some(c) = chrome {
                        nav aria-label="Main" {
                            a href="/app" { "Accounts" }
                            a href="/app/reconciliation" {
                                "Reconciliation"
                                @if let Some(n) = c.review.filter(|n| *n > 0) {
                                    " " span.badge id="review-badge" aria-label={ (n) " to review" } { (n) }
                                }
                            }
                            a href="/app/keys" { "API keys" }
                            a href="/app/settings" { "Settings" }
                        }
                        form.signout method="post" action="/app/logout" {
                            input type="hidden" name="csrf" value=(c.csrf);
                            span.who { (c.user.email) }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (content)
                }
            }
        }
    }
}

fn error_box(error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error {
            p.error role="alert" id="form-error" { (e) }
        }
    }
}

pub fn login(error: Option<&str>, email: &str, pre: &str) -> Markup {
    page(
        "Sign in",
        None,
        &[],
        html! {
            (error_box(error))
            form.card method="post" action="/app/login" {
                input type="hidden" name="csrf" value=(pre);
                label for="email" { "Email" }
                input id="email" name="email" type="email" autocomplete="username" required value=(email);
                label for="password" { "Password" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            p { "No account yet? " a href="/app/register" { "Create one" } "." }
        },
    )
}

pub fn code(error: Option<&str>, pre: &str) -> Markup {
    page(
        "Two-factor code",
        None,
        &[],
        html! {
            p { "Enter the 6-digit code from your authenticator app, or one of your recovery codes." }
            (error_box(error))
            form.card method="post" action="/app/login/code" {
                input type="hidden" name="csrf" value=(pre);
                label for="totp_code" { "Code" }
                input id="totp_code" name="totp_code" type="text" inputmode="numeric" autocomplete="one-time-code"
                    required autofocus maxlength="32" spellcheck="false";
                button type="submit" { "Verify" }
            }
            p { a href="/app/login" { "Start over" } }
        },
    )
}

pub fn register(error: Option<&str>, email: &str, name: &str, pre: &str) -> Markup {
    page(
        "Create an account",
        None,
        &[],
        html! {
            (error_box(error))
            form.card method="post" action="/app/register" {
                input type="hidden" name="csrf" value=(pre);
                label for="name" { "Name (optional)" }
                input id="name" name="name" type="text" autocomplete="name" maxlength="100" value=(name);
                label for="email" { "Email" }
                input id="email" name="email" type="email" autocomplete="username" required value=(email);
                label for="password" { "Password (at least 12 characters)" }
                input id="password" name="password" type="password" autocomplete="new-password" required minlength="12";
                button type="submit" { "Create account" }
            }
            p { "Already registered? " a href="/app/login" { "Sign in" } "." }
        },
    )
}

/// One account on the accounts page.
pub struct AccountView {
    pub id: String,
    pub name: String,
    pub bank: String,
    pub light: &'static str,
    pub blocked_reason: Option<String>,
    /// The latest run (issue 10: accounts list polish).
    pub last_run: Option<LastRun>,
}

/// An account's latest run: its outcome, and when it ended (or started, while running).
pub struct LastRun {
    pub outcome: String,
    pub at: String,
}

/// A run's outcome as shown, with its light.
pub fn outcome_label(o: &str) -> (&'static str, &'static str) {
    match o {
        "succeeded" => ("running", "Succeeded"),
        "running" => ("starting", "Running"),
        "failed" => ("needs_attention", "Failed"),
        "cancelled" => ("off", "Cancelled"),
        _ => ("off", "Other"),
    }
}

/// The fatal-block badge and its reason (the script renders the same when it changes live).
pub fn blocked(reason: &str) -> Markup {
    html! {
        p.blocked data-reason=(reason) {
            span.badge.fatal { "Blocked" } " " (reason.replace('_', " ")) " — fix the login, then read again."
        }
    }
}

pub fn light_label(light: &str) -> &'static str {
    match light {
        "starting" => "Starting",
        "running" => "Running",
        "awaiting_code" => "Waiting for a code",
        "needs_attention" => "Needs attention",
        _ => "Off",
    }
}

pub fn accounts(chrome: &Chrome<'_>, list: &[AccountView], banks: &[BankRow], error: Option<&str>) -> Markup {
    page(
        "Accounts",
        Some(chrome),
        &[ACCOUNTS_JS_URL.as_str()],
        html! {
            p.live-status id="live-status" role="status" aria-live="polite" {}
            // The banks' code prompts (accounts.js): docked over the page, not in the list, so a
            // prompt appearing moves nothing on the page, and it is in view wherever the list
            // is scrolled. First in the reading order after the status line.
            section.prompt-tray id="prompts" aria-label="Codes the banks ask for" {}
            @if list.is_empty() {
                p.empty id="empty" {
                    "No bank accounts yet. Add one below: pick its bank, give it a name and its login, "
                    "then press “Read now” to fetch its movements."
                }
            }
            ul.accounts id="accounts" {
                @for a in list {
                    li.account data-account-id=(a.id) {
                        div.account-head {
                            h2 { a href={ "/app/accounts/" (a.id) } { (a.name) } }
                            span.bank { (a.bank) }
                            span.light data-light=(a.light) { (light_label(a.light)) }
                        }
                        @if let Some(r) = &a.blocked_reason {
                            (blocked(r))
                        }
                        p.meta.last-run {
                            "Last run: "
                            @match &a.last_run {
                                Some(r) => {
                                    @let (l, text) = outcome_label(&r.outcome);
                                    span.outcome data-light=(l) data-outcome=(r.outcome) { (text) }
                                    " · " time datetime=(r.at) { (r.at) }
                                }
                                None => { "none yet" }
                            }
                        }
                        form.inline method="post" action={ "/app/accounts/" (a.id) "/read" } {
                            input type="hidden" name="csrf" value=(chrome.csrf);
                            button type="submit" data-read=(a.id) { "Read now" }
                        }
                        details.movements data-movements=(a.id) {
                            summary { "Movements" }
                            div.movement-list { p.empty { "Open to load the latest movements." } }
                        }
                    }
                }
            }
            h2 { "Add an account" }
            (error_box(error))
            form.card method="post" action="/app/accounts" {
                input type="hidden" name="csrf" value=(chrome.csrf);
                label for="bank" { "Bank" }
                select id="bank" name="bank" required {
                    @for b in banks {
                        option value=(b.id) { (b.name) " (" (b.code) ")" }
                    }
                }
                label for="acc-name" { "Name" }
                input id="acc-name" name="name" type="text" required maxlength="100";
                label for="bank_username" { "Bank username" }
                input id="bank_username" name="bank_username" type="text" autocomplete="off" spellcheck="false";
                label for="bank_password" { "Bank password" }
                input id="bank_password" name="bank_password" type="password" autocomplete="new-password";
                fieldset {
                    legend { "Login" }
                    label.choice {
                        input type="radio" name="login_mode" value="assisted" checked;
                        " Assisted: ask me for the bank's one-time codes"
                    }
                    label.choice {
                        input type="radio" name="login_mode" value="simple";
                        " Simple: no codes"
                    }
                }
                button type="submit" { "Add account" }
            }
        },
    )
}

pub struct TwoFactorView {
    pub enabled: bool,
    pub recovery_codes_left: i64,
}

/// Settings; `banks` is the administrators' banks section (issue 10), empty for others.
pub fn settings(
    chrome: &Chrome<'_>,
    tf: &TwoFactorView,
    notice: Option<&str>,
    error: Option<&str>,
    banks: Markup,
) -> Markup {
    let mode = chrome.user.operation_mode.as_deref();
    page(
        "Settings",
        Some(chrome),
        &[],
        html! {
            @if let Some(n) = notice {
                p.notice role="status" { (n) }
            }
            section aria-labelledby="mode-h" {
                h2 id="mode-h" { "Operation mode" }
                @if mode.is_none() {
                    p { "Not chosen yet. Pick one: reconcile matches movements to your pending orders; passthrough forwards every new movement." }
                }
                form.card method="post" action="/app/settings/mode" {
                    input type="hidden" name="csrf" value=(chrome.csrf);
                    fieldset {
                        legend { "Mode" }
                        label.choice { input type="radio" name="mode" value="reconcile" checked[mode == Some("reconcile")]; " Reconcile" }
                        label.choice { input type="radio" name="mode" value="passthrough" checked[mode == Some("passthrough")]; " Passthrough" }
                    }
                    button type="submit" { "Save mode" }
                }
            }
            section aria-labelledby="tf-h" {
                h2 id="tf-h" { "Two-factor sign-in" }
                @if tf.enabled {
                    p { "On. Signing in asks for a code from your authenticator app. Recovery codes left: "
                        strong id="recovery-left" { (tf.recovery_codes_left) } }
                    (error_box(error))
                    form.card method="post" action="/app/settings/two-factor/disable" {
                        input type="hidden" name="csrf" value=(chrome.csrf);
                        label for="disable-code" { "Current code (or a recovery code)" }
                        input id="disable-code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code" required maxlength="32";
                        button type="submit" { "Turn two-factor off" }
                    }
                } @else {
                    p { "Off. Turn it on so that signing in also needs a code from an authenticator app on your phone." }
                    (error_box(error))
                    form.card method="post" action="/app/settings/two-factor/setup" {
                        input type="hidden" name="csrf" value=(chrome.csrf);
                        button type="submit" { "Set up two-factor sign-in" }
                    }
                }
            }
            (banks)
        },
    )
}

pub fn two_factor_setup(chrome: &Chrome<'_>, uri: &str, secret: &str, qr_svg: &str, error: Option<&str>) -> Markup {
    page(
        "Set up two-factor sign-in",
        Some(chrome),
        &[],
        html! {
            ol {
                li { "Scan this QR code with your authenticator app (or enter the key by hand)." }
                li { "Type the 6-digit code it shows to turn two-factor sign-in on." }
            }
            figure.qr {
                // The SVG is produced by the qrcode crate from our own URI: no user markup.
                div.qr-code role="img" aria-label="QR code of the authenticator set-up link" { (PreEscaped(qr_svg)) }
                figcaption {
                    "Key: " code id="totp-secret" { (secret) }
                }
            }
            p.uri { "Link: " code id="otpauth-uri" { (uri) } }
            (error_box(error))
            form.card method="post" action="/app/settings/two-factor/confirm" {
                input type="hidden" name="csrf" value=(chrome.csrf);
                label for="confirm-code" { "Code from the app" }
                input id="confirm-code" name="code" type="text" inputmode="numeric" autocomplete="one-time-code"
                    pattern="[0-9 ]*" required maxlength="7" autofocus;
                button type="submit" { "Turn on" }
            }
        },
    )
}

pub fn recovery_codes(chrome: &Chrome<'_>, codes: &[String]) -> Markup {
    page(
        "Two-factor sign-in is on",
        Some(chrome),
        &[],
        html! {
            p { "Keep these recovery codes somewhere safe. Each one signs you in once if your phone is not at hand. "
                strong { "They are shown only now." } }
            ul.codes id="recovery-codes" {
                @for c in codes { li { code { (c) } } }
            }
            p { a.button href="/app/settings" { "I have saved them" } }
        },
    )
}

/// One API key on its page.
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: String,
    pub last_used: Option<String>,
    pub expires: Option<String>,
    pub revoked: Option<String>,
    /// The names of the accounts the key is restricted to (issue 10); `None`: every account.
    pub accounts: Option<String>,
}

fn time(t: &Option<String>, none: &str) -> Markup {
    html! {
        @match t {
            Some(t) => { time datetime=(t) { (t) } }
            None => { (none) }
        }
    }
}

/// The API keys page; `created` is the full key of the key just made (shown once).
/// `accounts`: the user's accounts (id, name), offered as the key's restriction.
pub fn keys(
    chrome: &Chrome<'_>,
    list: &[KeyView],
    accounts: &[(String, String)],
    created: Option<(&str, &str)>,
    error: Option<&str>,
    notice: Option<&str>,
) -> Markup {
    page(
        "API keys",
        Some(chrome),
        &[],
        html! {
            @if let Some(n) = notice {
                p.notice role="status" id="notice" { (n) }
            }
            @if let Some((name, key)) = created {
                section.card.created aria-labelledby="created-h" {
                    h2 id="created-h" { "Key “" (name) "” created" }
                    p { strong { "Copy it now: it is shown only once." } }
                    label for="new-key" { "API key" }
                    input id="new-key" type="text" readonly value=(key) spellcheck="false";
                    button type="button" data-copy="new-key" { "Copy" }
                    p.meta role="status" aria-live="polite" data-copied="new-key" {}
                }
            }
            @if list.is_empty() {
                p.empty id="keys-empty" { "No API keys yet. Create one below for a service that submits codes (otp:write) or reads status (status:read)." }
            } @else {
                ul.accounts id="keys" {
                    @for k in list {
                        li.account data-key-id=(k.id) {
                            div.account-head {
                                h2 { (k.name) }
                                code.bank { "rbk_" (k.prefix) "_…" }
                                @if k.revoked.is_some() {
                                    span.light data-light="off" { "Revoked" }
                                } @else {
                                    span.light data-light="running" { "Active" }
                                }
                            }
                            p.meta { "Scopes: " (k.scopes) " · Last used: " (time(&k.last_used, "never"))
                                " · Expires: " (time(&k.expires, "never"))
                                " · Accounts: " span.key-accounts { (k.accounts.as_deref().unwrap_or("all")) } }
                            @if k.revoked.is_none() {
                                form.inline method="post" action={ "/app/keys/" (k.id) "/revoke" } {
                                    input type="hidden" name="csrf" value=(chrome.csrf);
                                    button type="submit" aria-label={ "Revoke " (k.name) } { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Create a key" }
            (error_box(error))
            form.card method="post" action="/app/keys" {
                input type="hidden" name="csrf" value=(chrome.csrf);
                label for="key-name" { "Name" }
                input id="key-name" name="name" type="text" required maxlength="100";
                fieldset {
                    legend { "Scopes" }
                    label.choice { input type="checkbox" name="scope" value="otp:write" checked; " otp:write — submit codes" }
                    label.choice { input type="checkbox" name="scope" value="status:read" checked; " status:read — read status and events" }
                }
                @if !accounts.is_empty() {
                    fieldset {
                        legend { "Accounts" }
                        p.hint id="key-accounts-hint" { "Tick none for every account (those added later too), or restrict the key to some." }
                        @for (id, name) in accounts {
                            label.choice { input type="checkbox" name="account" value=(id) aria-describedby="key-accounts-hint"; " " (name) }
                        }
                    }
                }
                label for="key-expiry" { "Expires" }
                select id="key-expiry" name="expires_in_days" {
                    option value="" { "Never" }
                    option value="7" { "In 7 days" }
                    option value="30" { "In 30 days" }
                    option value="90" { "In 90 days" }
                    option value="365" { "In a year" }
                }
                button type="submit" { "Create key" }
            }
        },
    )
}
