//! Fuzz target `names`: see [`mft_fuzz_core::names`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_core::names(data));
}
