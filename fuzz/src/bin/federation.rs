//! Fuzz target `federation`: see [`mft_fuzz::federation`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz::federation(data));
}
