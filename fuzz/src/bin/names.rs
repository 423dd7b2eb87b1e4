//! Fuzz target `names`: see [`mft_fuzz::names`].
fn main() {
    afl::fuzz!(|data: &[u8]| mft_fuzz::names(data));
}
