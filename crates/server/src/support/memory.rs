//! Issue 12, finding 2: memory given back after a burst of password hashes.
//!
//! Each Argon2id hash allocates one ~19 MiB block. With glibc's default (dynamic) mmap
//! threshold, the first such block freed raises the threshold above 19 MiB, so every later block
//! comes from a heap arena instead of `mmap`; the blocking pool's threads each get an arena, and
//! the freed blocks stay in them: a burst of ~220 registrations left the process at 1.3 GiB.
//!
//! The choice: keep the system allocator (no new dependency, nothing changes for the request
//! path's small allocations), pin the mmap threshold at 256 KiB — which also turns the dynamic
//! adjustment off — so large blocks are always mapped and returned to the system the moment they
//! are freed, cap the number of arenas, and trim the heaps when the hash queue drains
//! ([`trim`]). Measured by `scripts/memory.sh` (README, "Memory").

/// Applies the allocator settings; called once by the binary at start.
pub fn tune() {
    reconbanker_memtune::tune();
}

/// Gives freed heap memory back to the system (after a burst of hashes drained).
pub fn trim() {
    reconbanker_memtune::trim();
}
