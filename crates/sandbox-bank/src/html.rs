//! The bank's HTML pages. Markup is deliberately stable: the connector scrapes it by the ids,
//! classes and `data-*` attributes documented in the crate docs.

use std::fmt::Write as _;

use crate::movements::Movement;
use crate::users::OtpChallenge;

/// Escapes text for element content and double-quoted attribute values.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn layout(page: &str, title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{title} - Sandbox Bank</title>\n\
         </head>\n<body data-page=\"{page}\">\n<header><h1><a href=\"/\">Sandbox Bank</a></h1></header>\n<main>\n{body}</main>\n\
         </body>\n</html>\n"
    )
}

/// `<p class="error" data-error="CODE">message</p>`
fn error_p(code: &str, message: &str) -> String {
    format!("<p class=\"error\" data-error=\"{code}\">{}</p>\n", escape(message))
}

fn csrf_input(csrf: &str) -> String {
    format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">\n", escape(csrf))
}

pub(crate) fn home() -> String {
    layout(
        "home",
        "Welcome",
        "<h2>Welcome to the Sandbox Bank</h2>\n<p>A pretend bank for demos and tests.</p>\n\
         <p><a id=\"login-link\" href=\"/login\">Log in</a></p>\n",
    )
}

/// Errors the login page can show.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LoginError {
    BadCredentials,
    AccountLocked,
}

pub(crate) fn login(csrf: &str, username: &str, error: Option<LoginError>) -> String {
    let error = match error {
        None => String::new(),
        Some(LoginError::BadCredentials) => error_p("bad_credentials", "Wrong username or password."),
        Some(LoginError::AccountLocked) => {
            error_p("account_locked", "This account is locked. Please contact your branch.")
        }
    };
    let body = format!(
        "<h2>Log in</h2>\n{error}<form id=\"login-form\" method=\"post\" action=\"/login\">\n{csrf}\
         <label>Username <input type=\"text\" name=\"username\" value=\"{username}\" autocomplete=\"username\"></label>\n\
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\"></label>\n\
         <button type=\"submit\">Log in</button>\n</form>\n",
        csrf = csrf_input(csrf),
        username = escape(username),
    );
    layout("login", "Log in", &body)
}

/// `wrong_code_attempts_left`: `Some(n)` right after a rejected code.
pub(crate) fn otp(
    csrf: &str,
    challenge: &OtpChallenge,
    attempts_left: u32,
    wrong_code_attempts_left: Option<u32>,
) -> String {
    let error = match wrong_code_attempts_left {
        None => String::new(),
        Some(n) => format!(
            "<p class=\"error\" data-error=\"wrong_code\" data-attempts-left=\"{n}\">Wrong code. {n} attempt{s} left.</p>\n",
            s = if n == 1 { "" } else { "s" }
        ),
    };
    let (inputmode, pattern) = match challenge.kind {
        crate::users::CodeKind::Numeric => ("numeric", "[0-9]*"),
        crate::users::CodeKind::Alphanumeric => ("text", "[A-Za-z0-9]*"),
    };
    let body = format!(
        "<h2>Confirm it is you</h2>\n<p>Enter the {len}-character code we sent you.</p>\n{error}\
         <form id=\"otp-form\" method=\"post\" action=\"/otp\" data-length=\"{len}\" data-type=\"{kind}\" \
         data-purpose=\"login\" data-attempts-left=\"{attempts_left}\">\n{csrf}\
         <label>Code <input type=\"text\" name=\"code\" inputmode=\"{inputmode}\" pattern=\"{pattern}\" \
         maxlength=\"{len}\" autocomplete=\"one-time-code\"></label>\n\
         <button type=\"submit\">Confirm</button>\n</form>\n",
        len = challenge.length,
        kind = challenge.kind.as_str(),
        csrf = csrf_input(csrf),
    );
    layout("otp", "Confirm", &body)
}

pub(crate) fn otp_locked() -> String {
    let body = format!(
        "<h2>Login locked</h2>\n{}<p><a href=\"/login\">Log in again</a></p>\n",
        error_p(
            "otp_locked",
            "Too many wrong codes: this login is locked. Log in again to start over."
        )
    );
    layout("error", "Login locked", &body)
}

pub(crate) fn movements(username: &str, movements: &[Movement]) -> String {
    let mut rows = String::new();
    for m in movements {
        // Writing to a String cannot fail.
        let _ = writeln!(
            rows,
            "<tr data-id=\"{id}\"><td class=\"date\">{date}</td><td class=\"amount\">{amount}</td>\
             <td class=\"currency\">{currency}</td><td class=\"name\">{name}</td>\
             <td class=\"description\">{description}</td></tr>",
            id = escape(&m.id),
            date = m.date_rfc3339(),
            amount = escape(m.amount()),
            currency = escape(&m.currency),
            name = escape(m.name.as_deref().unwrap_or("")),
            description = escape(&m.description),
        );
    }
    let body = format!(
        "<h2>Movements</h2>\n<p id=\"account\" data-username=\"{user}\">Logged in as {user}</p>\n\
         <table id=\"movements\">\n<thead><tr><th>Date</th><th>Amount</th><th>Currency</th><th>Name</th>\
         <th>Description</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n\
         <form id=\"logout-form\" method=\"post\" action=\"/logout\"><button type=\"submit\">Log out</button></form>\n",
        user = escape(username),
    );
    layout("movements", "Movements", &body)
}

/// A bare error page: `<p class="error" data-error="CODE">`.
pub(crate) fn error_page(code: &str, title: &str, message: &str) -> String {
    let body = format!(
        "<h2>{}</h2>\n{}<p><a href=\"/login\">Back to log in</a></p>\n",
        escape(title),
        error_p(code, message)
    );
    layout("error", title, &body)
}
