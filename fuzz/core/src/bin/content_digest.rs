//! Fuzz target `content_digest`: see [`mft_fuzz_core::content_digest`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_core::content_digest(data));
}
