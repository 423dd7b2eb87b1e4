//! Fuzz target `signature`: see [`mft_fuzz::signature`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz::signature(data));
}
