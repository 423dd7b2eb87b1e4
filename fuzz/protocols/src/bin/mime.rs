//! Fuzz target `mime`: see [`mft_fuzz_protocols::mime`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_protocols::mime(data));
}
