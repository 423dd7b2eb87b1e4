//! Fuzz target `signature`: see [`mft_fuzz_core::signature`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_core::signature(data));
}
