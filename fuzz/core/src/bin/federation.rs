//! Fuzz target `federation`: see [`mft_fuzz_core::federation`].
fn main() {
    afl::fuzz_nohook!(|data: &[u8]| mft_fuzz_core::federation(data));
}
