//! Issue 10: end-to-end tests of the operator dashboard in a real headless Chromium. The tests
//! are in `tests/`; this library is empty (a package needs a target).
