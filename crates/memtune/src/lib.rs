//! The allocator parameters of the server binary (issue 12, finding 2). The reasoning is in
//! `reconbanker::support::memory`; this crate only makes the two C calls, on glibc Linux (a
//! no-op elsewhere).

/// Pins glibc's mmap threshold (which also turns its dynamic raise off), so blocks of 256 KiB
/// and more — an Argon2 hash's ~19 MiB — are mapped and unmapped, never kept in a heap arena;
/// caps the arenas; trims heaps once more than 1 MiB is free at their top.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters and is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 4);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
    }
}

/// Gives free heap memory back to the system.
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim is thread-safe and releases only memory that is free.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tune_and_trim_can_be_called() {
        super::tune();
        let block = vec![1u8; 20 << 20];
        drop(block);
        super::trim();
    }
}
