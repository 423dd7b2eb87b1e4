//! Fuzz target `mime`: see [`mft_fuzz::mime`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz::mime(data));
}
