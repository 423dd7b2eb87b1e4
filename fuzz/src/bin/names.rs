//! Fuzz target `names`: see [`mft_fuzz::names`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz::names(data));
}
